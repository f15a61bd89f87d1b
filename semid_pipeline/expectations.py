"""The great-expectations 1.x runner behind ``quality``: expectation specs, outcomes and reports.

The 1.x idiom (``dagster-ge`` targets GX 0.x and pins pandas < 3, so it is not used): an
ephemeral context, a pandas data source with a whole-dataframe batch per frame, an expectation
suite built in code and a ``ValidationDefinition`` run. great-expectations is imported lazily
(≈ 5 s) the first time a validation runs; its progress bars, analytics and chatty logging are
switched off. Results come back as a :class:`ValidationReport`: structured outcomes with up to
``errors.EXAMPLES`` offending rows each, a markdown table for the Dagster UI and a JSON-able dict.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .errors import EXAMPLES as MAX_EXAMPLES
from .fileutil import jsonable

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
    ctx.config.analytics_enabled = False
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
class Frame:
    name: str
    df: pd.DataFrame
    expectations: list[ExpectationSpec]
    key_columns: tuple[str, ...] = ()


def validate_dataframe(
    df: pd.DataFrame,
    suite_name: str,
    expectations: list[ExpectationSpec],
    *,
    key_columns: Sequence[str] = (),
) -> ValidationReport:
    """Validate one frame against a list of expectations; examples show ``key_columns`` + the offending columns."""
    return validate_frames(suite_name, [Frame("frame", df, list(expectations), tuple(key_columns))])


def validate_frames(suite_name: str, frames: list[Frame]) -> ValidationReport:
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
        examples = [{"column": col, "missing_value": jsonable(v)} for v in missing_vals[:MAX_EXAMPLES]]
        observed = (
            "every required value present"
            if success
            else f"missing values: {', '.join(map(str, map(jsonable, missing_vals)))}"
        )
        if col in df.columns and not success:
            present = pd.unique(df[col].dropna())[:20]
            observed += f" (present: {', '.join(str(jsonable(v)) for v in sorted(present, key=str)) or 'none'})"
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
        vals = [jsonable(v) for v in (res.get("partial_unexpected_list") or [])]
        if vals:
            text += "; e.g. " + ", ".join(_short(v) for v in vals[:MAX_EXAMPLES])
    return text


def _observed_aggregate(spec: ExpectationSpec, res: dict) -> str:
    obs = jsonable(res.get("observed_value"))
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


def _plain_row(rec: dict) -> dict:
    return {str(k): v for k, v in jsonable(rec).items()}
