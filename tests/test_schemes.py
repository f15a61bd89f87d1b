"""ID schemes and grid cells: one parser and one writer for every key the pipeline uses."""

from __future__ import annotations

import pytest

from semid_pipeline.config import GridConfig, SemanticIdConfig
from semid_pipeline.errors import ConfigError
from semid_pipeline.schemes import FAMILIES, GridCell, IdScheme, code_columns


@pytest.mark.parametrize("key,family,k", [("id", "id", None), ("v1-k256", "v1", 256), ("rqkmeans-k64", "rqkmeans", 64),
                                         ("v0-k8", "v0", 8)])
def test_scheme_keys_round_trip(key, family, k):
    s = IdScheme.parse(key)
    assert (s.family, s.k, s.decomposition) == (family, k, False)
    assert s.key == key and IdScheme.parse(s.key) == s
    assert s.is_id == (family == "id") and s.learned == FAMILIES[family].learned


def test_decomposition_suffix_is_parsed_and_kept():
    s = IdScheme.parse("v1-k256+ag")
    assert s.decomposition and s.k == 256 and s.key == "v1-k256+ag"


@pytest.mark.parametrize("bad", ["v2-k10", "v1", "id-k5", "v1-k0", "V1-k8", "", "64|v1-k8"])
def test_bad_scheme_keys_are_config_errors(bad):
    with pytest.raises(ConfigError):
        IdScheme.parse(bad)


def test_code_columns_in_level_order():
    assert code_columns(["track_id", "c10", "c2", "tie", "c1", "cx"]) == ["c1", "c2", "c10"]
    assert IdScheme.parse("id").code_columns(4) == ["c1"]
    assert IdScheme.parse("v1-k8").code_columns(3) == ["c1", "c2", "c3"]


def test_grid_cell_keys_and_file_names():
    cell = GridCell.parse("64|v1-k256")
    assert cell.h == 64 and cell.scheme == IdScheme(family="v1", k=256)
    assert cell.partition_key == "64|v1-k256" and cell.file_name == "64_v1-k256"
    assert cell.dimensions == {"h": "64", "scheme": "v1-k256"}
    assert GridCell.of("id", "32").partition_key == "32|id"
    with pytest.raises(ConfigError):
        GridCell.parse("v1-k256|64")


def test_grid_cell_parses_a_dagster_multi_partition_key():
    import dagster as dg

    key = dg.MultiPartitionKey({"scheme": "rqkmeans-k16", "h": "128"})
    assert GridCell.parse(key) == GridCell.of("rqkmeans-k16", 128)
    assert str(key) == GridCell.parse(key).partition_key  # Dagster orders the dimensions as we do


def test_config_lists_scheme_keys_through_the_one_definition():
    sem = SemanticIdConfig(schemes={"v0": (8,), "v1": (8, 16)})
    assert GridConfig(include_id_baseline=True).model_schemes(sem) == ["id", "v0-k8", "v1-k8", "v1-k16"]
    assert sem.partition_keys() == ["v0-k8", "v1-k8", "v1-k16"]
    with pytest.raises(ConfigError):
        SemanticIdConfig(schemes={"v9": (8,)}).partition_keys()


def test_hybrid_and_decomposition_keys_read_their_codes_from_the_plain_table():
    hyb = IdScheme.parse("hybrid-k256")
    assert hyb.hybrid and not hyb.is_id and hyb.codes_scheme == IdScheme.parse("v1-k256")
    ag = IdScheme.parse("v1-k64+ag")
    assert ag.decomposition and ag.codes_scheme.key == "v1-k64" and not ag.hybrid
    assert IdScheme.parse("id+ag").codes_scheme.key == "id"
    with pytest.raises(ConfigError):
        IdScheme.parse("hybrid")  # sized: needs k


def test_grid_variants_are_rows_that_reuse_a_fitted_table():
    sem = SemanticIdConfig(schemes={"v0": (8,), "v1": (8,)})
    grid = GridConfig(variants=("hybrid-k8", "v1-k8+ag", "id+ag"))
    assert grid.model_schemes(sem) == ["id", "v0-k8", "v1-k8", "hybrid-k8", "v1-k8+ag", "id+ag"]
    assert [IdScheme.parse(k).codes_scheme.key for k in grid.model_schemes(sem)[3:]] == ["v1-k8", "v1-k8", "id"]
    assert [IdScheme.parse(k).series for k in ("v1-k8", "v1-k8+ag", "hybrid-k8", "id")] == ["v1", "v1+ag", "hybrid", "id"]
    for bad, why in (("hybrid-k16", "needs v1-k<k>"), ("v1-k8", "already a row"), ("rqkmeans-k8+ag", "must reuse")):
        with pytest.raises(ConfigError, match=why):
            GridConfig(variants=(bad,)).model_schemes(sem)


def test_make_demo_trains_variants_and_listed_rows_at_the_production_h_only():
    from dataclasses import replace

    from assets.demo import demo_grid_keys
    from semid_pipeline.config import ProductionConfig, SemidConfig
    from semid_pipeline.schemes import GridCell

    sem = SemanticIdConfig(schemes={"v1": (8,), "rqkmeans": (8,)})
    grid = GridConfig(hidden_sizes=(16, 32), variants=("hybrid-k8",), demo_production_h_only=("rqkmeans-k8",))
    cfg = replace(SemidConfig(), semantic_ids=sem, grid=grid, production=ProductionConfig(scheme="v1-k8", hidden=32))
    keys = [GridCell.of(s, h).partition_key for s in grid.model_schemes(sem) for h in grid.hidden_sizes]
    assert sorted(demo_grid_keys(keys, cfg)) == sorted(["16|id", "32|id", "16|v1-k8", "32|v1-k8", "32|rqkmeans-k8",
                                                         "32|hybrid-k8"])
    with pytest.raises(ConfigError, match="not rows of the grid"):
        demo_grid_keys(keys, replace(cfg, grid=replace(grid, demo_production_h_only=("v0-k8",))))
