"""``make demo``: materialize every asset, every partition, on the configured data set
(the ``[grid] variants`` rows only at the production h).

Runs each stage as a real Dagster run on the persistent instance in ``DAGSTER_HOME`` (the same
one ``dagster dev`` shows), so the UI afterwards holds the whole history, checks and metadata.
``python -m assets.demo --only ingest`` stops after a stage (ingest|ids|grid|report; the last
also builds `recommendations` of the `[production]` partition, before the report that shows them);
``--from grid`` starts at one, the earlier stages as materialized before.
"""


import argparse
import os
import sys
import time
from pathlib import Path

import dagster as dg

STAGES = ("ingest", "ids", "grid", "report")


def _instance() -> dg.DagsterInstance:
    if os.environ.get("DAGSTER_HOME"):
        Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def _run(job: dg.JobDefinition, instance: dg.DagsterInstance, label: str, **kwargs) -> None:
    from .recovery import process_tags, reap_dead_runs

    for run_id in reap_dead_runs(instance):
        print(f"[demo] run {run_id[:8]} had died (killed or crashed): marked failed, its pool slots freed")
    t0 = time.time()
    quiet = {"loggers": {"console": {"config": {"log_level": os.environ.get("SEMID_DEMO_LOG_LEVEL", "CRITICAL")}}}}
    result = job.execute_in_process(instance=instance, raise_on_error=False, run_config=quiet,
                                  tags=process_tags(), **kwargs)
    failed_checks = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed
    ]
    warnings = [ev for ev in failed_checks if ev.severity == dg.AssetCheckSeverity.WARN]
    failed_checks = [ev for ev in failed_checks if ev.severity != dg.AssetCheckSeverity.WARN]
    status = "ok" if result.success and not failed_checks else "FAILED"
    print(f"[demo] {label:<36} {status:>6}  {time.time() - t0:6.1f}s  run {result.run_id[:8]}", flush=True)
    for ev in failed_checks:
        print(f"         check failed: {ev.asset_key.to_user_string()} / {ev.check_name}")
        for line in explain_check(ev):
            print(f"           {line}")
    for ev in warnings:
        print(f"         warning: {ev.asset_key.to_user_string()} / {ev.check_name}")
        if ev.description:
            print(f"           {ev.description}")
    if status != "ok":
        for ev in result.all_events:
            error = ev.step_failure_data.error if ev.event_type_value == "STEP_FAILURE" else None
            if error is not None and error.cls_name != "DagsterAssetCheckFailedError":  # checks: printed above
                print(_error_message(error))
        raise SystemExit(f"demo stopped: {label} failed (see the run {result.run_id} in `make dev`)")


def explain_check(ev) -> list[str]:
    """The lines a person needs on the command line for one failed check: what it says, and for a
    great-expectations suite each failing expectation with its observed value and up to 5
    offending rows (the same content the UI shows in the check's metadata)."""
    lines = [ev.description] if ev.description else []
    meta = ev.metadata or {}
    details = meta.get("details")
    data = getattr(details, "data", None) or getattr(details, "value", None)
    if isinstance(data, dict) and data.get("failures"):
        for f in data["failures"]:
            col = f" on {f['column']}" if f.get("column") else ""
            lines.append(f"x {f['expectation']}{col}: {f.get('observed', '')}")
            if f.get("description"):
                lines.append(f"    ({f['description']})")
            for row in (f.get("examples") or [])[:5]:
                lines.append("    " + ", ".join(f"{k}={v!r}" for k, v in row.items()))
        return lines
    for key, value in meta.items():
        text = getattr(value, "value", None)
        if isinstance(text, (int, float, str)) and not isinstance(value, dg.MarkdownMetadataValue):
            lines.append(f"{key}: {text}")
    return lines


def _error_message(error) -> str:
    """The user-facing error's own message, once: the first error in the chain that is not
    Dagster's wrapper (the full traceback stays in the run's log, `make dev` shows it)."""
    chain = [error]
    while getattr(chain[-1], "cause", None) is not None:
        chain.append(chain[-1].cause)
    error = next((e for e in chain if not e.cls_name.startswith("Dagster")), chain[0])
    message = error.message.strip()
    head, sep, rest = message.partition(": ")
    if sep and head.rsplit(".", 1)[-1] == error.cls_name:  # "pkg.module.Cls: text" -> "text"
        message = rest
    return f"         error: {error.cls_name}: {message}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=STAGES, help="stop after this stage")
    parser.add_argument("--from", dest="start", choices=STAGES, default=STAGES[0],
                        help="start at this stage: the earlier ones stay as materialized before (e.g. the grid "
                        "again after a [train] change, without re-ingesting a large data set)")
    parser.add_argument("--jobs", type=int, default=0,
                        help="grid cells trained at once, each in its own worker process (0 = the "
                        "instance's training steps at once: one per core, or per GPU, up to max_concurrent_runs)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # a grid worker of --jobs > 1
    args = parser.parse_args(argv)
    from .recovery import stop_on_sigterm

    stop_on_sigterm()

    from semid_pipeline.schemes import GridCell

    from . import operations, partitions, recommendations
    from .definitions import defs

    instance = _instance()
    if args.worker:  # a worker of the parallel grid stage: cells from stdin
        _cell_worker(instance, defs.resolve_job_def(operations.grid_job.name),
                     defs.resolve_job_def(operations.diagnostics_job.name))
        return
    t0 = time.time()
    print(f"[demo] data set: {os.environ.get('SEMID_DATASET', 'synthetic')}; "
          f"dagster home: {os.environ.get('DAGSTER_HOME', '(ephemeral)')}", flush=True)
    todo = STAGES[STAGES.index(args.start):STAGES.index(args.only or STAGES[-1]) + 1]
    if not todo:
        raise SystemExit(f"--from {args.start} comes after --only {args.only}: nothing to run")
    if "ingest" in todo:
        _run(defs.resolve_job_def(operations.ingest_job.name), instance, "ingest + content_features")
    if "ids" in todo:
        ids_job = defs.resolve_job_def(operations.semantic_ids_job.name)
        for key in partitions.scheme_partitions.get_partition_keys():
            _run(ids_job, instance, f"semantic_ids[{key}]", partition_key=key)
    if "grid" in todo:
        keys = demo_grid_keys(partitions.grid_partitions.get_partition_keys(), partitions.CONFIG)
        jobs = grid_jobs(instance, args.jobs)
        if jobs > 1:  # the report's diagnostic models train beside the cells (alone, the report job trains them)
            run_cells_in_parallel(keys, jobs, extra=[DIAGNOSTICS])
        else:
            grid = defs.resolve_job_def(operations.grid_job.name)
            for key in keys:
                _run(grid, instance, f"recommender+eval[{key}]", partition_key=key)
    if "report" not in todo:
        return
    prod = partitions.grid_key(GridCell.of(partitions.CONFIG.production.scheme, partitions.CONFIG.production.hidden))
    if prod in partitions.grid_partitions.get_partition_keys():  # before the report: it shows sample lists
        _run(defs.resolve_job_def(recommendations.recommendations_job.name), instance, f"recommendations[{prod}]",
             partition_key=prod)
    _run(defs.resolve_job_def(operations.report_job.name), instance, "experiment_report")
    from resources import ArtifactStore

    print(f"[demo] done in {time.time() - t0:.0f}s")
    print(f"[demo] experiment report: {ArtifactStore().layout().report_dir() / 'report.html'}")
    print("[demo] browse it all with `make dev` (http://127.0.0.1:3000)")


def grid_jobs(instance: dg.DagsterInstance, requested: int = 0) -> int:
    """Grid cells to train at once: ``requested`` (``--jobs``; it also becomes the ``training``
    pool's limit, as ``python -m assets.grid --training-slots N`` sets it), else the instance's
    training steps at once (``resources/pools.py``: min of the ``training`` pool, set here to one
    slot per core or GPU unless set before, and ``max_concurrent_runs``), as ``dagster dev`` would
    run them. Each cell derives its torch threads from the same figures (2 cores, 2 cells at once:
    1 thread each). An ephemeral instance (no DAGSTER_HOME) cannot be shared between processes:
    one cell at a time."""
    if not os.environ.get("DAGSTER_HOME"):
        return 1
    from resources.pools import ensure_training_pool, parallel_training_steps

    ensure_training_pool(instance, requested or None)
    return requested or parallel_training_steps(instance)


CELL_DONE = "[demo-cell-done]"  # a --worker's line after each cell: "<marker> <key> ok|failed"
DIAGNOSTICS = "diagnostics"  # a --worker's key for the `diagnostics` asset (diagnostics_job), not a grid cell


def run_cells_in_parallel(keys: list[str], jobs: int, extra: list[str] = ()) -> None:
    """The grid stage with ``jobs`` worker processes (``--worker``), each executing one grid cell
    at a time as its own Dagster run, as ``dagster dev`` runs ``max_concurrent_runs`` runs; a worker
    takes the next cell when it is done (the largest h first: the longest runs start early) and
    imports Dagster and the definitions once. After a failure no new cell starts, the running
    ones finish, and the demo stops with the failure. ``extra``: other work for the workers
    (:data:`DIAGNOSTICS`), taken after the first ``jobs`` cells."""
    import subprocess
    import threading

    from semid_pipeline.schemes import GridCell

    pending = sorted(keys, key=lambda k: -GridCell.parse(k).h)
    pending[jobs:jobs] = list(extra)
    lock = threading.Lock()
    failed: list[str] = []
    print(f"[demo] grid: {len(keys)} cells, {jobs} at a time (one worker process each)", flush=True)
    cmd = [sys.executable, "-m", "assets.demo", "--worker"]
    env = {**os.environ, PARENT_ENV: str(os.getpid())}
    workers = [
        subprocess.Popen(cmd, cwd=Path(__file__).resolve().parent.parent, env=env, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        for _ in range(min(jobs, len(pending)))
    ]

    def drive(worker: subprocess.Popen) -> None:
        while True:
            with lock:
                if failed or not pending:
                    break
                key = pending.pop(0)
            worker.stdin.write(key + "\n")
            worker.stdin.flush()
            lines, status = [], "crashed"
            for line in worker.stdout:
                if line.startswith(CELL_DONE):
                    status = line.split()[-1]
                    break
                lines.append(line.rstrip("\n"))
            shown = [ln for ln in lines if ln.startswith(("[demo]", "         "))]
            if status == "crashed":  # the worker died: show what it printed last
                shown = lines[-20:] + [f"[demo] {_label(key)} worker exited with {worker.wait()}"]
            with lock:
                print("\n".join(shown), flush=True)
                if status != "ok":
                    failed.append(key)
            if status != "ok":
                break
        worker.stdin.close()

    threads = [threading.Thread(target=drive, args=(w,), daemon=True) for w in workers]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for w in workers:
            w.wait()
    finally:
        for w in workers:  # interrupted: stop the cells still training
            if w.poll() is None:
                w.terminate()
                w.wait()
    if failed:
        raise SystemExit(f"demo stopped: {_label(failed[0])} failed (see its run in `make dev`)")


def _label(key: str) -> str:
    return key if key == DIAGNOSTICS else f"recommender+eval[{key}]"


PARENT_ENV = "SEMID_DEMO_PARENT_PID"


def _die_with_parent() -> None:
    """A worker dies with the demo process that started it, even when that one is killed with
    SIGKILL (Linux ``PR_SET_PDEATHSIG``): its run is then left crashed, as a one-process demo's
    would be, and the next ``make demo`` reaps it and resumes from the checkpoint. Elsewhere a
    worker notices only at its next cell (end of stdin)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        return
    if str(os.getppid()) != os.environ.get(PARENT_ENV, str(os.getppid())):  # it died before prctl
        os._exit(1)


def _cell_worker(instance: dg.DagsterInstance, grid: dg.JobDefinition, diagnostics: dg.JobDefinition) -> None:
    """``--worker``: read grid partition keys (or :data:`DIAGNOSTICS`) from stdin, one per line; run
    each as a Dagster run and print ``CELL_DONE <key> ok|failed`` after it. Ends at the end of stdin."""
    _die_with_parent()
    for line in sys.stdin:
        key = line.strip()
        if not key:
            continue
        try:
            if key == DIAGNOSTICS:
                _run(diagnostics, instance, _label(key))
            else:
                _run(grid, instance, _label(key), partition_key=key)
            status = "ok"
        except SystemExit:  # _run printed the failure and its checks
            status = "failed"
        print(f"{CELL_DONE} {key} {status}", flush=True)


def demo_grid_keys(keys, cfg) -> list:
    """The grid cells the demo trains: every paper cell, and the ``[grid] variants`` (hybrid, +ag)
    and ``[grid] demo_production_h_only`` rows at the production h only, to keep ``make demo``
    within its time. ``make backfill SCHEME=<row>`` fills such a row."""
    from semid_pipeline.config import ConfigError
    from semid_pipeline.schemes import GridCell

    cells = [(k, GridCell.parse(k)) for k in keys]
    rows = {c.scheme.key for _, c in cells}
    unknown = [r for r in cfg.grid.demo_production_h_only if r not in rows]
    if unknown:
        raise ConfigError(f"[grid] demo_production_h_only: {unknown} are not rows of the grid "
                          f"({', '.join(sorted(rows))})")
    short = set(cfg.grid.variants) | set(cfg.grid.demo_production_h_only)
    return [k for k, c in cells if c.scheme.key not in short or c.h == cfg.production.hidden]


if __name__ == "__main__":
    sys.exit(main())
