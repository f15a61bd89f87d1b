"""Stage 2: `track_catalog` → `content_features` (one standardized vector per track)."""


import dagster as dg
import pandas as pd

from resources import ArtifactStore, DuckDBWarehouse
from semid_pipeline import claims, features, stages
from semid_pipeline.resources_usage import stage_peak_rss
from semid_pipeline.schema import CONTENT_FEATURES, FEEDBACK_EVENTS, TRACK_CATALOG

from ._meta import md_table, peak_rss_metadata
from .partitions import settings


class FeatureRunConfig(dg.Config):
    refit: bool = False  # fit a new transform even if this data set already has one


@dg.asset(
    key=CONTENT_FEATURES,
    deps=[TRACK_CATALOG, FEEDBACK_EVENTS],
    group_name="semantic_ids",
    kinds={"duckdb", "scikit-learn"},
    pool="warehouse",
    automation_condition=dg.AutomationCondition.eager(),
    description="Dense standardized content vector per track (popularity excluded); the fitted "
    "transform is saved as JSON + arrays and reused for tracks that arrive later.",
)
def content_features(
    context: dg.AssetExecutionContext, config: FeatureRunConfig, warehouse: DuckDBWarehouse, artifacts: ArtifactStore
):
    try:
        with stage_peak_rss() as mem:
            built = stages.build_content_features(warehouse=warehouse.file, layout=artifacts.layout(),
                                                  refit=config.refit, cfg=settings().features)
    finally:  # the end of this run's ingestion (see raw_feedback)
        claims.release(warehouse.file, owner=context.run.run_id)
    result, X, dataset, reuse = built.result, built.X, built.dataset, built.reused
    context.log.info(
        f"content features: {result.n_tracks} tracks × {result.dim} dims ({'reused' if reuse else 'fitted'} transform)"
    )
    summary = pd.DataFrame(
        {"feature": result.feature_names, "mean": X.mean(0), "std": X.std(0), "min": X.min(0), "max": X.max(0)}
    )
    return dg.MaterializeResult(
        metadata={
            "dataset": dg.MetadataValue.text(str(dataset)),
            "dagster/row_count": dg.MetadataValue.int(result.n_tracks),
            "dim": dg.MetadataValue.int(result.dim),
            "imputed_values": dg.MetadataValue.int(int(result.n_imputed)),
            "transform": dg.MetadataValue.path(str(result.transform_dir)),
            "transform_mode": dg.MetadataValue.text("reused" if reuse else "fitted"),
            "text_encoder": dg.MetadataValue.text(result.text_encoder or "none"),
            "text_encoding": dg.MetadataValue.text(result.text_note or "no text block (audio/numeric content)"),
            "text_strings_embedded": dg.MetadataValue.int(int(result.text_embedded)),
            "features": md_table(summary),
            **peak_rss_metadata(mem),
        }
    )


@dg.asset_check(asset=CONTENT_FEATURES, blocking=True, description="Every catalog track has one finite vector.")
def content_features_complete(warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
    with warehouse.connect(read_only=True) as con:
        ok, details = features.check_complete(con)
    return dg.AssetCheckResult(passed=ok, metadata=details)
