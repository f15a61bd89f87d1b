"""Spotify MSSD session logs (``log_*.csv[.gz]``) + optional track features (``tf_*.csv[.gz]``).

Streamed through DuckDB's CSV reader with explicit column types (never loaded into pandas): one
pass per group of files sharing a header and date format stages the needed columns, one aggregate
pass counts every check per file, and only a file with offending rows is re-read to name them.
A (session_id, session_position) key or a track_id repeated within or across files is an error.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from .. import warehouse as wh
from ..config import IngestConfig
from ..errors import ConfigError, InputDataError
from ..schema import FEEDBACK_EVENTS, MSSD_CONTEXT_TYPES, MSSD_SKIP_COLUMNS, MSSD_TRACK_RANGES
from ..sql import ident, literal
from . import timestamps
from .diagnose import Check, csv_text_source, diagnose_check, diagnose_read_failure
from .files import check_exists, dup_header, hash_all, read_head, require_columns
from .publish import Append, publish
from .records import FileRecord, IngestionResult

# MSSD log columns the ingestion needs, with the type they are read as (every other column is
# read as VARCHAR and not used). ``date`` is parsed with the per-file date format.
_MSSD_LOG_TYPES = {
    "session_id": "VARCHAR",
    "session_position": "INTEGER",
    "session_length": "INTEGER",
    "track_id_clean": "VARCHAR",
    "hour_of_day": "INTEGER",
    "date": "DATE",
    "context_type": "VARCHAR",
    **{c: "BOOLEAN" for c in MSSD_SKIP_COLUMNS},
}
_MSSD_INT_TF = {"release_year", "key", "time_signature"}
MSSD_TF_TYPES = {
    "track_id": "VARCHAR",
    **{c: ("VARCHAR" if c == "mode" else "INTEGER" if c in _MSSD_INT_TF else "DOUBLE") for c in MSSD_TRACK_RANGES},
}
_DATE_FORMATS = (
    (re.compile(r"^\d{4}-\d{2}-\d{2}$"), "%Y-%m-%d"),
    (re.compile(r"^\d{2}-\d{2}-\d{2}$"), "%d-%m-%y"),
)
_STAGE_LOG = "_semid_stage_log"
_STAGE_TF = "_semid_stage_tf"
_CONTENT = [c for c in MSSD_TF_TYPES if c not in ("track_id", "release_year")]

Entry = tuple[Path, list[str], str | None]  # (file, header, date format)


def _mssd_checks(skip_col: str, cfg: IngestConfig) -> list[Check]:
    ctx = ", ".join(literal(c) for c in sorted(MSSD_CONTEXT_TYPES))
    lo, hi = timestamps.validate_time_config(cfg)
    checks = [
        Check(c, "missing value", f"{ident(c)} IS NULL")
        for c in ("session_id", "session_position", "session_length", "track_id_clean", skip_col,
                  "hour_of_day", "date", "context_type")
    ]
    return checks + [
        Check("session_length", "session_length must be >= 1", "session_length < 1"),
        Check("session_position", "session_position must lie in 1..session_length",
              "session_position < 1 OR session_position > session_length"),
        Check("hour_of_day", "hour_of_day must lie in 0..23", "hour_of_day < 0 OR hour_of_day > 23"),
        Check("context_type",
              f"unknown context_type value (expected one of {', '.join(sorted(MSSD_CONTEXT_TYPES))})",
              f"context_type NOT IN ({ctx})"),
        Check("date", timestamps.range_reason(lo, hi), timestamps.out_of_range("CAST(date AS TIMESTAMP)", lo, hi)),
    ]


def _detect_date_format(path: Path, header: list[str], first: list[str]) -> str:
    i = header.index("date")
    value = first[i].strip() if i < len(first) else ""
    for rx, fmt in _DATE_FORMATS:
        if rx.match(value):
            return fmt
    raise InputDataError(
        "session log file: unrecognised date format (expected YYYY-MM-DD or DD-MM-YY)",
        file=str(path), column="date", rows=[f"line 2: date={value!r}"],
    )


def _group_files(entries: list[Entry]) -> dict[tuple, list[Path]]:
    groups: dict[tuple, list[Path]] = {}
    for path, header, fmt in entries:
        groups.setdefault((tuple(header), fmt), []).append(path)
    return groups


def _validate_cfg(cfg: IngestConfig) -> str:
    if cfg.skip_definition not in MSSD_SKIP_COLUMNS:
        raise ConfigError(
            f"ingest.skip_definition={cfg.skip_definition!r}: expected one of {', '.join(MSSD_SKIP_COLUMNS)}"
        )
    cf = cfg.context_filter
    if cf != "all" and cf not in MSSD_CONTEXT_TYPES:
        raise ConfigError(
            f"ingest.context_filter={cf!r}: expected 'all' or one of {', '.join(sorted(MSSD_CONTEXT_TYPES))}"
        )
    return cf


def _heads(log_files: list[Path], track_files: list[Path], skip_col: str) -> tuple[list[Entry], list[Entry]]:
    """Sniff every file (exists, header, required columns, date format) before any SQL runs."""
    required = ["session_id", "session_position", "session_length", "track_id_clean", skip_col,
                "hour_of_day", "date", "context_type"]
    logs: list[Entry] = []
    for p in log_files:
        check_exists(p, "session log")
        header, first = read_head(p, "session log")
        require_columns(p, header, required, "session log")
        dup_header(p, header)
        logs.append((p, header, _detect_date_format(p, header, first)))
    tfs: list[Entry] = []
    for p in track_files:
        check_exists(p, "track features")
        header, _ = read_head(p, "track features")
        require_columns(p, header, list(MSSD_TF_TYPES), "track features")
        dup_header(p, header)
        tfs.append((p, header, None))
    return logs, tfs


def _stage_logs(con, entries: list[Entry], skip_col: str, checks: list[Check], kept_pred: str) -> dict:
    """Stage the needed log columns of every file, validate, and return per-file counts."""
    parts = []
    neg = f"NOT {ident(skip_col)}" if skip_col == "not_skipped" else ident(skip_col)
    for (header, fmt), paths in _group_files(entries).items():
        src = csv_text_source(paths, list(header), _MSSD_LOG_TYPES, fmt, filename=True)
        parts.append(
            "SELECT session_id, session_position, session_length, track_id_clean, "
            f"{ident(skip_col)}, {neg} AS __neg, hour_of_day, date, context_type, filename AS __file FROM {src}"
        )
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {_STAGE_LOG} AS " + " UNION ALL ".join(parts))
    except duckdb.Error as e:
        raise diagnose_read_failure(e, entries, _MSSD_LOG_TYPES, "session log") from e
    aggs = ", ".join(f"count(*) FILTER (WHERE {c.predicate})" for c in checks)
    stats = con.execute(
        f"SELECT __file, count(*), count(*) FILTER (WHERE {kept_pred}), {aggs} FROM {_STAGE_LOG} GROUP BY __file"
    ).fetchall()
    by_file = {r[0]: r for r in stats}
    for p, header, fmt in entries:
        row = by_file.get(str(p))
        if row is None or row[1] == 0:
            raise InputDataError("session log file has a header but no data rows", file=str(p),
                                 column="(all columns)")
        for chk, n in zip(checks, row[3:]):
            if n:
                raise diagnose_check(p, header, "session log", chk, n, _MSSD_LOG_TYPES, fmt)
    _check_key_dups(con)
    return by_file


def _check_key_dups(con) -> None:
    dups = con.execute(
        "SELECT session_id, session_position, count(*) AS n, list_sort(list(DISTINCT parse_filename(__file))) "
        f"FROM {_STAGE_LOG} GROUP BY session_id, session_position HAVING count(*) > 1 "
        "ORDER BY session_id, session_position LIMIT 5"
    ).fetchall()
    if dups:
        raise InputDataError(
            "session logs contain duplicate (session_id, session_position) keys",
            file=", ".join(sorted({f for d in dups for f in d[3]})),
            column="session_id, session_position",
            rows=[f"session_id={s!r}, session_position={pos}: {n} rows (in {', '.join(fs)})"
                  for s, pos, n, fs in dups],
        )


def _stage_tracks(con, entries: list[Entry]) -> dict[str, int]:
    """Stage + validate the track-features files; returns rows per file."""
    parts = []
    for (header, _), paths in _group_files(entries).items():
        src = csv_text_source(paths, list(header), MSSD_TF_TYPES, None, filename=True)
        parts.append(f"SELECT {', '.join(ident(c) for c in MSSD_TF_TYPES)}, filename AS __file FROM {src}")
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {_STAGE_TF} AS " + " UNION ALL ".join(parts))
    except duckdb.Error as e:
        raise diagnose_read_failure(e, entries, MSSD_TF_TYPES, "track features") from e
    stats = dict(con.execute(f"SELECT __file, count(*) FROM {_STAGE_TF} GROUP BY __file").fetchall())
    for p, _, _ in entries:
        if not stats.get(str(p)):
            raise InputDataError("track features file has a header but no data rows", file=str(p),
                                 column="(all columns)")
    nulls = dict(con.execute(
        f"SELECT __file, count(*) FROM {_STAGE_TF} WHERE track_id IS NULL GROUP BY __file").fetchall())
    for p, header, _ in entries:
        if nulls.get(str(p)):
            raise diagnose_check(p, header, "track features", Check("track_id", "missing value", "track_id IS NULL"),
                                 nulls[str(p)], MSSD_TF_TYPES)
    tdups = con.execute(
        f"SELECT track_id, count(*), list_sort(list(DISTINCT parse_filename(__file))) FROM {_STAGE_TF} "
        "GROUP BY track_id HAVING count(*) > 1 ORDER BY track_id LIMIT 5"
    ).fetchall()
    if tdups:
        raise InputDataError(
            "track features contain duplicate track_id keys",
            file=", ".join(sorted({f for d in tdups for f in d[2]})),
            column="track_id",
            rows=[f"track_id={t!r}: {n} rows (in {', '.join(fs)})" for t, n, fs in tdups],
        )
    return stats


def _events_select(kept_pred: str) -> str:
    return (
        "SELECT CAST(session_id AS VARCHAR) AS stratum_id, CAST(session_position AS INTEGER) AS position, "
        "CAST(session_length AS INTEGER) AS stratum_length, "
        "CAST(date AS TIMESTAMP) + to_hours(hour_of_day) AS ts, CAST(track_id_clean AS VARCHAR) AS track_id, "
        "CAST(CASE WHEN __neg THEN 0 ELSE 1 END AS TINYINT) AS feedback, "
        "CAST(context_type AS VARCHAR) AS context_type, "
        "CAST(NULL AS VARCHAR) AS artist_id, CAST(NULL AS VARCHAR) AS genre_id, "
        f"parse_filename(__file) AS source_file FROM {_STAGE_LOG} WHERE {kept_pred}"
    )


def _catalog_select(with_tf: bool) -> str:
    keys = ("CAST(NULL AS VARCHAR) AS artist_id, CAST(NULL AS VARCHAR) AS genre_id, ")
    if with_tf:
        return ("SELECT CAST(track_id AS VARCHAR) AS track_id, " + keys
                + "CAST(release_year AS INTEGER) AS release_year, CAST(NULL AS VARCHAR) AS title, "
                + ", ".join(ident(c) for c in _CONTENT) + f" FROM {_STAGE_TF}")
    return ("SELECT track_id, " + keys + "CAST(NULL AS INTEGER) AS release_year, CAST(NULL AS VARCHAR) AS title, "
            + ", ".join(f"CAST(NULL AS {MSSD_TF_TYPES[c]}) AS {ident(c)}" for c in _CONTENT)
            + f" FROM (SELECT DISTINCT track_id FROM {FEEDBACK_EVENTS}) ORDER BY track_id")


def ingest_mssd(
    con: duckdb.DuckDBPyConnection,
    log_files: list[Path],
    track_files: list[Path],
    *,
    dataset_key: str,
    cfg: IngestConfig,
    append: Append | None = None,
    validate: bool = False,
) -> IngestionResult:
    """Ingest MSSD session logs (+ track features) into the warehouse, all-or-nothing.

    ``append`` is for ``append_files`` only (the sha256 the old files must still have)."""
    context_filter = _validate_cfg(cfg)
    skip_col = cfg.skip_definition
    log_files, track_files = [Path(p) for p in log_files], [Path(p) for p in track_files]
    if not log_files:
        raise InputDataError("no MSSD session log files (log_*.csv[.gz]) given", file="(none)", column="(none)")
    log_entries, tf_entries = _heads(log_files, track_files, skip_col)
    hashes = hash_all(log_files + track_files)
    checks = _mssd_checks(skip_col, cfg)
    kept_pred = "TRUE" if context_filter == "all" else f"context_type = {literal(context_filter)}"

    with wh.atomic(con):
        by_file = _stage_logs(con, log_entries, skip_col, checks, kept_pred)
        tf_stats = _stage_tracks(con, tf_entries) if tf_entries else {}
        hashed = hashes.result()
        records: list[FileRecord] = []
        reason = f"context_type != {context_filter!r}"
        for (p, _, _), (size, sha) in zip(log_entries, hashed):
            read, kept = int(by_file[str(p)][1]), int(by_file[str(p)][2])
            rej = read - kept
            records.append(FileRecord(str(p), "log", size, sha, read, kept, rej, {reason: rej} if rej else {}))
        for (p, _, _), (size, sha) in zip(tf_entries, hashed[len(log_entries):]):
            n = int(tf_stats[str(p)])
            records.append(FileRecord(str(p), "tracks", size, sha, n, n, 0, {}))
        return publish(
            con, events_select=_events_select(kept_pred), catalog_select=_catalog_select(bool(tf_entries)),
            temp_tables=[_STAGE_LOG, _STAGE_TF], dataset_key=dataset_key, records=records, cfg=cfg,
            fmt="mssd", stratum_kind="session", append=append, validate=validate,
        )
