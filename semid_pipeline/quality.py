"""Data-quality validations of the warehouse tables, built with great-expectations 1.x.

The 1.x idiom (``dagster-ge`` targets GX 0.x and pins pandas < 3, so it is not used): an
ephemeral context, a pandas data source with a whole-dataframe batch per frame, an expectation
suite built in code and a ``ValidationDefinition`` run. great-expectations is imported lazily
(≈ 5 s) the first time a validation runs; its progress bars, analytics and chatty logging are
switched off.

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

import datetime as _dt
import decimal
import logging
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import schema
from .config import IngestConfig
from .warehouse import table_columns, table_exists

MAX_EXAMPLES = 5

# --------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's result, flattened for people and for JSON."""

    name: str  # the GX expectation type, e.g. "expect_column_values_to_be_in_set"
    column: str | None  # column(s) it looked at (pairs/compounds joined by ","); None = table level
    success: bool
    observed: str  # one readable line: what was found
    unexpected_count: int  # offending rows (or values, for set/aggregate expectations)
    examples: list[dict]  # up to 5 offending rows: key columns + offending values
    description: str = ""  # what the expectation means in this pipeline's words

    @property
    def label(self) -> str:
        return self.name + (f"({self.column})" if self.column else "")

    def to_dict(self) -> dict:
        return {
            "expectation": self.name,
            "column": self.column,
            "description": self.description,
            "success": self.success,
            "observed": self.observed,
            "unexpected_count": self.unexpected_count,
            "examples": [dict(e) for e in self.examples],
        }


@dataclass(frozen=True)
class ValidationReport:
    suite: str
    success: bool
    outcomes: tuple[ExpectationOutcome, ...]

    def failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def outcome(self, name: str, column: str | None = None) -> ExpectationOutcome:
        """The first outcome with this expectation type (or description) and column."""
        for o in self.outcomes:
            if name in (o.name, o.description) and (column is None or o.column == column):
                return o
        raise KeyError(f"{self.suite}: no outcome {name!r}" + (f" on column {column!r}" if column else ""))

    def summary_markdown(self) -> str:
        failures = self.failures()
        head = (
            f"**{self.suite}**: {'passed' if self.success else 'FAILED'} — "
            f"{len(self.outcomes) - len(failures)}/{len(self.outcomes)} expectations met"
        )
        lines = [
            head,
            "",
            "| expectation | column | ok | observed | first offending rows |",
            "|---|---|---|---|---|",
        ]
        for o in self.outcomes:
            what = f"`{o.name}`" + (f" — {_md(o.description)}" if o.description else "")
            rows = "; ".join(f"`{_md(_row_text(e))}`" for e in o.examples[:MAX_EXAMPLES])
            lines.append(
                f"| {what} | {_md(o.column or '—')} | {'✅' if o.success else '❌'} "
                f"| {_md(o.observed)} | {rows} |"
            )
        return "\n".join(lines)

    def to_metadata(self) -> dict:
        failures = self.failures()
        return {
            "suite": self.suite,
            "success": self.success,
            "evaluated": len(self.outcomes),
            "passed": len(self.outcomes) - len(failures),
            "failed": len(failures),
            "failures": [o.to_dict() for o in failures],
            "outcomes": [
                {"expectation": o.name, "column": o.column, "success": o.success, "observed": o.observed}
                for o in self.outcomes
            ],
        }

    def __str__(self) -> str:
        lines = [f"{self.suite}: {'passed' if self.success else 'FAILED'}"]
        for o in self.failures():
            lines.append(f"  ✗ {o.label}: {o.observed}")
            lines.extend(f"      {_row_text(e)}" for e in o.examples)
        return "\n".join(lines)


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _row_text(row: dict) -> str:
    return ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in row.items())


# --------------------------------------------------------------------------------------------
# expectation specs (plain data: no GX import needed to build them)


@dataclass(frozen=True)
class ExpectationSpec:
    """A GX expectation by its snake_case type name and kwargs, plus how to report it.

    ``examples_where``: for aggregate expectations (mean, distinct values ...) that carry no
    row indexes: a function frame → boolean mask of the rows to show as examples.
    ``column_from``: a frame column whose values in the offending rows name the outcome's
    column (used by the schema frame, where each row is one table column).
    ``column_label``: a fixed column label for the outcome.
    """

    type: str
    kwargs: dict = field(default_factory=dict)
    description: str = ""
    examples_where: Callable[[pd.DataFrame], Any] | None = None
    column_from: str | None = None
    column_label: str | None = None
    unit: str = "rows"  # what one frame row is, for the observed text

    def columns(self) -> list[str]:
        kw = self.kwargs
        cols: list[str] = []
        if "column" in kw:
            cols.append(kw["column"])
        for k in ("column_A", "column_B"):
            if k in kw:
                cols.append(kw[k])
        cols.extend(kw.get("column_list") or [])
        return cols


def expect(type_: str, description: str = "", **kwargs) -> ExpectationSpec:
    """Shorthand: ``expect("expect_column_values_to_not_be_null", column="track_id")``."""
    return ExpectationSpec(type=type_, kwargs=kwargs, description=description)


def _as_spec(e: Any) -> ExpectationSpec:
    if isinstance(e, ExpectationSpec):
        return e
    if isinstance(e, tuple) and len(e) == 2 and isinstance(e[0], str):
        return ExpectationSpec(type=e[0], kwargs=dict(e[1]))
    if isinstance(e, dict):
        d = dict(e)
        type_ = d.pop("type", None) or d.pop("expectation_type", None)
        kwargs = d.pop("kwargs", None)
        if kwargs is None:
            kwargs, d = d, {}
        return ExpectationSpec(type=type_, kwargs=dict(kwargs), **d)
    # a GX Expectation instance
    type_ = getattr(e, "expectation_type", None)
    cfg = e.configuration if hasattr(e, "configuration") else None
    if type_ and cfg is not None:
        kwargs = {k: v for k, v in cfg.kwargs.items() if k not in ("batch_id", "result_format")}
        return ExpectationSpec(type=type_, kwargs=kwargs, description=getattr(e, "description", None) or "")
    raise TypeError(f"not an expectation: {e!r} (use ExpectationSpec, (type, kwargs), a dict or a GX Expectation)")


# --------------------------------------------------------------------------------------------
# great-expectations, lazily

_GX = None


def _gx():
    """Import great-expectations once, with analytics, progress bars and noisy logging off."""
    global _GX
    if _GX is None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
        gx_logger = logging.getLogger("great_expectations")
        if gx_logger.level == logging.NOTSET:
            gx_logger.setLevel(logging.ERROR)
        import great_expectations as gx

        _GX = gx
    return _GX


def _context():
    gx = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    # Validator._determine_progress_bars reads these two keys; without them every run draws a
    # "Calculating Metrics" tqdm bar on stderr.
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    try:
        ctx.config.analytics_enabled = False
    except Exception:  # pragma: no cover - attribute moved in another GX version
        pass
    return ctx


def _camel(type_: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in type_.split("_"))


def _gx_expectation(spec: ExpectationSpec):
    gx = _gx()
    cls = getattr(gx.expectations, _camel(spec.type), None)
    if cls is None:
        from great_expectations.expectations.registry import get_expectation_impl

        cls = get_expectation_impl(spec.type)
    return cls(**spec.kwargs)


@dataclass
class _Frame:
    name: str
    df: pd.DataFrame
    expectations: list[ExpectationSpec]
    key_columns: tuple[str, ...] = ()


def validate_dataframe(
    df: pd.DataFrame,
    suite_name: str,
    expectations: list,
    *,
    key_columns: Sequence[str] = (),
) -> ValidationReport:
    """Validate one frame against a list of expectations (``ExpectationSpec``, ``(type, kwargs)``,
    dicts or GX Expectation objects); examples show ``key_columns`` + the offending columns."""
    return _validate_frames(
        suite_name, [_Frame("frame", df, [_as_spec(e) for e in expectations], tuple(key_columns))]
    )


def _validate_frames(suite_name: str, frames: list[_Frame]) -> ValidationReport:
    outcomes: list[ExpectationOutcome] = []
    ctx = None
    for i, fr in enumerate(frames):
        df = fr.df
        if not df.index.is_unique:
            df = df.reset_index(drop=True)
        run_df = _widen_for_between(df, fr.expectations)  # examples still come from df
        runnable: list[tuple[int, ExpectationSpec]] = []
        slot: list[ExpectationOutcome | None] = [None] * len(fr.expectations)
        for j, spec in enumerate(fr.expectations):
            missing = [c for c in spec.columns() if c not in df.columns]
            if missing:
                slot[j] = _unevaluated(spec, f"not evaluated: column {', '.join(missing)} not in the table")
            else:
                runnable.append((j, spec))
        if runnable:
            gx = _gx()
            if ctx is None:
                # one context, source, asset and whole-dataframe batch definition per report:
                # the frame itself is passed at run time (every add_* re-serializes the
                # ephemeral context's config to YAML, ~25 ms each).
                ctx = _context()
                batch_def = (
                    ctx.data_sources.add_pandas("semid")
                    .add_dataframe_asset("frame")
                    .add_batch_definition_whole_dataframe("whole_frame")
                )
            suite = ctx.suites.add(gx.ExpectationSuite(name=f"{suite_name}:{fr.name}:{i}"))
            ids: dict[str, int] = {}
            for j, spec in runnable:
                added = suite.add_expectation(_gx_expectation(spec))
                ids[str(added.id)] = j
            vd = ctx.validation_definitions.add(
                gx.ValidationDefinition(name=f"{suite_name}:{fr.name}:{i}", data=batch_def, suite=suite)
            )
            result = vd.run(
                batch_parameters={"dataframe": run_df},
                result_format={"result_format": "SUMMARY", "partial_unexpected_count": MAX_EXAMPLES},
            )
            # GX returns results grouped by metric dependencies, not in suite order: map by id.
            for r in result.results:
                j = ids.get(str(r.expectation_config.id))
                if j is None:  # pragma: no cover - ids are assigned by add_expectation
                    continue
                slot[j] = _outcome(fr.expectations[j], r, df, fr.key_columns)
        outcomes.extend(o for o in slot if o is not None)
    return ValidationReport(suite=suite_name, success=all(o.success for o in outcomes), outcomes=tuple(outcomes))


def _widen_for_between(df: pd.DataFrame, specs: list[ExpectationSpec]) -> pd.DataFrame:
    """GX's pandas ``column_values.between`` is vectorized only for int64/float64 columns
    (``column.dtype in [int, float]``); DuckDB's INTEGER/TINYINT/FLOAT arrive as int32/int8/
    float32 and would be checked by a Python function per row (≈ 1.5 s per million rows)."""
    widen = {}
    for spec in specs:
        if spec.type != "expect_column_values_to_be_between":
            continue
        col = spec.kwargs.get("column")
        if col not in df.columns or col in widen:
            continue
        s = df[col]
        dtype = s.dtype
        if isinstance(dtype, np.dtype):
            if dtype.kind in "iu" and dtype != np.int64:
                widen[col] = s.astype(np.int64 if (dtype.kind == "i" or dtype.itemsize < 8) else np.float64)
            elif dtype.kind == "f" and dtype != np.float64:
                widen[col] = s.astype(np.float64)
        elif pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            # nullable Int32/Int8/Float32 (what DuckDB returns for a column with NULLs)
            widen[col] = pd.Series(s.to_numpy(dtype=np.float64, na_value=np.nan), index=s.index, name=col)
    return df.assign(**widen) if widen else df


def _unevaluated(spec: ExpectationSpec, observed: str) -> ExpectationOutcome:
    """A failed outcome for an expectation GX could not evaluate (missing column, GX error)."""
    return ExpectationOutcome(
        name=spec.type, column=_spec_column(spec), success=False, observed=observed,
        unexpected_count=0, examples=[], description=spec.description,
    )


def _spec_column(spec: ExpectationSpec) -> str | None:
    if spec.column_label is not None:
        return spec.column_label
    cols = spec.columns()
    return ",".join(cols) if cols else None


def _outcome(spec: ExpectationSpec, r, df: pd.DataFrame, key_columns: tuple[str, ...]) -> ExpectationOutcome:
    res = dict(r.result or {})
    exc = r.exception_info or {}
    if isinstance(exc, dict) and exc.get("raised_exception"):
        return _unevaluated(spec, f"error: {exc.get('exception_message')}")
    success = bool(r.success)
    examples: list[dict] = []
    unexpected_count = int(res.get("unexpected_count") or 0)
    show_cols = list(dict.fromkeys([*key_columns, *spec.columns()]))
    show_cols = [c for c in show_cols if c in df.columns]

    if "partial_unexpected_index_list" in res:
        idx = list(res.get("partial_unexpected_index_list") or [])[:MAX_EXAMPLES]
        if idx:
            rows = df.loc[idx, show_cols or list(df.columns)]
            examples = [_plain_row(rec) for rec in rows.to_dict("records")]
        observed = _observed_map(res, spec.unit)
    elif spec.examples_where is not None:
        mask = np.asarray(spec.examples_where(df), dtype=bool)
        unexpected_count = int(mask.sum())
        if not success:
            examples = [_plain_row(rec) for rec in df[mask].head(MAX_EXAMPLES).to_dict("records")]
        observed = _observed_aggregate(spec, res)
    elif "details" in res and isinstance(res["details"], dict) and "mismatched" in res["details"]:
        mm = res["details"]["mismatched"] or {}
        missing = list(mm.get("missing") or [])
        extra = list(mm.get("unexpected") or [])
        unexpected_count = len(missing) + len(extra)
        examples = ([{"column": c, "problem": "missing"} for c in missing] + [
            {"column": c, "problem": "not in schema.py"} for c in extra
        ])[:MAX_EXAMPLES]
        observed = (
            "all expected columns present"
            if success
            else "; ".join(
                p for p in (
                    f"missing: {', '.join(map(str, missing))}" if missing else "",
                    f"not in schema.py: {', '.join(map(str, extra))}" if extra else "",
                ) if p
            ) or "columns differ"
        )
    elif "partial_missing_list" in res or "missing_count" in res:
        missing_vals = list(res.get("partial_missing_list") or [])
        unexpected_count = int(res.get("missing_count") or len(missing_vals))
        col = spec.kwargs.get("column")
        examples = [{"column": col, "missing_value": _plain(v)} for v in missing_vals[:MAX_EXAMPLES]]
        observed = (
            "every required value present"
            if success
            else f"missing values: {', '.join(map(str, map(_plain, missing_vals)))}"
        )
        if col in df.columns and not success:
            present = pd.unique(df[col].dropna())[:20]
            observed += f" (present: {', '.join(str(_plain(v)) for v in sorted(present, key=str)) or 'none'})"
    else:
        observed = _observed_aggregate(spec, res)

    column = _spec_column(spec)
    if spec.column_from is not None:
        offending = [str(e.get(spec.column_from)) for e in examples if e.get(spec.column_from) is not None]
        column = ", ".join(dict.fromkeys(offending)) or None
    return ExpectationOutcome(
        name=spec.type,
        column=column,
        success=success,
        observed=observed,
        unexpected_count=unexpected_count,
        examples=examples,
        description=spec.description,
    )


def _observed_map(res: dict, unit: str = "rows") -> str:
    n = int(res.get("element_count") or 0)
    bad = int(res.get("unexpected_count") or 0)
    text = f"{bad} of {n} {unit} unexpected"
    if bad:
        text += f" ({float(res.get('unexpected_percent') or 0.0):.3g}%)"
        vals = [_plain(v) for v in (res.get("partial_unexpected_list") or [])]
        if vals:
            text += "; e.g. " + ", ".join(_short(v) for v in vals[:MAX_EXAMPLES])
    return text


def _observed_aggregate(spec: ExpectationSpec, res: dict) -> str:
    obs = _plain(res.get("observed_value"))
    lo, hi = spec.kwargs.get("min_value"), spec.kwargs.get("max_value")
    text = "observed nothing (no rows)" if obs is None else f"observed {_short(obs)}"
    if lo is not None or hi is not None:
        bound = (
            f"between {lo} and {hi}" if lo is not None and hi is not None
            else f"≥ {lo}" if lo is not None else f"≤ {hi}"
        )
        text += f" (expected {bound})"
    return text


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return "(" + ", ".join(f"{k}={_short(x)}" for k, x in v.items()) + ")"
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(_short(x) for x in v) + ")"
    return repr(v) if isinstance(v, str) else str(v)


def _plain(v: Any) -> Any:
    """A JSON-able Python value (NaN/NaT → None, numpy → Python, timestamps → ISO strings)."""
    if v is None:
        return None
    if isinstance(v, (str, bool, int)):
        return v
    if isinstance(v, float):
        return None if math.isnan(v) else v
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return None if np.isnan(v) else float(v)
    if isinstance(v, decimal.Decimal):
        return float(v)
    if v is pd.NaT or v is pd.NA:
        return None
    if isinstance(v, (pd.Timestamp, _dt.datetime, _dt.date, _dt.time)):
        return v.isoformat()
    if isinstance(v, (np.datetime64, np.timedelta64)):
        return None if np.isnat(v) else str(v)
    if isinstance(v, pd.Timedelta):
        return str(v)
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_plain(x) for x in v]
    if isinstance(v, bytes):
        return v.hex()
    return str(v)


def _plain_row(rec: dict) -> dict:
    return {str(k): _plain(v) for k, v in rec.items()}


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


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


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
            parts.append(f"({_q(c)} IS NOT NULL AND len({_q(c)}) > 0)")
        elif _base(t) in ("FLOAT", "DOUBLE", "REAL", "FLOAT4", "FLOAT8"):
            parts.append(f"({_q(c)} IS NOT NULL AND NOT isnan({_q(c)}))")
        else:
            parts.append(f"({_q(c)} IS NOT NULL)")
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
        pred = " OR ".join(f"({_q(c)} IS NOT NULL AND trim(CAST({_q(c)} AS VARCHAR)) <> '')" for c in meta)
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


def validate_feedback_events(con, *, cfg: IngestConfig | None = None) -> ValidationReport:
    """Columns and types, non-null keys, labels, (stratum, position) keys, feature coverage."""
    cfg = cfg or IngestConfig()
    table = schema.FEEDBACK_EVENTS
    suite = f"{table}_quality"
    if not table_exists(con, table):
        return _missing_table(suite, table)
    actual = table_columns(con, table)
    expected = schema.FEEDBACK_EVENTS_COLUMNS
    frames: list[_Frame] = []

    # 1. columns: GX on a zero-row frame of the whole table
    empty = con.execute(f"SELECT * FROM {table} LIMIT 0").df()
    frames.append(
        _Frame(
            "columns",
            empty,
            [
                ExpectationSpec(
                    "expect_table_columns_to_match_set",
                    {"column_set": list(expected), "exact_match": True},
                    description="exactly the columns of schema.FEEDBACK_EVENTS_COLUMNS",
                )
            ],
        )
    )

    # 2. DuckDB types, as a frame: one row per column
    names = list(expected) + [c for c in actual if c not in expected]
    schema_df = pd.DataFrame(
        {
            "column": names,
            "expected_type": [expected.get(c) for c in names],
            "actual_type": [actual.get(c) for c in names],
        },
        dtype=object,
    )
    frames.append(
        _Frame(
            "schema",
            schema_df,
            [
                ExpectationSpec(
                    "expect_column_pair_values_to_be_equal",
                    {"column_A": "actual_type", "column_B": "expected_type", "ignore_row_if": "either_value_is_missing"},
                    description="DuckDB column types match schema.py",
                    column_from="column",
                    unit="columns",
                )
            ],
            key_columns=("column",),
        )
    )

    # 3. the events themselves: only the columns the expectations need
    wanted = ["stratum_id", "position", "stratum_length", "track_id", "ts", "feedback"]
    present = [c for c in wanted if c in actual]
    events = (
        con.execute(f"SELECT {', '.join(_q(c) for c in present)} FROM {table}").df()
        if present
        else pd.DataFrame()
    )
    specs = [
        ExpectationSpec("expect_column_values_to_not_be_null", {"column": c}, description=f"{c} is never null")
        for c in ("stratum_id", "track_id", "position", "ts", "feedback")
    ]
    specs += [
        ExpectationSpec(
            "expect_column_values_to_be_in_set",
            {"column": "feedback", "value_set": [0, 1]},
            description="feedback is 0 (negative) or 1 (positive)",
        ),
        ExpectationSpec(
            "expect_compound_columns_to_be_unique",
            {"column_list": ["stratum_id", "position"]},
            description="one event per (stratum_id, position)",
        ),
        ExpectationSpec(
            "expect_column_values_to_be_between",
            {"column": "position", "min_value": 1},
            description="position ≥ 1",
        ),
        ExpectationSpec(
            "expect_column_pair_values_a_to_be_greater_than_b",
            {
                "column_A": "stratum_length",
                "column_B": "position",
                "or_equal": True,
                "ignore_row_if": "either_value_is_missing",
            },
            description="position ≤ stratum_length",
        ),
        ExpectationSpec(
            "expect_column_distinct_values_to_contain_set",
            {"column": "feedback", "value_set": [0, 1]},
            description="both labels (0 and 1) occur",
        ),
    ]
    frames.append(
        _Frame("events", events, specs, key_columns=tuple(c for c in ("stratum_id", "position", "track_id") if c in present))
    )

    # 4. content-feature coverage of the event tracks (joined in DuckDB)
    if "track_id" in actual:
        coverage = _coverage_frame(con)
        counted = (_coverage_kind(con)[1] if table_exists(con, schema.TRACK_CATALOG)
                   and "track_id" in table_columns(con, schema.TRACK_CATALOG) else "features: no track_catalog")
        frames.append(
            _Frame(
                "coverage",
                coverage,
                [
                    ExpectationSpec(
                        "expect_column_mean_to_be_between",
                        {"column": "has_features", "min_value": float(cfg.min_feature_coverage), "max_value": 1.0},
                        description=(
                            f"share of event tracks with {counted} in track_catalog "
                            f"≥ min_feature_coverage ({cfg.min_feature_coverage:g})"
                        ),
                        examples_where=lambda d: d["has_features"] == 0,
                    )
                ],
                key_columns=("track_id", "events", "in_catalog"),
            )
        )
    return _validate_frames(suite, frames)


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
            select.append(f"CAST({_q(col)} AS DOUBLE) AS {_q(col)}")
        else:
            select.append(_q(col))
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
    return _validate_frames(suite, [_Frame("catalog", df, specs, key_columns=("track_id",) if "track_id" in actual else ())])

