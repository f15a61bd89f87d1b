"""Concurrency pools of the instance: how many grid steps train at once, and threads per step.

``dagster.yaml`` sets ``pools.default_limit: 1`` (every pool not configured otherwise, above all
``warehouse``: DuckDB admits one writing process per file) and ``runs.max_concurrent_runs``.
Per-pool limits live in the instance database, not in ``dagster.yaml``; the ``training`` pool's
limit is set by :func:`ensure_training_pool` (``python -m assets.grid``, ``make dev``) or by hand:
``dagster instance concurrency set training 2``.

Threads per training step = usable cores // steps that can train at once, where the latter is
min(``training`` limit, ``max_concurrent_runs``): on 2 cores with 2 concurrent runs each step uses
1 thread; with one run at a time it uses both.
"""

from __future__ import annotations

import os

import dagster as dg

TRAINING_POOL = "training"  # recommender, evaluation, experiment_report (files only; warehouse read-only)
WAREHOUSE_POOL = "warehouse"  # every step that writes the DuckDB file (limit 1)


def usable_cores() -> int:
    """Cores this process may run on (the CPU affinity / container share, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_training_slots() -> int:
    """One slot per GPU on a GPU host, else one per usable core."""
    import torch

    return torch.cuda.device_count() or usable_cores()


def max_concurrent_runs(instance: dg.DagsterInstance) -> int | None:
    queue = instance.get_concurrency_config().run_queue_config
    limit = queue.max_concurrent_runs if queue is not None else None
    return None if limit is None or limit < 0 else limit


def parallel_training_steps(instance: dg.DagsterInstance) -> int:
    """How many training-pool steps can run at once on this instance (≥ 1)."""
    try:
        info = instance.event_log_storage.get_concurrency_info(TRAINING_POOL)
        limit = info.limit if info.limit is not None else info.slot_count
    except NotImplementedError:  # a storage without pools (in-memory): one step at a time
        limit = 1
    runs = max_concurrent_runs(instance)
    candidates = [x for x in (limit, runs) if x]
    return max(1, min(candidates)) if candidates else 1


def threads_per_step(*, cores: int, parallel: int) -> int:
    """Cores split evenly among the steps that train at once (at least one thread each)."""
    return max(1, cores // max(1, parallel))


def ensure_training_pool(instance: dg.DagsterInstance, slots: int | None = None) -> int:
    """Set the ``training`` pool's limit to ``slots``; without ``slots``, keep a limit set before
    (by hand or an earlier call) and otherwise use :func:`default_training_slots`. Returns the limit."""
    if slots is None:
        info = instance.event_log_storage.get_concurrency_info(TRAINING_POOL)
        if info.limit is not None and not info.using_default_limit:
            return info.limit
        slots = default_training_slots()
    instance.event_log_storage.set_concurrency_slots(TRAINING_POOL, slots)
    return slots
