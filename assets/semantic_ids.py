"""Stage 3: `content_features` → `semantic_ids` per ID scheme (partition), with codebook checks.

A partition that already holds a table for the current data set is *extended*, not refitted:
tracks that arrived since get IDs from their content through the frozen encoder and codebooks
(cold start), with tie values after the largest one taken, so no existing ID ever changes. Set
``refit: true`` in the run config to train a new codebook (which changes IDs and so invalidates
models trained on the old table: they refuse to load it).
"""


import json
from pathlib import Path

import dagster as dg
import pandas as pd

from resources import ArtifactStore, DuckDBWarehouse
from semid_pipeline import features, id_gates, semantic_ids as sid
from semid_pipeline.schema import CONTENT_FEATURES, FEEDBACK_EVENTS, TRACK_CATALOG
from semid_pipeline.warehouse import get_meta, table_exists
from semid_pipeline.schema import semantic_id_table

from ._meta import flat_numbers, md_table
from .partitions import CONFIG, scheme_partitions


class SemanticIdRunConfig(dg.Config):
    refit: bool = False  # train a new codebook even if this partition already has IDs


def id_scheme_table(track_ids: list[str]) -> pd.DataFrame:
    """The `id` baseline as a one-level "semantic ID" with k = number of tracks (the paper's view)."""
    return pd.DataFrame({"track_id": track_ids, "c1": range(len(track_ids)), "tie": 0})


def _provenance(art_dir: Path) -> dict:
    p = art_dir / "provenance.json"
    return json.loads(p.read_text()) if p.exists() else {}


def materialize_semantic_ids(
    key: str, *, warehouse: DuckDBWarehouse, artifacts: ArtifactStore, refit: bool, log
) -> tuple[pd.DataFrame, str, dict, str]:
    """Fit (or extend) one partition's ID table; returns (table, content hash, metrics, mode)."""
    art_dir = artifacts.path("semantic_ids", key)
    with warehouse.connect(read_only=True) as con:
        dataset = get_meta(con, "dataset")
        track_ids, X = features.read_content_features(con)
        existing = None
        if table_exists(con, semantic_id_table(key)):
            existing, _ = sid.read_semantic_ids(con, key)
    prov = _provenance(art_dir)
    reuse = existing is not None and not refit and prov.get("dataset") == dataset
    k = len(track_ids) if key == "id" else sid.parse_partition_key(key)[1]
    recon = None
    if reuse:
        known = set(existing["track_id"])
        new_ids = [t for t in track_ids if t not in known]
        if new_ids and key == "id":
            start = int(existing["c1"].max()) + 1
            extra = pd.DataFrame({"track_id": new_ids, "c1": range(start, start + len(new_ids)), "tie": 0})
            table = pd.concat([existing, extra], ignore_index=True)
        elif new_ids:
            pos = {t: i for i, t in enumerate(track_ids)}
            X_new = X[[pos[t] for t in new_ids]]
            scheme, _ = sid.parse_partition_key(key)
            added = sid.assign_new_tracks(
                scheme=scheme, artifact_dir=art_dir, existing=existing, new_track_ids=new_ids,
                X_new=X_new, seed=CONFIG.semantic_ids.seed,
            )
            table = pd.concat([existing, added[~added["track_id"].isin(known)]], ignore_index=True)
        else:
            table = existing
        mode = f"cold-start: {len(new_ids)} new tracks" if new_ids else "unchanged"
        k = int(table["c1"].max()) + 1 if key == "id" else k
    elif key == "id":
        table, mode = id_scheme_table(track_ids), "fit"
    else:
        scheme, k = sid.parse_partition_key(key)
        res = sid.fit_semantic_ids(
            scheme=scheme, k=k, track_ids=track_ids, X=X, cfg=CONFIG.semantic_ids, artifact_dir=art_dir
        )
        table, mode = res.table, f"fit in {res.fit_seconds:.1f}s"
        recon = res.metrics.get("reconstruction_error")
    table = table.sort_values("track_id").reset_index(drop=True)
    metrics = sid.codebook_quality(
        table, k, X=None if key == "id" else X, recon_error=recon,
        max_tie_embeddings=CONFIG.semantic_ids.max_tie_embeddings,
    )
    with warehouse.connect() as con:
        content_hash = sid.write_semantic_ids(con, key, table)
    (art_dir / "provenance.json").write_text(json.dumps({"dataset": dataset, "content_hash": content_hash}))
    log(f"semantic_ids[{key}]: {mode}; {len(table)} tracks; hash {content_hash[:12]}")
    return table, content_hash, metrics, mode


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
    key = context.partition_key
    table, content_hash, metrics, mode = materialize_semantic_ids(
        key, warehouse=warehouse, artifacts=artifacts, refit=config.refit, log=context.log.info
    )
    levels = [c for c in table.columns if c.startswith("c")]
    per_level = pd.DataFrame(
        {
            "level": levels,
            "utilization": [metrics.get("utilization", {}).get(c, float("nan")) for c in levels],
            "entropy_bits": [metrics.get("entropy_bits", {}).get(c, float("nan")) for c in levels],
        }
    )
    return dg.MaterializeResult(
        metadata={
            "mode": dg.MetadataValue.text(mode),
            "content_hash": dg.MetadataValue.text(content_hash),
            "dagster/row_count": dg.MetadataValue.int(len(table)),
            "table": dg.MetadataValue.text(semantic_id_table(key)),
            "per_level": md_table(per_level),
            **flat_numbers("quality/", {k: v for k, v in metrics.items() if not isinstance(v, dict)}),
            "sample_ids": md_table(table.head(10)),
        },
        data_version=dg.DataVersion(content_hash[:16]),
    )


def _load_table(warehouse: DuckDBWarehouse, key: str) -> pd.DataFrame:
    with warehouse.connect(read_only=True) as con:
        return sid.read_semantic_ids(con, key)[0]


@dg.asset_check(asset=semantic_ids, blocking=True, description="track_id ↔ (codes, tie) is one-to-one.")
def ids_one_to_one(context: dg.AssetCheckExecutionContext, warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
    ok, details = sid.check_one_to_one(_load_table(warehouse, context.partition_key))
    return dg.AssetCheckResult(passed=bool(ok), metadata={"details": dg.MetadataValue.json(details)})


@dg.asset_check(asset=semantic_ids, blocking=True, description="Every track in feedback_events has an ID.")
def ids_cover_events(context: dg.AssetCheckExecutionContext, warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
    with warehouse.connect(read_only=True) as con:
        table = sid.read_semantic_ids(con, context.partition_key)[0]
        events = [r[0] for r in con.execute(f"SELECT DISTINCT track_id FROM {FEEDBACK_EVENTS}").fetchall()]
    ok, details = sid.check_coverage(table, events)
    return dg.AssetCheckResult(passed=bool(ok), metadata={"details": dg.MetadataValue.json(details)})


@dg.asset_check(
    asset=semantic_ids,
    blocking=True,
    description="Collapse guard: level-1 utilization ≥ min_level1_utilization whenever k ≤ tracks/4.",
)
def ids_no_collapse(context: dg.AssetCheckExecutionContext, warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
    key = context.partition_key
    table = _load_table(warehouse, key)
    k = len(table) if key == "id" else sid.parse_partition_key(key)[1]
    ok, details = sid.check_collapse(table, k, len(table), CONFIG.semantic_ids.min_level1_utilization)
    return dg.AssetCheckResult(passed=bool(ok), metadata={"details": dg.MetadataValue.json(details)})


@dg.asset_check(
    asset=semantic_ids,
    blocking=True,
    description="Distinct tuples: unique-tuple share ≥ min_unique_tuple_share (when k^L ≥ 10 × tracks) and "
    "max tie ≤ max_tie_limit; on failure, the largest collision groups with their titles and artists.",
)
def ids_distinct_tuples(context: dg.AssetCheckExecutionContext, warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
    key = context.partition_key
    with warehouse.connect(read_only=True) as con:
        table = sid.read_semantic_ids(con, key)[0]
        catalog = con.execute(f"SELECT * FROM {TRACK_CATALOG}").df() if table_exists(con, TRACK_CATALOG) else None
    k = len(table) if key == "id" else sid.parse_partition_key(key)[1]
    cfg = CONFIG.semantic_ids
    ok, details = id_gates.check_distinct(
        table, k, min_unique_share=cfg.min_unique_tuple_share, max_tie_limit=cfg.max_tie_limit, catalog=catalog
    )
    groups = pd.DataFrame(
        [{"codes": str(g["codes"]), "size": g["size"], **{f"track{i + 1}": " / ".join(
            str(t.get(c)) for c in ("title", "artist_id") if t.get(c) is not None) or t["track_id"]
            for i, t in enumerate(g["tracks"])}} for g in details["largest_collision_groups"]]
    )
    return dg.AssetCheckResult(
        passed=bool(ok),
        metadata={
            "unique_tuple_share": dg.MetadataValue.float(float(details["unique_tuple_share"])),
            "max_tie": dg.MetadataValue.int(int(details["max_tie"])),
            "largest_collision_groups": md_table(groups) if len(groups) else dg.MetadataValue.text("none"),
            "details": dg.MetadataValue.json(details),
        },
    )
