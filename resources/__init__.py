"""Dagster resources: the DuckDB warehouse, the artifact store, the data-set choice and compute settings."""

from .compute import ComputeResource
from .dataset import DatasetResource
from .storage import ArtifactStore, DuckDBWarehouse

__all__ = ["ArtifactStore", "ComputeResource", "DatasetResource", "DuckDBWarehouse"]
