"""Stage 4: train one SASRec per (ID scheme, hidden size) partition (``stages.train_cell``)."""


import warnings

import dagster as dg
import pandas as pd

from resources import ArtifactStore, ComputeResource, DuckDBWarehouse
from resources.environments import GPU_TRAINING_TAGS
from semid_pipeline import report as report_mod
from semid_pipeline import stages
from semid_pipeline.report_plots import plot_training_curve

from ._meta import md_table
from .partitions import cell_of, grid_partitions, settings
from .semantic_ids import semantic_ids

with warnings.catch_warnings():  # the mapping is marked beta; it is the documented way to map one dimension
    warnings.simplefilter("ignore", dg.BetaWarning)
    BY_SCHEME = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="scheme")


@dg.asset(
    partitions_def=grid_partitions,
    ins={"semantic_ids": dg.AssetIn(key=semantic_ids.key, partition_mapping=BY_SCHEME, dagster_type=dg.Nothing)},
    group_name="recommender",
    kinds={"pytorch"},
    pool="training",
    op_tags=GPU_TRAINING_TAGS,  # on Kubernetes: the training pod requests one GPU (deploy/README.md)
    description="SASRec over positive/negative feedback with the partition's ID scheme "
    "(`id` = one row per track; semantic IDs = sum of per-level codeword embeddings + tie).",
)
def recommender(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, artifacts: ArtifactStore, compute: ComputeResource):
    cell = cell_of(context)
    trained = stages.train_cell(
        warehouse=warehouse.file, layout=artifacts.layout(), cell=cell, cfg=settings(),
        device=compute.configure_torch(), log=context.log.info,
    )
    result, out_dir = trained.result, trained.model_dir
    params = result.parameter_counts
    png = plot_training_curve(result.history, out_dir / "training_curve.png", title=f"{cell.scheme}, h={cell.h}")
    return dg.MaterializeResult(
        metadata={
            "model_dir": dg.MetadataValue.path(str(out_dir)),
            "params/total": dg.MetadataValue.int(int(params["total"])),
            "params/track_representation": dg.MetadataValue.int(int(params["track_representation"])),
            "best_epoch": dg.MetadataValue.int(int(result.best_epoch)),
            "best_val_auc": dg.MetadataValue.float(float(result.best_val_auc)),
            "wall_seconds": dg.MetadataValue.float(float(result.wall_seconds)),
            "events_per_s": dg.MetadataValue.float(float(result.events_per_s)),
            "training_curve": md_table(pd.DataFrame(result.history)),
            "training_curve_plot": dg.MetadataValue.md(f"![training curve]({report_mod.png_data_uri(png)})"),
            "training_curve_png": dg.MetadataValue.path(str(png)),
            "config": dg.MetadataValue.json(result.config),
            "id_table_hash": dg.MetadataValue.text(trained.id_table_hash),
        },
        data_version=dg.DataVersion(trained.fingerprint[:16]),
    )
