"""Stage 4: train one SASRec per (ID scheme, hidden size) partition (``stages.train_cell``) in an
external process launched through Dagster Pipes (``semid_workers.train_cell``; torchrun when
``[train] processes`` > 1). The worker reports the metadata and data version."""


import os
import warnings

import dagster as dg

from resources import ArtifactStore, ComputeResource, DuckDBWarehouse
from resources.environments import GPU_TRAINING_TAGS
from semid_workers.train_cell import launch_command

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
    op_tags=GPU_TRAINING_TAGS,  # Kubernetes: the training pod asks for a GPU (resources/environments.py)
    description="SASRec over positive/negative feedback with the partition's ID scheme "
    "(`id` = one row per track; semantic IDs = sum of per-level codeword embeddings + tie).",
)
def recommender(context: dg.AssetExecutionContext, pipes_client: dg.PipesSubprocessClient, warehouse: DuckDBWarehouse,
                artifacts: ArtifactStore, compute: ComputeResource):
    cfg = settings()
    extras = {
        "partition_key": context.partition_key,
        "warehouse": warehouse.file,
        "artifacts": str(artifacts.layout().root),
        "config": os.environ.get("SEMID_CONFIG"),
        "device": compute.device_name(),
        "threads": compute.effective_threads,
    }
    command = launch_command(cfg.train.processes)
    context.log.info(f"training {cell_of(context).scheme.key}: {' '.join(command[1:])}")
    return pipes_client.run(context=context, command=command, extras=extras).get_materialize_result()
