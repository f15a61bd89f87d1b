"""Data-parallel training throughput: 1 process vs N gloo processes (torchrun) on this host.

    nice .venv/bin/python bench/bench_ddp.py [--preset demo] [--epochs 1] [--hidden 64] [--procs 2] [--repeats 2]

Data: the synthetic preset (default ``demo``, per-user format) ingested once into a scratch DuckDB
(``SEMID_BENCH_CACHE``) and split with ``splits.load_splits``. Each contender is a fresh process
that trains the ``id`` model (TrainConfig defaults, ``epochs`` capped) with ``train_recommender``:

* ``1 proc x T threads``  plain ``python`` (what ``[train] processes = 1`` launches), T = --threads
* ``1 proc x 1 thr``     the same with one thread (intra-op threads contend on a loaded host)
* ``N procs x T/N thr``   ``torchrun --standalone --nproc-per-node N`` (``[train] processes = N``)

Figures: training events/s (real next events over the epoch's forward+backward+step seconds,
global over the ranks), and the launch overhead = process wall time − training+validation time
(interpreter, imports, torchrun's agent and rendezvous). Contenders alternate ``--repeats`` times
so load spikes on a shared machine hit both; the median is reported with the ratio N/1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CACHE = Path(os.environ.get("SEMID_BENCH_CACHE", Path(tempfile.gettempdir()) / "semid_bench_ddp"))


def warehouse(preset: str) -> Path:
    from semid_pipeline.config import IngestConfig, parse_dataset_spec
    from semid_pipeline.ingest import ingest_dataset

    CACHE.mkdir(parents=True, exist_ok=True)
    db = CACHE / f"{preset}_users.duckdb"
    if not db.exists():
        ingest_dataset(parse_dataset_spec(f"synthetic:{preset}:users"), warehouse=db.with_suffix(".tmp"),
                       cfg=IngestConfig(), data_dir=CACHE)
        os.replace(db.with_suffix(".tmp"), db)
    return db


def worker(args: argparse.Namespace) -> None:
    """One contender (every rank runs this): train, rank 0 writes the figures."""
    import torch

    from semid_pipeline import distributed
    from semid_pipeline import warehouse as wh
    from semid_pipeline.config import SplitConfig, TrainConfig
    from semid_pipeline.schemes import IdScheme
    from semid_pipeline.splits import load_splits
    from semid_pipeline.train import train_recommender

    torch.set_num_threads(args.threads)
    from semid_pipeline.features import content_for_vocab

    with wh.connect(args.db, read_only=True) as con:
        sp = load_splits(con, SplitConfig())
        content = content_for_vocab(con, sp.vocab.track_ids)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cfg = replace(TrainConfig(), epochs=args.epochs, processes=world)
    out = Path(args.out)
    res = train_recommender(scheme=IdScheme.parse("id"), hidden=args.hidden, splits=sp, id_table=None,
                            id_table_hash=None, cfg=cfg, out_dir=out, log=lambda _m: None, content=content)
    if int(os.environ.get("RANK", "0")) == 0:
        (out / "bench.json").write_text(json.dumps({
            "events_per_s": res.events_per_s, "events": sum(r["events"] for r in res.history),
            "seconds": res.wall_seconds, "val_auc": res.best_val_auc}))
    distributed.shutdown(distributed.from_env())


def contender(db: Path, *, procs: int, threads: int, args: argparse.Namespace) -> dict:
    out = Path(tempfile.mkdtemp(prefix=f"ddp{procs}_", dir=CACHE))
    tail = [str(Path(__file__).resolve()), "--worker", "--db", str(db), "--out", str(out), "--threads", str(threads),
            "--epochs", str(args.epochs), "--hidden", str(args.hidden)]
    cmd = [sys.executable, *tail] if procs == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}", *tail]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=ROOT, capture_output=True)
    wall = time.perf_counter() - t0
    rec = json.loads((out / "bench.json").read_text())
    rec["launch_overhead_s"] = wall - rec["seconds"]
    return rec


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the whole job (split over ranks)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--db", type=Path)
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    db = warehouse(args.preset)
    per_rank = max(1, args.threads // args.procs)
    plan = {f"1 proc x {args.threads} thr": (1, args.threads), "1 proc x 1 thr": (1, 1),
            f"{args.procs} procs x {per_rank} thr": (args.procs, per_rank)}
    runs: dict[str, list[dict]] = {k: [] for k in plan}
    for _ in range(args.repeats):
        for name, (procs, threads) in plan.items():
            runs[name].append(contender(db, procs=procs, threads=threads, args=args))
    print(f"synthetic:{args.preset}:users, id h={args.hidden}, {args.epochs} epoch(s), {runs[next(iter(plan))][0]['events']:,} "
          f"training events/epoch, {os.cpu_count()} CPUs, median of {args.repeats}")
    print(f"{'contender':<20} {'events/s':>10} {'launch s':>9} {'val AUC':>8}")
    med = {}
    for name, recs in runs.items():
        med[name] = statistics.median(r["events_per_s"] for r in recs)
        print(f"{name:<20} {med[name]:>10,.0f} {statistics.median(r['launch_overhead_s'] for r in recs):>9.1f} "
              f"{recs[0]['val_auc']:>8.4f}")
    one, one_thread, many = med.values()
    print(f"ratio {args.procs} procs / 1 proc x {args.threads} thr: {many / one:.2f}x; "
          f"/ 1 proc x 1 thr: {many / one_thread:.2f}x")


if __name__ == "__main__":
    main()
