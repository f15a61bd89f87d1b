"""Wall time of a 4-partition grid backfill, sequential vs 2 runs at a time, on this host.

    .venv/bin/python bench/bench_grid.py [--epochs 3] [--rounds 2]

World: the tiny synthetic world (``synthetic:tiny``), grid ``{id, v0-k16} × h {8, 16}`` = 4
partitions of ``grid_job`` (recommender + evaluation + checks), built once with
``python -m assets.demo --only ids``. Each mode is a real Dagster instance (tmp DAGSTER_HOME with
the repository's concurrency settings), ``dagster job backfill`` + ``dagster-daemon run``, one process
per run, on its own copy of the artifacts (so no mode finds the other's models):

* sequential: ``max_concurrent_runs: 1``, ``training`` pool 1 → each run trains with 2 threads
* parallel:   ``max_concurrent_runs: 2``, ``training`` pool 2 → 2 runs at a time, 1 thread each

Wall time = first run's creation to last run's end (instance timestamps), so process start-up of
each run (importing torch + the code location) is included in both. Throughput ratio = sequential /
parallel wall time, per round and over all rounds; rounds alternate the order (seq→par, par→seq)
so a load change on a shared machine hits both modes. The load average is printed per backfill.
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
    p.add_argument("--rounds", type=int, default=1)
    args = p.parse_args()
    print(f"cores {len(os.sched_getaffinity(0))}; tiny world, 4 partitions, {args.epochs} epochs", flush=True)
    print(f"{'round':<7}{'mode':<12}{'wall s':>9}{'max runs at once':>18}{'median run s':>14}{'load avg (1 min)':>18}")
    walls: dict[str, list[float]] = {"sequential": [], "parallel": []}
    with tempfile.TemporaryDirectory(prefix="bench_grid_") as tmp:
        world = make_world(Path(tmp), epochs=args.epochs)
        for rnd in range(args.rounds):
            order = [("sequential", 1), ("parallel", 2)][:: 1 if rnd % 2 == 0 else -1]
            for name, runs in order:
                r = backfill_wall(world, f"{name}-{rnd}", runs=runs)
                walls[name].append(r["wall"])
                print(f"{rnd:<7}{name:<12}{r['wall']:>9.1f}{r['overlap']:>18}{r['run_median']:>14.1f}"
                      f"{os.getloadavg()[0]:>18.1f}", flush=True)
    per_round = [s / q for s, q in zip(walls["sequential"], walls["parallel"])]
    print("throughput ratio (sequential wall / parallel wall): per round "
          + ", ".join(f"{x:.2f}x" for x in per_round)
          + f"; all rounds {sum(walls['sequential']) / sum(walls['parallel']):.2f}x")


if __name__ == "__main__":
    main()
