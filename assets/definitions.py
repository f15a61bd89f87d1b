"""The one code location: ``dagster dev`` (from the repository root) loads ``defs`` from here."""


import dagster as dg

from resources import ArtifactStore, ComputeResource, DatasetResource, DuckDBWarehouse

from . import evaluation, features, ingestion, operations, recommendations, recommender, recovery, semantic_ids

ASSETS = [
    ingestion.raw_feedback,
    features.content_features,
    semantic_ids.semantic_ids,
    recommender.recommender,
    evaluation.evaluation,
    evaluation.experiment_report,
    recommendations.recommendations,
]
CHECKS = [
    ingestion.feedback_events_quality,
    ingestion.track_catalog_quality,
    features.content_features_complete,
    semantic_ids.ids_one_to_one,
    semantic_ids.ids_cover_events,
    semantic_ids.ids_no_collapse,
    semantic_ids.ids_distinct_tuples,  # semid-ids: collision gate
    *evaluation.CHECKS,
    *recommendations.CHECKS,
]

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=CHECKS,
    jobs=[*operations.JOBS, recommendations.recommendations_job],
    schedules=[operations.weekly_retraining],
    sensors=[operations.retrain_chain, operations.landing_folder, recovery.dead_run_reaper],
    resources={
        "warehouse": DuckDBWarehouse(),
        "artifacts": ArtifactStore(),
        "dataset": DatasetResource(),
        "compute": ComputeResource(),
        # launches training (semid_workers.train_cell) as an external process through Dagster Pipes
        "pipes_client": dg.PipesSubprocessClient(),
    },
    # Steps are short and share one DuckDB file: run them in one process, one after another.
    executor=dg.in_process_executor,
)
