"""Which data set the pipeline ingests: one setting, ``SEMID_DATASET`` or the resource config in the UI."""

from __future__ import annotations

from dataclasses import replace

import dagster as dg

from semid_pipeline import config as core_config


class DatasetResource(dg.ConfigurableResource):
    """``synthetic`` (default; ``synthetic:tiny|demo|bench[:users|sessions]``),
    ``mssd:<folder or files>`` (Spotify MSSD), ``events:<events file>[,<tracks file>]`` or
    ``spotify-history:<folder or files>`` (Spotify extended streaming-history JSON exports).

    ``spec`` and ``data_dir`` default to ``SEMID_DATASET`` / ``SEMID_DATA_DIR``, read when a run
    starts. The ingestion knobs below are the same settings as ``[ingest]`` in ``semid.toml``;
    values set here (e.g. in the launchpad) win over the file.
    """

    spec: str | None = None
    data_dir: str | None = None  # where synthetic files are written
    context_filter: str | None = None
    skip_definition: str | None = None
    rating_threshold: float | None = None
    neutral_band: float | None = None
    stratum: str | None = None  # per-user data: "user" or "session" strata
    session_gap_minutes: float | None = None

    @property
    def data_folder(self) -> str:
        return self.data_dir or core_config.data_dir_from_env()

    def parsed(self) -> core_config.DatasetSpec:
        return core_config.parse_dataset_spec(self.spec or core_config.dataset_from_env())

    def ingest_config(self, base: core_config.IngestConfig) -> core_config.IngestConfig:
        overrides = {
            "context_filter": self.context_filter,
            "skip_definition": self.skip_definition,
            "rating_threshold": self.rating_threshold,
            "neutral_band": self.neutral_band,
            "stratum": self.stratum,
            "session_gap_minutes": self.session_gap_minutes,
        }
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})
