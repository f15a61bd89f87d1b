"""Project structure: the core stays framework-free, configuration parses, definitions load."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from semid_pipeline.config import ConfigError, load_config, parse_dataset_spec

ROOT = Path(__file__).resolve().parents[1]


def test_core_never_imports_dagster_statically():
    offenders = []
    for path in (ROOT / "semid_pipeline").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0].startswith("dagster")]
    assert not offenders, offenders


def test_core_never_imports_dagster_at_runtime():
    modules = sorted(p.stem for p in (ROOT / "semid_pipeline").glob("*.py") if p.stem != "__init__")
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module('semid_pipeline.' + m)\n"
        "bad = [m for m in sys.modules if m.split('.')[0].startswith('dagster')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.parametrize(
    "spec, key",
    [
        (None, "synthetic:demo:users"),
        ("synthetic", "synthetic:demo:users"),
        ("synthetic:tiny", "synthetic:tiny:users"),
        ("synthetic:bench:sessions", "synthetic:bench:sessions"),
        ("mssd:/data/a,/data/b.csv", "mssd:/data/a,/data/b.csv"),
        ("events:e.parquet,t.parquet", "events:e.parquet,t.parquet"),
    ],
)
def test_dataset_spec_parses(spec, key):
    assert parse_dataset_spec(spec).key == key


@pytest.mark.parametrize("spec", ["synthetic:huge", "mssd:", "kaggle:x", "events:a,b,c", "synthetic:tiny:xml"])
def test_bad_dataset_spec_is_refused(spec):
    with pytest.raises(ConfigError, match="SEMID_DATASET"):
        parse_dataset_spec(spec)


def test_config_file_is_read_and_unknown_keys_refused(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text("[semantic_ids.schemes]\nv1 = [8, 32]\n[grid]\nhidden_sizes = [16]\n")
    cfg = load_config(good)
    assert cfg.semantic_ids.partition_keys() == ["v1-k8", "v1-k32"]
    assert cfg.grid.hidden_sizes == (16,)
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid]\nhiden_sizes = [16]\n")
    with pytest.raises(ConfigError, match="hiden_sizes"):
        load_config(bad)


def test_repo_config_matches_partitions():
    cfg = load_config(ROOT / "semid.toml")
    from assets import partitions

    rows = ["id", *cfg.semantic_ids.partition_keys(), *cfg.grid.variants]
    assert partitions.scheme_partitions.get_partition_keys() == rows
    keys = partitions.grid_partitions.get_partition_keys()
    assert len(keys) == len(cfg.grid.hidden_sizes) * len(rows)
    assert "64|v1-k256" in {str(k) for k in keys}


def test_resource_defaults_are_read_when_a_run_uses_them(monkeypatch, tmp_path):
    """Changing SEMID_* needs no code-location reload: resources read them when asked, not at import."""
    from resources import ArtifactStore, DatasetResource, DuckDBWarehouse

    wh, art, ds = DuckDBWarehouse(), ArtifactStore(), DatasetResource()
    monkeypatch.setenv("SEMID_WAREHOUSE", str(tmp_path / "w.duckdb"))
    monkeypatch.setenv("SEMID_ARTIFACTS", str(tmp_path / "art"))
    monkeypatch.setenv("SEMID_DATASET", "synthetic:tiny:sessions")
    monkeypatch.setenv("SEMID_DATA_DIR", str(tmp_path / "data"))
    assert wh.file == str(tmp_path / "w.duckdb")
    assert art.layout().report_dir() == tmp_path / "art" / "report"
    assert ds.parsed().key == "synthetic:tiny:sessions" and ds.data_folder == str(tmp_path / "data")
    assert DuckDBWarehouse(path="/x.duckdb").file == "/x.duckdb"  # an explicit setting wins


def test_settings_are_read_when_a_run_starts(monkeypatch, tmp_path):
    from assets.partitions import settings

    cfg = tmp_path / "c.toml"
    cfg.write_text("[eval]\nmin_strata = 7\n")
    monkeypatch.setenv("SEMID_CONFIG", str(cfg))
    assert settings().eval.min_strata == 7
    cfg.write_text("[eval]\nmin_strata = 9\n")
    assert settings().eval.min_strata == 9
