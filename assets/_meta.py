"""Small helpers that turn core results into Dagster metadata the UI renders well."""


import math
from typing import Any

import dagster as dg
import pandas as pd

from semid_pipeline.report_tables import head_markdown


def md_table(df: pd.DataFrame, *, max_rows: int = 60, floatfmt: str = ".4g") -> dg.MetadataValue:
    return dg.MetadataValue.md(head_markdown(df, max_rows=max_rows, floatfmt=floatfmt))


def number(x: Any) -> dg.MetadataValue:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return dg.MetadataValue.text("n/a")
    if isinstance(x, bool):
        return dg.MetadataValue.bool(x)
    if isinstance(x, int):
        return dg.MetadataValue.int(x)
    return dg.MetadataValue.float(float(f"{float(x):.6g}"))


def flat_numbers(prefix: str, values: dict[str, Any]) -> dict[str, dg.MetadataValue]:
    """{"a": 1, "b": {"c": 2}} → {"prefix/a": 1, "prefix/b.c": 2} for numeric leaves."""
    out: dict[str, dg.MetadataValue] = {}

    def walk(path: str, v: Any) -> None:
        if isinstance(v, dict):
            for k, sub in v.items():
                walk(f"{path}.{k}" if path else str(k), sub)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}{path}"] = number(v)

    walk("", values)
    return out


def peak_rss_metadata(mem) -> dict[str, dg.MetadataValue]:
    """``peak_rss_mb`` (+ how it was measured) of a ``resources_usage.stage_peak_rss`` block."""
    return {
        "peak_rss_mb": dg.MetadataValue.float(round(float(mem.peak_rss_mb), 1)),
        "peak_rss_method": dg.MetadataValue.text(mem.method),
    }
