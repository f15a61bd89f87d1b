"""Run under torchrun by tests/test_distributed.py: trains the small world of test_train on every
rank with ``[train] processes`` = WORLD_SIZE. ``--kill-rank R --kill-after E``: rank R kills itself
with SIGKILL after epoch E (its checkpoint is on disk), as a crashed machine would."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import user_feedback  # noqa: E402
from semid_pipeline import distributed  # noqa: E402
from semid_pipeline.config import SplitConfig, TrainConfig  # noqa: E402
from semid_pipeline.schemes import IdScheme  # noqa: E402
from semid_pipeline.splits import build_splits  # noqa: E402
from semid_pipeline.train import train_recommender  # noqa: E402

CFG = TrainConfig(content_init=False, content_affinity=False, layers=1, heads=2, dropout=0.0, max_len=16, batch_size=32, lr=3e-3, epochs=3, patience=5,
                  sampled_negatives=2, seed=0)


def small_splits():
    events = user_feedback(n_users=40, n_tracks=60, days=90, seed=0, min_events=25, max_events=45,
                           feedback=lambda rng, u, k: k % 2 == u % 2, artists=6)
    return build_splits(events, None, SplitConfig(test_days=14, val_days=14))


def train(out_dir: Path, *, processes: int, on_epoch_end=None, log=lambda _m: None):
    cfg = replace(CFG, processes=processes)
    return train_recommender(scheme=IdScheme.parse("id"), hidden=16, splits=small_splits(), id_table=None,
                             id_table_hash=None, cfg=cfg, out_dir=out_dir, log=log, on_epoch_end=on_epoch_end)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--kill-rank", type=int, default=-1)
    ap.add_argument("--kill-after", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rank = int(os.environ.get("RANK", "0"))

    def maybe_die(record: dict) -> None:
        if rank == args.kill_rank and record["epoch"] == args.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    res = train(args.out_dir, processes=int(os.environ.get("WORLD_SIZE", "1")), on_epoch_end=maybe_die)
    if rank == 0:
        (args.out_dir / "result.json").write_text(json.dumps(res.to_dict()))
    distributed.shutdown(distributed.from_env())


if __name__ == "__main__":
    main()
