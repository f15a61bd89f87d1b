"""Which data set the pipeline ingests: one setting, ``SEMID_DATASET`` or the resource config in the UI."""

from __future__ import annotations

import dagster as dg

from semid_pipeline import config as core_config


class DatasetResource(dg.ConfigurableResource):
    """``synthetic`` (default; ``synthetic:tiny|demo|bench[:users|sessions]``),
    ``mssd:<folder or files>`` (Spotify MSSD), ``events:<events file>[,<tracks file>]`` or
    ``spotify-history:<folder or files>`` (Spotify extended streaming-history JSON exports).

    The ingestion knobs below are the same settings as ``[ingest]`` in ``semid.toml``; values set
    here (e.g. in the launchpad) win over the file.
    """

    spec: str = core_config.dataset_from_env()
    data_dir: str = core_config.data_dir_from_env()  # where synthetic files are written (SEMID_DATA_DIR)
    context_filter: str | None = None
    skip_definition: str | None = None
    rating_threshold: float | None = None
    neutral_band: float | None = None
    stratum: str | None = None  # per-user data: "user" or "session" strata
    session_gap_minutes: float | None = None

    def parsed(self) -> core_config.DatasetSpec:
        return core_config.parse_dataset_spec(self.spec)

    def ingest_config(self, base: core_config.IngestConfig) -> core_config.IngestConfig:
        overrides = {
            k: v
            for k, v in {
                "context_filter": self.context_filter,
                "skip_definition": self.skip_definition,
                "rating_threshold": self.rating_threshold,
                "neutral_band": self.neutral_band,
                "stratum": self.stratum,
                "session_gap_minutes": self.session_gap_minutes,
            }.items()
            if v is not None
        }
        from dataclasses import replace

        return replace(base, **overrides)
