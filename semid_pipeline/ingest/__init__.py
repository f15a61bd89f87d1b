"""Ingestion: raw feedback files → ``feedback_events`` + ``track_catalog`` (+ ``ingestion_record``).

Two source formats, one module each: Spotify MSSD session logs (``mssd``) and per-user events
with optional tracks files (``events``, ``tracks``). ``append`` adds landed files to the current
data set. Every ingestion runs in ONE warehouse transaction: files are sniffed (``files``),
staged into temp tables and validated, and only then does ``publish`` replace the tables and
meta keys. Any problem raises :class:`~semid_pipeline.errors.InputDataError` naming the file,
the column and the first offending rows (``diagnose``), and the warehouse stays as it was.
Routing a ``SEMID_DATASET`` spec to these lives in :mod:`semid_pipeline.datasets`.

Where things live: ``files`` (exists, gzip, magic bytes, UTF-8, sha256, header), ``diagnose``
(first offending rows → error), ``timestamps`` (to UTC, epoch units, absurd dates), ``tables``
(stage one CSV/Parquet file), ``mssd``, ``events``, ``tracks``, ``paths`` (folder → files),
``append``, ``publish`` (replace the tables in one transaction), ``records`` (what is reported).
"""

from .append import append_files
from .events import NEGATIVE_SPELLINGS, POSITIVE_SPELLINGS, ingest_events
from .mssd import ingest_mssd
from .paths import resolve_mssd_paths
from .records import INGESTION_RECORD_COLUMNS, FileRecord, IngestionResult
from .spotify import ingest_spotify_history


def ingest_dataset(*args, **kwargs):
    """Moved to :func:`semid_pipeline.datasets.ingest_dataset` (kept importable from here)."""
    from ..datasets import ingest_dataset as _ingest_dataset

    return _ingest_dataset(*args, **kwargs)


__all__ = [
    "FileRecord",
    "IngestionResult",
    "INGESTION_RECORD_COLUMNS",
    "ingest_mssd",
    "ingest_events",
    "ingest_spotify_history",
    "resolve_mssd_paths",
    "ingest_dataset",
    "append_files",
    "POSITIVE_SPELLINGS",
    "NEGATIVE_SPELLINGS",
]
