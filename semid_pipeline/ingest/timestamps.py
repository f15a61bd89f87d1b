"""Time read right: every source timestamp becomes a naive UTC ``TIMESTAMP``.

* ``TIMESTAMP WITH TIME ZONE`` columns (e.g. Parquet written with a zone) → converted to UTC;
* text with a zone (``2024-01-01T08:30:00-05:00``, ``...Z``) → converted to UTC (13:30);
  text without a zone is taken as UTC already;
* numbers (or numeric text) are epoch seconds or milliseconds: ``[ingest] timestamp_unit``
  "s", "ms", or "auto" (default), which reads a value of magnitude >= 1e11 as milliseconds —
  1e11 seconds would be the year 5138, 1e11 milliseconds is March 1973, so the two never overlap
  for listening data;
* a value before ``[ingest] min_date`` or after today + 1 day is absurd and rejected.
"""

from __future__ import annotations

import datetime as dt

from ..config import IngestConfig
from ..errors import ConfigError
from ..sql import ident, literal

TIMESTAMP_UNITS = ("auto", "s", "ms")
MS_THRESHOLD = 1e11  # |epoch| at or above this is read as milliseconds (unit "auto")
_NUMERIC = ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "UBIGINT", "UINTEGER", "USMALLINT", "UTINYINT",
            "DOUBLE", "FLOAT", "HUGEINT", "REAL")
_ZONED_TEXT = r"[0-9]{2}:[0-9]{2}(:[0-9]{2}([.,][0-9]+)?)?\s*(Z|z|UTC|[+-][0-9]{2}(:?[0-9]{2})?)$"
_NUMBER_TEXT = r"-?[0-9]+(\.[0-9]+)?"


def validate_time_config(cfg: IngestConfig) -> tuple[dt.date, dt.datetime]:
    """(min_date, latest accepted instant = now + 1 day), or ConfigError for a bad setting."""
    if cfg.timestamp_unit not in TIMESTAMP_UNITS:
        raise ConfigError(f"ingest.timestamp_unit={cfg.timestamp_unit!r}: expected one of {', '.join(TIMESTAMP_UNITS)}")
    try:
        lo = dt.date.fromisoformat(str(cfg.min_date))
    except ValueError as e:
        raise ConfigError(f"ingest.min_date={cfg.min_date!r}: expected a date YYYY-MM-DD") from e
    hi = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(days=1)
    return lo, hi


def _epoch(num: str, unit: str) -> str:
    micros = {"s": f"{num} * 1000000", "ms": f"{num} * 1000"}
    if unit == "auto":
        expr = f"CASE WHEN abs({num}) >= {MS_THRESHOLD:.0f} THEN {micros['ms']} ELSE {micros['s']} END"
    else:
        expr = micros[unit]
    return f"make_timestamp(CAST({expr} AS BIGINT))"


def ts_expr(col: str, dtype: str, unit: str) -> str:
    """SQL turning column ``col`` (of DuckDB type ``dtype``) into a naive UTC TIMESTAMP (NULL if unreadable)."""
    c = ident(col)
    t = dtype.upper()
    if t.startswith("TIMESTAMP WITH TIME ZONE") or t == "TIMESTAMPTZ":
        return f"timezone('UTC', {c})"
    if t.startswith("TIMESTAMP") or t == "DATE":
        return f"CAST({c} AS TIMESTAMP)"
    if t in _NUMERIC or t.startswith("DECIMAL"):
        return _epoch(f"CAST({c} AS DOUBLE)", unit)
    v = f"trim(CAST({c} AS VARCHAR))"
    return (
        f"CASE WHEN regexp_full_match({v}, {literal(_NUMBER_TEXT)}) THEN {_epoch(f'CAST({v} AS DOUBLE)', unit)} "
        f"WHEN regexp_matches({v}, {literal(_ZONED_TEXT)}) THEN timezone('UTC', TRY_CAST({v} AS TIMESTAMPTZ)) "
        f"ELSE TRY_CAST({v} AS TIMESTAMP) END"
    )


def out_of_range(expr: str, lo: dt.date, hi: dt.datetime) -> str:
    """Predicate: the timestamp/date ``expr`` lies before ``lo`` or after ``hi``."""
    return (f"({expr} < CAST({literal(lo.isoformat())} AS TIMESTAMP) OR "
            f"{expr} > CAST({literal(hi.isoformat(sep=' '))} AS TIMESTAMP))")


def range_reason(lo: dt.date, hi: dt.datetime) -> str:
    return (f"absurd date (before ingest.min_date={lo.isoformat()} or after today + 1 day = "
            f"{hi.date().isoformat()}; epoch values must be seconds or milliseconds, see ingest.timestamp_unit)")
