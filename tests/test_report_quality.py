"""The report's quality sections: headline verdict, ceiling table, popularity buckets, findings on
top, and the oracle ceiling wired from a synthetic world's ingestion to an AUC on the test pairs."""

from __future__ import annotations

import numpy as np
import pytest

from semid_pipeline import report_quality as rq
from semid_pipeline.report import render_report


def _rec(key: str, auc: float, half: float, *, baselines: dict, oracle: dict | None = None, buckets=None) -> dict:
    h, scheme_key = key.split("|")
    return {"partition_key": key, "scheme": scheme_key.split("-")[0], "scheme_key": scheme_key,
            "k": None, "h": int(h), "test": {"auc": auc, "ci_lo": auc - half, "ci_hi": auc + half,
                                             "by_popularity": buckets or []},
            "baseline_details": baselines, "baselines": {f"{n}_auc": b["auc"] for n, b in baselines.items()},
            "oracle": oracle}


BASE = {"popularity": {"auc": 0.60, "ci_lo": 0.58, "ci_hi": 0.62},
        "gbdt": {"auc": 0.65, "ci_lo": 0.63, "ci_hi": 0.67,
                 "by_popularity": [{"bucket": "tail", "auc": 0.55}, {"bucket": "head", "auc": 0.7}]}}
ORACLE = {"auc": 0.76, "ci_lo": 0.75, "ci_hi": 0.77}


def test_headline_says_beats_only_when_the_models_ci_clears_the_best_baseline():
    win = [_rec("64|id", 0.70, 0.01, baselines=BASE, oracle=ORACLE), _rec("64|v1-k8", 0.66, 0.01, baselines=BASE)]
    line = rq.headline(win)
    assert "64|id" in line and "beats the best baseline gbdt" in line and "0.7600" in line
    tie = [_rec("64|id", 0.655, 0.02, baselines=BASE)]
    assert "does not beat" in rq.headline(tie)
    lose = [_rec("64|id", 0.60, 0.01, baselines=BASE)]
    assert "is below" in rq.headline(lose)
    assert "not measurable" in rq.headline([_rec("64|id", 0.6, 0.01, baselines={})])


def test_ceiling_table_lists_oracle_baselines_and_models_side_by_side():
    recs = [_rec("64|v1-k8", 0.66, 0.01, baselines=BASE, oracle=ORACLE), _rec("64|id", 0.70, 0.01, baselines=BASE)]
    t = rq.ceiling_table(recs)
    assert list(t["kind"]) == ["ceiling", "baseline", "baseline", "model", "model"]
    assert list(t["name"])[1:] == ["gbdt", "popularity", "64|id", "64|v1-k8"]  # best first within a kind
    assert t.loc[0, "test AUC"] == pytest.approx(0.76)
    assert "ceiling" not in set(rq.ceiling_table([_rec("64|id", 0.7, 0.01, baselines=BASE)])["kind"])


def test_the_learnable_ceiling_sits_next_to_the_oracle_in_the_table_and_the_headline():
    oracle = {**ORACLE, "learnable": {"auc": 0.69, "ci_lo": 0.68, "ci_hi": 0.70}}
    recs = [_rec("64|id", 0.66, 0.01, baselines=BASE, oracle=oracle)]
    t = rq.ceiling_table(recs)
    assert list(t["name"][:2]) == ["oracle (generator's P(positive))", rq.LEARNABLE_NAME]
    assert t.loc[1, "test AUC"] == pytest.approx(0.69)
    line = rq.headline(recs)
    assert "Ceiling (oracle): 0.7600" in line and "learnable from this data: 0.6900 [0.6800, 0.7000]" in line
    assert "learnable" not in rq.headline([_rec("64|id", 0.66, 0.01, baselines=BASE, oracle=ORACLE)])
    from semid_pipeline.findings import paper_findings
    beats = paper_findings(recs)[0]
    assert beats.claim.startswith("The sequence model beats") and "learnable ceiling of this data 0.690" in beats.evidence
    assert "+0.040 above the best baseline" in beats.evidence  # 0.69 vs gbdt 0.65
    assert "passes it" not in beats.evidence  # 0.66 < 0.69
    passed = paper_findings([_rec("64|id", 0.70, 0.01, baselines=BASE, oracle=oracle)])[0]
    assert "the best model passes it" in passed.evidence and "not a bound" in passed.evidence  # 0.70 > 0.69


def test_popularity_table_has_models_and_baselines_by_bucket():
    buckets = [{"bucket": "head", "auc": 0.8}, {"bucket": "unseen", "auc": 0.52}]
    t = rq.popularity_table([_rec("64|id", 0.7, 0.01, baselines=BASE, buckets=buckets)])
    row = t.set_index("name").loc["64|id"]
    assert row["head"] == pytest.approx(0.8) and row["unseen"] == pytest.approx(0.52) and np.isnan(row["tail"])
    assert t.set_index("name").loc["baseline gbdt", "tail"] == pytest.approx(0.55)


def test_report_opens_with_the_verdict_and_findings(tmp_path):
    recs = [_rec("64|id", 0.70, 0.01, baselines=BASE, oracle=ORACLE)]
    art = render_report(recs, tmp_path / "out", dataset="synthetic:tiny")
    md = (tmp_path / "out" / "summary.md").read_text()
    assert md.index("Verdict on this data") < md.index("## Partitions")
    assert "Paper's finding" in md and "Ceiling, baselines and models" in md and "AUC by track popularity" in md
    page = art.html_path.read_text()
    assert page.index("Verdict on this data") < page.index("<h2>Headline</h2>")


def test_synthetic_ingestion_records_an_oracle_that_covers_every_test_pair(tmp_path, monkeypatch):
    from semid_pipeline import warehouse as wh
    from semid_pipeline.config import IngestConfig, load_config, parse_dataset_spec
    from semid_pipeline.datasets import ORACLE_META, ingest_dataset
    from semid_pipeline.diagnostics import oracle_auc
    from semid_pipeline.splits import load_splits
    from semid_pipeline.synthetic import load_oracle

    db = tmp_path / "w.duckdb"
    ingest_dataset(parse_dataset_spec("synthetic:tiny"), warehouse=db, cfg=IngestConfig(), data_dir=tmp_path / "data")
    with wh.connect(db, read_only=True) as con:
        path = wh.get_meta(con, ORACLE_META)
        splits = load_splits(con, load_config().split)
    assert path and (tmp_path / "data") in __import__("pathlib").Path(path).parents
    rec = oracle_auc(splits.test.events, load_oracle(path), n_boot=50)
    assert rec["n_matched"] == len(splits.test.events) > 0
    assert rec["ci_lo"] <= rec["auc"] <= rec["ci_hi"] and rec["auc"] > 0.5
    # the learnable ceiling: same pairs, taste and appeal estimated from the data, below the oracle
    from semid_pipeline.synthetic.ceiling import learnable_ceiling
    learn = learnable_ceiling(path, splits.test.events, n_boot=50)
    assert learn["n_strata"] == rec["n_strata"] and 0.5 < learn["auc"] < rec["auc"]
    assert learn["appeal_auc"] < learn["true_appeal_auc"]  # appeal from ~tens of plays is a rough guess
    import semid_pipeline.synthetic.ceiling as ceiling
    monkeypatch.setattr(ceiling, "MAX_EVENTS", 100)  # too big a world: no ceiling rather than minutes of work
    assert learnable_ceiling(path, splits.test.events, n_boot=50) is None


def test_learnable_ceiling_estimators_recover_what_plenty_of_data_reveals():
    from semid_pipeline.synthetic.ceiling import map_appeal, map_taste
    rng = np.random.default_rng(0)
    n, per = 40, 3000  # 40 tracks, 3000 plays each: the MAP approaches the truth
    a = rng.standard_normal(n)
    t = np.repeat(np.arange(n), per)
    off = rng.normal(0.0, 1.0, t.size)
    y = (rng.random(t.size) < 1 / (1 + np.exp(-(off + 0.8 * a[t])))).astype(float)
    a_hat = map_appeal(t, off, y, 0.8, np.zeros(n), 1.0)
    assert np.abs(a_hat - a).max() < 0.15
    few = map_appeal(t[::per], off[::per], y[::per], 0.8, np.zeros(n), 1.0)  # one play each: shrunk to the prior
    assert np.abs(few).max() < np.abs(a).max() and np.corrcoef(few, a)[0, 1] < np.corrcoef(a_hat, a)[0, 1]
    D = 4
    taste = rng.standard_normal(D)
    lat = rng.standard_normal((20_000, D))
    off = rng.normal(0.0, 0.5, len(lat))
    y = (rng.random(len(lat)) < 1 / (1 + np.exp(-(lat @ taste + off)))).astype(float)
    est = map_taste(lat, off, y, 1.0, np.zeros(D), np.eye(D))
    assert np.abs(est - taste).max() < 0.1


def test_learnable_ceiling_of_a_sessions_world_uses_each_sessions_input(tmp_path):
    from dataclasses import replace

    from semid_pipeline import warehouse as wh
    from semid_pipeline.config import IngestConfig, load_config, parse_dataset_spec
    from semid_pipeline.datasets import ORACLE_META, ingest_dataset
    from semid_pipeline.diagnostics import oracle_auc
    from semid_pipeline.splits import load_splits
    from semid_pipeline.synthetic import load_oracle, write_world
    from semid_pipeline.synthetic.ceiling import learnable_ceiling

    db = tmp_path / "s.duckdb"
    ingest_dataset(parse_dataset_spec("synthetic:tiny:sessions"), warehouse=db, cfg=IngestConfig(),
                   data_dir=tmp_path / "data")
    with wh.connect(db, read_only=True) as con:
        path = wh.get_meta(con, ORACLE_META)
        test = load_splits(con, load_config().split).test.events
    rec = oracle_auc(test, load_oracle(path), n_boot=50)
    learn = learnable_ceiling(path, test, n_boot=50)
    # regenerated sessions match the ingested ones pair for pair; the estimate stays below the oracle
    assert learn["n_strata"] == rec["n_strata"] > 0 and 0.5 < learn["auc"] < rec["auc"]
    # a chunked world draws its sessions block by block: not regenerated, so no ceiling
    from semid_pipeline.synthetic import preset
    m = write_world(replace(preset("tiny"), name="tiny-chunked", listener_block=64), tmp_path / "c",
                    formats=("sessions",))
    assert learnable_ceiling(m.sessions_oracle, test) is None


def test_the_parameter_reduction_counts_the_priors_per_track_values_when_it_is_used():
    from semid_pipeline.findings import finding_v1_matches_id

    def rec(key, params, weight):
        r = _rec(key, 0.68, 0.01, baselines=BASE)
        return {**r, "k": 1024 if "v1" in key else None, "params_total": params,
                "prior": {"weight": weight, "values": 1000}}

    off = finding_v1_matches_id([rec("64|v1-k1024", 1000, 0.0), rec("64|id", 10000, 0.0)])
    on = finding_v1_matches_id([rec("64|v1-k1024", 1000, 2.0), rec("64|id", 10000, 2.0)])
    assert "90% fewer parameters" in off.evidence and "counting" not in off.evidence  # w = 0: z is not used
    assert "82% fewer parameters (counting the prior's per-track values)" in on.evidence  # 1 − 2000 / 11000


def test_representation_findings_use_the_models_own_scores_and_the_first_the_shipped_ones(tmp_path):
    from semid_pipeline.findings import paper_findings

    def rec(key, auc, bare):
        r = _rec(key, auc, 0.01, baselines=BASE)
        return {**r, "k": 1024 if "v1" in key else None, "params_total": 100 if "v1" in key else 1000,
                "prior": {"weight": 1.5, "values": 10},
                "test_without_prior": {"auc": bare, "ci_lo": bare - 0.01, "ci_hi": bare + 0.01}}

    recs = [rec("64|id", 0.70, 0.66), rec("64|v1-k1024", 0.695, 0.60)]
    beats, v1_id = paper_findings(recs)[:2]
    assert beats.verdict == "held" and "0.700" in beats.evidence  # with the prior: 0.70 vs gbdt 0.65
    assert v1_id.verdict == "not held" and "0.600" in v1_id.evidence and "0.660" in v1_id.evidence
    assert "counting" not in v1_id.evidence  # the representations alone: no prior values to count
    assert paper_findings([{**r, "test_without_prior": None} for r in recs])[1].verdict == "held"  # 0.695 vs [0.69, 0.71]
    art = render_report(recs, tmp_path / "out", dataset="synthetic:tiny")
    page = art.html_path.read_text()
    assert "without them, as the paper does" in page
    assert "as the paper does" not in render_report([{**r, "test_without_prior": None} for r in recs],
                                             tmp_path / "plain").html_path.read_text()


def test_the_partition_tables_reduction_counts_the_priors_values_where_it_is_used():
    from semid_pipeline.report_tables import records_frame

    def rec(key, params, weight):
        return {**_rec(key, 0.68, 0.01, baselines=BASE), "params_total": params, "params_track": params,
                "prior": {"weight": weight, "values": 1000}}

    df = records_frame([rec("64|id", 10000, 2.0), rec("64|v1-k8", 1000, 2.0), rec("32|id", 10000, 0.0),
                        rec("32|v1-k8", 1000, 0.0)]).set_index("partition_key")
    assert df.loc["64|v1-k8", "param_reduction_pct"] == pytest.approx(100 * (1 - 2000 / 11000))
    assert df.loc["32|v1-k8", "param_reduction_pct"] == pytest.approx(90.0)  # w = 0: z is not used
