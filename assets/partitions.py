"""Partitions of the grid, read from ``semid.toml`` when the code location loads.

- ``semantic_ids``: one partition per ID scheme (``semid_pipeline.schemes``): ``id`` (the
  per-track baseline) and ``<family>-k<k>`` for each configured codebook size.
- ``recommender`` / ``evaluation``: ID scheme × hidden size h. Dagster orders the dimensions
  alphabetically, so keys read ``<h>|<scheme>``, e.g. ``64|v1-k256`` (``GridCell.partition_key``).

The grid itself is structure and needs a code-location reload to change; every other setting is
read by ``settings()`` when a run starts.
"""


import dagster as dg

from semid_pipeline.config import SemidConfig, load_config
from semid_pipeline.schemes import GridCell, IdScheme

CONFIG: SemidConfig = load_config()  # the grid's shape, fixed while the code location is loaded


def settings() -> SemidConfig:
    """``semid.toml`` (or ``SEMID_CONFIG``) as it is when the run starts."""
    return load_config()


def scheme_keys(cfg: SemidConfig = CONFIG) -> list[str]:
    return cfg.grid.model_schemes(cfg.semantic_ids)


scheme_partitions = dg.StaticPartitionsDefinition(scheme_keys())
grid_partitions = dg.MultiPartitionsDefinition(
    {
        "scheme": dg.StaticPartitionsDefinition(scheme_keys()),
        "h": dg.StaticPartitionsDefinition([str(h) for h in CONFIG.grid.hidden_sizes]),
    }
)


def grid_key(cell: GridCell) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey(cell.dimensions)


def scheme_of(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> IdScheme:
    return IdScheme.parse(context.partition_key)


def cell_of(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> GridCell:
    return GridCell.parse(context.partition_key)
