"""Data-parallel training: the sampler, the 2-rank update against the 1-process one (real gloo
ranks under torchrun), and a kill -9 of one rank followed by a resumed re-run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import ddp_driver
from semid_pipeline import distributed
from semid_pipeline.errors import SemidError
from semid_pipeline.windows import length_bucketed_batches

ROOT = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).with_name("ddp_driver.py")
ATOL = 1e-5  # float summation order differs (two partial sums + all-reduce vs one sum): ~1e-6 seen after 3 epochs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def torchrun(out_dir: Path, *extra: str, processes: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
           str(DRIVER), str(out_dir), *extra]
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _state(path: Path) -> dict:
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    """The small world trained by 2 gloo ranks, uninterrupted (3 epochs, dropout 0)."""
    out = tmp_path_factory.mktemp("two_ranks")
    proc = torchrun(out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_shards_cover_each_window_exactly_once_per_epoch():
    lengths = torch.randint(2, 17, (203,), generator=torch.Generator().manual_seed(1))
    for world in (1, 2, 3):
        gen = torch.Generator().manual_seed(0)
        batches = length_bucketed_batches(lengths, 32, gen, pool_batches=2)
        seen = []
        for idx in batches:
            shards = [distributed.shard(idx, distributed.Dist(rank=r, world=world)) for r in range(world)]
            assert sorted(torch.cat(shards).tolist()) == sorted(idx.tolist())  # a partition of the batch
            assert max(len(s) for s in shards) - min(len(s) for s in shards) <= 1  # balanced
            seen.extend(torch.cat(shards).tolist())
        assert sorted(seen) == list(range(len(lengths)))  # each window once per epoch, over all ranks
    # every rank draws the same batch list from the same seed: the shards are of ONE list
    a = length_bucketed_batches(lengths, 32, torch.Generator().manual_seed(0))
    b = length_bucketed_batches(lengths, 32, torch.Generator().manual_seed(0))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_two_gloo_ranks_give_the_one_process_weights(two_ranks, tmp_path):
    one = ddp_driver.train(tmp_path / "one", processes=1)
    two = json.loads((two_ranks / "result.json").read_text())
    s1, s2 = _state(one.checkpoint), _state(two_ranks / "model.pt")
    assert s1.keys() == s2.keys()
    for k in s1:  # ~93 optimizer steps (3 epochs x 31 batches), each rank on half of every batch
        torch.testing.assert_close(s2[k], s1[k], atol=ATOL, rtol=0)
    assert [r["events"] for r in two["history"]] == [r["events"] for r in one.history]  # global counts
    for r2, r1 in zip(two["history"], one.history, strict=True):
        assert r2["loss"] == pytest.approx(r1["loss"], abs=1e-6)
        assert r2["val_auc"] == pytest.approx(r1["val_auc"], abs=1e-4)
    assert two["config"]["train"]["processes"] == 2 and "processes" not in one.config["train"]


def test_a_killed_rank_fails_the_run_and_the_rerun_resumes_exactly(two_ranks, tmp_path):
    out = tmp_path / "cut"
    killed = torchrun(out, "--kill-rank", "1", "--kill-after", "1")
    assert killed.returncode != 0  # torchrun fails the whole run when one rank dies
    assert "SIGKILL" in killed.stderr or "Signal 9" in killed.stderr or "exitcode: -9" in killed.stderr
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 0 and not ckpt["finished"] and not (out / "result.json").exists()
    again = torchrun(out)
    assert again.returncode == 0, again.stderr[-3000:]
    res = json.loads((out / "result.json").read_text())
    assert res["resumed_from_epoch"] == 1
    full = json.loads((two_ranks / "result.json").read_text())
    comparable = lambda h: [{k: r[k] for k in ("epoch", "loss", "val_auc", "events")} for r in h]  # noqa: E731
    assert comparable(res["history"]) == comparable(full["history"])
    s_cut, s_full = _state(out / "model.pt"), _state(two_ranks / "model.pt")
    assert all(torch.equal(s_cut[k], s_full[k]) for k in s_full)


def test_processes_must_be_a_positive_integer():
    from semid_pipeline.config import TrainConfig
    from semid_pipeline.errors import ConfigError

    for bad in (0, -1, 1.5):
        with pytest.raises(ConfigError, match="processes must be an integer >= 1"):
            TrainConfig(processes=bad)


def test_a_config_for_n_processes_refuses_to_run_in_one(tmp_path):
    cfg = replace(ddp_driver.CFG, processes=2)
    with pytest.raises(SemidError, match="processes = 2 but this run has 1"):
        ddp_driver.train_recommender(scheme=ddp_driver.IdScheme.parse("id"), hidden=16,
                                     splits=ddp_driver.small_splits(), id_table=None, id_table_hash=None,
                                     cfg=cfg, out_dir=tmp_path, log=lambda _m: None)
