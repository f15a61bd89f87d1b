"""Publishing a staged data set: the one step every ingestion ends with, inside its transaction.

``feedback_events`` and ``track_catalog`` are replaced from the staged tables, the temp tables
dropped, ``ingestion_record`` rewritten and the meta keys (``dataset``, ``dataset_fingerprint``,
``appended_files``, ``dataset_base_fingerprint``) set. The caller holds ``warehouse.atomic``,
so any error here rolls everything back. Before the transaction ends the blocking
great-expectations suites run on the new tables (validate before publish): a data set that fails
them is never visible to any stage, and ``content_features`` — derived from the previous tables —
is dropped in the same transaction, so no stage can read features of another data set.

``dataset_base_fingerprint`` is the fingerprint of the full ingestion a data set started from;
appends keep it. A semantic-ID table may be *extended* only within one base (see ``stages``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from .. import warehouse as wh
from ..config import IngestConfig
from .. import quality
from ..errors import DataQualityError, InputDataError
from ..schema import CONTENT_FEATURES, FEEDBACK_EVENTS, INGESTION_RECORD, TRACK_CATALOG
from ..sql import ident
from .records import INGESTION_RECORD_COLUMNS, FileRecord, IngestionResult, record_row


@dataclass(frozen=True)
class Append:
    """What ``append_files`` hands the ingestion: the sha256 every already-ingested file must still
    have, and the landed paths (all appends so far) for the ``appended_files`` meta key."""

    expected_sha: dict[str, str]
    appended: tuple[str, ...]


def fingerprint(records: Sequence[FileRecord], cfg: IngestConfig, fmt: str) -> str:
    """sha256 over the format, every file's (kind, sha256) and the ingest config."""
    payload = {"format": fmt, "files": [[r.kind, r.sha256] for r in records], "ingest_config": asdict(cfg)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _check_unchanged(records: list[FileRecord], append: Append) -> None:
    changed = [(r, append.expected_sha[r.path]) for r in records
               if r.path in append.expected_sha and append.expected_sha[r.path] != r.sha256]
    if changed:
        raise InputDataError(
            "file(s) of the current data set changed on disk since they were ingested, so appending "
            "would silently rewrite old data (a landed file must not overwrite a file of the data set: "
            "give it a new name, or run a full ingestion)",
            file=", ".join(r.path for r, _ in changed),
            column="(whole file)",
            rows=[f"{Path(r.path).name}: sha256 recorded {old[:12]}..., now {r.sha256[:12]}..."
                  for r, old in changed],
        )


def summarize(con: duckdb.DuckDBPyConnection, *, dataset_key: str, fp: str, records: Sequence[FileRecord],
              stratum_kind: str) -> IngestionResult:
    """The summary of what ``feedback_events`` / ``track_catalog`` hold now."""
    n_events, n_strata, n_pos = con.execute(
        f"SELECT count(*), count(DISTINCT stratum_id), coalesce(sum(feedback), 0) FROM {FEEDBACK_EVENTS}"
    ).fetchone()
    n_tracks = con.execute(f"SELECT count(*) FROM {TRACK_CATALOG}").fetchone()[0]
    return IngestionResult(
        dataset=dataset_key, fingerprint=fp, files=tuple(records), n_events=int(n_events),
        n_tracks=int(n_tracks), n_strata=int(n_strata), n_positive=int(n_pos), stratum_kind=stratum_kind,
    )


def publish(
    con: duckdb.DuckDBPyConnection,
    *,
    events_select: str,
    catalog_select: str,
    temp_tables: Sequence[str],
    dataset_key: str,
    records: list[FileRecord],
    cfg: IngestConfig,
    fmt: str,
    stratum_kind: str,
    append: Append | None = None,
    validate: bool = False,
) -> IngestionResult:
    """Replace the tables from the staged data (``catalog_select`` may read the new events);
    with ``validate`` the blocking suites must pass before the transaction commits."""
    if append is not None:
        _check_unchanged(records, append)
    con.execute(f"CREATE OR REPLACE TABLE {FEEDBACK_EVENTS} AS {events_select}")
    con.execute(f"CREATE OR REPLACE TABLE {TRACK_CATALOG} AS {catalog_select}")
    for t in temp_tables:
        con.execute(f"DROP TABLE IF EXISTS {ident(t)}")
    fp = fingerprint(records, cfg, fmt)
    cols = ", ".join(f"{ident(c)} {t}" for c, t in INGESTION_RECORD_COLUMNS.items())
    con.execute(f"CREATE OR REPLACE TABLE {INGESTION_RECORD} ({cols})")
    if records:
        marks = ", ".join("?" for _ in INGESTION_RECORD_COLUMNS)
        con.executemany(f"INSERT INTO {INGESTION_RECORD} VALUES ({marks})",
                        [record_row(dataset_key, r) for r in records])
    wh.set_meta(con, "dataset", dataset_key)
    wh.set_meta(con, "dataset_fingerprint", fp)
    wh.set_meta(con, "stratum_kind", stratum_kind)  # "user" | "session": which protocol the splits use
    wh.set_meta(con, "appended_files", json.dumps(list(append.appended) if append is not None else []))
    wh.set_meta(con, "stratum_kind", stratum_kind)  # the splits follow it (sessions or users protocol)
    if append is None or wh.get_meta(con, "dataset_base_fingerprint") is None:
        wh.set_meta(con, "dataset_base_fingerprint", fp)
    con.execute(f"DROP TABLE IF EXISTS {CONTENT_FEATURES}")
    result = summarize(con, dataset_key=dataset_key, fp=fp, records=records, stratum_kind=stratum_kind)
    if result.n_events == 0:
        raise InputDataError(
            "no feedback events left after filtering (check ingest.context_filter / rating settings)",
            file=", ".join(Path(r.path).name for r in records),
            column="context_type" if fmt == "mssd" else "feedback",
        )
    if validate:
        validate_staged(con, cfg)
    return result


def validate_staged(con: duckdb.DuckDBPyConnection, cfg: IngestConfig) -> None:
    """The blocking suites of ``feedback_events`` and ``track_catalog`` on the tables as this
    transaction sees them; a failure raises before anything is committed."""
    for validate in (quality.validate_feedback_events, quality.validate_track_catalog):
        report = validate(con, cfg=cfg)
        if not report.success:
            raise DataQualityError(report)
