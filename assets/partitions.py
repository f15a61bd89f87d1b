"""Partitions of the grid, read from ``semid.toml`` at load time (edit the file, reload the code location).

- ``semantic_ids``: one partition per ID scheme: ``id`` (the per-track baseline: a one-level ID
  with k = number of tracks) and ``<scheme>-k<k>`` for each configured codebook size.
- ``recommender`` / ``evaluation``: ID scheme × hidden size h. Dagster orders the dimensions
  alphabetically, so keys read ``<h>|<scheme>``, e.g. ``64|v1-k256``.
"""


import dagster as dg

from semid_pipeline.config import SemidConfig, load_config

CONFIG: SemidConfig = load_config()


def scheme_keys(cfg: SemidConfig = CONFIG) -> list[str]:
    return cfg.grid.model_schemes(cfg.semantic_ids)


scheme_partitions = dg.StaticPartitionsDefinition(scheme_keys())
grid_partitions = dg.MultiPartitionsDefinition(
    {
        "scheme": dg.StaticPartitionsDefinition(scheme_keys()),
        "h": dg.StaticPartitionsDefinition([str(h) for h in CONFIG.grid.hidden_sizes]),
    }
)


def grid_key(scheme: str, h: int | str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"scheme": scheme, "h": str(h)})


def split_grid_key(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> tuple[str, int]:
    key = context.partition_key
    if isinstance(key, dg.MultiPartitionKey):
        dims = key.keys_by_dimension
    else:  # plain "h|scheme" string
        h, scheme = str(key).split("|")
        dims = {"h": h, "scheme": scheme}
    return dims["scheme"], int(dims["h"])
