"""The report's tables: evaluation records → one tidy frame → the summary, lift, diversity and
baseline tables, and their markdown / HTML rendering (``report.py`` assembles the report)."""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import pandas as pd

from .report_plots import _bucket_frame
from .schemes import GridCell
from .track_prior import stored_numbers


# --------------------------------------------------------------------------------------
# Records → tidy frame
# --------------------------------------------------------------------------------------


def _num(x: Any) -> float:
    try:
        if x is None:
            return float("nan")
        v = float(x)
        return v
    except (TypeError, ValueError):
        return float("nan")


def _at_k(ranking: dict, metric: str) -> tuple[float, int | None]:
    """(value, k) of ``<metric>@<k>`` in a ranking dict (k is ``[eval] topk``)."""
    for key, v in ranking.items():
        name, _, k = str(key).partition("@")
        if name == metric and k.isdigit():
            return _num(v), int(k)
    return float("nan"), None


def normalize_record(rec: dict) -> dict:
    """A record (``experiment.partition_record``) as one flat row; NaN / [] / {} where a piece is missing."""
    cell = GridCell.parse(rec["partition_key"])
    test = rec.get("test") or {}
    val = rec.get("val") or {}
    cold = test.get("cold_start") or {}
    ranking = rec.get("ranking") or {}
    recall, topk = _at_k(ranking, "recall")
    ndcg, _ = _at_k(ranking, "ndcg")
    return {
        "partition_key": cell.partition_key,
        "scheme": cell.scheme.series,  # v1 and v1+ag are separate rows / lines
        "k": cell.scheme.k,
        "h": cell.h,
        "test_auc": _num(test.get("auc")),
        "test_ci_lo": _num(test.get("ci_lo")),
        "test_ci_hi": _num(test.get("ci_hi")),
        "n_strata": _num(test.get("n_strata")),
        "val_auc": _num(val.get("auc")),
        "prior_weight": _num((rec.get("prior") or {}).get("weight")),  # [train] popularity_prior's w
        "prior_recent": _num((rec.get("prior") or {}).get("recent")),  # [train] recent_prior_days's ρ
        "prior_by_plays": bool((rec.get("prior") or {}).get("by_plays")),  # [train] prior_by_plays: the target kept
        "affinity": "/".join(f"{a:g}" for a in (rec.get("prior") or {}).get("affinity") or ()),  # content_affinity's a₊/a₋
        "taste": _num((rec.get("prior") or {}).get("taste")),  # content_affinity's personal taste b
        "memory": "/".join(f"{a:g}" for a in (rec.get("prior") or {}).get("memory") or ()),  # listener_memory's r_t/r_a
        "stored_total": _num(stored_numbers(rec) if rec.get("params_total") is not None else None),  # + z in use
        "params_total": _num(rec.get("params_total")),
        "params_track": _num(rec.get("params_track")),
        "by_history": list(test.get("by_history") or []),
        "cold_start_auc": _num(cold.get("auc")),
        "cold_start_pairs": _num(cold.get("n_pairs")),
        "topk": topk,
        "recall": recall,
        "ndcg": ndcg,
        "diversity": dict(rec.get("diversity") or {}),
        "baselines": dict(rec.get("baselines") or {}),
    }


def records_frame(records: Iterable[dict]) -> pd.DataFrame:
    """One row per partition (normalised), sorted by h, scheme, k; with the matching id
    row's AUC/params at the same h, the parameter reduction (%) and the AUC delta."""
    rows = [normalize_record(r) for r in records]
    cols = list(normalize_record({"partition_key": "0|id"}).keys())
    df = pd.DataFrame(rows, columns=cols)
    for c in ("k", "h"):  # keep ints and None (not float NaN)
        df[c] = pd.Series([r[c] for r in rows], dtype=object, index=df.index)
    if df.empty:
        for c in ("id_auc", "delta_auc_vs_id", "param_reduction_pct", "track_param_reduction_pct"):
            df[c] = pd.Series(dtype=float)
        return df
    df = df.drop_duplicates("partition_key", keep="last")
    df["_k"] = df["k"].apply(lambda v: -1 if v is None else v)
    df["_h"] = df["h"].apply(lambda v: -1 if v is None else v)
    df = df.sort_values(["_h", "scheme", "_k"]).reset_index(drop=True)
    ids = df[df["scheme"] == "id"].set_index("_h")
    id_auc = df["_h"].map(ids["test_auc"]) if len(ids) else pd.Series(np.nan, index=df.index)
    id_pt = df["_h"].map(ids["stored_total"]) if len(ids) else pd.Series(np.nan, index=df.index)
    id_tr = df["_h"].map(ids["params_track"]) if len(ids) else pd.Series(np.nan, index=df.index)
    df["id_auc"] = id_auc.astype(float)
    df["delta_auc_vs_id"] = df["test_auc"] - df["id_auc"]
    # what each model stores: its parameters + the popularity prior's per-track values where w > 0
    df["param_reduction_pct"] = 100.0 * (1.0 - df["stored_total"] / id_pt.astype(float))
    df["track_param_reduction_pct"] = 100.0 * (1.0 - df["params_track"] / id_tr.astype(float))
    return df.drop(columns=["_k", "_h"])


# --------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------


def _topk(df: pd.DataFrame) -> str:
    ks = sorted({int(k) for k in df["topk"].dropna()}) if "topk" in df else []
    return "/".join(map(str, ks)) or "k"


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Every partition: AUC with CI, val AUC, the popularity prior's weight (``track_prior``; blank
    without the switch) and the content affinity's (``content_affinity``), parameters, reduction vs id (same h), ΔAUC, cold-start AUC, ranking metrics."""
    if df.empty:
        return pd.DataFrame(columns=["partition", "scheme", "k", "h", "test AUC", "95% CI"])
    by_plays = df["prior_by_plays"] if "prior_by_plays" in df else pd.Series(False, index=df.index)
    out = pd.DataFrame(
        {
            "partition": df["partition_key"],
            "scheme": df["scheme"],
            "k": df["k"].apply(lambda v: "" if v is None else str(v)),
            "h": df["h"].apply(lambda v: "" if v is None else str(v)),
            "test AUC": df["test_auc"],
            "95% CI": [
                "" if (math.isnan(a) or math.isnan(b)) else f"[{a:.4f}, {b:.4f}]"
                for a, b in zip(df["test_ci_lo"], df["test_ci_hi"])
            ],
            "ΔAUC vs id": df["delta_auc_vs_id"],
            "val AUC": df["val_auc"],
            "prior w": df["prior_weight"],
            "recent ρ": df["prior_recent"] if "prior_recent" in df else "",
            # [train] prior_by_plays: where validation kept z shrunk toward the play count's prediction
            # (only when some partition did: with the switch off, or never kept, no column)
            **({"plays target": by_plays.map({True: "yes", False: "no"})} if by_plays.any() else {}),
            "affinity a+/a-": df["affinity"] if "affinity" in df else "",
            "taste b": df["taste"] if "taste" in df else "",
            "memory r track/artist": df["memory"] if "memory" in df else "",
            "params total": df["params_total"],
            "params track": df["params_track"],
            "param reduction vs id (%)": df["param_reduction_pct"],
            "cold-start AUC": df["cold_start_auc"],
            f"recall@{_topk(df)}": df["recall"],
            f"ndcg@{_topk(df)}": df["ndcg"],
        }
    )
    return out


def lift_table(df: pd.DataFrame) -> pd.DataFrame:
    """Long table of per-bucket AUC lift over the id model at the same h:
    ``partition, scheme, k, h, bucket, n_strata, auc, id_auc, lift, lift_ci_lo, lift_ci_hi``
    (the lift CI combines the two bucket CIs as independent — approximate)."""
    from .evaluation import lift_by_bucket

    cols = ["partition", "scheme", "k", "h", "bucket", "n_strata", "auc", "id_auc", "lift",
            "lift_ci_lo", "lift_ci_hi"]
    rows = []
    if df.empty:
        return pd.DataFrame(columns=cols)
    ids = {r["h"]: r for _, r in df[df["scheme"] == "id"].iterrows()}
    for _, r in df[df["scheme"] != "id"].iterrows():
        mb = _bucket_frame(r["by_history"])
        if mb.empty:
            continue
        base = _bucket_frame(ids[r["h"]]["by_history"]) if r["h"] in ids else _bucket_frame([])
        lb = lift_by_bucket(mb, base)
        for _, x in lb.iterrows():
            rows.append({"partition": r["partition_key"], "scheme": r["scheme"], "k": r["k"], "h": r["h"],
                         "bucket": x["bucket"], "n_strata": x["n_strata"], "auc": x["auc"],
                         "id_auc": x["baseline_auc"], "lift": x["lift"],
                         "lift_ci_lo": x["lift_ci_lo"], "lift_ci_hi": x["lift_ci_hi"]})
    return pd.DataFrame(rows, columns=cols)


def _lift_wide(lifts: pd.DataFrame) -> pd.DataFrame:
    if lifts.empty:
        return pd.DataFrame(columns=["bucket"])
    order = list(dict.fromkeys(lifts["bucket"]))
    w = lifts.pivot_table(index="bucket", columns="partition", values="lift", aggfunc="first", dropna=False)
    w = w.reindex(order)
    w.index.name = "history bucket"
    return w.reset_index()


def diversity_table(df: pd.DataFrame) -> pd.DataFrame:
    keys = ["ils", "distinct_artists", "distinct_artist_share", "coverage", "recent_share"]
    rows = []
    for _, r in df.iterrows():
        d = r["diversity"] or {}
        if not d:
            continue
        row = {"partition": r["partition_key"]}
        for k in keys:
            row[k] = _num(d.get(k))
        rows.append(row)
    return pd.DataFrame(rows, columns=["partition", *keys])


def baselines_table(df: pd.DataFrame) -> pd.DataFrame:
    """Model-free baselines (deduplicated: they do not depend on the partition)."""
    seen: dict[tuple, dict] = {}
    for _, r in df.iterrows():
        b = r["baselines"] or {}
        if not b:
            continue
        row = {k: _num(v) if not isinstance(v, dict) else _num(v.get("auc")) for k, v in b.items()}
        seen.setdefault(tuple(sorted((k, None if math.isnan(v) else round(v, 10)) for k, v in row.items())), row)
    rows = list(seen.values())
    if not rows:
        return pd.DataFrame(columns=["baseline", "test AUC"])
    out = []
    for row in rows:
        for k, v in row.items():
            out.append({"baseline": k.removesuffix("_auc").replace("_", " "), "test AUC": v})
    return pd.DataFrame(out).drop_duplicates().reset_index(drop=True)


def _fmt(v: Any, col: str = "") -> str:
    if v is None:
        return ""
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return ""
        if "params" in col:
            return f"{int(round(v)):,}"
        if "%" in col:
            return f"{v:.1f}"
        if "Δ" in col or "lift" in col:
            return f"{v:+.4f}"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.4f}"
    if isinstance(v, (np.integer, int)):
        return f"{int(v):,}" if "params" in col else str(v)
    return str(v)


def head_markdown(df: pd.DataFrame | None, *, max_rows: int = 60, floatfmt: str = ".4g") -> str:
    """The first ``max_rows`` rows as a markdown table (pandas/tabulate), with a note of the rest."""
    if df is None or len(df) == 0:
        return "_(empty)_"
    text = df.head(max_rows).to_markdown(index=False, floatfmt=floatfmt)
    if len(df) > max_rows:
        text += f"\n\n_{len(df) - max_rows} more rows not shown_"
    return text


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub-style markdown table (no ``tabulate`` needed)."""
    if df is None or df.empty:
        return "_(no rows)_\n"
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        cells = [_fmt(r[c], str(c)).replace("|", "\\|") for c in df.columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _to_html(df: pd.DataFrame) -> str:
    if df is None or df.empty:
        return "<p><em>no data</em></p>"
    shown = df.copy()
    for c in shown.columns:
        shown[c] = [_fmt(v, str(c)) for v in shown[c]]
    return shown.to_html(index=False, escape=True, border=0, classes="tbl")
