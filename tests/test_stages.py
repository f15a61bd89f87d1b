"""Stage policy without Dagster: extend-or-refit of semantic IDs, provenance, the check helpers."""

from __future__ import annotations

import numpy as np
import pytest

from semid_pipeline import stages
from semid_pipeline.artifacts import ArtifactLayout
from semid_pipeline.config import SemidConfig, SemanticIdConfig
from semid_pipeline.errors import SemidError
from semid_pipeline.schemes import GridCell, IdScheme
from semid_pipeline.warehouse import connect, set_meta


def _warehouse(path, n: int, *, dataset: str = "events:/x.csv", seed: int = 0) -> None:
    """content_features for tracks t000..t<n-1> (random vectors) and one event per track."""
    rng = np.random.default_rng(seed)
    rows = [(f"t{i:03d}", rng.normal(size=4).astype(float).tolist()) for i in range(n)]
    with connect(path) as con:
        con.execute("CREATE OR REPLACE TABLE content_features (track_id VARCHAR, vector FLOAT[])")
        con.executemany("INSERT INTO content_features VALUES (?, ?)", rows)
        con.execute("CREATE OR REPLACE TABLE feedback_events AS SELECT track_id FROM content_features")
        set_meta(con, "dataset", dataset)
        set_meta(con, "dataset_base_fingerprint", f"base-of-{dataset}")  # what a full ingestion records; appends keep it


CFG = SemidConfig(semantic_ids=SemanticIdConfig(levels=2, seed=0))


@pytest.mark.parametrize("key", ["id", "v0-k8"])
def test_fit_then_unchanged_then_cold_start_then_refit(tmp_path, key):
    wh, layout, scheme = str(tmp_path / "w.duckdb"), ArtifactLayout(root=tmp_path / "art"), IdScheme.parse(key)
    _warehouse(wh, 30)
    first = stages.build_semantic_ids(warehouse=wh, layout=layout, scheme=scheme, cfg=CFG, refit=False, log=print)
    assert first.mode.startswith("fit") and len(first.table) == 30
    assert layout.read_provenance(scheme) == {"dataset": "events:/x.csv", "dataset_base_fingerprint": "base-of-events:/x.csv",
                                              "content_hash": first.content_hash}
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


def test_missing_evaluation_record_names_the_cell(tmp_path):
    wh = str(tmp_path / "w.duckdb")
    _warehouse(wh, 3)
    with connect(wh) as con:
        set_meta(con, "dataset_fingerprint", "0" * 64)
    with pytest.raises(SemidError, match="64\\|v1-k8"):
        stages.read_evaluation_record(wh, ArtifactLayout(root=tmp_path), GridCell.parse("64|v1-k8"))
