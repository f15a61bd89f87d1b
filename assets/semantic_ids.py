"""Stage 3: `content_features` → `semantic_ids` per ID scheme (partition), with codebook checks.

A partition that already holds a table for the current data set is *extended*, not refitted:
tracks that arrived since get IDs from their content through the frozen encoder and codebooks
(cold start), with tie values after the largest one taken, so no existing ID ever changes. Set
``refit: true`` in the run config to train a new codebook (which changes IDs and so invalidates
models trained on the old table: they refuse to load it). The policy is
``semid_pipeline.stages.build_semantic_ids``.
"""


import dagster as dg
import pandas as pd

from resources import ArtifactStore, DuckDBWarehouse
from semid_pipeline import semantic_ids as sid
from semid_pipeline import stages
from semid_pipeline.resources_usage import stage_peak_rss
from semid_pipeline.schema import CONTENT_FEATURES, FEEDBACK_EVENTS, semantic_id_table
from semid_pipeline.schemes import code_columns

from ._meta import flat_numbers, md_table, peak_rss_metadata
from .partitions import scheme_of, scheme_partitions, settings


class SemanticIdRunConfig(dg.Config):
    refit: bool = False  # train a new codebook even if this partition already has IDs


@dg.asset(
    partitions_def=scheme_partitions,
    deps=[CONTENT_FEATURES, FEEDBACK_EVENTS],
    group_name="semantic_ids",
    kinds={"duckdb", "pytorch"},
    pool="warehouse",
    description="track_id → (c1..cL, tie) per ID scheme: `id` (per-track baseline), `v0-k*` random, "
    "`v1-k*` RQ-VAE, `rqkmeans-k*` residual k-means. New tracks get IDs through the frozen codebook.",
)
def semantic_ids(
    context: dg.AssetExecutionContext, config: SemanticIdRunConfig, warehouse: DuckDBWarehouse, artifacts: ArtifactStore
):
    scheme = scheme_of(context)
    with stage_peak_rss() as mem:
        built = stages.build_semantic_ids(
            warehouse=warehouse.file, layout=artifacts.layout(), scheme=scheme, cfg=settings(),
            refit=config.refit, log=context.log.info,
        )
    table, metrics = built.table, built.metrics
    levels = code_columns(table.columns)
    per_level = pd.DataFrame(
        {
            "level": levels,
            "utilization": [metrics.get("utilization", {}).get(c, float("nan")) for c in levels],
            "entropy_bits": [metrics.get("entropy_bits", {}).get(c, float("nan")) for c in levels],
        }
    )
    return dg.MaterializeResult(
        metadata={
            "mode": dg.MetadataValue.text(built.mode),
            "content_hash": dg.MetadataValue.text(built.content_hash),
            "dagster/row_count": dg.MetadataValue.int(len(table)),
            "table": dg.MetadataValue.text(semantic_id_table(scheme.key)),
            "per_level": md_table(per_level),
            **flat_numbers("quality/", {k: v for k, v in metrics.items() if not isinstance(v, dict)}),
            "sample_ids": md_table(table.head(10)),
            **peak_rss_metadata(mem),
        },
        data_version=dg.DataVersion(built.content_hash[:16]),
    )


def _result(ok: bool, details: dict) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=bool(ok), metadata={"details": dg.MetadataValue.json(details)})


@dg.asset_check(asset=semantic_ids, blocking=True, description="track_id ↔ (codes, tie) is one-to-one.")
def ids_one_to_one(context: dg.AssetCheckExecutionContext, warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
    return _result(*sid.check_one_to_one(stages.read_ids(warehouse.file, scheme_of(context))))


@dg.asset_check(asset=semantic_ids, blocking=True, description="Every track in feedback_events has an ID.")
def ids_cover_events(context: dg.AssetCheckExecutionContext, warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
    return _result(*stages.check_ids_cover_events(warehouse.file, scheme_of(context)))


@dg.asset_check(
    asset=semantic_ids,
    blocking=True,
    description="Collapse guard: level-1 utilization ≥ min_level1_utilization whenever k ≤ tracks/4.",
)
def ids_no_collapse(context: dg.AssetCheckExecutionContext, warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
    min_util = settings().semantic_ids.min_level1_utilization
    return _result(*stages.check_ids_no_collapse(warehouse.file, scheme_of(context), min_util))


def _group_rows(groups: list[dict]) -> pd.DataFrame:
    """One row per collision group: its codes, size and members as "title / artist"."""
    return pd.DataFrame(
        [{"codes": str(g["codes"]), "size": g["size"], **{f"track{i + 1}": " / ".join(
            str(t.get(c)) for c in ("title", "artist_id") if t.get(c) is not None) or t["track_id"]
            for i, t in enumerate(g["tracks"])}} for g in groups]
    )


@dg.asset_check(
    asset=semantic_ids,
    blocking=True,
    description="Distinct tuples: unique-tuple share ≥ min_unique_tuple_share (when k^L ≥ 10 × tracks) and "
    "max tie ≤ max_tie_limit; on failure, the largest collision groups with their titles and artists.",
)
def ids_distinct_tuples(context: dg.AssetCheckExecutionContext, warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
    ok, details = stages.check_ids_distinct(warehouse.file, scheme_of(context), settings().semantic_ids)
    groups = _group_rows(details["largest_collision_groups"])
    return dg.AssetCheckResult(
        passed=bool(ok),
        metadata={
            "unique_tuple_share": dg.MetadataValue.float(float(details["unique_tuple_share"])),
            "max_tie": dg.MetadataValue.int(int(details["max_tie"])),
            "largest_collision_groups": md_table(groups) if len(groups) else dg.MetadataValue.text("none"),
            "details": dg.MetadataValue.json(details),
        },
    )
