"""Where data lives: the DuckDB warehouse file and the artifacts folder (models, codebooks, reports)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from semid_pipeline import config as core_config
from semid_pipeline import warehouse

from .runs import register_run_process


class DuckDBWarehouse(dg.ConfigurableResource):
    """The DuckDB file every stage reads and writes (``SEMID_WAREHOUSE``).

    Connections are short: open, one transaction, close. DuckDB admits one writing process per
    file, so writing assets share the ``warehouse`` concurrency pool (limit 1, ``dagster.yaml``).
    """

    path: str = core_config.warehouse_from_env()

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        register_run_process(context)

    @contextmanager
    def connect(self, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        with warehouse.connect(self.path, read_only=read_only) as con:
            yield con


class ArtifactStore(dg.ConfigurableResource):
    """Folder for artifacts the UI links to: feature transforms, codebooks, checkpoints, reports."""

    root: str = core_config.artifacts_from_env()

    def path(self, *parts: str) -> Path:
        p = Path(self.root).joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p
