"""What an ingestion reports: one ``FileRecord`` per source file, one ``IngestionResult`` per run."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import pandas as pd


@dataclass(frozen=True)
class FileRecord:
    """One source file: its identity (size, sha256), rows read/kept/rejected, and why.

    ``reject_reasons`` counts dropped rows by reason; ``notes`` counts rows that were kept but
    deserve a look (e.g. events whose track is missing from the tracks files); ``examples`` holds,
    per reason or note, the first offending rows."""

    path: str
    kind: str  # "log" | "tracks" | "events"
    size_bytes: int
    sha256: str
    rows_read: int
    rows_kept: int
    rows_rejected: int
    reject_reasons: dict[str, int]
    notes: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)


RECORD_FRAME_COLUMNS = [
    "path", "kind", "size_bytes", "sha256", "rows_read", "rows_kept", "rows_rejected", "reject_reasons",
    "notes", "examples",
]
_JSON_FIELDS = ("reject_reasons", "notes", "examples")


@dataclass(frozen=True)
class IngestionResult:
    dataset: str
    fingerprint: str
    files: tuple[FileRecord, ...]
    n_events: int
    n_tracks: int
    n_strata: int
    n_positive: int
    stratum_kind: str  # "session" | "user"

    def to_frame(self) -> pd.DataFrame:
        """The per-file record, for display."""
        rows = []
        for f in self.files:
            d = asdict(f)
            for k in _JSON_FIELDS:
                d[k] = json.dumps(d[k], sort_keys=True)
            rows.append(d)
        return pd.DataFrame(rows, columns=RECORD_FRAME_COLUMNS)


INGESTION_RECORD_COLUMNS: dict[str, str] = {
    "dataset": "VARCHAR",
    "file_path": "VARCHAR",
    "kind": "VARCHAR",
    "size_bytes": "BIGINT",
    "sha256": "VARCHAR",
    "rows_read": "BIGINT",
    "rows_kept": "BIGINT",
    "rows_rejected": "BIGINT",
    "reject_reasons": "VARCHAR",
    "notes": "VARCHAR",
    "examples": "VARCHAR",
}


def record_row(dataset_key: str, r: FileRecord) -> list:
    """The ``ingestion_record`` row of one file."""
    return [dataset_key, r.path, r.kind, r.size_bytes, r.sha256, r.rows_read, r.rows_kept, r.rows_rejected,
            *(json.dumps(getattr(r, k), sort_keys=True) for k in _JSON_FIELDS)]


RECORD_SELECT = ("file_path, kind, size_bytes, sha256, rows_read, rows_kept, rows_rejected, "
                 "reject_reasons, notes, examples")


def record_from_row(row: tuple) -> FileRecord:
    """The inverse of :func:`record_row` (``row`` as selected by ``RECORD_SELECT``)."""
    p, k, size, sha, rr, rk, rj, reasons, notes, examples = row
    return FileRecord(p, k, int(size), sha, int(rr), int(rk), int(rj), json.loads(reasons or "{}"),
                      json.loads(notes or "{}"), json.loads(examples or "{}"))
