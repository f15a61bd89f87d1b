"""Ingestion: raw feedback files → ``feedback_events`` + ``track_catalog`` (+ ``ingestion_record``).

Two source formats:

* Spotify MSSD session logs (``log_*.csv[.gz]``) with optional track features (``tf_*.csv[.gz]``),
  streamed through DuckDB's CSV reader with explicit column types (never loaded into pandas);
* per-user events (CSV or Parquet: user_id, track_id, timestamp, feedback), one or several files,
  with optional tracks files (CSV or Parquet; a track_id in a later tracks file replaces the
  earlier row).

``append_files`` adds landed files (either format) to the current data set: the data set's files
plus the new ones are re-ingested in one transaction, the ``dataset`` meta key keeps the original
key, and ``appended_files`` (meta, JSON list) names the landed files.

Every ingestion runs in ONE warehouse transaction (``warehouse.atomic``): the files are staged into
temp tables, validated, and only then are ``feedback_events``, ``track_catalog`` and
``ingestion_record`` replaced and the meta keys (``dataset``, ``dataset_fingerprint``,
``appended_files``) updated.
Any problem raises :class:`~semid_pipeline.errors.InputDataError` (naming the file, the column and
the first offending rows with their line numbers) and leaves the warehouse exactly as it was.

The fast path never computes line numbers; when something is wrong, the offending file is
re-read on a private in-memory DuckDB connection (``_Diagnoser``) to find the lines.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import gzip
import hashlib
import json
import re
import zlib
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb
import pandas as pd

from . import warehouse as wh
from .config import DatasetSpec, IngestConfig
from .errors import ConfigError, InputDataError
from .schema import (
    FEEDBACK_EVENTS,
    FEEDBACK_EVENTS_COLUMNS,
    INGESTION_RECORD,
    MSSD_CONTEXT_TYPES,
    MSSD_SKIP_COLUMNS,
    MSSD_TRACK_RANGES,
    TRACK_CATALOG,
    TRACK_KEY_COLUMNS,
)

__all__ = [
    "FileRecord",
    "IngestionResult",
    "ingest_mssd",
    "ingest_events",
    "resolve_mssd_paths",
    "ingest_dataset",
    "append_files",
    "POSITIVE_SPELLINGS",
    "NEGATIVE_SPELLINGS",
]

# ----------------------------------------------------------------------------------------------
# Public records
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileRecord:
    path: str
    kind: str  # "log" | "tracks" | "events"
    size_bytes: int
    sha256: str
    rows_read: int
    rows_kept: int
    rows_rejected: int
    reject_reasons: dict[str, int]


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
            d["reject_reasons"] = json.dumps(f.reject_reasons, sort_keys=True)
            rows.append(d)
        cols = [
            "path", "kind", "size_bytes", "sha256", "rows_read", "rows_kept", "rows_rejected", "reject_reasons",
        ]
        return pd.DataFrame(rows, columns=cols)


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
}

POSITIVE_SPELLINGS = ("1", "true", "up", "like")
NEGATIVE_SPELLINGS = ("0", "false", "down", "dislike")

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
_MSSD_TF_TYPES = {
    "track_id": "VARCHAR",
    **{
        c: ("VARCHAR" if c == "mode" else "INTEGER" if c in _MSSD_INT_TF else "DOUBLE")
        for c in MSSD_TRACK_RANGES
    },
}
_DATE_FORMATS = (
    (re.compile(r"^\d{4}-\d{2}-\d{2}$"), "%Y-%m-%d"),
    (re.compile(r"^\d{2}-\d{2}-\d{2}$"), "%d-%m-%y"),
)

_STAGE_LOG = "_semid_stage_log"
_STAGE_TF = "_semid_stage_tf"
_STAGE_EV = "_semid_stage_events"
_STAGE_TR = "_semid_stage_tracks"


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _is_gz(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def _is_parquet(path: Path) -> bool:
    return path.name.lower().endswith((".parquet", ".pq", ".parq"))


def _hash_file(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(4 << 20)
            if not chunk:
                break
            size += len(chunk)
            h.update(chunk)
    return size, h.hexdigest()


def _check_exists(path: Path, what: str) -> None:
    if not path.exists():
        raise InputDataError(f"{what} file does not exist", file=str(path), column="(whole file)")
    if not path.is_file():
        raise InputDataError(f"{what} path is not a regular file", file=str(path), column="(whole file)")
    if path.stat().st_size == 0:
        raise InputDataError(f"{what} file is empty (0 bytes)", file=str(path), column="(whole file)")


def _open_binary(path: Path):
    return gzip.open(path, "rb") if _is_gz(path) else open(path, "rb")


def _read_head(path: Path, what: str) -> tuple[list[str], list[str] | None]:
    """Header and first data row of a CSV (gzip-aware), read line by line (tiny)."""
    lines: list[str] = []
    try:
        with _open_binary(path) as f:
            for lineno in (1, 2):
                raw = f.readline()
                if not raw:
                    break
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    _raise_utf8(path, what)
                if lineno == 1:
                    text = text.lstrip("\ufeff")
                lines.append(text)
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile) as e:
        raise InputDataError(
            f"{what} file is not a readable gzip/CSV file ({e})", file=str(path), column="(whole file)"
        ) from e
    if not lines or not lines[0].strip():
        raise InputDataError(f"{what} file is empty (no header line)", file=str(path), column="(whole file)")
    header = next(csv.reader([lines[0]]))
    header = [h.strip() for h in header]
    first = next(csv.reader([lines[1]])) if len(lines) > 1 and lines[1].strip() else None
    if first is None:
        raise InputDataError(
            f"{what} file has a header but no data rows", file=str(path), column=", ".join(header[:3]) + ", ..."
        )
    return header, first


def _require_columns(path: Path, header: Sequence[str], required: Sequence[str], what: str) -> None:
    missing = [c for c in required if c not in header]
    if not missing:
        return
    hints = []
    extra = [h for h in header if h not in required]
    for m in missing:
        close = difflib.get_close_matches(m, extra, n=1, cutoff=0.6)
        if close:
            hints.append(f"column {close[0]!r} looks like a misspelling of {m!r}")
    msg = f"{what} file lacks required column(s) {', '.join(repr(m) for m in missing)}"
    if hints:
        msg += " (" + "; ".join(hints) + ")"
    msg += f"; found columns: {', '.join(header)}"
    raise InputDataError(msg, file=str(path), column=", ".join(missing))


def _suggest_unknown(path: Path, header: Sequence[str], known: Sequence[str]) -> None:
    """Columns that are not known but look like a known one: clearly misspelt → error."""
    for h in header:
        if h in known:
            continue
        close = difflib.get_close_matches(h, [k for k in known if k not in header], n=1, cutoff=0.85)
        if close:
            raise InputDataError(
                f"column {h!r} looks like a misspelling of the expected column {close[0]!r}",
                file=str(path),
                column=h,
            )


def _raise_utf8(path: Path, what: str) -> None:
    rows = _find_bad_utf8(path)
    col = None
    if rows and rows[0][1] is not None:
        col = rows[0][1]
    raise InputDataError(
        f"{what} file is not valid UTF-8",
        file=str(path),
        column=col or "(unknown)",
        rows=[f"line {ln}: column {c!r}: {snip}" for ln, c, snip in rows],
    )


def _find_bad_utf8(path: Path, limit: int = 5) -> list[tuple[int, str | None, str]]:
    out: list[tuple[int, str | None, str]] = []
    header: list[str] | None = None
    dec = codecs.getincrementaldecoder("utf-8")
    with _open_binary(path) as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                text = dec().decode(raw, final=True)
                if lineno == 1:
                    header = next(csv.reader([text.lstrip("\ufeff")]))
                continue
            except UnicodeDecodeError:
                pass
            col = None
            fields = raw.rstrip(b"\r\n").split(b",")
            for i, fld in enumerate(fields):
                try:
                    fld.decode("utf-8")
                except UnicodeDecodeError:
                    col = header[i].strip() if header and i < len(header) else f"field {i + 1}"
                    break
            out.append((lineno, col, repr(raw[:120])))
            if len(out) >= limit:
                break
    return out


def _check_gzip(path: Path, what: str) -> None:
    if not _is_gz(path):
        return
    try:
        with gzip.open(path, "rb") as f:
            while f.read(8 << 20):
                pass
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile) as e:
        raise InputDataError(
            f"{what} file is a truncated or corrupt gzip stream ({e})", file=str(path), column="(whole file)"
        ) from e


def _duck_msg(e: BaseException) -> str:
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    keep = [ln for ln in lines if not ln.startswith("  ") and not ln.startswith("Possible")]
    return " | ".join(keep[:4]) if keep else str(e)


# ----------------------------------------------------------------------------------------------
# Checks: SQL predicates over typed columns, shared by the fast path (counts) and the diagnoser
# (first offending lines).
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Check:
    column: str
    reason: str
    predicate: str  # TRUE for an offending row


def _mssd_checks(skip_col: str) -> list[_Check]:
    ctx = ", ".join(_lit(c) for c in sorted(MSSD_CONTEXT_TYPES))
    checks = [
        _Check(c, "missing value", f"{_q(c)} IS NULL")
        for c in ("session_id", "session_position", "session_length", "track_id_clean", skip_col,
                  "hour_of_day", "date", "context_type")
    ]
    checks += [
        _Check("session_length", "session_length must be >= 1", "session_length < 1"),
        _Check(
            "session_position",
            "session_position must lie in 1..session_length",
            "session_position < 1 OR session_position > session_length",
        ),
        _Check("hour_of_day", "hour_of_day must lie in 0..23", "hour_of_day < 0 OR hour_of_day > 23"),
        _Check(
            "context_type",
            f"unknown context_type value (expected one of {', '.join(sorted(MSSD_CONTEXT_TYPES))})",
            f"context_type NOT IN ({ctx})",
        ),
    ]
    return checks


class _Diagnoser:
    """Re-reads ONE CSV file as text on a private in-memory DuckDB to find offending lines."""

    def __init__(self, path: Path, header: list[str], what: str):
        self.path = path
        self.header = header
        self.what = what
        self.con = duckdb.connect(":memory:")
        self.con.execute("SET preserve_insertion_order = true")
        cols = {h: "VARCHAR" for h in header}
        try:
            self.con.execute(
                f"CREATE TABLE raw AS SELECT * FROM read_csv({_lit(str(path))}, columns={cols!r}, "
                "header=true, auto_detect=false, delim=',', quote='\"', escape='\"')"
            )
        except duckdb.Error as e:
            self.close()
            line = re.search(r"Line:\s*(\d+)", str(e))
            orig = re.search(r"Original Line:\s*(.*)", str(e))
            rows = [f"line {line.group(1)}: {orig.group(1)[:200] if orig else ''}"] if line else None
            raise InputDataError(
                f"{what} file cannot be parsed as CSV: {_duck_msg(e)}",
                file=str(path),
                column="(row structure)",
                rows=rows,
            ) from e
        self.off = _row_offset(self.con, "raw", "line")

    def typed_view(self, types: dict[str, str], date_format: str | None = None) -> None:
        sel = [f"rowid + {self.off} AS __line"]
        for h in self.header:
            t = types.get(h)
            if t is None or t == "VARCHAR":
                sel.append(_q(h))
            elif t == "DATE":
                fmt = date_format or "%Y-%m-%d"
                sel.append(f"TRY_STRPTIME({_q(h)}, {_lit(fmt)})::DATE AS {_q(h)}")
            else:
                sel.append(f"TRY_CAST({_q(h)} AS {t}) AS {_q(h)}")
        self.con.execute(f"CREATE OR REPLACE VIEW typed AS SELECT {', '.join(sel)} FROM raw")

    def conversion_errors(self, types: dict[str, str], date_format: str | None = None) -> None:
        for h in self.header:
            t = types.get(h)
            if t is None or t == "VARCHAR":
                continue
            if t == "DATE":
                fmt = date_format or "%Y-%m-%d"
                bad = f"{_q(h)} IS NOT NULL AND TRY_STRPTIME({_q(h)}, {_lit(fmt)}) IS NULL"
                expect = f"a date in format {fmt}"
            else:
                bad = f"{_q(h)} IS NOT NULL AND TRY_CAST({_q(h)} AS {t}) IS NULL"
                expect = f"a valid {t}"
            rows = self.con.execute(
                f"SELECT rowid + {self.off}, {_q(h)} FROM raw WHERE {bad} ORDER BY rowid LIMIT 5"
            ).fetchall()
            if rows:
                raise InputDataError(
                    f"{self.what} file: wrong type in column {h!r} (expected {expect})",
                    file=str(self.path),
                    column=h,
                    rows=[f"line {ln}: {h}={v!r}" for ln, v in rows],
                )

    def check(self, chk: _Check) -> None:
        shown = self.con.execute(
            f"SELECT __line, {_q(chk.column)} FROM typed WHERE {chk.predicate} ORDER BY __line LIMIT 5"
        ).fetchall()
        if shown:
            raise InputDataError(
                f"{self.what} file: {chk.reason}",
                file=str(self.path),
                column=chk.column,
                rows=[f"line {ln}: {chk.column}={v!r}" for ln, v in shown],
            )

    def close(self) -> None:
        try:
            self.con.close()
        except Exception:  # pragma: no cover
            pass


def _diagnose_read_failure(
    err: duckdb.Error, files: list[tuple[Path, list[str], str | None]], types: dict[str, str], what: str
) -> InputDataError:
    """The fast typed read failed: find which file/column/lines, and build the error."""
    for path, header, date_format in files:
        _check_gzip(path, what)
        bad = _find_bad_utf8(path)
        if bad:
            _raise_utf8(path, what)
        d = _Diagnoser(path, header, what)
        try:
            d.conversion_errors(types, date_format)
        finally:
            d.close()
    names = ", ".join(str(p) for p, _, _ in files)
    return InputDataError(f"{what} file(s) could not be read: {_duck_msg(err)}", file=names, column="(unknown)")


# ----------------------------------------------------------------------------------------------
# MSSD
# ----------------------------------------------------------------------------------------------


def _detect_date_format(path: Path, header: list[str], first: list[str]) -> str:
    i = header.index("date")
    value = first[i].strip() if i < len(first) else ""
    for rx, fmt in _DATE_FORMATS:
        if rx.match(value):
            return fmt
    raise InputDataError(
        "session log file: unrecognised date format (expected YYYY-MM-DD or DD-MM-YY)",
        file=str(path),
        column="date",
        rows=[f"line 2: date={value!r}"],
    )


def _csv_source(paths: list[Path], header: list[str], types: dict[str, str], date_format: str | None) -> str:
    cols = {h: types.get(h, "VARCHAR") for h in header}
    files = "[" + ", ".join(_lit(str(p)) for p in paths) + "]"
    opts = (
        f"columns={cols!r}, header=true, auto_detect=false, delim=',', quote='\"', escape='\"', "
        "filename=true"
    )
    if date_format:
        opts += f", dateformat={_lit(date_format)}"
    return f"read_csv({files}, {opts})"


def _group_files(entries: list[tuple[Path, list[str], str | None]]):
    groups: dict[tuple, list[Path]] = {}
    for path, header, fmt in entries:
        groups.setdefault((tuple(header), fmt), []).append(path)
    return groups


def _hash_all(paths: list[Path]) -> Future:
    ex = ThreadPoolExecutor(max_workers=1, thread_name_prefix="semid-sha256")
    fut = ex.submit(lambda: [_hash_file(p) for p in paths])
    ex.shutdown(wait=False)
    return fut


def _fingerprint(records: Sequence[FileRecord], cfg: IngestConfig, kind: str) -> str:
    payload = {
        "format": kind,
        "files": [[r.kind, r.sha256] for r in records],
        "ingest_config": asdict(cfg),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _validate_cfg_mssd(cfg: IngestConfig) -> str:
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


def ingest_mssd(
    con: duckdb.DuckDBPyConnection,
    log_files: list[Path],
    track_files: list[Path],
    *,
    dataset_key: str,
    cfg: IngestConfig,
) -> IngestionResult:
    """Ingest MSSD session logs (+ track features) into the warehouse, all-or-nothing.

    A (session_id, session_position) key or a track_id repeated within or across files is an error."""
    return _ingest_mssd(con, log_files, track_files, dataset_key=dataset_key, cfg=cfg, append=None)


def _ingest_mssd(
    con: duckdb.DuckDBPyConnection,
    log_files: list[Path],
    track_files: list[Path],
    *,
    dataset_key: str,
    cfg: IngestConfig,
    append: _Append | None,
) -> IngestionResult:
    context_filter = _validate_cfg_mssd(cfg)
    skip_col = cfg.skip_definition
    log_files = [Path(p) for p in log_files]
    track_files = [Path(p) for p in track_files]
    if not log_files:
        raise InputDataError("no MSSD session log files (log_*.csv[.gz]) given", file="(none)", column="(none)")

    required_log = ["session_id", "session_position", "session_length", "track_id_clean", skip_col,
                    "hour_of_day", "date", "context_type"]
    log_entries: list[tuple[Path, list[str], str | None]] = []
    for p in log_files:
        _check_exists(p, "session log")
        header, first = _read_head(p, "session log")
        _require_columns(p, header, required_log, "session log")
        _dup_header(p, header)
        log_entries.append((p, header, _detect_date_format(p, header, first)))
    tf_entries: list[tuple[Path, list[str], str | None]] = []
    for p in track_files:
        _check_exists(p, "track features")
        header, _ = _read_head(p, "track features")
        _require_columns(p, header, list(_MSSD_TF_TYPES), "track features")
        _dup_header(p, header)
        tf_entries.append((p, header, None))

    all_files = log_files + track_files
    hashes = _hash_all(all_files)
    checks = _mssd_checks(skip_col)
    log_types = dict(_MSSD_LOG_TYPES)

    with wh.atomic(con):
        # 1. stage the needed log columns of every file (one streamed pass per header group)
        parts = []
        neg = f"NOT {_q(skip_col)}" if skip_col == "not_skipped" else _q(skip_col)
        for (header, fmt), paths in _group_files(log_entries).items():
            src = _csv_source(paths, list(header), log_types, fmt)
            parts.append(
                "SELECT session_id, session_position, session_length, track_id_clean, "
                f"{_q(skip_col)}, {neg} AS __neg, hour_of_day, date, context_type, filename AS __file "
                f"FROM {src}"
            )
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {_STAGE_LOG} AS " + " UNION ALL ".join(parts))
        except duckdb.Error as e:
            raise _diagnose_read_failure(e, log_entries, log_types, "session log") from e

        # 2. validate: per-file counts of every check, in one aggregate pass
        kept_pred = "TRUE" if context_filter == "all" else f"context_type = {_lit(context_filter)}"
        aggs = ", ".join(f"count(*) FILTER (WHERE {c.predicate})" for c in checks)
        stats = con.execute(
            f"SELECT __file, count(*), count(*) FILTER (WHERE {kept_pred}), {aggs} "
            f"FROM {_STAGE_LOG} GROUP BY __file"
        ).fetchall()
        by_file = {r[0]: r for r in stats}
        for p, header, fmt in log_entries:
            row = by_file.get(str(p))
            if row is None or row[1] == 0:
                raise InputDataError(
                    "session log file has a header but no data rows", file=str(p), column="(all columns)"
                )
            for chk, n in zip(checks, row[3:]):
                if n:
                    d = _Diagnoser(p, header, "session log")
                    try:
                        d.typed_view(log_types, fmt)
                        d.check(chk)
                    finally:
                        d.close()
                    raise InputDataError(  # pragma: no cover - the diagnoser found nothing
                        f"session log file: {chk.reason} ({n} rows)", file=str(p), column=chk.column
                    )
        dups = con.execute(
            f"SELECT session_id, session_position, count(*) AS n, list_sort(list(DISTINCT parse_filename(__file))) "
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

        # 3. track features
        if tf_entries:
            parts = []
            tf_cols = list(_MSSD_TF_TYPES)
            for (header, _), paths in _group_files(tf_entries).items():
                src = _csv_source(paths, list(header), _MSSD_TF_TYPES, None)
                parts.append(f"SELECT {', '.join(_q(c) for c in tf_cols)}, filename AS __file FROM {src}")
            try:
                con.execute(f"CREATE OR REPLACE TEMP TABLE {_STAGE_TF} AS " + " UNION ALL ".join(parts))
            except duckdb.Error as e:
                raise _diagnose_read_failure(e, tf_entries, _MSSD_TF_TYPES, "track features") from e
            tf_stats = dict(
                con.execute(
                    f"SELECT __file, count(*) FROM {_STAGE_TF} GROUP BY __file"
                ).fetchall()
            )
            for p, header, _ in tf_entries:
                if not tf_stats.get(str(p)):
                    raise InputDataError(
                        "track features file has a header but no data rows", file=str(p), column="(all columns)"
                    )
            tchk = _Check("track_id", "missing value", "track_id IS NULL")
            nnull = con.execute(
                f"SELECT __file FROM {_STAGE_TF} WHERE track_id IS NULL LIMIT 1"
            ).fetchone()
            if nnull:
                p, header, _ = next(e for e in tf_entries if str(e[0]) == nnull[0])
                d = _Diagnoser(p, header, "track features")
                try:
                    d.typed_view(_MSSD_TF_TYPES)
                    d.check(tchk)
                finally:
                    d.close()
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
        else:
            tf_stats = {}

        # 4. replace the real tables (same transaction)
        con.execute(
            f"CREATE OR REPLACE TABLE {FEEDBACK_EVENTS} AS SELECT "
            "CAST(session_id AS VARCHAR) AS stratum_id, "
            "CAST(session_position AS INTEGER) AS position, "
            "CAST(session_length AS INTEGER) AS stratum_length, "
            "CAST(date AS TIMESTAMP) + to_hours(hour_of_day) AS ts, "
            "CAST(track_id_clean AS VARCHAR) AS track_id, "
            "CAST(CASE WHEN __neg THEN 0 ELSE 1 END AS TINYINT) AS feedback, "
            "CAST(context_type AS VARCHAR) AS context_type, "
            "CAST(NULL AS VARCHAR) AS artist_id, CAST(NULL AS VARCHAR) AS genre_id, "
            "parse_filename(__file) AS source_file "
            f"FROM {_STAGE_LOG} WHERE {kept_pred}"
        )
        content = [c for c in _MSSD_TF_TYPES if c not in ("track_id", "release_year")]
        if tf_entries:
            con.execute(
                f"CREATE OR REPLACE TABLE {TRACK_CATALOG} AS SELECT "
                "CAST(track_id AS VARCHAR) AS track_id, CAST(NULL AS VARCHAR) AS artist_id, "
                "CAST(NULL AS VARCHAR) AS genre_id, CAST(release_year AS INTEGER) AS release_year, "
                "CAST(NULL AS VARCHAR) AS title, "
                + ", ".join(_q(c) for c in content)
                + f" FROM {_STAGE_TF}"
            )
        else:
            con.execute(
                f"CREATE OR REPLACE TABLE {TRACK_CATALOG} AS SELECT "
                "track_id, CAST(NULL AS VARCHAR) AS artist_id, CAST(NULL AS VARCHAR) AS genre_id, "
                "CAST(NULL AS INTEGER) AS release_year, CAST(NULL AS VARCHAR) AS title, "
                + ", ".join(f"CAST(NULL AS {_MSSD_TF_TYPES[c]}) AS {_q(c)}" for c in content)
                + f" FROM (SELECT DISTINCT track_id FROM {FEEDBACK_EVENTS}) ORDER BY track_id"
            )
        con.execute(f"DROP TABLE IF EXISTS {_STAGE_LOG}")
        con.execute(f"DROP TABLE IF EXISTS {_STAGE_TF}")

        hashed = hashes.result()
        records: list[FileRecord] = []
        reason = f"context_type != {context_filter!r}"
        for (p, _, _), (size, sha) in zip(log_entries, hashed):
            row = by_file[str(p)]
            read, kept = int(row[1]), int(row[2])
            rej = read - kept
            records.append(FileRecord(str(p), "log", size, sha, read, kept, rej, {reason: rej} if rej else {}))
        for (p, _, _), (size, sha) in zip(tf_entries, hashed[len(log_entries):]):
            n = int(tf_stats[str(p)])
            records.append(FileRecord(str(p), "tracks", size, sha, n, n, 0, {}))
        return _finish(con, dataset_key, records, cfg, "mssd", "session", append)


def _dup_header(path: Path, header: list[str]) -> None:
    seen = set()
    for h in header:
        if h in seen:
            raise InputDataError("header names the same column twice", file=str(path), column=h)
        seen.add(h)


@dataclass(frozen=True)
class _Append:
    """What ``append_files`` hands the ingestion: the sha256 every already-ingested file must still
    have, and the landed paths (all appends so far) for the ``appended_files`` meta key."""

    expected_sha: dict[str, str]
    appended: tuple[str, ...]


def _finish(
    con: duckdb.DuckDBPyConnection,
    dataset_key: str,
    records: list[FileRecord],
    cfg: IngestConfig,
    fmt: str,
    stratum_kind: str,
    append: _Append | None = None,
) -> IngestionResult:
    """Inside the open transaction: ingestion_record + meta, and the summary."""
    if append is not None:
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
    fingerprint = _fingerprint(records, cfg, fmt)
    cols = ", ".join(f"{_q(c)} {t}" for c, t in INGESTION_RECORD_COLUMNS.items())
    con.execute(f"CREATE OR REPLACE TABLE {INGESTION_RECORD} ({cols})")
    if records:
        con.executemany(
            f"INSERT INTO {INGESTION_RECORD} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                [dataset_key, r.path, r.kind, r.size_bytes, r.sha256, r.rows_read, r.rows_kept,
                 r.rows_rejected, json.dumps(r.reject_reasons, sort_keys=True)]
                for r in records
            ],
        )
    wh.set_meta(con, "dataset", dataset_key)
    wh.set_meta(con, "dataset_fingerprint", fingerprint)
    wh.set_meta(con, "appended_files", json.dumps(list(append.appended) if append is not None else []))
    n_events, n_strata, n_pos = con.execute(
        f"SELECT count(*), count(DISTINCT stratum_id), coalesce(sum(feedback), 0) FROM {FEEDBACK_EVENTS}"
    ).fetchone()
    n_tracks = con.execute(f"SELECT count(*) FROM {TRACK_CATALOG}").fetchone()[0]
    if n_events == 0:
        raise InputDataError(
            "no feedback events left after filtering (check ingest.context_filter / rating settings)",
            file=", ".join(Path(r.path).name for r in records),
            column="context_type" if fmt == "mssd" else "feedback",
        )
    return IngestionResult(
        dataset=dataset_key,
        fingerprint=fingerprint,
        files=tuple(records),
        n_events=int(n_events),
        n_tracks=int(n_tracks),
        n_strata=int(n_strata),
        n_positive=int(n_pos),
        stratum_kind=stratum_kind,
    )


# ----------------------------------------------------------------------------------------------
# Per-user events
# ----------------------------------------------------------------------------------------------


def _stage_any(con, path: Path, table: str, what: str) -> tuple[list[str], dict[str, str], str]:
    """Load a CSV (as text) or Parquet (native types) file into a temp table.

    Returns (columns, types, row label) — the row label is 'line' (CSV, header = line 1) or
    'row' (Parquet, 1-based)."""
    _check_exists(path, what)
    if _is_parquet(path):
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM read_parquet({_lit(str(path))})")
        except duckdb.Error as e:
            raise InputDataError(
                f"{what} file is not a readable Parquet file: {_duck_msg(e)}", file=str(path), column="(whole file)"
            ) from e
        types = _temp_types(con, table)
        n = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        if n == 0:
            raise InputDataError(f"{what} file has no rows", file=str(path), column="(all columns)")
        return list(types), types, "row"
    header, _ = _read_head(path, what)
    _dup_header(path, header)
    cols = {h: "VARCHAR" for h in header}
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM read_csv({_lit(str(path))}, "
            f"columns={cols!r}, header=true, auto_detect=false, delim=',', quote='\"', escape='\"')"
        )
    except duckdb.Error as e:
        raise _diagnose_read_failure(e, [(path, header, None)], {}, what) from e
    return header, cols, "line"


def _row_offset(con, table: str, label: str) -> int:
    """What to add to ``rowid`` to get the 1-based row (Parquet) or line (CSV, header = line 1).

    Tables created inside an open transaction number their rows from a large transaction-local
    base, so the base is measured rather than assumed."""
    base = con.execute(f"SELECT coalesce(min(rowid), 0) FROM {table}").fetchone()[0]
    return (2 if label == "line" else 1) - int(base)


def _temp_types(con, table: str) -> dict[str, str]:
    return {r[0]: r[1] for r in con.execute(f"DESCRIBE {table}").fetchall()}


def _raise_rows(con, table: str, line_expr: str, label: str, pred: str, column: str, reason: str,
                path: Path, show: str | None = None) -> None:
    show = show or _q(column)
    rows = con.execute(
        f"SELECT {line_expr}, {show} FROM {table} t WHERE {pred} ORDER BY rowid LIMIT 5"
    ).fetchall()
    if rows:
        raise InputDataError(
            reason, file=str(path), column=column, rows=[f"{label} {ln}: {column}={v!r}" for ln, v in rows]
        )


def _ts_expr(col: str, dtype: str) -> str:
    c = _q(col)
    t = dtype.upper()
    if t.startswith("TIMESTAMP WITH TIME ZONE") or t == "TIMESTAMPTZ":
        return f"timezone('UTC', {c})"
    if t.startswith("TIMESTAMP") or t == "DATE":
        return f"CAST({c} AS TIMESTAMP)"
    if t in ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "UBIGINT", "UINTEGER", "DOUBLE", "FLOAT", "HUGEINT"):
        return f"make_timestamp(CAST(CAST({c} AS DOUBLE) * 1000000 AS BIGINT))"
    v = f"trim(CAST({c} AS VARCHAR))"
    return (
        f"COALESCE(TRY_CAST({v} AS TIMESTAMP), CASE WHEN regexp_full_match({v}, '-?[0-9]+(\\.[0-9]+)?') "
        f"THEN make_timestamp(CAST(CAST({v} AS DOUBLE) * 1000000 AS BIGINT)) END)"
    )


def _feedback_expr(col: str, cfg: IngestConfig) -> str:
    v = f"lower(trim(CAST({_q(col)} AS VARCHAR)))"
    pos = ", ".join(_lit(s) for s in POSITIVE_SPELLINGS)
    neg = ", ".join(_lit(s) for s in NEGATIVE_SPELLINGS)
    num = f"TRY_CAST({v} AS DOUBLE)"
    # -1 = neutral rating (dropped), NULL = unknown spelling (error)
    if cfg.rating_threshold is not None:
        hi = float(cfg.rating_threshold) + float(cfg.neutral_band)
        lo = float(cfg.rating_threshold) - float(cfg.neutral_band)
        return (
            f"CASE WHEN {num} IS NOT NULL THEN (CASE WHEN {num} >= {hi!r} THEN 1 WHEN {num} <= {lo!r} THEN 0 "
            f"ELSE -1 END) WHEN {v} IN ({pos}) THEN 1 WHEN {v} IN ({neg}) THEN 0 END"
        )
    return (
        f"CASE WHEN {v} IN ({pos}) THEN 1 WHEN {v} IN ({neg}) THEN 0 "
        f"WHEN {num} = 1 THEN 1 WHEN {num} = 0 THEN 0 END"
    )


def _as_paths(files: Path | str | Sequence[Path | str] | None) -> list[Path]:
    """A single path, a sequence of paths, or None → a de-duplicated list of Paths (order kept)."""
    if files is None:
        return []
    if isinstance(files, (str, Path)):
        return [Path(files)]
    return list(dict.fromkeys(Path(f) for f in files))


def _stage_events_file(
    con, path: Path, fi: int, cfg: IngestConfig, required: list[str], optional: list[str]
) -> tuple[str, str, list[str], int, int]:
    """Stage + validate ONE events file into ``{_STAGE_EV}_{fi}`` (typed, with __fi/__line/__src).

    Returns (table, row label, columns, rows read, neutral rows)."""
    raw = _STAGE_EV + "_raw"
    cols, _, label = _stage_any(con, path, raw, "events")
    _require_columns(path, cols, required, "events")
    _suggest_unknown(path, cols, required + optional)
    types = _temp_types(con, raw)
    line_off = _row_offset(con, raw, label)
    sel = [
        f"CAST({fi} AS INTEGER) AS __fi",
        f"CAST(rowid + {line_off} AS BIGINT) AS __line",
        f"{_lit(path.name)} AS __src",
        "CAST(user_id AS VARCHAR) AS user_id",
        "CAST(track_id AS VARCHAR) AS track_id",
        "CAST(timestamp AS VARCHAR) AS ts_raw",
        f"CAST({_ts_expr('timestamp', types['timestamp'])} AS TIMESTAMP) AS ts",
        "CAST(feedback AS VARCHAR) AS feedback_raw",
        f"CAST({_feedback_expr('feedback', cfg)} AS INTEGER) AS fb",
    ]
    for c in optional:
        sel.append(f"CAST({_q(c)} AS VARCHAR) AS {c}" if c in cols else f"CAST(NULL AS VARCHAR) AS {c}")
    ev = f"{_STAGE_EV}_{fi}"
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {ev} AS SELECT {', '.join(sel)} FROM {raw} ORDER BY rowid")
    except duckdb.Error as e:
        raise InputDataError(
            f"events file could not be converted: {_duck_msg(e)}", file=str(path), column="(unknown)"
        ) from e
    con.execute(f"DROP TABLE IF EXISTS {raw}")
    n_read = con.execute(f"SELECT count(*) FROM {ev}").fetchone()[0]
    if n_read == 0:
        raise InputDataError("events file has a header but no data rows", file=str(path), column="(all columns)")
    for c in ("user_id", "track_id"):
        _raise_rows(con, ev, "__line", label, f"{c} IS NULL OR trim({c}) = ''", c, "events file: missing value",
                    path)
    _raise_rows(con, ev, "__line", label, "ts_raw IS NULL", "timestamp", "events file: missing value",
                path, "ts_raw")
    _raise_rows(con, ev, "__line", label, "ts IS NULL", "timestamp",
                "events file: wrong type in column 'timestamp' (expected a timestamp such as "
                "2024-05-01 12:00:00 or epoch seconds)", path, "ts_raw")
    expect = (
        "a numeric rating, or " if cfg.rating_threshold is not None else ""
    ) + "one of " + "/".join(POSITIVE_SPELLINGS) + " (positive) or " + "/".join(NEGATIVE_SPELLINGS) + " (negative)"
    if cfg.rating_threshold is None:
        expect += "; set ingest.rating_threshold for numeric ratings"
    _raise_rows(con, ev, "__line", label, "fb IS NULL", "feedback",
                f"events file: unknown feedback spelling (expected {expect})", path, "feedback_raw")
    n_neutral = con.execute(f"SELECT count(*) FROM {ev} WHERE fb < 0").fetchone()[0]
    return ev, label, cols, int(n_read), int(n_neutral)


def _stage_tracks_file(con, path: Path, fi: int, ev: str, ev_art: bool, ev_gen: bool) -> tuple[str, int]:
    """Stage + validate ONE tracks file into ``{_STAGE_TR}_cat_{fi}`` (catalog columns + __fi/__rid).

    ``ev`` is the staged union of all events (for the artist/genre fallback). Returns (table, rows)."""
    tr_cols, _, tlabel = _stage_any(con, path, _STAGE_TR, "tracks")
    _require_columns(path, tr_cols, ["track_id"], "tracks")
    _suggest_unknown(path, tr_cols, list(TRACK_KEY_COLUMNS) + ["embedding"])
    ttypes = _temp_types(con, _STAGE_TR)
    toff = _row_offset(con, _STAGE_TR, tlabel)
    n_tr = con.execute(f"SELECT count(*) FROM {_STAGE_TR}").fetchone()[0]
    if n_tr == 0:
        raise InputDataError("tracks file has a header but no data rows", file=str(path), column="(all columns)")
    _raise_rows(con, _STAGE_TR, f"rowid + {toff}", tlabel, "track_id IS NULL", "track_id",
                "tracks file: missing value", path)
    tdups = con.execute(
        f"SELECT CAST(track_id AS VARCHAR), list(rowid + {toff} ORDER BY rowid) FROM {_STAGE_TR} "
        "GROUP BY track_id HAVING count(*) > 1 ORDER BY min(rowid) LIMIT 5"
    ).fetchall()
    if tdups:
        raise InputDataError(
            "tracks file contains duplicate track_id keys",
            file=str(path),
            column="track_id",
            rows=[f"track_id={t!r}: {tlabel}s {', '.join(map(str, ls[:5]))}" for t, ls in tdups],
        )
    tsel = ["CAST(t.track_id AS VARCHAR) AS track_id"]
    for key, kt in list(TRACK_KEY_COLUMNS.items())[1:]:
        if key in tr_cols:
            if kt != "VARCHAR" and ttypes[key] == "VARCHAR":
                _raise_rows(con, _STAGE_TR, f"rowid + {toff}", tlabel,
                            f"{_q(key)} IS NOT NULL AND TRY_CAST(TRY_CAST({_q(key)} AS DOUBLE) AS {kt}) IS NULL",
                            key, f"tracks file: wrong type in column {key!r} (expected {kt})", path)
                tsel.append(f"CAST(CAST(t.{_q(key)} AS DOUBLE) AS {kt}) AS {key}")
            else:
                tsel.append(f"CAST(t.{_q(key)} AS {kt}) AS {key}")
        elif key == "artist_id" and ev_art:
            tsel.append("e.artist_id AS artist_id")
        elif key == "genre_id" and ev_gen:
            tsel.append("e.genre_id AS genre_id")
        else:
            tsel.append(f"CAST(NULL AS {kt}) AS {key}")
    for c in tr_cols:
        if c in TRACK_KEY_COLUMNS:
            continue
        t = ttypes[c]
        if c == "embedding":
            if t == "VARCHAR":
                _raise_rows(con, _STAGE_TR, f"rowid + {toff}", tlabel,
                            "embedding IS NOT NULL AND (TRY_CAST(embedding AS FLOAT[]) IS NULL OR "
                            "list_count(TRY_CAST(embedding AS FLOAT[])) < len(TRY_CAST(embedding AS FLOAT[])))",
                            "embedding", "tracks file: embedding is not a list of numbers "
                            "(expected e.g. [0.1, -0.2, ...])", path)
                expr = "TRY_CAST(t.embedding AS FLOAT[])"
            elif re.search(r"\[\d*\]$", t):
                expr = "CAST(t.embedding AS FLOAT[])"
            else:
                raise InputDataError(f"tracks file: column 'embedding' has type {t}, expected a list of floats",
                                     file=str(path), column="embedding")
            lens = con.execute(
                f"SELECT len({expr}) AS l, count(*) FROM {_STAGE_TR} t WHERE t.embedding IS NOT NULL "
                "GROUP BY l ORDER BY count(*) DESC"
            ).fetchall()
            if len(lens) > 1:
                common = lens[0][0]
                _raise_rows(con, _STAGE_TR, f"rowid + {toff}", tlabel,
                            f"embedding IS NOT NULL AND len({expr}) <> {common}", "embedding",
                            f"tracks file: embeddings have different lengths (most have {common})",
                            path, f"len({expr})")
            tsel.append(f"{expr} AS embedding")
        elif t == "VARCHAR":
            # CSV text: numeric if every value parses as a number, else kept as text
            nonnum = con.execute(
                f"SELECT count(*) FROM {_STAGE_TR} WHERE {_q(c)} IS NOT NULL "
                f"AND TRY_CAST({_q(c)} AS DOUBLE) IS NULL"
            ).fetchone()[0]
            tsel.append(f"CAST(t.{_q(c)} AS DOUBLE) AS {_q(c)}" if nonnum == 0 else f"t.{_q(c)}")
        else:
            tsel.append(f"t.{_q(c)}")
    tsel += [f"CAST({fi} AS INTEGER) AS __fi", "t.rowid AS __rid"]
    join = ""
    if ("artist_id" not in tr_cols and ev_art) or ("genre_id" not in tr_cols and ev_gen):
        join = (
            f" LEFT JOIN (SELECT track_id AS __tid, any_value(artist_id) AS artist_id, "
            f"any_value(genre_id) AS genre_id FROM {ev} GROUP BY track_id) e "
            "ON e.__tid = CAST(t.track_id AS VARCHAR)"
        )
    out = f"{_STAGE_TR}_cat_{fi}"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {out} AS SELECT {', '.join(tsel)} FROM {_STAGE_TR} t{join} ORDER BY t.rowid"
    )
    con.execute(f"DROP TABLE IF EXISTS {_STAGE_TR}")
    return out, int(n_tr)


def _union_tracks(con, tables: list[str], tracks_files: list[Path]) -> str:
    """Union the per-file catalogs; a track_id repeated in a LATER tracks file replaces the earlier row.

    Returns the table holding the winners (with __fi/__rid)."""
    allt = f"{_STAGE_TR}_all"
    union = " UNION ALL BY NAME ".join(f"SELECT * FROM {t}" for t in tables)
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {allt} AS SELECT * FROM ({union}) "
            "QUALIFY row_number() OVER (PARTITION BY track_id ORDER BY __fi DESC) = 1 ORDER BY __fi, __rid"
        )
    except duckdb.Error as e:
        per_file = [_temp_types(con, t) for t in tables]
        clash = sorted({c for tt in per_file for c in tt
                        if len({t2[c] for t2 in per_file if c in t2}) > 1})
        raise InputDataError(
            f"tracks files cannot be combined: column types differ between the files ({_duck_msg(e)})",
            file=", ".join(str(p) for p in tracks_files),
            column=", ".join(clash) or "(unknown)",
        ) from e
    if "embedding" in _temp_types(con, allt):
        lens = con.execute(
            f"SELECT len(embedding) AS l, list(DISTINCT __fi ORDER BY __fi), count(*) FROM {allt} "
            "WHERE embedding IS NOT NULL GROUP BY l ORDER BY count(*) DESC"
        ).fetchall()
        if len(lens) > 1:
            common = lens[0][0]
            odd = sorted({fi for _, fis, _ in lens[1:] for fi in fis})
            raise InputDataError(
                f"tracks files: embeddings have different lengths across files (most have {common})",
                file=", ".join(str(tracks_files[i]) for i in odd),
                column="embedding",
                rows=[f"{n} tracks with length {ln} (in {', '.join(tracks_files[i].name for i in fis)})"
                      for ln, fis, n in lens[1:]],
            )
    return allt


def ingest_events(
    con: duckdb.DuckDBPyConnection,
    events_files: Path | str | Sequence[Path | str],
    tracks_files: Path | str | Sequence[Path | str] | None = None,
    *,
    dataset_key: str,
    cfg: IngestConfig,
) -> IngestionResult:
    """Ingest per-user feedback events (+ optional tracks files), all-or-nothing.

    ``events_files`` / ``tracks_files`` are each a single path (as before) or a list of paths
    (``tracks_files`` may be None or empty). Every file is validated on its own (errors name the
    file and its lines); the events of all files are then combined, and an event repeated across
    files (same user_id, track_id, timestamp) is an error naming both files. A track_id repeated
    WITHIN one tracks file is an error; a track_id repeated in a LATER tracks file replaces the
    earlier file's row (the later file wins; the earlier file's record counts it as rejected,
    reason ``superseded by a later tracks file``)."""
    return _ingest_events(con, events_files, tracks_files, dataset_key=dataset_key, cfg=cfg, append=None)


def _ingest_events(con, events_files, tracks_files, *, dataset_key: str, cfg: IngestConfig,
                   append: _Append | None) -> IngestionResult:
    ev_files = _as_paths(events_files)
    tr_files = _as_paths(tracks_files)
    if cfg.neutral_band < 0:
        raise ConfigError(f"ingest.neutral_band={cfg.neutral_band!r} must be >= 0")
    if not ev_files:
        raise InputDataError("no events files given", file="(none)", column="(none)")
    for p in ev_files:
        _check_exists(p, "events")
    for p in tr_files:
        _check_exists(p, "tracks")
    hashes = _hash_all(ev_files + tr_files)
    required = ["user_id", "track_id", "timestamp", "feedback"]
    optional = ["artist_id", "genre_id"]
    temp: list[str] = []

    with wh.atomic(con):
        staged = []
        for fi, p in enumerate(ev_files):
            staged.append(_stage_events_file(con, p, fi, cfg, required, optional))
            temp.append(staged[-1][0])
        ev = _STAGE_EV
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {ev} AS "
            + " UNION ALL ".join(f"SELECT * FROM {t}" for t, *_ in staged)
        )
        labels = [lab for _, lab, *_ in staged]
        dups = con.execute(
            f"SELECT user_id, track_id, ts, list(__fi ORDER BY __fi, __line), list(__line ORDER BY __fi, __line) "
            f"FROM {ev} GROUP BY user_id, track_id, ts HAVING count(*) > 1 "
            "ORDER BY min(__fi), min(__line) LIMIT 5"
        ).fetchall()
        if dups:
            fis = sorted({fi for d in dups for fi in d[3]})
            rows = []
            for u, t, ts, dfis, dlines in dups:
                if len(set(dfis)) == 1:
                    where = f"{labels[dfis[0]]}s {', '.join(map(str, dlines[:5]))}"
                    if len(fis) > 1:
                        where = f"{ev_files[dfis[0]].name} {where}"
                else:
                    where = ", ".join(f"{ev_files[fi].name} {labels[fi]} {ln}" for fi, ln in zip(dfis[:5], dlines))
                rows.append(f"user_id={u!r}, track_id={t!r}, timestamp={ts}: {where}")
            raise InputDataError(
                "events file contains duplicate events (same user_id, track_id, timestamp)" if len(fis) == 1 else
                "events files contain duplicate events (same user_id, track_id, timestamp) across files",
                file=", ".join(str(ev_files[fi]) for fi in fis),
                column="user_id, track_id, timestamp",
                rows=rows,
            )

        # tracks
        tr_counts: list[int] = []
        if tr_files:
            ev_art = any("artist_id" in cols for _, _, cols, _, _ in staged)
            ev_gen = any("genre_id" in cols for _, _, cols, _, _ in staged)
            cats = []
            for fi, p in enumerate(tr_files):
                t, n = _stage_tracks_file(con, p, fi, ev, ev_art, ev_gen)
                cats.append(t)
                temp.append(t)
                tr_counts.append(n)
            allt = _union_tracks(con, cats, tr_files)
            temp.append(allt)
            won = dict(con.execute(f"SELECT __fi, count(*) FROM {allt} GROUP BY __fi").fetchall())
            con.execute(f"CREATE OR REPLACE TEMP TABLE {_STAGE_TR}_cat AS SELECT * EXCLUDE (__fi, __rid) FROM {allt}")
            temp.append(_STAGE_TR + "_cat")

        # feedback_events (neutral ratings dropped)
        cat_join = ""
        art = "e.artist_id"
        gen = "e.genre_id"
        if tr_files:
            cat_join = f" LEFT JOIN {_STAGE_TR}_cat c ON c.track_id = e.track_id"
            art = "COALESCE(e.artist_id, c.artist_id)"
            gen = "COALESCE(e.genre_id, c.genre_id)"
        con.execute(
            f"CREATE OR REPLACE TABLE {FEEDBACK_EVENTS} AS SELECT "
            "CAST(e.user_id AS VARCHAR) AS stratum_id, "
            "CAST(row_number() OVER (PARTITION BY e.user_id ORDER BY e.ts, e.track_id) AS INTEGER) AS position, "
            "CAST(count(*) OVER (PARTITION BY e.user_id) AS INTEGER) AS stratum_length, "
            "CAST(e.ts AS TIMESTAMP) AS ts, CAST(e.track_id AS VARCHAR) AS track_id, "
            "CAST(e.fb AS TINYINT) AS feedback, CAST(NULL AS VARCHAR) AS context_type, "
            f"CAST({art} AS VARCHAR) AS artist_id, CAST({gen} AS VARCHAR) AS genre_id, "
            "e.__src AS source_file "
            f"FROM {ev} e{cat_join} WHERE e.fb >= 0 ORDER BY stratum_id, position"
        )
        if tr_files:
            con.execute(f"CREATE OR REPLACE TABLE {TRACK_CATALOG} AS SELECT * FROM {_STAGE_TR}_cat")
        else:
            con.execute(
                f"CREATE OR REPLACE TABLE {TRACK_CATALOG} AS SELECT track_id, "
                "CAST(any_value(artist_id) AS VARCHAR) AS artist_id, "
                "CAST(any_value(genre_id) AS VARCHAR) AS genre_id, "
                "CAST(NULL AS INTEGER) AS release_year, CAST(NULL AS VARCHAR) AS title "
                f"FROM {FEEDBACK_EVENTS} GROUP BY track_id ORDER BY track_id"
            )
        for t in [_STAGE_EV + "_raw", _STAGE_EV, _STAGE_TR, *temp]:
            con.execute(f"DROP TABLE IF EXISTS {t}")

        hashed = hashes.result()
        records = []
        for (p, (size, sha), (_, _, _, n_read, n_neutral)) in zip(ev_files, hashed, staged):
            records.append(FileRecord(
                str(p), "events", size, sha, n_read, n_read - n_neutral, n_neutral,
                {"neutral rating": n_neutral} if n_neutral else {},
            ))
        for fi, (p, (size, sha)) in enumerate(zip(tr_files, hashed[len(ev_files):])):
            n, kept = tr_counts[fi], int(won.get(fi, 0))
            records.append(FileRecord(str(p), "tracks", size, sha, n, kept, n - kept,
                                      {"superseded by a later tracks file": n - kept} if n > kept else {}))
        return _finish(con, dataset_key, records, cfg, "events", "user", append)


# ----------------------------------------------------------------------------------------------
# Paths and data-set routing
# ----------------------------------------------------------------------------------------------

_LOG_RX = re.compile(r"^log_.*\.csv(\.gz)?$", re.IGNORECASE)
_TF_RX = re.compile(r"^tf_.*\.csv(\.gz)?$", re.IGNORECASE)


def resolve_mssd_paths(paths: Sequence[str]) -> tuple[list[Path], list[Path]]:
    """Folders → their ``log_*.csv[.gz]`` and ``tf_*.csv[.gz]`` (sorted); explicit files by name
    (``tf_*`` → track features, anything else → session log)."""
    logs: list[Path] = []
    tracks: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            found_logs = sorted(q for q in p.iterdir() if q.is_file() and _LOG_RX.match(q.name))
            found_tf = sorted(q for q in p.iterdir() if q.is_file() and _TF_RX.match(q.name))
            if not found_logs:
                raise InputDataError(
                    "MSSD folder holds no session log files (log_*.csv or log_*.csv.gz)",
                    file=str(p),
                    column="(none)",
                )
            logs += found_logs
            tracks += found_tf
        elif p.exists():
            (tracks if p.name.lower().startswith("tf_") else logs).append(p)
        else:
            raise InputDataError("MSSD path does not exist", file=str(p), column="(none)")
    dedup = lambda xs: list(dict.fromkeys(xs))  # noqa: E731
    return dedup(logs), dedup(tracks)


def _locate(raw: str, data_dir: Path) -> str:
    p = Path(raw).expanduser()
    if not p.is_absolute() and not p.exists() and (data_dir / p).exists():
        return str(data_dir / p)
    return str(p)


def ingest_dataset(
    spec: DatasetSpec, *, warehouse: str | Path, cfg: IngestConfig, data_dir: str | Path
) -> IngestionResult:
    """Ingest the data set ``spec`` into the warehouse file (replacing whatever it held)."""
    data_dir = Path(data_dir)
    if spec.kind == "mssd":
        logs, tracks = resolve_mssd_paths([_locate(p, data_dir) for p in spec.paths])
        with wh.connect(warehouse) as con:
            return ingest_mssd(con, logs, tracks, dataset_key=spec.key, cfg=cfg)
    if spec.kind == "events":
        ev = Path(_locate(spec.paths[0], data_dir))
        tr = Path(_locate(spec.paths[1], data_dir)) if len(spec.paths) > 1 else None
        with wh.connect(warehouse) as con:
            return ingest_events(con, ev, tr, dataset_key=spec.key, cfg=cfg)
    if spec.kind == "synthetic":
        from .synthetic import write_world

        out = data_dir / "synthetic" / spec.preset
        manifest = write_world(spec.preset, out, formats=(spec.format,))
        with wh.connect(warehouse) as con:
            if spec.format == "sessions":
                return ingest_mssd(
                    con, list(manifest.session_logs), list(manifest.session_tracks), dataset_key=spec.key, cfg=cfg
                )
            return ingest_events(
                con, Path(manifest.users_events), manifest.users_tracks and Path(manifest.users_tracks),
                dataset_key=spec.key, cfg=cfg,
            )
    raise ConfigError(f"unknown data-set kind {spec.kind!r}")


def _classify_landed(path: Path) -> tuple[str, str]:
    """A landed file's (format, kind) from its name: MSSD ``log_*.csv[.gz]`` → ("mssd", "log"),
    ``tf_*.csv[.gz]`` → ("mssd", "tracks"); any other ``.csv``/``.csv.gz``/Parquet file is per-user:
    ``tracks*`` → ("events", "tracks"), anything else → ("events", "events")."""
    name = path.name
    if _LOG_RX.match(name):
        return "mssd", "log"
    if _TF_RX.match(name):
        return "mssd", "tracks"
    low = name.lower()
    if low.endswith((".csv", ".csv.gz")) or _is_parquet(path):
        return "events", "tracks" if low.startswith("tracks") else "events"
    raise InputDataError(
        "landed file is neither an MSSD file (log_*.csv[.gz], tf_*.csv[.gz]) nor a per-user events/tracks "
        "file (.csv, .csv.gz, .parquet)",
        file=str(path), column="(file name)",
    )


_FORMAT_WORDS = {
    "mssd": "an MSSD session data set (log_*/tf_* files)",
    "events": "a per-user events data set (events*/tracks* csv/parquet files)",
}


def _current_result(con, key: str, rows: list[tuple], cfg: IngestConfig, fmt: str) -> IngestionResult | None:
    """The summary of what the warehouse holds, if it is exactly what ``cfg`` would ingest (else None)."""
    records = [
        FileRecord(p, k, int(size), sha, int(rr), int(rk), int(rj), json.loads(reasons or "{}"))
        for p, k, sha, size, rr, rk, rj, reasons in rows
    ]
    fingerprint = _fingerprint(records, cfg, fmt)
    if fingerprint != wh.get_meta(con, "dataset_fingerprint"):
        return None
    n_events, n_strata, n_pos = con.execute(
        f"SELECT count(*), count(DISTINCT stratum_id), coalesce(sum(feedback), 0) FROM {FEEDBACK_EVENTS}"
    ).fetchone()
    n_tracks = con.execute(f"SELECT count(*) FROM {TRACK_CATALOG}").fetchone()[0]
    return IngestionResult(
        dataset=key, fingerprint=fingerprint, files=tuple(records), n_events=int(n_events),
        n_tracks=int(n_tracks), n_strata=int(n_strata), n_positive=int(n_pos),
        stratum_kind="session" if fmt == "mssd" else "user",
    )


def append_files(
    con: duckdb.DuckDBPyConnection, files: Sequence[Path | str], *, cfg: IngestConfig
) -> IngestionResult:
    """Add landed files to the current data set (MSSD or per-user), all-or-nothing.

    Landed files are classified by name (see ``_classify_landed``) and must be of the current data
    set's format. A landed file whose sha256 is already in ``ingestion_record`` (or repeats another
    landed file) is skipped. The current data set's files plus the new ones are re-ingested in ONE
    transaction, so a bad landed file leaves the warehouse exactly as it was; a file of the data set
    that changed on disk since it was ingested is an error. The ``dataset`` meta key keeps the
    ORIGINAL key (downstream stages see the same data set growing), ``ingestion_record`` lists every
    file of the data set, ``appended_files`` (JSON list) every landed path appended so far, and
    ``dataset_fingerprint`` covers every file's sha256 + the config. Per-user tracks files: a
    track_id repeated in a later file replaces the earlier row (see ``ingest_events``); MSSD
    ``tf_*`` files: a repeated track_id is an error. Returns the summary of the whole data set."""
    files = [Path(f) for f in files]
    names = ", ".join(str(f) for f in files) or "(none)"
    key = wh.get_meta(con, "dataset")
    if key is None or not wh.table_exists(con, INGESTION_RECORD):
        raise InputDataError("no current data set to append to: run a full ingestion first", file=names,
                             column="(none)")
    rows = con.execute(
        "SELECT file_path, kind, sha256, size_bytes, rows_read, rows_kept, rows_rejected, reject_reasons "
        f"FROM {INGESTION_RECORD} ORDER BY rowid"
    ).fetchall()
    if not rows:
        raise InputDataError("no current data set to append to: run a full ingestion first", file=names,
                             column="(none)")
    fmt = "events" if any(k == "events" for _, k, *_ in rows) else "mssd"

    # classify + check every landed file before touching anything
    landed: list[tuple[Path, str]] = []
    for f in files:
        f_fmt, kind = _classify_landed(f)
        if f_fmt != fmt:
            raise InputDataError(
                f"landed file {f.name!r} belongs to {_FORMAT_WORDS[f_fmt]}, but the current data set {key!r} is "
                f"{_FORMAT_WORDS[fmt]}; only files of the same format can be appended (ingest the other "
                "format as a new data set instead)",
                file=str(f), column="(file name)",
            )
        _check_exists(f, "landed")
        landed.append((f, kind))

    # skip files whose content is already in the data set (or repeats another landed file)
    known = {sha for _, _, sha, *_ in rows}
    new: list[tuple[Path, str]] = []
    for f, kind in landed:
        _, sha = _hash_file(f)
        if sha in known:
            continue
        known.add(sha)
        new.append((f, kind))
    if not new:
        current = _current_result(con, key, rows, cfg, fmt)
        if current is not None:
            return current  # nothing new, same config: a no-op

    prev = wh.get_meta(con, "appended_files")
    appended = list(dict.fromkeys((json.loads(prev) if prev else []) + [str(f) for f, _ in new]))
    append = _Append(expected_sha={p: sha for p, _, sha, *_ in rows}, appended=tuple(appended))
    old_kind = "log" if fmt == "mssd" else "events"
    main = [Path(p) for p, k, *_ in rows if k == old_kind] + [f for f, k in new if k != "tracks"]
    tracks = [Path(p) for p, k, *_ in rows if k == "tracks"] + [f for f, k in new if k == "tracks"]
    main, tracks = list(dict.fromkeys(main)), list(dict.fromkeys(tracks))
    if fmt == "mssd":
        return _ingest_mssd(con, main, tracks, dataset_key=key, cfg=cfg, append=append)
    return _ingest_events(con, main, tracks, dataset_key=key, cfg=cfg, append=append)
