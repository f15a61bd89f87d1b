"""Operating the pipeline: jobs, the weekly retraining schedule, the landing-folder sensor.

Weekly retraining is a chain of runs (one per partitioning): ingest → the production
``semantic_ids`` partition → the production ``recommender``+``evaluation`` partition (and the
``id`` baseline at the same h, so the lift stays measurable) → ``experiment_report``. A schedule
starts the chain; ``retrain_chain`` (a run-status sensor) launches each next step when the
previous run of the same chain succeeded. The chain is tagged, so hand-launched runs never
trigger it. The landing sensor starts the same chain after ingesting new files, extending every
existing ID table through the cold-start path.
"""


import hashlib
import json
from pathlib import Path

import dagster as dg

from semid_pipeline.fileutil import sha256_file
from semid_pipeline.ingest.paths import SIDECAR_NAMES
from semid_pipeline.schema import CONTENT_FEATURES, FEEDBACK_EVENTS, TRACK_CATALOG
from semid_pipeline.schemes import GridCell, IdScheme

from .partitions import CONFIG, grid_key, scheme_partitions, settings

CHAIN_TAG = "semid/chain"
LANDING_SUFFIXES = (".csv", ".csv.gz", ".parquet")

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.assets(FEEDBACK_EVENTS, TRACK_CATALOG, CONTENT_FEATURES),
    description="Ingest the configured data set and refresh content features (with their checks).",
)
semantic_ids_job = dg.define_asset_job(
    "semantic_ids_job",
    selection=dg.AssetSelection.assets("semantic_ids"),  # partitions: inferred from the asset
    description="Fit (or extend, for new tracks) one ID scheme's table.",
)
grid_job = dg.define_asset_job(
    "grid_job",
    selection=dg.AssetSelection.assets("recommender", "evaluation"),
    description="Train and evaluate one (scheme, h) partition; backfill it over the grid.",
)
diagnostics_job = dg.define_asset_job(
    "diagnostics_job",
    selection=dg.AssetSelection.assets("diagnostics"),
    description="The report's diagnostic models alone (bias-only, shuffled histories): `make demo` trains "
    "them beside the grid cells.",
)
report_job = dg.define_asset_job(
    "report_job",
    selection=dg.AssetSelection.assets("diagnostics", "experiment_report"),
    description="The diagnostic models (bias-only, shuffled histories; trained once per data set and "
    "settings) and the experiment report from the stored evaluations.",
)
JOBS = [ingest_job, semantic_ids_job, grid_job, diagnostics_job, report_job]


def production_grid_keys() -> list[dg.MultiPartitionKey]:
    p = settings().production
    cell = GridCell.of(p.scheme, p.hidden)
    keys = [grid_key(cell)]
    if CONFIG.grid.include_id_baseline and not cell.scheme.is_id:
        keys.append(grid_key(GridCell.of(IdScheme(family="id"), p.hidden)))
    return keys


@dg.schedule(
    job=ingest_job,
    cron_schedule="0 3 * * 1",  # Mondays 03:00
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Weekly retraining of the production configuration (semid.toml [production]).",
)
def weekly_retraining(context: dg.ScheduleEvaluationContext):
    return dg.RunRequest(
        run_key=f"weekly-{context.scheduled_execution_time:%Y-%m-%d}",
        tags={CHAIN_TAG: "weekly"},
    )


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[ingest_job, semantic_ids_job, grid_job],
    request_jobs=[semantic_ids_job, grid_job, report_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches the next step of a weekly/landing retraining chain when one succeeds.",
)
def retrain_chain(context: dg.RunStatusSensorContext):
    run = context.dagster_run
    chain = run.tags.get(CHAIN_TAG)
    if not chain:
        return dg.SkipReason("not part of a retraining chain")
    tags = {CHAIN_TAG: chain, "semid/parent_run": run.run_id}
    if run.job_name == ingest_job.name:
        production = settings().production.scheme
        schemes = [production] if chain == "weekly" else _existing_scheme_keys(context, production)
        return [
            dg.RunRequest(job_name=semantic_ids_job.name, partition_key=s, tags=tags, run_key=f"{run.run_id}-{s}")
            for s in schemes
        ]
    if run.job_name == semantic_ids_job.name:
        if chain != "weekly" or run.tags.get("dagster/partition") != settings().production.scheme:
            return dg.SkipReason("ID tables extended; models are retrained by the weekly chain")
        return [
            dg.RunRequest(job_name=grid_job.name, partition_key=k, tags=tags, run_key=f"{run.run_id}-{k}")
            for k in production_grid_keys()
        ]
    if run.job_name == grid_job.name:
        return dg.RunRequest(job_name=report_job.name, tags=tags, run_key=f"{run.run_id}-report")
    return dg.SkipReason(f"no next step after {run.job_name}")


def _existing_scheme_keys(context, production: str) -> list[str]:
    """Partitions of `semantic_ids` that have been materialized (the ones to extend)."""
    done = context.instance.get_materialized_partitions(dg.AssetKey("semantic_ids"))
    keys = [k for k in scheme_partitions.get_partition_keys() if k in done]
    return keys or [production]


def landing_dir() -> Path:
    p = Path(settings().landing_dir)
    return p if p.is_absolute() else Path(__file__).resolve().parent.parent / p


@dg.sensor(
    job=ingest_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Ingests new MSSD (log_*/tf_*) or per-user (events*/tracks*) files dropped into the "
    "landing folder, each exactly once (content hash in the cursor), then extends ID tables.",
)
def landing_folder(context: dg.SensorEvaluationContext):
    folder = landing_dir()
    if not folder.exists():
        return dg.SkipReason(f"landing folder {folder} does not exist")
    seen: set[str] = set(json.loads(context.cursor)) if context.cursor else set()
    new: list[tuple[str, Path]] = []
    for path in sorted(folder.iterdir()):
        if (not path.is_file() or not path.name.endswith(LANDING_SUFFIXES) or path.name.startswith(".")
                or path.name.lower() in SIDECAR_NAMES):
            continue
        digest = sha256_file(path)
        if digest not in seen and digest not in {d for d, _ in new}:
            new.append((digest, path))
    if not new:
        return dg.SkipReason(f"no new files in {folder}")
    files = [str(p) for _, p in new]
    digests = sorted(d for d, _ in new)
    run_key = "landing-" + hashlib.sha256("".join(digests).encode()).hexdigest()[:16]
    context.update_cursor(json.dumps(sorted(seen | set(digests))))
    return dg.RunRequest(
        run_key=run_key,
        run_config={"ops": {"raw_feedback": {"config": {"append_files": files}}}},
        tags={CHAIN_TAG: "landing"},
    )
