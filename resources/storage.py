"""Where data lives: the DuckDB warehouse file and the artifacts folder (models, codebooks, reports).

Defaults come from ``SEMID_WAREHOUSE`` / ``SEMID_ARTIFACTS`` read when a run starts (not when the
code location loads), so changing the environment needs no reload.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import duckdb

from semid_pipeline import config as core_config
from semid_pipeline import warehouse
from semid_pipeline.artifacts import ArtifactLayout

from .runs import register_run_process


class DuckDBWarehouse(dg.ConfigurableResource):
    """The DuckDB file every stage reads and writes (``path``; default ``SEMID_WAREHOUSE``).

    Connections are short: open, one transaction, close. DuckDB admits one writing process per
    file, so writing assets share the ``warehouse`` concurrency pool (limit 1, ``dagster.yaml``).
    """

    path: str | None = None

    @property
    def file(self) -> str:
        path = self.path or core_config.warehouse_from_env()
        if path.startswith("md:"):
            raise ValueError(
                f"warehouse {path!r}: MotherDuck connection strings are not supported yet (the ingestion "
                "claim and lock files live next to the warehouse file); use a DuckDB file on a volume, "
                "see deploy/README.md")
        return path

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        register_run_process(context)

    @contextmanager
    def connect(self, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        with warehouse.connect(self.file, read_only=read_only) as con:
            yield con


class ArtifactStore(dg.ConfigurableResource):
    """Folder for artifacts the UI links to (``root``; default ``SEMID_ARTIFACTS``); the layout
    inside it is ``semid_pipeline.artifacts.ArtifactLayout``."""

    root: str | None = None

    def layout(self) -> ArtifactLayout:
        from pathlib import Path

        root = self.root or core_config.artifacts_from_env()
        if "://" in root:
            raise ValueError(
                f"artifacts root {root!r}: a URL; artifacts are written with atomic renames (checkpoints, "
                "records), so the root must be a mounted folder (a ReadWriteMany volume; see deploy/README.md)")
        return ArtifactLayout(root=Path(root))
