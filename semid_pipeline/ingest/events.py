"""Per-user feedback events (CSV or Parquet: user_id, track_id, timestamp, feedback), one or several
files, with optional tracks files (see ``tracks``).

Every file is validated on its own (errors name the file and its lines); the events of all files
are then combined. An event repeated within or across files (same user_id, track_id, timestamp)
is an error naming the files and lines, or — with ``[ingest] on_duplicate = "drop"`` — dropped
(the first occurrence is kept) and counted in the record as rejected, reason ``duplicate``.
Events whose track is missing from the given tracks files are kept (the content-coverage check
decides) but named in the record's ``notes`` / ``examples``.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from .. import warehouse as wh
from ..config import IngestConfig
from ..errors import ConfigError, InputDataError
from ..schema import FEEDBACK_EVENTS
from ..sql import ident, literal
from . import sessions, timestamps
from .diagnose import EXAMPLES, raise_first_rows, row_offset
from .files import as_paths, check_exists, hash_all, require_columns, suggest_unknown
from .publish import Append, publish
from .records import FileRecord, IngestionResult
from .tables import stage_any, temp_types
from .tracks import STAGE_TR, stage_tracks_file, union_tracks

POSITIVE_SPELLINGS = ("1", "true", "up", "like")
NEGATIVE_SPELLINGS = ("0", "false", "down", "dislike")
ON_DUPLICATE = ("error", "drop")
REQUIRED = ["user_id", "track_id", "timestamp", "feedback"]
OPTIONAL = ["artist_id", "genre_id"]
DUPLICATE = "duplicate"
MISSING_TRACK = "track not in the tracks files (kept)"
_STAGE_EV = "_semid_stage_events"


def _feedback_expr(col: str, cfg: IngestConfig) -> str:
    """1 / 0 for a label, -1 for a neutral rating (dropped), NULL for an unknown spelling (error)."""
    v = f"lower(trim(CAST({ident(col)} AS VARCHAR)))"
    pos = ", ".join(literal(s) for s in POSITIVE_SPELLINGS)
    neg = ", ".join(literal(s) for s in NEGATIVE_SPELLINGS)
    num = f"TRY_CAST({v} AS DOUBLE)"
    if cfg.rating_threshold is not None:
        hi = float(cfg.rating_threshold) + float(cfg.neutral_band)
        lo = float(cfg.rating_threshold) - float(cfg.neutral_band)
        return (
            f"CASE WHEN {num} IS NOT NULL THEN (CASE WHEN {num} >= {hi!r} THEN 1 WHEN {num} <= {lo!r} THEN 0 "
            f"ELSE -1 END) WHEN {v} IN ({pos}) THEN 1 WHEN {v} IN ({neg}) THEN 0 END"
        )
    return f"CASE WHEN {v} IN ({pos}) THEN 1 WHEN {v} IN ({neg}) THEN 0 WHEN {num} = 1 THEN 1 WHEN {num} = 0 THEN 0 END"


def _feedback_expectation(cfg: IngestConfig) -> str:
    expect = ("a numeric rating, or " if cfg.rating_threshold is not None else "") + "one of " + \
        "/".join(POSITIVE_SPELLINGS) + " (positive) or " + "/".join(NEGATIVE_SPELLINGS) + " (negative)"
    if cfg.rating_threshold is None:
        expect += "; set ingest.rating_threshold for numeric ratings"
    return expect


def _validate_rows(con, ev: str, path: Path, label: str, cfg: IngestConfig) -> None:
    """Every row check of one staged events file, each naming its first offending lines."""
    lo, hi = timestamps.validate_time_config(cfg)
    checks = [(f"{c} IS NULL OR trim({c}) = ''", c, "events file: missing value", None)
              for c in ("user_id", "track_id")]
    checks += [
        ("ts_raw IS NULL", "timestamp", "events file: missing value", "ts_raw"),
        ("ts IS NULL", "timestamp", "events file: wrong type in column 'timestamp' (expected a timestamp such as "
         "2024-05-01 12:00:00, 2024-05-01T12:00:00+02:00, or epoch seconds / milliseconds)", "ts_raw"),
        (timestamps.out_of_range("ts", lo, hi), "timestamp", f"events file: {timestamps.range_reason(lo, hi)}",
         "ts_raw"),
        ("fb IS NULL", "feedback", f"events file: unknown feedback spelling (expected {_feedback_expectation(cfg)})",
         "feedback_raw"),
    ]
    for pred, column, reason, show in checks:
        raise_first_rows(con, table=ev, predicate=pred, line="__line", label=label, column=column, reason=reason,
                         path=path, show=show)


def _stage_events_file(con, path: Path, fi: int, cfg: IngestConfig) -> tuple[str, str, list[str], int, int]:
    """Stage + validate ONE events file into ``{_STAGE_EV}_{fi}`` (typed, with __fi/__line/__src).

    Returns (table, row label, columns, rows read, neutral rows)."""
    raw = _STAGE_EV + "_raw"
    cols, label = stage_any(con, path, raw, "events")
    require_columns(path, cols, REQUIRED, "events")
    suggest_unknown(path, cols, REQUIRED + OPTIONAL)
    types = temp_types(con, raw)
    sel = [
        f"CAST({fi} AS INTEGER) AS __fi",
        f"CAST(rowid + {row_offset(con, raw, label)} AS BIGINT) AS __line",
        f"{literal(path.name)} AS __src",
        "CAST(user_id AS VARCHAR) AS user_id",
        "CAST(track_id AS VARCHAR) AS track_id",
        "CAST(timestamp AS VARCHAR) AS ts_raw",
        f"CAST({timestamps.ts_expr('timestamp', types['timestamp'], cfg.timestamp_unit)} AS TIMESTAMP) AS ts",
        "CAST(feedback AS VARCHAR) AS feedback_raw",
        f"CAST({_feedback_expr('feedback', cfg)} AS INTEGER) AS fb",
    ]
    sel += [f"CAST({ident(c)} AS VARCHAR) AS {c}" if c in cols else f"CAST(NULL AS VARCHAR) AS {c}" for c in OPTIONAL]
    ev = f"{_STAGE_EV}_{fi}"
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {ev} AS SELECT {', '.join(sel)} FROM {raw} ORDER BY rowid")
    except duckdb.Error as e:
        raise InputDataError(f"events file could not be converted: {e}", file=str(path), column="(unknown)") from e
    con.execute(f"DROP TABLE IF EXISTS {raw}")
    n_read = con.execute(f"SELECT count(*) FROM {ev}").fetchone()[0]
    if n_read == 0:
        raise InputDataError("events file has a header but no data rows", file=str(path), column="(all columns)")
    _validate_rows(con, ev, path, label, cfg)
    n_neutral = con.execute(f"SELECT count(*) FROM {ev} WHERE fb < 0").fetchone()[0]
    return ev, label, cols, int(n_read), int(n_neutral)


def _duplicates(
    con, ev_files: list[Path], labels: list[str], cfg: IngestConfig
) -> tuple[dict[int, int], dict[int, list[str]]]:
    """Repeated (user_id, track_id, ts) events: an error, or (with on_duplicate="drop") flagged in
    ``__dup`` (all but the first occurrence). Returns (dropped rows, first offending rows) per file."""
    groups = con.execute(
        f"SELECT user_id, track_id, ts, list(__fi ORDER BY __fi, __line), list(__line ORDER BY __fi, __line) "
        f"FROM {_STAGE_EV} GROUP BY user_id, track_id, ts HAVING count(*) > 1 ORDER BY min(__fi), min(__line) "
        f"LIMIT {EXAMPLES}"
    ).fetchall()
    if not groups:
        return {}, {}
    fis = sorted({fi for d in groups for fi in d[3]})
    rows, per_file = [], {}
    for u, t, ts, dfis, dlines in groups:
        if len(set(dfis)) == 1:
            where = f"{labels[dfis[0]]}s {', '.join(map(str, dlines[:5]))}"
            if len(fis) > 1 or cfg.on_duplicate == "drop":
                where = f"{ev_files[dfis[0]].name} {where}"
        else:
            where = ", ".join(f"{ev_files[fi].name} {labels[fi]} {ln}" for fi, ln in zip(dfis[:5], dlines))
        rows.append(f"user_id={u!r}, track_id={t!r}, timestamp={ts}: {where}")
        for fi in sorted(set(dfis[1:])):  # the files whose rows are dropped
            per_file.setdefault(fi, []).append(rows[-1])
    if cfg.on_duplicate == "error":
        across = len(fis) > 1
        raise InputDataError(
            "events files contain duplicate events (same user_id, track_id, timestamp) across files" if across else
            "events file contains duplicate events (same user_id, track_id, timestamp)",
            file=", ".join(str(ev_files[fi]) for fi in fis), column="user_id, track_id, timestamp", rows=rows,
        )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {_STAGE_EV} AS SELECT * EXCLUDE (__dup), row_number() OVER "
        f"(PARTITION BY user_id, track_id, ts ORDER BY __fi, __line) > 1 AS __dup FROM {_STAGE_EV}"
    )
    dropped = dict(con.execute(f"SELECT __fi, count(*) FROM {_STAGE_EV} WHERE __dup GROUP BY __fi").fetchall())
    return {int(k): int(v) for k, v in dropped.items()}, per_file


def _missing_tracks(con, catalog: str, labels: list[str]) -> dict[int, tuple[int, list[str]]]:
    """Per events file: (events whose track is not in the tracks files, first such tracks)."""
    rows = con.execute(
        f"SELECT __fi, track_id, count(*) AS n, min(__line) FROM {_STAGE_EV} e WHERE NOT __dup AND fb >= 0 "
        f"AND NOT EXISTS (SELECT 1 FROM {catalog} c WHERE c.track_id = e.track_id) "
        "GROUP BY __fi, track_id ORDER BY __fi, min(__line)"
    ).fetchall()
    out: dict[int, tuple[int, list[str]]] = {}
    for fi, tid, n, first in rows:
        total, shown = out.get(fi, (0, []))
        if len(shown) < EXAMPLES:
            shown = shown + [f"track_id={tid!r}: {n} events (first at {labels[fi]} {first})"]
        out[fi] = (total + int(n), shown)
    return out


def _stage_catalog(con, tr_files: list[Path], staged: list) -> tuple[list[str], list[int], dict[int, int]]:
    """Stage every tracks file and their union (``{STAGE_TR}_cat``). Returns (temp tables, rows
    per file, rows kept per file)."""
    ev_art = any("artist_id" in cols for _, _, cols, _, _ in staged)
    ev_gen = any("genre_id" in cols for _, _, cols, _, _ in staged)
    temp, cats, counts = [], [], []
    for fi, p in enumerate(tr_files):
        t, n = stage_tracks_file(con, p, fi, _STAGE_EV, ev_art, ev_gen)
        cats.append(t)
        counts.append(n)
    allt = union_tracks(con, cats, tr_files)
    won = dict(con.execute(f"SELECT __fi, count(*) FROM {allt} GROUP BY __fi").fetchall())
    con.execute(f"CREATE OR REPLACE TEMP TABLE {STAGE_TR}_cat AS SELECT * EXCLUDE (__fi, __rid) FROM {allt}")
    return [*cats, allt, STAGE_TR + "_cat"], counts, {int(k): int(v) for k, v in won.items()}


def _events_select(with_tracks: bool, cfg: IngestConfig | None = None) -> str:
    join, art, gen = "", "e.artist_id", "e.genre_id"
    if with_tracks:
        join = f" LEFT JOIN {STAGE_TR}_cat c ON c.track_id = e.track_id"
        art, gen = "COALESCE(e.artist_id, c.artist_id)", "COALESCE(e.genre_id, c.genre_id)"
    if cfg is not None and cfg.stratum == "session":  # [ingest] stratum = "session": see ``sessions``
        kept = (f"(SELECT e.user_id, e.ts, e.track_id, e.fb, {art} AS artist_id, {gen} AS genre_id, e.__src "
                f"FROM {_STAGE_EV} e{join} WHERE e.fb >= 0 AND NOT e.__dup)")
        return (
            "SELECT stratum_id, position, stratum_length, CAST(ts AS TIMESTAMP) AS ts, CAST(track_id AS VARCHAR) "
            "AS track_id, CAST(fb AS TINYINT) AS feedback, CAST(NULL AS VARCHAR) AS context_type, "
            "CAST(artist_id AS VARCHAR) AS artist_id, CAST(genre_id AS VARCHAR) AS genre_id, __src AS source_file "
            f"FROM ({sessions.strata_select(kept, cfg)}) ORDER BY stratum_id, position"
        )
    return (
        "SELECT CAST(e.user_id AS VARCHAR) AS stratum_id, "
        "CAST(row_number() OVER (PARTITION BY e.user_id ORDER BY e.ts, e.track_id) AS INTEGER) AS position, "
        "CAST(count(*) OVER (PARTITION BY e.user_id) AS INTEGER) AS stratum_length, "
        "CAST(e.ts AS TIMESTAMP) AS ts, CAST(e.track_id AS VARCHAR) AS track_id, "
        "CAST(e.fb AS TINYINT) AS feedback, CAST(NULL AS VARCHAR) AS context_type, "
        f"CAST({art} AS VARCHAR) AS artist_id, CAST({gen} AS VARCHAR) AS genre_id, e.__src AS source_file "
        f"FROM {_STAGE_EV} e{join} WHERE e.fb >= 0 AND NOT e.__dup ORDER BY stratum_id, position"
    )


_CATALOG_FROM_EVENTS = (
    "SELECT track_id, CAST(any_value(artist_id) AS VARCHAR) AS artist_id, "
    "CAST(any_value(genre_id) AS VARCHAR) AS genre_id, CAST(NULL AS INTEGER) AS release_year, "
    f"CAST(NULL AS VARCHAR) AS title FROM {FEEDBACK_EVENTS} GROUP BY track_id ORDER BY track_id"
)


def _events_record(p: Path, size: int, sha: str, n_read: int, n_neutral: int, n_dup: int,
                   dup_rows: list[str] | None, missing: tuple[int, list[str]] | None) -> FileRecord:
    reasons = {k: v for k, v in (("neutral rating", n_neutral), (DUPLICATE, n_dup)) if v}
    examples = {DUPLICATE: dup_rows or []} if n_dup else {}
    notes = {}
    if missing:
        notes[MISSING_TRACK] = missing[0]
        examples[MISSING_TRACK] = missing[1]
    rej = n_neutral + n_dup
    return FileRecord(str(p), "events", size, sha, n_read, n_read - rej, rej, reasons, notes, examples)


def _validate_cfg(cfg: IngestConfig) -> None:
    if cfg.neutral_band < 0:
        raise ConfigError(f"ingest.neutral_band={cfg.neutral_band!r} must be >= 0")
    if cfg.on_duplicate not in ON_DUPLICATE:
        raise ConfigError(f"ingest.on_duplicate={cfg.on_duplicate!r}: expected one of {', '.join(ON_DUPLICATE)}")
    timestamps.validate_time_config(cfg)
    sessions.validate(cfg)


def ingest_events(
    con: duckdb.DuckDBPyConnection,
    events_files: list[Path | str],
    tracks_files: list[Path | str] | None = None,
    *,
    dataset_key: str,
    cfg: IngestConfig,
    append: Append | None = None,
    validate: bool = False,
) -> IngestionResult:
    """Ingest per-user feedback events (+ optional tracks files), all-or-nothing.

    ``events_files`` / ``tracks_files`` are lists of paths (``tracks_files`` may be None or
    empty). A track_id repeated WITHIN one tracks file is an error; a track_id repeated in a LATER
    tracks file replaces the earlier file's row (the earlier file's record counts it as rejected,
    reason ``superseded by a later tracks file``). ``append`` is for ``append_files`` only."""
    if isinstance(events_files, (str, Path)) or isinstance(tracks_files, (str, Path)):
        raise TypeError("ingest_events takes lists of paths (events_files=[...], tracks_files=[...])")
    ev_files, tr_files = as_paths(events_files), as_paths(tracks_files)
    _validate_cfg(cfg)
    if not ev_files:
        raise InputDataError("no events files given", file="(none)", column="(none)")
    for p in ev_files:
        check_exists(p, "events")
    for p in tr_files:
        check_exists(p, "tracks")
    hashes = hash_all(ev_files + tr_files)

    with wh.atomic(con):
        staged = [_stage_events_file(con, p, fi, cfg) for fi, p in enumerate(ev_files)]
        con.execute(f"CREATE OR REPLACE TEMP TABLE {_STAGE_EV} AS "
                    + " UNION ALL ".join(f"SELECT *, FALSE AS __dup FROM {t}" for t, *_ in staged))
        labels = [lab for _, lab, *_ in staged]
        dropped, dup_rows = _duplicates(con, ev_files, labels, cfg)
        temp, tr_counts, won, missing = [], [], {}, {}
        if tr_files:
            temp, tr_counts, won = _stage_catalog(con, tr_files, staged)
            missing = _missing_tracks(con, f"{STAGE_TR}_cat", labels)
        hashed = hashes.result()
        records = [
            _events_record(p, size, sha, n_read, n_neutral, dropped.get(fi, 0), dup_rows.get(fi), missing.get(fi))
            for fi, (p, (size, sha), (_, _, _, n_read, n_neutral)) in enumerate(zip(ev_files, hashed, staged))
        ]
        for fi, (p, (size, sha)) in enumerate(zip(tr_files, hashed[len(ev_files):])):
            n, kept = tr_counts[fi], won.get(fi, 0)
            records.append(FileRecord(str(p), "tracks", size, sha, n, kept, n - kept,
                                      {"superseded by a later tracks file": n - kept} if n > kept else {}))
        return publish(
            con, events_select=_events_select(bool(tr_files), cfg),
            catalog_select=f"SELECT * FROM {STAGE_TR}_cat" if tr_files else _CATALOG_FROM_EVENTS,
            temp_tables=[_STAGE_EV + "_raw", _STAGE_EV, STAGE_TR, *(t for t, *_ in staged), *temp],
            dataset_key=dataset_key, records=records, cfg=cfg, fmt="events", stratum_kind=cfg.stratum,
            append=append, validate=validate,
        )
