"""The artifact layout: one place names every artifact path, and a model folder follows its inputs."""

from __future__ import annotations

from dataclasses import replace

from semid_pipeline.artifacts import ArtifactLayout, run_fingerprint
from semid_pipeline.config import SplitConfig, TrainConfig
from semid_pipeline.schemes import GridCell, IdScheme


def test_paths_follow_the_layout(tmp_path):
    layout = ArtifactLayout(root=tmp_path)
    cell = GridCell.parse("64|v1-k256")
    assert layout.evaluation_record("ab" * 32, cell) == tmp_path / "evaluations" / ("ab" * 6) / "64_v1-k256.json"
    assert layout.model_dir(cell, "f" * 64) == tmp_path / "models" / "v1-k256__h64" / ("f" * 12)
    assert layout.semantic_ids_dir(IdScheme.parse("id")) == tmp_path / "semantic_ids" / "id"
    assert layout.baselines_file("cd" * 32) == tmp_path / "baselines" / f"{'cd' * 6}.json"
    assert layout.report_dir().is_dir()
    assert layout.feature_transform_dir("synthetic:tiny:users") != layout.feature_transform_dir("synthetic:demo:users")


def test_provenance_round_trip(tmp_path):
    layout = ArtifactLayout(root=tmp_path)
    scheme = IdScheme.parse("v0-k8")
    assert layout.read_provenance(scheme) == {}
    layout.write_provenance(scheme, dataset="synthetic:tiny:users", base_fingerprint="fp", content_hash="h")
    assert layout.read_provenance(scheme) == {"dataset": "synthetic:tiny:users", "dataset_base_fingerprint": "fp",
                                              "content_hash": "h"}


def test_fingerprint_changes_with_every_input():
    cell = GridCell.parse("32|id")
    base = dict(dataset_fingerprint="d", id_table_hash="i", cell=cell, train=TrainConfig(), split=SplitConfig())
    fp = run_fingerprint(**base)
    assert fp == run_fingerprint(**base)
    variants = [{"dataset_fingerprint": "d2"}, {"id_table_hash": "i2"}, {"cell": GridCell.parse("64|id")},
                {"train": replace(TrainConfig(), epochs=1)}, {"split": replace(SplitConfig(), test_days=7)}]
    assert len({run_fingerprint(**{**base, **v}) for v in variants} | {fp}) == len(variants) + 1


def test_cached_baselines_and_ceilings_are_keyed_by_data_split_and_evaluation_settings():
    """Changing [split] or [eval] must not reuse baselines computed on other test pairs."""
    from types import SimpleNamespace

    from semid_pipeline.config import load_config
    from semid_pipeline.stages import _data_key

    cfg = load_config()
    inputs = SimpleNamespace(dataset_fingerprint="d" * 64)
    key = _data_key(inputs, cfg)
    assert key == _data_key(inputs, cfg)
    others = [_data_key(SimpleNamespace(dataset_fingerprint="e" * 64), cfg),
              _data_key(inputs, replace(cfg, split=replace(cfg.split, test_days=cfg.split.test_days + 1))),
              _data_key(inputs, replace(cfg, eval=replace(cfg.eval, bootstrap=cfg.eval.bootstrap + 1)))]
    assert len({key, *others}) == 4
