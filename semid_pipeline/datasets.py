"""Routing a data-set spec (``SEMID_DATASET``) to the ingestion of its kind.

Kept out of ``ingest`` so ingestion never depends on the synthetic world: this module is the
only place that knows every kind (``mssd``, ``events``, ``spotify-history``, ``synthetic``).
"""

from __future__ import annotations

from pathlib import Path

from . import warehouse as wh
from .config import DatasetSpec, IngestConfig
from .errors import ConfigError
from .ingest import IngestionResult, ingest_events, ingest_mssd, ingest_spotify_history, resolve_mssd_paths

__all__ = ["ingest_dataset"]

ORACLE_META = "oracle_file"  # warehouse meta key: path of the synthetic world's oracle.parquet ("" = none)


def _locate(raw: str, data_dir: Path) -> str:
    """A relative path that does not exist from here but does under ``data_dir`` is taken from there."""
    p = Path(raw).expanduser()
    if not p.is_absolute() and not p.exists() and (data_dir / p).exists():
        return str(data_dir / p)
    return str(p)


def ingest_dataset(
    spec: DatasetSpec, *, warehouse: str | Path, cfg: IngestConfig, data_dir: str | Path, validate: bool = True
) -> IngestionResult:
    """Ingest the data set ``spec`` into the warehouse file, replacing whatever it held — only when
    the new tables pass the blocking quality suites (``validate``, the pipeline's way): otherwise
    nothing is committed and the previous data set stays whole (``DataQualityError``)."""
    res, oracle = _ingest_kind(spec, warehouse=warehouse, cfg=cfg, data_dir=Path(data_dir), validate=validate)
    with wh.connect(warehouse) as con:  # after a committed ingest only: a failed one leaves the meta as it was
        # the generator's own P(positive) per event (evaluation reports it as the AUC ceiling); "" = none
        wh.set_meta(con, ORACLE_META, str(Path(oracle).resolve()) if oracle else "")
    return res


def _ingest_kind(spec: DatasetSpec, *, warehouse: str | Path, cfg: IngestConfig, data_dir: Path,
                 validate: bool) -> tuple[IngestionResult, str | Path | None]:
    """(ingestion result, the synthetic world's oracle file or None)."""
    if spec.kind == "mssd":
        logs, tracks = resolve_mssd_paths([_locate(p, data_dir) for p in spec.paths])
        with wh.connect(warehouse) as con:
            return (ingest_mssd(con, logs, tracks, dataset_key=spec.key, cfg=cfg, validate=validate), None)
    if spec.kind == "events":
        ev = [Path(_locate(spec.paths[0], data_dir))]
        tr = [Path(_locate(p, data_dir)) for p in spec.paths[1:2]]
        with wh.connect(warehouse) as con:
            return (ingest_events(con, ev, tr, dataset_key=spec.key, cfg=cfg, validate=validate), None)
    if spec.kind == "spotify-history":
        with wh.connect(warehouse) as con:
            return ingest_spotify_history(con, [_locate(p, data_dir) for p in spec.paths], dataset_key=spec.key,
                                          cfg=cfg, validate=validate), None
    if spec.kind == "synthetic":
        from .synthetic import write_world

        manifest = write_world(spec.preset, data_dir / "synthetic" / spec.preset, formats=(spec.format,))
        with wh.connect(warehouse) as con:
            if spec.format == "sessions":
                res = ingest_mssd(con, list(manifest.session_logs), list(manifest.session_tracks),
                                  dataset_key=spec.key, cfg=cfg, validate=validate)
            else:
                tracks = [Path(manifest.users_tracks)] if manifest.users_tracks else []
                res = ingest_events(con, [Path(manifest.users_events)], tracks, dataset_key=spec.key, cfg=cfg,
                                    validate=validate)
        return res, (manifest.sessions_oracle if spec.format == "sessions" else manifest.users_oracle)
    raise ConfigError(f"unknown data-set kind {spec.kind!r}")
