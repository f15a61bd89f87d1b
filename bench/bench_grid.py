"""Wall time of a 4-partition grid backfill, sequential vs 2 runs at a time, on this host.

    .venv/bin/python bench/bench_grid.py [--epochs 3]

World: the tiny synthetic world (``synthetic:tiny``), grid ``{id, v0-k16} × h {8, 16}`` = 4
partitions of ``grid_job`` (recommender + evaluation + checks), built once with
``python -m assets.demo --only ids``. Each mode is a real Dagster instance (tmp DAGSTER_HOME with
the repository's concurrency settings), ``dagster job backfill`` + ``dagster-daemon run``, one process
per run, on its own copy of the artifacts (so no mode finds the other's models):

* sequential: ``max_concurrent_runs: 1``, ``training`` pool 1 → each run trains with 2 threads
* parallel:   ``max_concurrent_runs: 2``, ``training`` pool 2 → 2 runs at a time, 1 thread each

Wall time = first run's creation to last run's end (instance timestamps), so process start-up of
each run (importing torch + the code location) is included in both. Throughput ratio = sequential /
parallel wall time. Needs a quiet machine; the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "tests")]

from grid_util import GRID_KEYS, make_world, max_overlap, run_backfill, use_home  # noqa: E402


def backfill_wall(world, name: str, *, runs: int) -> dict:
    use_home(world, name, max_concurrent_runs=runs, training_slots=runs, fresh_artifacts=True)
    records = run_backfill(world, GRID_KEYS, timeout=1800)
    failed = [r.dagster_run.tags.get("dagster/partition") for r in records if r.dagster_run.status.value != "SUCCESS"]
    if failed:
        raise SystemExit(f"{name}: runs failed for {failed} (logs in {world.root})")
    t0 = min(r.create_timestamp.timestamp() for r in records)
    wall = max(r.end_time for r in records) - t0
    per_run = sorted(r.end_time - r.start_time for r in records)
    return {"wall": wall, "overlap": max_overlap(records), "run_median": per_run[len(per_run) // 2]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args()
    print(f"load average before: {os.getloadavg()}; cores {len(os.sched_getaffinity(0))}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_grid_") as tmp:
        world = make_world(Path(tmp), epochs=args.epochs)
        seq = backfill_wall(world, "sequential", runs=1)
        par = backfill_wall(world, "parallel", runs=2)
    print(f"{'mode':<12}{'wall s':>9}{'max runs at once':>18}{'median run s':>14}")
    for name, r in (("sequential", seq), ("parallel", par)):
        print(f"{name:<12}{r['wall']:>9.1f}{r['overlap']:>18}{r['run_median']:>14.1f}")
    print(f"throughput ratio (sequential wall / parallel wall): {seq['wall'] / par['wall']:.2f}x "
          f"(4 partitions, tiny world, {args.epochs} epochs)")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
