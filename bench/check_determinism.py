"""Two trainings of the same cell, with and without ``[train] deterministic``: identical weights? at what speed?

    .venv/bin/python bench/check_determinism.py [--device cuda] [--hidden 128] [--epochs 4] [--schemes id v1-k1024]

The demo world (``synthetic:demo:<format>``) comes from ``bench/sweep_recommender.py``'s cache
(``SEMID_SWEEP_CACHE``). For each scheme it trains twice with ``deterministic = true`` and twice
with ``false`` (fresh folders, no early stop) and prints one JSON line per run: the largest
weight difference against the first run of the same setting (0.0 = bit for bit), the validation
AUC of every epoch and each epoch's events/s. On a CPU both settings are deterministic; on CUDA
``false`` uses CUDA's faster non-deterministic kernels. Figures: README, "On a GPU".
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import sweep_recommender as sweep  # noqa: E402
from semid_pipeline.config import load_config  # noqa: E402
from semid_pipeline.schemes import IdScheme  # noqa: E402
from semid_pipeline.train import train_recommender  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--format", default="users", choices=["users", "sessions"])
    ap.add_argument("--schemes", nargs="+", default=["id", "v1-k1024"])
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config()
    _db, tables, splits, _view, content = sweep.load_world(args.format, args.schemes)
    base = replace(cfg.train, epochs=args.epochs, patience=args.epochs + 1, final_fit_epochs=0)
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.schemes:
            scheme = IdScheme.parse(key)
            first: dict[bool, dict] = {}
            for i, det in enumerate((True, True, False, False)):
                t0 = time.perf_counter()
                res = train_recommender(scheme=scheme, hidden=args.hidden, splits=splits,
                                        id_table=tables.get(scheme.codes_scheme.key), id_table_hash=key,
                                        cfg=replace(base, deterministic=det), out_dir=Path(tmp) / f"{key}-{i}",
                                        log=lambda m: None, content=content, device=args.device)
                state = {k: v.detach().float().cpu() for k, v in res.model.state_dict().items()}
                diff = None
                if det in first:
                    diff = max(float((state[k] - first[det][k]).abs().max()) for k in state if state[k].numel())
                first.setdefault(det, state)
                print(json.dumps({"scheme": key, "device": args.device, "deterministic": det,
                                  "wall_s": round(time.perf_counter() - t0, 1),
                                  "epoch_events_per_s": [round(h["events_per_s"]) for h in res.history],
                                  "val_aucs": [round(h["val_auc"], 5) for h in res.history],
                                  "max_abs_diff_vs_first_same_setting": diff}), flush=True)


if __name__ == "__main__":
    main()
