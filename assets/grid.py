"""Backfill a slice of the (scheme × h) grid from the command line.

    python -m assets.grid                   # the whole grid
    python -m assets.grid --h 64            # one column: every scheme at h=64
    python -m assets.grid --scheme v1-k256  # one row: one scheme at every h
    python -m assets.grid --h 64 --dry-run  # only print the partition keys

It submits a Dagster backfill of ``grid_job`` (recommender + evaluation) through
``dagster job backfill``; the runs are queued and execute while ``dagster dev`` (or
``dagster-daemon run``) is running, within the concurrency pools of ``dagster.yaml``: before
submitting it sets the ``training`` pool of the instance to ``--training-slots`` (default: one per
GPU, else one per core, unless a limit was set before), so on 2 cores 2 partitions train at a time
with 1 thread each.
``--pools-only`` sets the pool and submits nothing (``make dev``).
Run ``make report`` (or materialize ``experiment_report``) afterwards.
"""

import argparse
import os
import shutil
import subprocess
import sys

from semid_pipeline.schemes import GridCell

from .partitions import CONFIG, scheme_keys


def grid_keys(h: int | None = None, scheme: str | None = None) -> list[str]:
    hs = [h] if h is not None else list(CONFIG.grid.hidden_sizes)
    schemes = [scheme] if scheme is not None else scheme_keys()
    unknown = [x for x in hs if x not in CONFIG.grid.hidden_sizes] + [s for s in schemes if s not in scheme_keys()]
    if unknown:
        raise SystemExit(
            f"not in the grid of semid.toml: {unknown}; schemes {scheme_keys()}, h {list(CONFIG.grid.hidden_sizes)}"
        )
    return [GridCell.of(s, x).partition_key for x in hs for s in schemes]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--h", type=int, help="one hidden size (a grid column)")
    p.add_argument("--scheme", help="one ID scheme, e.g. v1-k256 or id (a grid row)")
    p.add_argument("--dry-run", action="store_true", help="print the partition keys, submit nothing")
    p.add_argument("--training-slots", type=int, help="limit of the `training` pool (default: GPUs, else cores)")
    p.add_argument("--pools-only", action="store_true", help="only set the `training` pool limit")
    args = p.parse_args(argv)
    if args.pools_only:
        return _set_training_pool(args.training_slots)
    keys = grid_keys(args.h, args.scheme)
    print("\n".join(keys))
    if args.dry_run:
        return 0
    if not os.environ.get("DAGSTER_HOME"):
        raise SystemExit("set DAGSTER_HOME (make targets use <repo>/.dagster_home) so the backfill is recorded")
    _set_training_pool(args.training_slots)
    dagster = shutil.which("dagster") or os.path.join(os.path.dirname(sys.executable), "dagster")
    cmd = [dagster, "job", "backfill", "-j", "grid_job", "--partitions", ",".join(keys), "--noprompt"]
    return subprocess.call(cmd)


def _set_training_pool(slots: int | None) -> int:
    import dagster as dg

    from resources.pools import TRAINING_POOL, ensure_training_pool, parallel_training_steps

    if not os.environ.get("DAGSTER_HOME"):
        raise SystemExit("set DAGSTER_HOME (make targets use <repo>/.dagster_home) so the pool limit is recorded")
    instance = dg.DagsterInstance.get()
    n = ensure_training_pool(instance, slots)
    print(f"pool `{TRAINING_POOL}`: {n} slots; {parallel_training_steps(instance)} training steps at once", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
