"""Stage 5: evaluate each trained partition on the test period; assemble the experiment report."""


import dagster as dg
import pandas as pd

from resources import ArtifactStore, ComputeResource, DuckDBWarehouse
from semid_pipeline import report as report_mod
from semid_pipeline import serving_table, stages
from semid_pipeline.id_quality_report import id_quality_from_warehouse
from semid_pipeline.resources_usage import stage_peak_rss
from semid_pipeline.schemes import GridCell
from semid_pipeline.serving_load import read_catalog

from ._meta import md_table, number, peak_rss_metadata
from .partitions import cell_of, grid_partitions, settings
from .recommender import recommender


@dg.asset(
    partitions_def=grid_partitions,
    deps=[recommender],
    group_name="evaluation",
    kinds={"pytorch", "scikit-learn"},
    pool="training",
    description="Test-period stratified AUC with bootstrap CI, AUC by history length, cold-start AUC, "
    "Recall/NDCG@k over the whole catalogue, diversity of top-k lists, parameters, baselines.",
)
def evaluation(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, artifacts: ArtifactStore, compute: ComputeResource):
    cell, cfg = cell_of(context), settings()
    compute.configure_torch()
    with stage_peak_rss() as mem:
        done = stages.evaluate_cell(warehouse=warehouse.file, layout=artifacts.layout(), cell=cell, cfg=cfg)
    result, test, ranking, k = done.result, done.result["test"], done.result.get("ranking", {}), cfg.eval.topk
    oracle = done.record.get("oracle") or {}  # synthetic worlds: the ceilings on the same test pairs
    ceilings = {"ceiling/oracle_auc": number(oracle.get("auc")),
                "ceiling/learnable_auc": number((oracle.get("learnable") or {}).get("auc"))} if oracle else {}
    context.log.info(
        f"{cell}: test AUC {test['auc']:.4f} [{test['ci_lo']:.4f}, {test['ci_hi']:.4f}] over {test['n_strata']} strata"
    )
    return dg.MaterializeResult(
        metadata={
            "test_auc": number(test["auc"]),
            "test_ci_lo": number(test["ci_lo"]),
            "test_ci_hi": number(test["ci_hi"]),
            "n_strata": number(test["n_strata"]),
            "stratum_kind": dg.MetadataValue.text(str(result.get("stratum_kind"))),
            "val_auc": number(result["val"].get("auc")),
            **({"prior_weight": number(result["prior"]["weight"]),
                "prior_recent_share": number(result["prior"].get("recent") or 0.0),
                "affinity_weights": dg.MetadataValue.json(result["prior"].get("affinity") or [0.0, 0.0]),
                "memory_weights": dg.MetadataValue.json(result["prior"].get("memory") or [0.0, 0.0]),
                "taste_weight": number(result["prior"].get("taste") or 0.0)}
               if result.get("prior") else {}),
            "cold_start_auc": number((test.get("cold_start") or {}).get("auc")),
            f"recall@{k}": number(ranking.get(f"recall@{k}")),
            f"ndcg@{k}": number(ranking.get(f"ndcg@{k}")),
            "params/total": number(result["params_total"]),
            "params/track_representation": number(result["params_track"]),
            "by_history": md_table(pd.DataFrame(test.get("by_history", []))),
            "diversity": dg.MetadataValue.json(result.get("diversity", {})),
            "baselines": dg.MetadataValue.json(done.baselines),
            **ceilings,
            "record": dg.MetadataValue.path(str(done.record_path)),
            **peak_rss_metadata(mem),
        }
    )


def _test_record(context, artifacts: ArtifactStore, warehouse: DuckDBWarehouse) -> dict:
    return stages.read_evaluation_record(warehouse.file, artifacts.layout(), cell_of(context))["test"]


@dg.asset_check(asset=evaluation, blocking=True, description="Enough strata evaluated ([eval] min_strata) and a CI present.")
def evaluation_enough_strata(context: dg.AssetCheckExecutionContext, artifacts: ArtifactStore, warehouse: DuckDBWarehouse):
    test, min_strata = _test_record(context, artifacts, warehouse), settings().eval.min_strata
    n = int(test.get("n_strata") or 0)
    has_ci = test.get("ci_lo") is not None and test.get("ci_hi") is not None
    return dg.AssetCheckResult(
        passed=n >= min_strata and has_ci,
        description=f"{n} test strata evaluated ([eval] min_strata = {min_strata})" + ("" if has_ci else "; no CI"),
        metadata={"n_strata": n, "min_strata": min_strata, "ci_present": has_ci},
    )


@dg.asset_check(asset=evaluation, description="Warns when the test AUC's 95% CI does not lie above 0.5.")
def evaluation_beats_chance(context: dg.AssetCheckExecutionContext, artifacts: ArtifactStore, warehouse: DuckDBWarehouse):
    test = _test_record(context, artifacts, warehouse)
    lo = test.get("ci_lo")
    return dg.AssetCheckResult(
        passed=lo is not None and lo > 0.5,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"ci_lo": number(lo), "auc": number(test.get("auc"))},
    )


@dg.asset(
    deps=[evaluation],
    group_name="evaluation",
    kinds={"pytorch"},
    pool="training",
    automation_condition=dg.AutomationCondition.eager(),
    description="How much order and popularity alone are worth: bias-only models (per-track biases; the "
    "production scheme's per-codeword biases, summed) and the smallest-h `id` model trained and evaluated on "
    "histories shuffled within each stratum. Trained once per data set and settings; the report shows them.",
)
def diagnostics(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, artifacts: ArtifactStore,
                compute: ComputeResource):
    device = compute.configure_torch()
    rec = stages.diagnostics_record(warehouse=warehouse.file, layout=artifacts.layout(), cfg=settings(), device=device,
                                    log=context.log.info)
    rows = pd.DataFrame([{"diagnostic": r["name"], "test AUC": r["test"]["auc"], "CI lo": r["test"]["ci_lo"],
                          "CI hi": r["test"]["ci_hi"], "own score": r["own"]["auc"]} for r in rec["rows"]])
    return dg.MaterializeResult(metadata={"diagnostics": md_table(rows),
                                          **{f"auc/{r['name']}": number(r["test"]["auc"]) for r in rec["rows"]}})


@dg.asset(
    deps=[evaluation, diagnostics],
    group_name="evaluation",
    kinds={"html"},
    pool="training",
    automation_condition=dg.AutomationCondition.eager(),
    description="Tables and the paper's three figures across every evaluated partition of the current "
    "data set, as a self-contained HTML report plus PNGs (rendered from stored evaluations, no training).",
)
def experiment_report(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, artifacts: ArtifactStore):
    layout, prod = artifacts.layout(), settings().production
    dataset, records = stages.current_records(warehouse.file, layout)
    if not records:
        raise dg.Failure(description="no evaluated partitions for the current data set: materialize `evaluation` first")
    production = GridCell.of(prod.scheme, prod.hidden).partition_key
    with warehouse.connect(read_only=True) as con:  # sample lists, once `recommendations` has rows
        samples = serving_table.sample_lists_section(con, read_catalog(con))
        quality = id_quality_from_warehouse(con, max_tie_embeddings=settings().semantic_ids.max_tie_embeddings)
    art = report_mod.render_report(records, layout.report_dir(), dataset=dataset, production=production,
                                   sections=[samples] if samples else [], id_quality=quality,
                                   diagnostics=stages.read_diagnostics(warehouse.file, layout))
    context.log.info(f"report: {art.html_path}")
    figures = {
        f"plot/{name}": dg.MetadataValue.md(f"![{name}]({report_mod.png_data_uri(path)})")
        for name, path in art.figure_paths.items()
    }
    figures.update({f"png/{name}": dg.MetadataValue.path(str(path)) for name, path in art.figure_paths.items()})
    return dg.MaterializeResult(
        metadata={
            "report_html": dg.MetadataValue.path(str(art.html_path)),
            "partitions_evaluated": dg.MetadataValue.int(len(records)),
            "summary": dg.MetadataValue.md(art.markdown),
            **figures,
            "headline": dg.MetadataValue.json(art.headline),
            **({"sample_recommendations": dg.MetadataValue.md(samples.markdown)} if samples else {}),
        }
    )


CHECKS = [evaluation_enough_strata, evaluation_beats_chance]
