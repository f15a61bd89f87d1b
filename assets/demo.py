"""``make demo``: materialize every asset, every partition, on the configured data set.

Runs each stage as a real Dagster run on the persistent instance in ``DAGSTER_HOME`` (the same
one ``dagster dev`` shows), so the UI afterwards holds the whole history, checks and metadata.
``python -m assets.demo --only ingest`` stops after a stage (ingest|ids|grid|report).
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
    t0 = time.time()
    quiet = {"loggers": {"console": {"config": {"log_level": os.environ.get("SEMID_DEMO_LOG_LEVEL", "WARNING")}}}}
    result = job.execute_in_process(instance=instance, raise_on_error=False, run_config=quiet, **kwargs)
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
    for ev in warnings:
        print(f"         warning: {ev.asset_key.to_user_string()} / {ev.check_name}")
    if status != "ok":
        for ev in result.all_events:
            if ev.event_type_value == "STEP_FAILURE" and ev.step_failure_data.error is not None:
                print(ev.step_failure_data.error.to_string())
        raise SystemExit(f"demo stopped: {label} failed (see the run {result.run_id} in `make dev`)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=STAGES, help="stop after this stage")
    args = parser.parse_args(argv)

    from . import operations, partitions
    from .definitions import defs

    instance = _instance()
    t0 = time.time()
    print(f"[demo] data set: {os.environ.get('SEMID_DATASET', 'synthetic')}; "
          f"dagster home: {os.environ.get('DAGSTER_HOME', '(ephemeral)')}", flush=True)
    _run(defs.resolve_job_def(operations.ingest_job.name), instance, "ingest + content_features")
    if args.only == "ingest":
        return
    ids_job = defs.resolve_job_def(operations.semantic_ids_job.name)
    for key in partitions.scheme_partitions.get_partition_keys():
        _run(ids_job, instance, f"semantic_ids[{key}]", partition_key=key)
    if args.only == "ids":
        return
    grid = defs.resolve_job_def(operations.grid_job.name)
    for key in partitions.grid_partitions.get_partition_keys():
        _run(grid, instance, f"recommender+eval[{key}]", partition_key=key)
    if args.only == "grid":
        return
    _run(defs.resolve_job_def(operations.report_job.name), instance, "experiment_report")
    prod = partitions.grid_key(partitions.CONFIG.production.scheme, partitions.CONFIG.production.hidden)
    if prod in partitions.grid_partitions.get_partition_keys():
        _run(defs.resolve_job_def("recommendations_job"), instance, f"recommendations[{prod}]", partition_key=prod)
    from .evaluation import report_dir

    print(f"[demo] done in {time.time() - t0:.0f}s")
    print(f"[demo] experiment report: {report_dir() / 'report.html'}")
    print("[demo] browse it all with `make dev` (http://127.0.0.1:3000)")


if __name__ == "__main__":
    sys.exit(main())
