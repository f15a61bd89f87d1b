"""The report renders from STORED evaluation records (JSON round trip), no model training."""

from __future__ import annotations

import json
import struct

import numpy as np
import pandas as pd
import pytest

from semid_pipeline.evaluation import DEFAULT_BUCKETS, bucket_label
from semid_pipeline.experiment import partition_record
from semid_pipeline.report import load_records, records_frame, render_report
from semid_pipeline.schemes import GridCell, IdScheme

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _record(h: int, scheme: str, k: int | None, rng: np.random.Generator, **drop) -> dict:
    """A record as production writes it (``experiment.partition_record``), with made-up numbers."""
    n_tracks = 50_000
    base = 0.70 + 0.0004 * h + (0.0 if scheme == "id" else 0.008 * np.log2(k) - 0.07)
    base += {"id": 0.0, "v0": -0.01, "v1": 0.0, "rqkmeans": -0.002, "hybrid": 0.08}[scheme]
    half = 0.004
    codebook = n_tracks if k is None else 4 * k + 8 + (n_tracks if scheme == "hybrid" else 0)
    params_track = codebook * h
    buckets = []
    for i, b in enumerate(DEFAULT_BUCKETS):
        a = base - 0.02 + 0.006 * i + (0.01 / (i + 1) if scheme != "id" else 0.0)
        buckets.append({"bucket": bucket_label(b), "lo": b[0], "hi": b[1], "n_strata": 100 + 10 * i,
                        "auc": a, "ci_lo": a - 0.01, "ci_hi": a + 0.01})
    result = {
        "test": {"auc": base, "ci_lo": base - half, "ci_hi": base + half, "n_strata": 500, "by_history": buckets,
                 "cold_start": {"auc": base - 0.05, "n_pairs": 40}},
        "val": {"auc": base + 0.003},
        "params_total": params_track + 30 * h * h, "params_track": params_track,
        "ranking": {"recall@10": 0.02 + rng.random() * 0.01, "ndcg@10": 0.01, "n_strata": 500},
        "diversity": {"ils": 0.4, "distinct_artists": 7.5, "distinct_artist_share": 0.75,
                      "coverage": 0.1, "recent_share": 0.2},
    }
    for part in drop:
        result.pop(part) if part in result else result["test"].pop(part)
    cell = GridCell.of(IdScheme(family=scheme, k=k), h)
    return partition_record(cell, result, baselines={"popularity": {"auc": 0.61}, "content_logreg": {"auc": 0.64}},
                            dataset="synthetic:tiny", dataset_fingerprint="f" * 64, id_table_hash="h" * 64)


def _grid() -> list[dict]:
    rng = np.random.default_rng(0)
    recs = []
    for h in (32, 64):
        recs.append(_record(h, "id", None, rng))
        for scheme, ks in (("v0", (64, 256)), ("v1", (64, 256)), ("rqkmeans", (256,))):
            for k in ks:
                recs.append(_record(h, scheme, k, rng))
    return recs


def _png_ok(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    w, h = struct.unpack(">II", data[16:24])
    assert w > 300 and h > 200
    assert len(data) > 10_000


def test_report_renders_from_stored_records(tmp_path):
    store = tmp_path / "records.json"
    store.write_text(json.dumps(_grid()))
    records = load_records(store)
    art = render_report(records, tmp_path / "out", title="Test report", dataset="synthetic:tiny",
                        production="64|v1-k256")
    page = art.html_path.read_text()
    assert page.count("data:image/png;base64,") == 3
    for name in ("fig1", "fig2", "fig3"):
        assert f"alt='{name}'" in page
    for r in records:
        assert r["partition_key"] in page
        assert r["partition_key"].replace("|", "\\|") in art.markdown  # markdown escapes |
    for p in art.figure_paths.values():
        _png_ok(p)
    assert {p.name for p in art.figure_paths.values()} == {
        "fig1_auc_vs_k.png", "fig2_auc_vs_params.png", "fig3_lift_by_history.png"}
    hd = art.headline
    assert hd["n_partitions"] == 12
    assert hd["production"]["partition"] == "64|v1-k256"
    # parameter reduction vs id at the same h: id 50_000*64 track params vs v1-k256 (4*256+8)*64
    df = records_frame(records)
    row = df[df["partition_key"] == "64|v1-k256"].iloc[0]
    id_total = 50_000 * 64 + 30 * 64 * 64
    v1_total = (4 * 256 + 8) * 64 + 30 * 64 * 64
    assert row["param_reduction_pct"] == pytest.approx(100 * (1 - v1_total / id_total))
    lifts = art.tables["lifts"]
    assert len(lifts) == 10 * len(DEFAULT_BUCKETS)  # 5 semantic partitions x 2 h
    assert lifts["lift"].notna().all()


def test_headline_compares_semantic_ids_with_id_without_the_hybrid_rows(tmp_path):
    rng = np.random.default_rng(2)
    recs = _grid() + [_record(64, "hybrid", 256, rng)]  # best AUC of all, more parameters than id
    hd = render_report(recs, tmp_path / "h").headline
    assert hd["best_partition"] == "64|hybrid-k256"  # still the best row overall
    best_sem = hd["best_semantic_vs_id"]["partition"]
    assert not best_sem.endswith("hybrid-k256") and best_sem.split("|")[1].startswith(("v0", "v1", "rqkmeans"))
    assert "% fewer parameters" in (tmp_path / "h" / "report.html").read_text().split("Best semantic vs id")[1]
    from semid_pipeline.report import _param_change
    assert _param_change(-54.0) == ", 54.0% more parameters" and _param_change(25.0) == ", 25.0% fewer parameters"


def test_report_handles_missing_pieces(tmp_path):
    rng = np.random.default_rng(1)
    recs = _grid()
    # only one h, no id baseline, one scheme with a single k, some pieces missing
    partial = [r for r in recs if r["h"] == 64 and r["scheme"] != "id"]
    partial[0] = _record(64, "v0", 64, rng, ranking=True, diversity=True, val=True)
    partial[1] = _record(64, "v0", 256, rng, by_history=True, cold_start=True)
    art = render_report(partial, tmp_path / "a", dataset="x")
    assert art.html_path.exists() and all(p.exists() for p in art.figure_paths.values())
    df = records_frame(partial)
    assert np.isnan(df.loc[df.partition_key == "64|v0-k64", "recall"].iloc[0])
    assert df.loc[df.partition_key == "64|v0-k256", "by_history"].iloc[0] == []
    # a single record without any test-period result
    art = render_report([_record(32, "v1", 64, rng, test=True)], tmp_path / "b")
    assert "32|v1-k64" in art.html_path.read_text()
    # no records at all
    art = render_report([], tmp_path / "c")
    assert art.html_path.exists()
    for p in art.figure_paths.values():
        assert p.read_bytes()[:8] == PNG_MAGIC
    # only the id baseline
    art = render_report([r for r in recs if r["scheme"] == "id"], tmp_path / "d")
    assert "64|id" in art.html_path.read_text()


def test_record_fields_come_from_the_production_record(tmp_path):
    rec = _record(64, "v0", 256, np.random.default_rng(2))
    r = records_frame([json.loads(json.dumps(rec))]).iloc[0]  # through a JSON round trip, as stored
    assert (r["scheme"], r["k"], r["h"]) == ("v0", 256, 64)
    assert r["test_ci_hi"] == rec["test"]["ci_hi"] and r["cold_start_auc"] == rec["test"]["cold_start"]["auc"]
    assert r["recall"] == rec["ranking"]["recall@10"] and r["topk"] == 10
    art = render_report([rec], tmp_path)
    assert "recall@10" in art.markdown


def test_sample_recommendations_section_only_when_the_table_has_rows(tmp_path):
    """The report shows each partition's first lists with titles once `recommendations` exists."""
    import pandas as pd

    from semid_pipeline import serving_table as st
    from semid_pipeline import warehouse as wh

    catalog = pd.DataFrame({"track_id": ["t1", "t2", "t3"], "artist_id": ["a1", "a1", "a2"],
                            "title": ["Alpha <b>", "Beta", "Gamma"]})
    recs = pd.DataFrame({"partition_key": "64|v1-k256", "listener_id": ["u2", "u2", "u1", "u1"],
                         "rank": [1, 2, 1, 2], "track_id": ["t1", "t3", "t2", "t1"],
                         "score": [2.0, 1.0, 3.0, 0.5], "is_cold": False})
    rec = _record(64, "v1", 256, np.random.default_rng(3))
    with wh.connect(tmp_path / "wh.duckdb") as con:
        assert st.sample_lists_section(con, catalog) is None  # no table yet
        st.write_recommendations(con, "64|v1-k256", recs)
        section = st.sample_lists_section(con, catalog, listeners=1, top=1)
        both = st.sample_lists_section(con, catalog, listeners=2, top=1)
    assert section is not None and "Alpha" not in section.html  # u1 first, and only its rank 1 (t2)
    assert "Beta" in section.html and "u1" in section.html and "u2" not in section.html
    assert "Alpha &lt;b&gt;" in both.html and "Alpha <b>" not in both.html  # titles are escaped
    art = render_report([rec], tmp_path / "r", sections=[section])
    page = art.html_path.read_text()
    assert "<h2>Sample recommendations</h2>" in page and "<h3>64|v1-k256</h3>" in page and "Beta" in page
    assert "## Sample recommendations" in art.markdown_path.read_text()
    assert "Sample recommendations" not in render_report([rec], tmp_path / "none").html_path.read_text()


def test_id_quality_goes_into_the_partitions_table_and_fig4(tmp_path):
    from semid_pipeline.report import FIG4

    recs = _grid()
    quality = pd.DataFrame({"scheme_key": ["id", "v0-k64", "v0-k256", "v1-k64", "v1-k256", "rqkmeans-k256"],
                            "tracks": 50_000, "unique_tuple_share": [1.0, 0.99, 1.0, 0.2, 0.98, 0.97],
                            "max_tie": [0, 2, 1, 4371, 3, 2], "share_in_groups_over_2": 0.0, "tie_table_rows": 1})
    art = render_report(recs, tmp_path / "q", id_quality=quality)
    summ = art.tables["summary"].set_index("partition")
    assert summ.loc["64|v1-k64", "unique tuples"] == 0.2 and summ.loc["64|v1-k64", "max tie"] == 4371
    assert summ.loc["32|id", "unique tuples"] == 1.0
    assert list(summ.columns).index("unique tuples") == list(summ.columns).index("95% CI") + 1
    _png_ok(art.figure_paths[FIG4])
    assert "Figure 4" in art.html_path.read_text() and "unique tuples" in art.markdown
    plain = render_report(recs, tmp_path / "plain")  # no quality given: the table and figures as before
    assert FIG4 not in plain.figure_paths and "unique tuples" not in plain.tables["summary"].columns


def test_plays_target_column_appears_where_a_partition_kept_it(tmp_path):
    """[train] prior_by_plays: the partitions table says which cells kept the play-count target; with
    the switch off (every record ``by_plays`` False) the column is not there."""
    recs = _grid()
    for r in recs:
        r["prior"] = {"weight": 1.0, "recent": 0.0, "by_plays": False}
    plain = render_report(json.loads(json.dumps(recs)), tmp_path / "off")
    assert "plays target" not in plain.tables["summary"].columns and "plays target" not in plain.markdown
    recs[3]["prior"]["by_plays"] = True
    art = render_report(json.loads(json.dumps(recs)), tmp_path / "on")
    table = art.tables["summary"].set_index("partition")["plays target"]
    assert table[recs[3]["partition_key"]] == "yes"
    assert (table.drop(recs[3]["partition_key"]) == "no").all()
    assert "plays target" in art.markdown and "plays target" in art.html_path.read_text()
