"""Stage 5: evaluate each trained partition on the test period; assemble the experiment report."""


import json
from pathlib import Path

import dagster as dg
import pandas as pd

from resources import ArtifactStore, ComputeResource, DuckDBWarehouse
from semid_pipeline import experiment
from semid_pipeline import report as report_mod
from semid_pipeline import train as train_mod
from semid_pipeline.config import artifacts_from_env
from semid_pipeline.warehouse import get_meta

from ._meta import md_table, number
from .partitions import CONFIG, grid_partitions, split_grid_key
from .recommender import load_training_inputs, model_dir, recommender, run_fingerprint


def evaluations_dir(artifacts: ArtifactStore, dataset_fp: str) -> Path:
    return artifacts.path("evaluations", dataset_fp[:12])


def report_dir(root: str | None = None) -> Path:
    return Path(root or artifacts_from_env()) / "report"


def _baselines(artifacts: ArtifactStore, dataset_fp: str, splits, view) -> dict:
    """Model-free baselines depend only on the data: computed once per data set, then cached."""
    path = artifacts.path("baselines") / f"{dataset_fp[:12]}.json"
    if path.exists():
        return json.loads(path.read_text())
    out = experiment.baseline_records(splits, view, CONFIG.eval)
    path.write_text(json.dumps(out, indent=1))
    return out


@dg.asset(
    partitions_def=grid_partitions,
    deps=[recommender],
    group_name="evaluation",
    kinds={"pytorch", "scikit-learn"},
    pool="training",
    description="Test-period stratified AUC with bootstrap CI, AUC by history length, cold-start AUC, "
    "Recall/NDCG@10 over the whole catalogue, diversity of top-10 lists, parameters, baselines.",
)
def evaluation(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, artifacts: ArtifactStore, compute: ComputeResource):
    scheme, h = split_grid_key(context)
    compute.configure_torch()
    dataset_fp, splits, id_table, id_hash = load_training_inputs(warehouse, scheme)
    with warehouse.connect(read_only=True) as con:
        dataset = get_meta(con, "dataset")
        view = experiment.catalog_view(con, splits)
    mdir = model_dir(artifacts, scheme, h, run_fingerprint(dataset_fp, id_hash, scheme, h))
    if not (mdir / "model.pt").exists():
        raise dg.Failure(
            description=f"no trained model for {context.partition_key} on the current data and ID table "
            f"(expected {mdir}); materialize `recommender` for this partition first"
        )
    model = train_mod.load_recommender(
        mdir, splits_vocab=splits.vocab, id_table=None if scheme == "id" else id_table, id_table_hash=id_hash
    )
    result = experiment.evaluate_model(model, splits, view, CONFIG.eval, max_len=CONFIG.train.max_len)
    baselines = _baselines(artifacts, dataset_fp, splits, view)
    record = experiment.partition_record(
        str(context.partition_key), scheme, h, result, baselines=baselines,
        dataset=str(dataset), dataset_fingerprint=dataset_fp, id_table_hash=id_hash,
    )
    out = evaluations_dir(artifacts, dataset_fp) / f"{h}_{scheme}.json"
    out.write_text(json.dumps(record, indent=1))
    test = result["test"]
    context.log.info(
        f"{context.partition_key}: test AUC {test['auc']:.4f} [{test['ci_lo']:.4f}, {test['ci_hi']:.4f}] "
        f"over {test['n_strata']} strata"
    )
    return dg.MaterializeResult(
        metadata={
            "test_auc": number(test["auc"]),
            "test_ci_lo": number(test["ci_lo"]),
            "test_ci_hi": number(test["ci_hi"]),
            "n_strata": number(test["n_strata"]),
            "stratum_kind": dg.MetadataValue.text(str(result.get("stratum_kind"))),
            "val_auc": number(result["val"].get("auc")),
            "cold_start_auc": number((test.get("cold_start") or {}).get("auc")),
            "recall@10": number(result.get("ranking", {}).get(f"recall@{CONFIG.eval.topk}")),
            "ndcg@10": number(result.get("ranking", {}).get(f"ndcg@{CONFIG.eval.topk}")),
            "params/total": number(result["params_total"]),
            "params/track_representation": number(result["params_track"]),
            "by_history": md_table(pd.DataFrame(test.get("by_history", []))),
            "diversity": dg.MetadataValue.json(result.get("diversity", {})),
            "baselines": dg.MetadataValue.json(baselines),
            "record": dg.MetadataValue.path(str(out)),
        }
    )


def _record(context: dg.AssetCheckExecutionContext, artifacts: ArtifactStore, warehouse: DuckDBWarehouse) -> dict:
    scheme, h = split_grid_key(context)
    with warehouse.connect(read_only=True) as con:
        dataset_fp = get_meta(con, "dataset_fingerprint")
    return json.loads((evaluations_dir(artifacts, dataset_fp) / f"{h}_{scheme}.json").read_text())


@dg.asset_check(asset=evaluation, blocking=True, description="Enough strata evaluated ([eval] min_strata) and a CI present.")
def evaluation_enough_strata(context: dg.AssetCheckExecutionContext, artifacts: ArtifactStore, warehouse: DuckDBWarehouse):
    test = _record(context, artifacts, warehouse)["test"]
    n = int(test.get("n_strata") or 0)
    has_ci = test.get("ci_lo") is not None and test.get("ci_hi") is not None
    return dg.AssetCheckResult(
        passed=n >= CONFIG.eval.min_strata and has_ci,
        metadata={"n_strata": n, "min_strata": CONFIG.eval.min_strata, "ci_present": has_ci},
    )


@dg.asset_check(asset=evaluation, description="Warns when the test AUC's 95% CI does not lie above 0.5.")
def evaluation_beats_chance(context: dg.AssetCheckExecutionContext, artifacts: ArtifactStore, warehouse: DuckDBWarehouse):
    test = _record(context, artifacts, warehouse)["test"]
    lo = test.get("ci_lo")
    return dg.AssetCheckResult(
        passed=lo is not None and lo > 0.5,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"ci_lo": number(lo), "auc": number(test.get("auc"))},
    )


@dg.asset(
    deps=[evaluation],
    group_name="evaluation",
    kinds={"html"},
    pool="training",
    automation_condition=dg.AutomationCondition.eager(),
    description="Tables and the paper's three figures across every evaluated partition of the current "
    "data set, as a self-contained HTML report plus PNGs (rendered from stored evaluations, no training).",
)
def experiment_report(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, artifacts: ArtifactStore):
    with warehouse.connect(read_only=True) as con:
        dataset = get_meta(con, "dataset")
        dataset_fp = get_meta(con, "dataset_fingerprint")
    records = report_mod.load_records(evaluations_dir(artifacts, dataset_fp))
    if not records:
        raise dg.Failure(description="no evaluated partitions for the current data set: materialize `evaluation` first")
    prod = f"{CONFIG.production.hidden}|{CONFIG.production.scheme}"
    out = report_dir(artifacts.root)
    art = report_mod.render_report(records, out, dataset=str(dataset), production=prod)
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
        }
    )


CHECKS = [evaluation_enough_strata, evaluation_beats_chance]
