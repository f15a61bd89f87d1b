"""Appending landed files to the current data set (MSSD or per-user), all-or-nothing.

The data set's files plus the new ones are re-ingested in ONE transaction, the ``dataset`` meta
key keeps the original key (downstream stages see the same data set growing), and
``appended_files`` (meta, JSON list) names every landed file appended so far.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import duckdb

from .. import warehouse as wh
from ..config import IngestConfig
from ..errors import InputDataError
from ..schema import INGESTION_RECORD
from .events import ingest_events
from .files import check_exists, hash_file
from .mssd import ingest_mssd
from .paths import classify_landed
from .publish import Append, fingerprint, summarize
from .records import RECORD_SELECT, FileRecord, IngestionResult, record_from_row

_FORMAT_WORDS = {
    "mssd": "an MSSD session data set (log_*/tf_* files)",
    "events": "a per-user events data set (events*/tracks* csv/parquet files)",
}


def _current_result(con, key: str, records: list[FileRecord], cfg: IngestConfig, fmt: str) -> IngestionResult | None:
    """The summary of what the warehouse holds, if it is exactly what ``cfg`` would ingest (else None)."""
    fp = fingerprint(records, cfg, fmt)
    if fp != wh.get_meta(con, "dataset_fingerprint"):
        return None
    return summarize(con, dataset_key=key, fp=fp, records=records,
                     stratum_kind="session" if fmt == "mssd" else cfg.stratum)


def _landed(files: list[Path], fmt: str, key: str) -> list[tuple[Path, str]]:
    """Classify + check every landed file before touching anything."""
    out = []
    for f in files:
        f_fmt, kind = classify_landed(f)
        if f_fmt != fmt:
            raise InputDataError(
                f"landed file {f.name!r} belongs to {_FORMAT_WORDS[f_fmt]}, but the current data set {key!r} is "
                f"{_FORMAT_WORDS[fmt]}; only files of the same format can be appended (ingest the other "
                "format as a new data set instead)",
                file=str(f), column="(file name)",
            )
        check_exists(f, "landed")
        out.append((f, kind))
    return out


def append_files(con: duckdb.DuckDBPyConnection, files: Sequence[Path | str], *, cfg: IngestConfig,
                 validate: bool = True) -> IngestionResult:
    """Add landed files to the current data set, all-or-nothing.

    Landed files are classified by name (see ``paths.classify_landed``) and must be of the current
    data set's format. A landed file whose sha256 is already in ``ingestion_record`` (or repeats
    another landed file) is skipped; a file of the data set that changed on disk since it was
    ingested is an error. With ``validate`` (the pipeline's way) the blocking quality suites must pass
    on the combined data before anything is committed. Returns the summary of the whole data set."""
    files = [Path(f) for f in files]
    names = ", ".join(str(f) for f in files) or "(none)"
    key = wh.get_meta(con, "dataset")
    rows = []
    if key is not None and wh.table_exists(con, INGESTION_RECORD):
        rows = con.execute(f"SELECT {RECORD_SELECT} FROM {INGESTION_RECORD} ORDER BY rowid").fetchall()
    if not rows:
        raise InputDataError("no current data set to append to: run a full ingestion first", file=names,
                             column="(none)")
    records = [record_from_row(r) for r in rows]
    fmt = "events" if any(r.kind == "events" for r in records) else "mssd"
    known = {r.sha256 for r in records}
    new: list[tuple[Path, str]] = []
    for f, kind in _landed(files, fmt, key):
        _, sha = hash_file(f)
        if sha not in known:
            known.add(sha)
            new.append((f, kind))
    if not new:
        current = _current_result(con, key, records, cfg, fmt)
        if current is not None:
            return current  # nothing new, same config: a no-op

    prev = wh.get_meta(con, "appended_files")
    appended = list(dict.fromkeys((json.loads(prev) if prev else []) + [str(f) for f, _ in new]))
    append = Append(expected_sha={r.path: r.sha256 for r in records}, appended=tuple(appended))
    old_kind = "log" if fmt == "mssd" else "events"
    main = [Path(r.path) for r in records if r.kind == old_kind] + [f for f, k in new if k != "tracks"]
    tracks = [Path(r.path) for r in records if r.kind == "tracks"] + [f for f, k in new if k == "tracks"]
    main, tracks = list(dict.fromkeys(main)), list(dict.fromkeys(tracks))
    ingest = ingest_mssd if fmt == "mssd" else ingest_events
    return ingest(con, main, tracks, dataset_key=key, cfg=cfg, append=append, validate=validate)
