"""Stage 1: raw feedback → DuckDB (`feedback_events`, `track_catalog`), with blocking quality checks."""


from pathlib import Path

import dagster as dg

from resources import DatasetResource, DuckDBWarehouse
from semid_pipeline import claims, datasets, ingest, periods, quality
from semid_pipeline.errors import SplitError
from semid_pipeline.splits import load_splits
from semid_pipeline.warehouse import get_meta
from semid_pipeline.resources_usage import stage_peak_rss
from semid_pipeline.schema import FEEDBACK_EVENTS, TRACK_CATALOG

from ._meta import md_table, peak_rss_metadata
from .partitions import settings
from .recovery import run_is_active

GROUP = "ingestion"


class IngestRunConfig(dg.Config):
    append_files: list[str] = []  # files to add to the current data set (landing sensor); empty = full ingest


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            FEEDBACK_EVENTS,
            description="One row per feedback event (play/skip or thumb up/down), any source format.",
            kinds={"duckdb"},
            group_name=GROUP,
        ),
        dg.AssetSpec(
            TRACK_CATALOG,
            description="One row per track: keys, metadata and the source's raw content columns.",
            kinds={"duckdb"},
            group_name=GROUP,
        ),
    ],
    pool="warehouse",
)
def raw_feedback(
    context: dg.AssetExecutionContext, config: IngestRunConfig, warehouse: DuckDBWarehouse, dataset: DatasetResource
):
    """Ingest the data set named by ``SEMID_DATASET`` (or the ``dataset`` resource config).

    Both tables are replaced in one transaction, so two data sets never mix and a bad file leaves
    the warehouse exactly as it was. With ``append_files`` (what the landing sensor sends), those
    files are added to the current data set instead, in one transaction too. The run claims the
    warehouse until its content features are built, so a second ingestion fails fast instead of
    swapping the data under this run's checks and features (``semid_pipeline.claims``).
    """
    spec = dataset.parsed()
    cfg = dataset.ingest_config(settings().ingest)
    claims.acquire(warehouse.file, owner=context.run.run_id, what=spec.key,
                   is_active=lambda held: run_is_active(context.instance, held.owner))
    try:
        with stage_peak_rss() as mem:
            result = _ingest(context, config, warehouse, dataset, spec, cfg)
    except BaseException:
        claims.release(warehouse.file, owner=context.run.run_id)  # nothing was published
        raise
    yield from _materializations(result, warehouse, mem)


def _ingest(context, config, warehouse, dataset, spec, cfg):
    if config.append_files:
        context.log.info(f"appending {len(config.append_files)} landed files to {warehouse.file}")
        with warehouse.connect() as con:
            return ingest.append_files(con, [Path(f) for f in config.append_files], cfg=cfg)
    context.log.info(f"ingesting {spec.key} into {warehouse.file}")
    result = datasets.ingest_dataset(spec, warehouse=warehouse.file, cfg=cfg, data_dir=dataset.data_folder)
    return result


def _materializations(result, warehouse: DuckDBWarehouse, mem):
    record = result.to_frame()
    common = {
        **peak_rss_metadata(mem),
        "dataset": dg.MetadataValue.text(result.dataset),
        "dataset_fingerprint": dg.MetadataValue.text(result.fingerprint),
        "ingestion_record": md_table(record),
        "warehouse": dg.MetadataValue.path(str(Path(warehouse.file).resolve())),
    }
    yield dg.MaterializeResult(
        asset_key=FEEDBACK_EVENTS,
        metadata={
            **common,
            "dagster/row_count": dg.MetadataValue.int(result.n_events),
            "strata": dg.MetadataValue.int(result.n_strata),
            "stratum_kind": dg.MetadataValue.text(result.stratum_kind),
            "positive_share": dg.MetadataValue.float(result.n_positive / max(result.n_events, 1)),
            "rows_rejected": dg.MetadataValue.int(int(record["rows_rejected"].sum())),
            "first_offending_rows": dg.MetadataValue.json({f.path: f.examples for f in result.files if f.examples}),
        },
        data_version=dg.DataVersion(result.fingerprint[:16]),
    )
    yield dg.MaterializeResult(
        asset_key=TRACK_CATALOG,
        metadata={**common, "dagster/row_count": dg.MetadataValue.int(result.n_tracks)},
        data_version=dg.DataVersion(result.fingerprint[:16]),
    )


def _check_result(report) -> dg.AssetCheckResult:
    failures = report.failures()
    return dg.AssetCheckResult(
        passed=report.success,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"{len(report.outcomes) - len(failures)}/{len(report.outcomes)} expectations met"
            + (f"; failing: {', '.join(f.name + (f'({f.column})' if f.column else '') for f in failures)}" if failures else "")
        ),
        metadata={
            "expectations": dg.MetadataValue.md(report.summary_markdown()),
            "failed_expectations": dg.MetadataValue.int(len(failures)),
            "details": dg.MetadataValue.json(report.to_metadata()),
        },
    )


@dg.asset_check(asset=FEEDBACK_EVENTS, blocking=True, description=(
    "great-expectations: columns and types, non-null keys, feedback in {0,1}, unique (stratum, position), "
    "1 ≤ position ≤ stratum_length, share of event tracks with content features, both labels present."))
def feedback_events_quality(warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
    with warehouse.connect(read_only=True) as con:
        return _check_result(quality.validate_feedback_events(con, cfg=settings().ingest))


@dg.asset_check(asset=TRACK_CATALOG, blocking=True, description=(
    "great-expectations: unique non-null track_id, content values within their documented ranges."))
def track_catalog_quality(warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
    with warehouse.connect(read_only=True) as con:
        return _check_result(quality.validate_track_catalog(con, cfg=settings().ingest))


@dg.asset_check(asset=FEEDBACK_EVENTS, blocking=True, description=(
    "The time split ([split] test_days / val_days) leaves a training period with a sequence of two or more "
    "events and a test period with at least [eval] min_strata strata to evaluate; on failure it says what to change. "
    "A validation period with fewer strata than that only warns."))
def feedback_events_time_split(warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
    with warehouse.connect(read_only=True) as con:
        try:
            sp = load_splits(con, settings().split)
        except SplitError as e:
            return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR, description=str(e))
        spec = str(get_meta(con, "dataset") or "")
    meta = periods.describe(sp)
    problem, warning = periods.verdict(sp, cfg=settings(), dataset=spec)
    return dg.AssetCheckResult(  # a thin validation period warns (does not block)
        passed=problem is None and warning is None,
        severity=dg.AssetCheckSeverity.WARN if warning else dg.AssetCheckSeverity.ERROR,
        description=problem or warning or (f"{meta['training_sequences']:,} training sequences, "
                                           f"{meta['validation_strata']:,} validation and {meta['test_strata']:,} test strata"),
        metadata={k: (dg.MetadataValue.int(v) if isinstance(v, int) else dg.MetadataValue.text(str(v))) for k, v in meta.items()})
