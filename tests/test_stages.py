"""Stage policy without Dagster: extend-or-refit of semantic IDs, provenance, the check helpers."""

from __future__ import annotations

import numpy as np
import pytest

from semid_pipeline import semantic_ids as sid
from semid_pipeline import stages
from semid_pipeline.artifacts import ArtifactLayout
from semid_pipeline.config import SemidConfig, SemanticIdConfig
from semid_pipeline.errors import SemidError
from semid_pipeline.schemes import GridCell, IdScheme
from semid_pipeline.warehouse import connect, set_meta


def _warehouse(path, n: int, *, dataset: str = "events:/x.csv", seed: int = 0, base: str | None = None) -> None:
    """content_features for tracks t000..t<n-1> (random vectors) and one event per track; the
    data-set base fingerprint as ingestion records it (appends keep it: same ``base``)."""
    rng = np.random.default_rng(seed)
    rows = [(f"t{i:03d}", rng.normal(size=4).astype(float).tolist()) for i in range(n)]
    with connect(path) as con:
        con.execute("CREATE OR REPLACE TABLE content_features (track_id VARCHAR, vector FLOAT[])")
        con.executemany("INSERT INTO content_features VALUES (?, ?)", rows)
        con.execute("CREATE OR REPLACE TABLE feedback_events AS SELECT track_id FROM content_features")
        set_meta(con, "dataset", dataset)
        set_meta(con, "dataset_base_fingerprint", base or f"base-of-{dataset}")


CFG = SemidConfig(semantic_ids=SemanticIdConfig(levels=2, seed=0))


@pytest.mark.parametrize("key", ["id", "v0-k8"])
def test_fit_then_unchanged_then_cold_start_then_refit(tmp_path, key):
    wh, layout, scheme = str(tmp_path / "w.duckdb"), ArtifactLayout(root=tmp_path / "art"), IdScheme.parse(key)
    _warehouse(wh, 30)
    first = stages.build_semantic_ids(warehouse=wh, layout=layout, scheme=scheme, cfg=CFG, refit=False, log=print)
    assert first.mode.startswith("fit") and len(first.table) == 30
    assert layout.read_provenance(scheme) == {"dataset": "events:/x.csv", "content_hash": first.content_hash,
                                              "dataset_base_fingerprint": "base-of-events:/x.csv"}
    again = stages.build_semantic_ids(warehouse=wh, layout=layout, scheme=scheme, cfg=CFG, refit=False, log=print)
    assert again.mode == "unchanged" and again.content_hash == first.content_hash
    _warehouse(wh, 35)  # five tracks arrive (same content for the old ones)
    grown = stages.build_semantic_ids(warehouse=wh, layout=layout, scheme=scheme, cfg=CFG, refit=False, log=print)
    assert grown.mode == "cold-start: 5 new tracks" and len(grown.table) == 35
    old = grown.table[grown.table["track_id"].isin(first.table["track_id"])].reset_index(drop=True)
    assert old.equals(first.table)
    assert stages.check_ids_cover_events(wh, scheme)[0]
    refit = stages.build_semantic_ids(warehouse=wh, layout=layout, scheme=scheme, cfg=CFG, refit=True, log=print)
    assert refit.mode.startswith("fit")


def test_a_new_data_set_is_fitted_not_extended(tmp_path):
    wh, layout, scheme = str(tmp_path / "w.duckdb"), ArtifactLayout(root=tmp_path / "art"), IdScheme.parse("v0-k8")
    _warehouse(wh, 20)
    stages.build_semantic_ids(warehouse=wh, layout=layout, scheme=scheme, cfg=CFG, refit=False, log=print)
    _warehouse(wh, 25, dataset="events:/other.csv")
    other = stages.build_semantic_ids(warehouse=wh, layout=layout, scheme=scheme, cfg=CFG, refit=False, log=print)
    assert other.mode.startswith("fit")


def test_same_spec_new_base_fingerprint_is_fitted_not_extended(tmp_path):
    """The user fixed the file and re-ingested it under the same spec: a new data set."""
    wh, layout, scheme = str(tmp_path / "w.duckdb"), ArtifactLayout(root=tmp_path / "art"), IdScheme.parse("v0-k8")
    _warehouse(wh, 20, base="first")
    stages.build_semantic_ids(warehouse=wh, layout=layout, scheme=scheme, cfg=CFG, refit=False, log=print)
    _warehouse(wh, 25, base="fixed")
    again = stages.build_semantic_ids(warehouse=wh, layout=layout, scheme=scheme, cfg=CFG, refit=False, log=print)
    assert again.mode.startswith("fit")


def test_missing_evaluation_record_names_the_cell(tmp_path):
    wh = str(tmp_path / "w.duckdb")
    _warehouse(wh, 3)
    with connect(wh) as con:
        set_meta(con, "dataset_fingerprint", "0" * 64)
    with pytest.raises(SemidError, match="64\\|v1-k8"):
        stages.read_evaluation_record(wh, ArtifactLayout(root=tmp_path), GridCell.parse("64|v1-k8"))


def _add_event_tracks(path, track_ids) -> None:
    with connect(path) as con:
        con.executemany("INSERT INTO feedback_events VALUES (?)", [(t,) for t in track_ids])


@pytest.mark.parametrize("key", ["id", "v0-k8", "v1-k8"])
def test_event_tracks_without_content_get_seeded_random_ids_within_the_one_limit(tmp_path, key):
    """[ingest] min_feature_coverage is the one limit: ingestion blocks below it, and above it the
    remaining event tracks get IDs (seeded random tuples) so ids_cover_events passes."""
    wh, layout, scheme = str(tmp_path / "w.duckdb"), ArtifactLayout(root=tmp_path / "art"), IdScheme.parse(key)
    _warehouse(wh, 60)
    _add_event_tracks(wh, ["zz-no-content-1", "zz-no-content-2"])  # 2 of 62 = 3.2% < 5%
    built = stages.build_semantic_ids(warehouse=wh, layout=layout, scheme=scheme, cfg=CFG, refit=False, log=print)
    assert built.metrics["tracks_without_content"] == 2 and len(built.table) == 62
    ok, details = stages.check_ids_cover_events(wh, scheme)
    assert ok and details["missing"] == 0
    assert sid.check_one_to_one(built.table)[0]  # the added rows collide with nothing
    again = stages.build_semantic_ids(warehouse=wh, layout=layout, scheme=scheme, cfg=CFG, refit=True, log=print)
    assert again.table.equals(built.table)  # seeded: the same IDs on a refit


def test_without_content_error_policy_leaves_them_to_the_coverage_check(tmp_path):
    from dataclasses import replace

    wh, layout, scheme = str(tmp_path / "w.duckdb"), ArtifactLayout(root=tmp_path / "art"), IdScheme.parse("v0-k8")
    _warehouse(wh, 60)
    _add_event_tracks(wh, ["zz-no-content"])
    cfg = replace(CFG, semantic_ids=replace(CFG.semantic_ids, without_content="error"))
    built = stages.build_semantic_ids(warehouse=wh, layout=layout, scheme=scheme, cfg=cfg, refit=False, log=print)
    assert built.metrics["tracks_without_content"] == 1 and len(built.table) == 60
    ok, details = stages.check_ids_cover_events(wh, scheme)
    assert not ok and details["missing_examples"] == ["zz-no-content"]


def test_more_tracks_without_content_than_the_limit_is_an_error_naming_them(tmp_path):
    from semid_pipeline.errors import InputDataError

    wh, layout, scheme = str(tmp_path / "w.duckdb"), ArtifactLayout(root=tmp_path / "art"), IdScheme.parse("v0-k8")
    _warehouse(wh, 20)
    _add_event_tracks(wh, [f"zz-{i}" for i in range(3)])  # 3 of 23 = 13% > 5%
    with pytest.raises(InputDataError, match=r"3 of 23 event tracks .*min_feature_coverage = 0.95.*zz-0"):
        stages.build_semantic_ids(warehouse=wh, layout=layout, scheme=scheme, cfg=CFG, refit=False, log=print)


def test_unknown_without_content_policy_is_a_config_error():
    from semid_pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="without_content = 'zero'"):
        SemanticIdConfig(without_content="zero")


def test_a_grid_variant_builds_and_reads_the_table_of_its_codes_scheme(tmp_path):
    wh, layout = str(tmp_path / "w.duckdb"), ArtifactLayout(root=tmp_path / "art")
    _warehouse(wh, 40)
    hybrid = stages.build_semantic_ids(warehouse=wh, layout=layout, scheme=IdScheme.parse("hybrid-k8"), cfg=CFG,
                                       refit=False, log=print)
    assert hybrid.mode.startswith("fit") and "variant hybrid-k8: the table of v1-k8" in hybrid.mode
    base = stages.build_semantic_ids(warehouse=wh, layout=layout, scheme=IdScheme.parse("v1-k8"), cfg=CFG,
                                     refit=False, log=print)
    assert base.mode == "unchanged" and base.content_hash == hybrid.content_hash  # one table, built once
    decomposed = stages.read_ids(wh, IdScheme.parse("v1-k8+ag"))
    assert decomposed.equals(base.table)
    assert layout.semantic_ids_dir(IdScheme.parse("v1-k8+ag")) == layout.semantic_ids_dir(IdScheme.parse("v1-k8"))
