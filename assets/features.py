"""Stage 2: `track_catalog` → `content_features` (one standardized vector per track)."""


import hashlib

import dagster as dg
import numpy as np

from resources import ArtifactStore, DuckDBWarehouse
from semid_pipeline import features
from semid_pipeline.schema import CONTENT_FEATURES, FEEDBACK_EVENTS, TRACK_CATALOG
from semid_pipeline.warehouse import get_meta

from ._meta import md_table
from .partitions import CONFIG


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
    with warehouse.connect() as con:
        dataset = get_meta(con, "dataset")
        # one transform per data set: fitted on its first ingestion, reused when files are appended
        tdir = artifacts.path("features", hashlib.sha256(str(dataset).encode()).hexdigest()[:12])
        reuse = (tdir / "transform.json").exists() and not config.refit
        result = features.build_content_features(
            con, tdir, reuse_transform=reuse, cfg=CONFIG.features, cache_dir=artifacts.path("text_embeddings")
        )
        _, X = features.read_content_features(con)
    context.log.info(
        f"content features: {result.n_tracks} tracks × {result.dim} dims ({'reused' if reuse else 'fitted'} transform)"
    )
    import pandas as pd

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
        }
    )


@dg.asset_check(asset=CONTENT_FEATURES, blocking=True, description="Every catalog track has one finite vector.")
def content_features_complete(warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
    with warehouse.connect(read_only=True) as con:
        ids, X = features.read_content_features(con)
        n_catalog = con.execute(f"SELECT count(*) FROM {TRACK_CATALOG}").fetchone()[0]
    finite = bool(np.isfinite(X).all())
    return dg.AssetCheckResult(
        passed=finite and len(ids) == n_catalog and len(set(ids)) == len(ids),
        metadata={"tracks": len(ids), "catalog_tracks": int(n_catalog), "all_finite": finite},
    )
