"""Data-quality validations of the warehouse tables, built with great-expectations 1.x.

The runner (specs, outcomes, reports, lazy great-expectations) is ``expectations``.

Each table check turns into one or more pandas frames, loaded from DuckDB with only the columns
the expectations need:

``feedback_events``
    * a zero-row frame of the whole table → ``expect_table_columns_to_match_set`` (missing and
      extra columns versus ``schema.FEEDBACK_EVENTS_COLUMNS``);
    * a schema frame (column, expected_type, actual_type) from ``information_schema`` →
      ``expect_column_pair_values_to_be_equal`` (the DuckDB types);
    * the event keys → non-null keys, feedback in {0, 1}, unique (stratum_id, position),
      1 ≤ position ≤ stratum_length, both labels present;
    * a coverage frame, one row per distinct event track joined to ``track_catalog`` in DuckDB
      → ``expect_column_mean_to_be_between`` on ``has_features`` ≥ ``min_feature_coverage``.

``track_catalog``
    track_id non-null and unique; every numeric column named in ``schema.MSSD_TRACK_RANGES``
    within its documented range; ``mode`` in {major, minor} when it is a string column.

Results come back as a :class:`ValidationReport`: structured outcomes with up to five offending
rows each (key columns + offending values), a markdown table for the Dagster UI and a plain
JSON-able dict for metadata. Nothing here imports dagster.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from . import schema
from .config import IngestConfig
from .expectations import ExpectationOutcome, ExpectationSpec, ValidationReport, Frame, validate_frames
from .sql import ident
from .warehouse import table_columns, table_exists

# --------------------------------------------------------------------------------------------
# the warehouse checks

_NUMERIC_BASES = (
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
    "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "REAL", "DECIMAL", "NUMERIC", "INT1", "INT2", "INT4",
    "INT8", "INT", "FLOAT4", "FLOAT8",
)
_LIST_RE = re.compile(r"^(?P<base>.+?)(\[\d*\])+$")


def _base(type_: str) -> str:
    return type_.upper().split("(")[0].strip()


def _is_numeric(type_: str) -> bool:
    return _base(type_) in _NUMERIC_BASES


def _is_numeric_list(type_: str) -> bool:
    m = _LIST_RE.match(type_.strip())
    return bool(m) and _is_numeric(m.group("base"))


def _missing_table(suite: str, table: str) -> ValidationReport:
    return ValidationReport(
        suite=suite,
        success=False,
        outcomes=(
            ExpectationOutcome(
                name="expect_table_to_exist",
                column=None,
                success=False,
                observed=f"table {table} does not exist in the warehouse",
                unexpected_count=0,
                examples=[],
                description=f"{table} exists",
            ),
        ),
    )


def content_columns(con, table: str = schema.TRACK_CATALOG) -> dict[str, str]:
    """The catalog's numeric content columns (scalars and numeric lists such as ``embedding``)."""
    skip = set(schema.TRACK_KEY_COLUMNS) | set(schema.NON_CONTENT_COLUMNS)
    return {
        c: t
        for c, t in table_columns(con, table).items()
        if c not in skip and (_is_numeric(t) or _is_numeric_list(t))
    }


def _has_features_sql(cols: dict[str, str]) -> str:
    parts = []
    for c, t in cols.items():
        if _is_numeric_list(t):
            parts.append(f"({ident(c)} IS NOT NULL AND len({ident(c)}) > 0)")
        elif _base(t) in ("FLOAT", "DOUBLE", "REAL", "FLOAT4", "FLOAT8"):
            parts.append(f"({ident(c)} IS NOT NULL AND NOT isnan({ident(c)}))")
        else:
            parts.append(f"({ident(c)} IS NOT NULL)")
    return " OR ".join(parts) if parts else "false"


METADATA_FEATURE_COLUMNS = ("artist_id", "genre_id", "title", "album", "release_year")


def _coverage_kind(con) -> tuple[str, str]:
    """(SQL predicate "this catalog row has features", what was counted), measuring what the
    features stage uses: numeric content when the catalog has any, else the metadata it hashes."""
    content = content_columns(con)
    if content:
        return _has_features_sql(content), f"content features ({', '.join(sorted(content))})"
    meta = [c for c in METADATA_FEATURE_COLUMNS if c in table_columns(con, schema.TRACK_CATALOG)]
    if meta:
        pred = " OR ".join(f"({ident(c)} IS NOT NULL AND trim(CAST({ident(c)} AS VARCHAR)) <> '')" for c in meta)
        return pred, f"metadata-derived features (no numeric content; counted {', '.join(meta)})"
    return "false", ("features: none found (looked for numeric content columns or an embedding list, and "
                     f"metadata columns {', '.join(METADATA_FEATURE_COLUMNS)})")


def _coverage_frame(con) -> pd.DataFrame:
    """One row per distinct event track: events, in_catalog, has_features (0/1)."""
    ev = schema.FEEDBACK_EVENTS
    if table_exists(con, schema.TRACK_CATALOG) and "track_id" in table_columns(con, schema.TRACK_CATALOG):
        feat, _ = _coverage_kind(con)
        catalog = (
            f"(SELECT track_id, bool_or(coalesce({feat}, false)) AS feat "
            f"FROM {schema.TRACK_CATALOG} GROUP BY track_id)"
        )
    else:
        catalog = "(SELECT CAST(NULL AS VARCHAR) AS track_id, false AS feat WHERE false)"
    sql = f"""
        WITH e AS (
            SELECT track_id, count(*) AS events FROM {ev} WHERE track_id IS NOT NULL GROUP BY track_id
        )
        SELECT e.track_id, e.events,
               c.track_id IS NOT NULL AS in_catalog,
               CAST(coalesce(c.feat, false) AS INTEGER) AS has_features
        FROM e LEFT JOIN {catalog} AS c ON c.track_id = e.track_id
        ORDER BY has_features, e.events DESC, e.track_id
    """
    return con.execute(sql).df()


def _columns_frame(con, table: str, expected: dict) -> Frame:
    """GX on a zero-row frame of the whole table: exactly the expected columns."""
    empty = con.execute(f"SELECT * FROM {table} LIMIT 0").df()
    spec = ExpectationSpec("expect_table_columns_to_match_set", {"column_set": list(expected), "exact_match": True},
                           description="exactly the columns of schema.FEEDBACK_EVENTS_COLUMNS")
    return Frame("columns", empty, [spec])


def _types_frame(expected: dict, actual: dict) -> Frame:
    """DuckDB types as a frame, one row per column: actual == expected."""
    names = list(expected) + [c for c in actual if c not in expected]
    schema_df = pd.DataFrame({"column": names, "expected_type": [expected.get(c) for c in names],
                              "actual_type": [actual.get(c) for c in names]}, dtype=object)
    spec = ExpectationSpec(
        "expect_column_pair_values_to_be_equal",
        {"column_A": "actual_type", "column_B": "expected_type", "ignore_row_if": "either_value_is_missing"},
        description="DuckDB column types match schema.py", column_from="column", unit="columns",
    )
    return Frame("schema", schema_df, [spec], key_columns=("column",))


def _event_specs() -> list[ExpectationSpec]:
    specs = [
        ExpectationSpec("expect_column_values_to_not_be_null", {"column": c}, description=f"{c} is never null")
        for c in ("stratum_id", "track_id", "position", "ts", "feedback")
    ]
    return specs + [
        ExpectationSpec("expect_column_values_to_be_in_set", {"column": "feedback", "value_set": [0, 1]},
                        description="feedback is 0 (negative) or 1 (positive)"),
        ExpectationSpec("expect_compound_columns_to_be_unique", {"column_list": ["stratum_id", "position"]},
                        description="one event per (stratum_id, position)"),
        ExpectationSpec("expect_column_values_to_be_between", {"column": "position", "min_value": 1},
                        description="position ≥ 1"),
        ExpectationSpec(
            "expect_column_pair_values_a_to_be_greater_than_b",
            {"column_A": "stratum_length", "column_B": "position", "or_equal": True,
             "ignore_row_if": "either_value_is_missing"},
            description="position ≤ stratum_length",
        ),
        ExpectationSpec("expect_column_distinct_values_to_contain_set", {"column": "feedback", "value_set": [0, 1]},
                        description="both labels (0 and 1) occur"),
    ]


def _events_frame(con, table: str, actual: dict) -> Frame:
    """The events themselves: only the columns the expectations need."""
    wanted = ["stratum_id", "position", "stratum_length", "track_id", "ts", "feedback"]
    present = [c for c in wanted if c in actual]
    events = con.execute(f"SELECT {', '.join(ident(c) for c in present)} FROM {table}").df() if present else pd.DataFrame()
    keys = tuple(c for c in ("stratum_id", "position", "track_id") if c in present)
    return Frame("events", events, _event_specs(), key_columns=keys)


def _coverage_check_frame(con, cfg: IngestConfig) -> Frame:
    """Content-feature coverage of the event tracks (joined in DuckDB) ≥ ``min_feature_coverage``."""
    counted = (_coverage_kind(con)[1] if table_exists(con, schema.TRACK_CATALOG)
               and "track_id" in table_columns(con, schema.TRACK_CATALOG) else "features: no track_catalog")
    spec = ExpectationSpec(
        "expect_column_mean_to_be_between",
        {"column": "has_features", "min_value": float(cfg.min_feature_coverage), "max_value": 1.0},
        description=(f"share of event tracks with {counted} in track_catalog "
                     f"≥ min_feature_coverage ({cfg.min_feature_coverage:g})"),
        examples_where=lambda d: d["has_features"] == 0,
    )
    return Frame("coverage", _coverage_frame(con), [spec], key_columns=("track_id", "events", "in_catalog"))


def validate_feedback_events(con, *, cfg: IngestConfig | None = None) -> ValidationReport:
    """Columns and types, non-null keys, labels, (stratum, position) keys, feature coverage."""
    cfg = cfg or IngestConfig()
    table = schema.FEEDBACK_EVENTS
    suite = f"{table}_quality"
    if not table_exists(con, table):
        return _missing_table(suite, table)
    actual = table_columns(con, table)
    expected = schema.FEEDBACK_EVENTS_COLUMNS
    frames = [_columns_frame(con, table, expected), _types_frame(expected, actual), _events_frame(con, table, actual)]
    if "track_id" in actual:
        frames.append(_coverage_check_frame(con, cfg))
    return validate_frames(suite, frames)


def validate_track_catalog(con, *, cfg: IngestConfig | None = None) -> ValidationReport:
    """track_id non-null and unique; documented MSSD ranges; mode in {major, minor}."""
    cfg = cfg or IngestConfig()  # noqa: F841 - same signature as validate_feedback_events
    table = schema.TRACK_CATALOG
    suite = f"{table}_quality"
    if not table_exists(con, table):
        return _missing_table(suite, table)
    actual = table_columns(con, table)
    specs: list[ExpectationSpec] = [
        ExpectationSpec("expect_column_values_to_not_be_null", {"column": "track_id"}, description="track_id is never null"),
        ExpectationSpec("expect_column_values_to_be_unique", {"column": "track_id"}, description="one row per track_id"),
    ]
    select: list[str] = ['"track_id"'] if "track_id" in actual else []
    for col, rng in schema.MSSD_TRACK_RANGES.items():
        if col not in actual or rng is None:
            continue
        lo, hi = rng
        if lo is None and hi is None:
            continue
        t = actual[col]
        if not _is_numeric(t):
            continue  # e.g. a per-user file's own string column of the same name
        if _base(t) in ("DECIMAL", "NUMERIC", "HUGEINT", "UHUGEINT"):
            select.append(f"CAST({ident(col)} AS DOUBLE) AS {ident(col)}")
        else:
            select.append(ident(col))
        kwargs: dict[str, Any] = {"column": col, "mostly": 1.0}
        if lo is not None:
            kwargs["min_value"] = lo
        if hi is not None:
            kwargs["max_value"] = hi
        bound = f"[{'-∞' if lo is None else lo}, {'∞' if hi is None else hi}]"
        specs.append(ExpectationSpec("expect_column_values_to_be_between", kwargs, description=f"{col} within {bound}"))
    if "mode" in actual and _base(actual["mode"]) in ("VARCHAR", "TEXT", "STRING"):
        select.append('"mode"')
        specs.append(
            ExpectationSpec(
                "expect_column_values_to_be_in_set",
                {"column": "mode", "value_set": ["major", "minor"]},
                description="mode is 'major' or 'minor'",
            )
        )
    df = con.execute(f"SELECT {', '.join(select)} FROM {table}").df() if select else pd.DataFrame()
    return validate_frames(suite, [Frame("catalog", df, specs, key_columns=("track_id",) if "track_id" in actual else ())])

