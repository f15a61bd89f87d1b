"""The one code location: ``dagster dev`` (from the repository root) loads ``defs`` from here.

The resources are the map of the environment named by ``SEMID_ENV`` (``local`` by default,
``production`` on Kubernetes: ``resources/environments.py``, ``deploy/README.md``).
"""


import dagster as dg

from resources.environments import resources_for

from . import evaluation, features, ingestion, operations, recommendations, recommender, recovery, semantic_ids

ASSETS = [
    ingestion.raw_feedback,
    features.content_features,
    semantic_ids.semantic_ids,
    recommender.recommender,
    evaluation.evaluation,
    evaluation.diagnostics,
    evaluation.experiment_report,
    recommendations.recommendations,
]
CHECKS = [
    ingestion.feedback_events_quality,
    ingestion.feedback_events_time_split,
    ingestion.track_catalog_quality,
    features.content_features_complete,
    semantic_ids.ids_one_to_one,
    semantic_ids.ids_cover_events,
    semantic_ids.ids_no_collapse,
    semantic_ids.ids_distinct_tuples,  # semid-ids: collision gate
    *evaluation.CHECKS,
    *recommendations.CHECKS,
]


def build_defs(env: str | None = None) -> dg.Definitions:
    """The code location with the resources of ``env`` (default ``SEMID_ENV``, else ``local``)."""
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=CHECKS,
        jobs=[*operations.JOBS, recommendations.recommendations_job],
        schedules=[operations.weekly_retraining],
        sensors=[operations.retrain_chain, operations.landing_folder, recovery.dead_run_reaper],
        resources=resources_for(env),
        # Steps are short and share one DuckDB file: run them in one process, one after another
        # (on Kubernetes too: one pod per run from the K8sRunLauncher; training gets its own pod).
        executor=dg.in_process_executor,
    )


defs = build_defs()
