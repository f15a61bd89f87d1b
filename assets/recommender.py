"""Stage 4: train one SASRec per (ID scheme, hidden size) partition."""


import hashlib
import json
import warnings
from dataclasses import asdict

import dagster as dg
import pandas as pd

from resources import ArtifactStore, ComputeResource, DuckDBWarehouse
from semid_pipeline import report as report_mod
from semid_pipeline import semantic_ids as sid
from semid_pipeline import splits as splits_mod
from semid_pipeline import train as train_mod
from semid_pipeline.warehouse import get_meta

from ._meta import md_table
from .partitions import CONFIG, grid_partitions, split_grid_key
from .semantic_ids import semantic_ids


def model_dir(artifacts: ArtifactStore, scheme: str, h: int, fingerprint: str):
    return artifacts.path("models", f"{scheme}__h{h}", fingerprint[:12])


def run_fingerprint(dataset_fp: str, id_hash: str, scheme: str, h: int) -> str:
    """Same data + same ID table + same config → same folder, so a re-run resumes its checkpoint."""
    payload = json.dumps(
        {"data": dataset_fp, "ids": id_hash, "scheme": scheme, "h": h, "train": asdict(CONFIG.train), "split": asdict(CONFIG.split)},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def load_training_inputs(warehouse: DuckDBWarehouse, scheme: str):
    with warehouse.connect(read_only=True) as con:
        dataset_fp = get_meta(con, "dataset_fingerprint")
        splits = splits_mod.load_splits(con, CONFIG.split)
        id_table, id_hash = sid.read_semantic_ids(con, scheme)
    return dataset_fp, splits, id_table, id_hash


with warnings.catch_warnings():  # the mapping is marked beta; it is the documented way to map one dimension
    warnings.simplefilter("ignore", dg.BetaWarning)
    BY_SCHEME = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="scheme")


@dg.asset(
    partitions_def=grid_partitions,
    ins={"semantic_ids": dg.AssetIn(key=semantic_ids.key, partition_mapping=BY_SCHEME, dagster_type=dg.Nothing)},
    group_name="recommender",
    kinds={"pytorch"},
    pool="training",
    description="SASRec over positive/negative feedback with the partition's track representation "
    "(`id` = one row per track; semantic IDs = sum of per-level codeword embeddings + tie).",
)
def recommender(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, artifacts: ArtifactStore, compute: ComputeResource):
    scheme, h = split_grid_key(context)
    device = compute.configure_torch()
    dataset_fp, splits, id_table, id_hash = load_training_inputs(warehouse, scheme)
    fp = run_fingerprint(dataset_fp, id_hash, scheme, h)
    out_dir = model_dir(artifacts, scheme, h, fp)
    context.log.info(f"training {scheme} h={h} on {device}; checkpoints in {out_dir}")
    result = train_mod.train_recommender(
        representation=scheme,
        hidden=h,
        splits=splits,
        id_table=None if scheme == "id" else id_table,
        id_table_hash=id_hash,
        cfg=CONFIG.train,
        out_dir=out_dir,
        log=context.log.info,
        device=device,
    )
    curve = pd.DataFrame(result.history)
    (out_dir / "result.json").write_text(json.dumps({"fingerprint": fp, "dataset_fingerprint": dataset_fp}))
    params = result.parameter_counts
    png = report_mod.plot_training_curve(result.history, out_dir / "training_curve.png", title=f"{scheme}, h={h}")
    return dg.MaterializeResult(
        metadata={
            "model_dir": dg.MetadataValue.path(str(out_dir)),
            "params/total": dg.MetadataValue.int(int(params["total"])),
            "params/track_representation": dg.MetadataValue.int(int(params["track_representation"])),
            "best_epoch": dg.MetadataValue.int(int(result.best_epoch)),
            "best_val_auc": dg.MetadataValue.float(float(result.best_val_auc)),
            "wall_seconds": dg.MetadataValue.float(float(result.wall_seconds)),
            "events_per_s": dg.MetadataValue.float(float(result.events_per_s)),
            "training_curve": md_table(curve),
            "training_curve_plot": dg.MetadataValue.md(f"![training curve]({report_mod.png_data_uri(png)})"),
            "training_curve_png": dg.MetadataValue.path(str(png)),
            "config": dg.MetadataValue.json(result.config),
            "id_table_hash": dg.MetadataValue.text(id_hash),
        },
        data_version=dg.DataVersion(fp[:16]),
    )
