"""The experiment report, rendered from STORED evaluation records (no retraining).

A *record* is what ``experiment.partition_record`` writes, one JSON file per evaluated grid cell::

    partition_key   "64|v1-k256"  (``schemes.GridCell.partition_key``)
    scheme, k, h    family ("id" | "v0" | "v1" | "rqkmeans" | ...), codebook size (None for id), hidden size
    test, val       ``evaluation.evaluate_scored`` dicts: auc, ci_lo, ci_hi, n_strata, by_history, cold_start
    params_total, params_track          trainable parameters: whole model / track encoder
    ranking         {recall@<topk>, ndcg@<topk>, n_strata} (``ranking.ranking_metrics``)
    diversity       dict from ``ranking.diversity_metrics``
    baselines       {popularity_auc, content_logreg_auc}

Missing pieces (an empty ``test``, no ``ranking``) are shown as blanks and skipped in plots.

Outputs (``render_report``): ``report.html`` (self-contained: PNGs as base64 data URIs),
``fig1_auc_vs_k.png``, ``fig2_auc_vs_params.png``, ``fig3_lift_by_history.png``,
``summary.md``, and a :class:`ReportArtifacts`.

Figures mirror the paper: Fig 1 AUC vs codebook size (log2 x) per scheme, the ``id``
baseline as a line with its CI band, one panel per h; Fig 2 AUC vs trainable parameters
(log x) with k-sweeps (solid) and h-sweeps (dashed); Fig 3 AUC lift over the ``id``
baseline by history-length bucket per scheme (largest k of each scheme) for one h.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from .report_quality import quality_sections
from .report_plots import _bucket_frame, plot_auc_vs_k, plot_auc_vs_params, plot_lift_by_history
from .schemes import GridCell

__all__ = [
    "ReportArtifacts",
    "normalize_record",
    "records_frame",
    "summary_table",
    "lift_table",
    "diversity_table",
    "baselines_table",
    "headline_numbers",
    "to_markdown",
    "plot_auc_vs_k",
    "plot_auc_vs_params",
    "plot_lift_by_history",
    "render_report",
    "ReportSection",
    "png_data_uri",
    "load_records",
]

FIG1 = "fig1_auc_vs_k.png"
FIG2 = "fig2_auc_vs_params.png"
FIG3 = "fig3_lift_by_history.png"
FIG4 = "fig4_auc_vs_unique_share.png"  # only with ``id_quality`` (id_quality_report.py)



@dataclass(frozen=True)
class ReportSection:
    """A section another stage contributes (e.g. sample recommendation lists): its HTML body is
    inserted as given (already escaped by its renderer), its markdown goes into summary.md."""

    title: str
    html: str
    markdown: str


@dataclass
class ReportArtifacts:
    html_path: Path
    figure_paths: dict[str, Path]
    markdown_path: Path
    markdown: str  # the markdown summary table
    headline: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


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
        "scheme": cell.scheme.family,
        "k": cell.scheme.k,
        "h": cell.h,
        "test_auc": _num(test.get("auc")),
        "test_ci_lo": _num(test.get("ci_lo")),
        "test_ci_hi": _num(test.get("ci_hi")),
        "n_strata": _num(test.get("n_strata")),
        "val_auc": _num(val.get("auc")),
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
    id_pt = df["_h"].map(ids["params_total"]) if len(ids) else pd.Series(np.nan, index=df.index)
    id_tr = df["_h"].map(ids["params_track"]) if len(ids) else pd.Series(np.nan, index=df.index)
    df["id_auc"] = id_auc.astype(float)
    df["delta_auc_vs_id"] = df["test_auc"] - df["id_auc"]
    df["param_reduction_pct"] = 100.0 * (1.0 - df["params_total"] / id_pt.astype(float))
    df["track_param_reduction_pct"] = 100.0 * (1.0 - df["params_track"] / id_tr.astype(float))
    return df.drop(columns=["_k", "_h"])


# --------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------


def _topk(df: pd.DataFrame) -> str:
    ks = sorted({int(k) for k in df["topk"].dropna()}) if "topk" in df else []
    return "/".join(map(str, ks)) or "k"


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Every partition: AUC with CI, val AUC, parameters, reduction vs id (same h), ΔAUC,
    cold-start AUC, ranking metrics."""
    if df.empty:
        return pd.DataFrame(columns=["partition", "scheme", "k", "h", "test AUC", "95% CI"])
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


# --------------------------------------------------------------------------------------
# Headline
# --------------------------------------------------------------------------------------


def headline_numbers(df: pd.DataFrame, production: str | None = None) -> dict:
    """Headline figures: best partition, id baseline(s), best semantic vs id at the same h,
    the largest parameter reduction among semantic partitions whose AUC CI reaches the id
    AUC ("matches id"), and the production partition (``production``, e.g. "64|v1-k256")."""
    h: dict[str, Any] = {"n_partitions": int(len(df))}
    if df.empty:
        return h
    ok = df[~df["test_auc"].isna()]
    if len(ok):
        b = ok.loc[ok["test_auc"].idxmax()]
        h["best_partition"] = b["partition_key"]
        h["best_auc"] = float(b["test_auc"])
        h["best_ci"] = [_none(b["test_ci_lo"]), _none(b["test_ci_hi"])]
    ids = ok[ok["scheme"] == "id"]
    h["id_auc_by_h"] = {str(int(r["h"])) if r["h"] is not None else "?": float(r["test_auc"]) for _, r in ids.iterrows()}
    sem = ok[(ok["scheme"] != "id") & ~ok["id_auc"].isna()]
    if len(sem):
        b = sem.loc[sem["delta_auc_vs_id"].idxmax()]
        h["best_semantic_vs_id"] = {
            "partition": b["partition_key"], "auc": float(b["test_auc"]), "id_auc": float(b["id_auc"]),
            "delta": float(b["delta_auc_vs_id"]), "param_reduction_pct": _none(b["param_reduction_pct"]),
        }
        match = sem[sem["test_ci_hi"].fillna(sem["test_auc"]) >= sem["id_auc"]]
        match = match[~match["param_reduction_pct"].isna()]
        if len(match):
            m = match.loc[match["param_reduction_pct"].idxmax()]
            h["max_reduction_matching_id"] = {
                "partition": m["partition_key"], "param_reduction_pct": float(m["param_reduction_pct"]),
                "auc": float(m["test_auc"]), "id_auc": float(m["id_auc"]),
            }
    if production:
        p = df[df["partition_key"] == production]
        if len(p):
            r = p.iloc[0]
            h["production"] = {
                "partition": production, "auc": _none(r["test_auc"]),
                "ci": [_none(r["test_ci_lo"]), _none(r["test_ci_hi"])],
                "id_auc": _none(r["id_auc"]), "delta_vs_id": _none(r["delta_auc_vs_id"]),
                "param_reduction_pct": _none(r["param_reduction_pct"]),
            }
    return h


def _none(v: Any) -> Any:
    v = _num(v)
    return None if math.isnan(v) else v


# --------------------------------------------------------------------------------------
# Render
# --------------------------------------------------------------------------------------


def load_records(path: str | Path) -> list[dict]:
    """Read records from a JSON file (a list, or {"records": [...]}) or a folder of
    ``*.json`` files (one record each, or lists)."""
    p = Path(path)
    files = sorted(p.glob("*.json")) if p.is_dir() else [p]
    out: list[dict] = []
    for f in files:
        data = json.loads(f.read_text())
        if isinstance(data, dict) and "records" in data:
            data = data["records"]
        out.extend(data if isinstance(data, list) else [data])
    return out


def png_data_uri(path: Path) -> str:
    """A PNG file as a data: URI (for self-contained HTML and Dagster markdown metadata)."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;max-width:1200px;color:#222}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table.tbl{border-collapse:collapse;font-size:12px;margin:8px 0}
table.tbl th,table.tbl td{border:1px solid #ccc;padding:3px 7px;text-align:right}
table.tbl th{background:#f3f3f3} .headline li{margin:3px 0} img{max-width:100%;border:1px solid #eee}
.note{color:#666;font-size:12px}
"""


def _headline_html(hd: dict) -> str:
    items = [f"<li>{hd.get('n_partitions', 0)} partitions evaluated</li>"]
    if "best_partition" in hd:
        ci = hd.get("best_ci") or [None, None]
        cis = f" (95% CI {ci[0]:.4f}–{ci[1]:.4f})" if None not in ci else ""
        items.append(f"<li>Best test AUC: <b>{html.escape(hd['best_partition'])}</b> = {hd['best_auc']:.4f}{cis}</li>")
    for h, a in (hd.get("id_auc_by_h") or {}).items():
        items.append(f"<li>id baseline at h={html.escape(h)}: {a:.4f}</li>")
    if "best_semantic_vs_id" in hd:
        b = hd["best_semantic_vs_id"]
        red = f", {b['param_reduction_pct']:.1f}% fewer parameters" if b.get("param_reduction_pct") is not None else ""
        items.append(f"<li>Best semantic vs id (same h): <b>{html.escape(b['partition'])}</b> "
                     f"{b['auc']:.4f} vs {b['id_auc']:.4f} (Δ {b['delta']:+.4f}{red})</li>")
    if "max_reduction_matching_id" in hd:
        m = hd["max_reduction_matching_id"]
        items.append(f"<li>Largest parameter reduction whose AUC CI reaches the id AUC: "
                     f"<b>{html.escape(m['partition'])}</b>, {m['param_reduction_pct']:.1f}% "
                     f"(AUC {m['auc']:.4f} vs id {m['id_auc']:.4f})</li>")
    if "production" in hd:
        p = hd["production"]
        auc = f"{p['auc']:.4f}" if p.get("auc") is not None else "n/a"
        extra = f", Δ vs id {p['delta_vs_id']:+.4f}" if p.get("delta_vs_id") is not None else ""
        items.append(f"<li>Production partition <b>{html.escape(p['partition'])}</b>: AUC {auc}{extra}</li>")
    return "<ul class='headline'>" + "".join(items) + "</ul>"


def render_report(
    records: Sequence[dict],
    out_dir: str | Path,
    *,
    title: str = "Semantic IDs for music recommendation — experiment report",
    dataset: str = "",
    production: str | None = None,
    fig3_h: int | None = None,
    sections: Sequence[ReportSection] = (),
    id_quality: pd.DataFrame | None = None,
) -> ReportArtifacts:
    """Render tables, the three figures and a self-contained ``report.html`` into
    ``out_dir`` from stored evaluation records. ``production``: a partition key to
    headline (e.g. "64|v1-k256"); its h is Fig 3's default h. ``id_quality``
    (``id_quality_report.id_quality_table``): unique-tuple share and max tie per scheme in the
    partitions table, and Fig 4 (AUC vs unique-tuple share)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df = records_frame(records)
    summ = summary_table(df)
    lifts = lift_table(df)
    wide = _lift_wide(lifts)
    div = diversity_table(df)
    base = baselines_table(df)
    hd = headline_numbers(df, production)
    lead, tail = quality_sections(records, ReportSection)  # verdict + findings on top; ceiling, popularity
    sections = [*tail, *sections]
    if fig3_h is None and production:
        fig3_h = GridCell.parse(production).h
    figs = {
        "fig1": plot_auc_vs_k(df, out / FIG1, dataset=dataset),
        "fig2": plot_auc_vs_params(df, out / FIG2, dataset=dataset),
        "fig3": plot_lift_by_history(df, lifts, out / FIG3, h=fig3_h, dataset=dataset),
    }
    if id_quality is not None:
        from . import id_quality_report as iqr  # semantic_ids (torch) only when asked for

        merged = iqr.merge_id_quality(df, id_quality)
        summ = iqr.with_quality_columns(summ, merged)
        figs["fig4"] = iqr.plot_auc_vs_unique_share(merged, out / FIG4, dataset=dataset)
    md_summary = to_markdown(summ)
    md = (
        f"# {title}\n\n" + (f"Data set: `{dataset}`\n\n" if dataset else "")
        + "".join(f"## {sec.title}\n\n{sec.markdown}\n" for sec in lead)
        + "## Partitions\n\n" + md_summary
        + "\n## AUC lift over id by history bucket\n\n" + to_markdown(wide)
        + f"\n## Diversity of top-{_topk(df)} lists\n\n" + to_markdown(div)
        + "\n## Model-free baselines\n\n" + to_markdown(base)
        + "".join(f"\n## {sec.title}\n\n{sec.markdown}\n" for sec in sections)
    )
    md_path = out / "summary.md"
    md_path.write_text(md)
    tables = {"summary": summ, "lifts": lifts, "lifts_wide": wide, "diversity": div, "baselines": base}
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='note'>Data set: <code>{html.escape(dataset)}</code></p>" if dataset else "",
        *(f"<h2>{html.escape(sec.title)}</h2>\n{sec.html}" for sec in lead),
        "<h2>Headline</h2>", _headline_html(hd),
        "<h2>Partitions</h2>",
        "<p class='note'>Test AUC = stratified AUC (mean over strata of the share of (positive, negative) "
        "pairs ranked correctly, ties ½), 95% bootstrap CI over strata. Parameter reduction is relative "
        "to the id model at the same h.</p>",
        _to_html(summ),
        "<h2>Figure 1 — AUC vs codebook size</h2>",
        f"<img alt='fig1' src='{png_data_uri(figs['fig1'])}'>",
        "<h2>Figure 2 — AUC vs trainable parameters</h2>",
        f"<img alt='fig2' src='{png_data_uri(figs['fig2'])}'>",
        "<h2>Figure 3 — lift over id by history length</h2>",
        f"<img alt='fig3' src='{png_data_uri(figs['fig3'])}'>",
        *(["<h2>Figure 4 — AUC vs unique-tuple share</h2>", f"<img alt='fig4' src='{png_data_uri(figs['fig4'])}'>"]
          if "fig4" in figs else []),
        "<h2>AUC lift over id by history bucket</h2>",
        "<p class='note'>lift = bucket AUC − id bucket AUC at the same h.</p>",
        _to_html(wide),
        f"<h2>Diversity of top-{_topk(df)} lists</h2>", _to_html(div),
        "<h2>Model-free baselines</h2>", _to_html(base),
        *(f"<h2>{html.escape(sec.title)}</h2>\n{sec.html}" for sec in sections),
    ]
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(body) + "</body></html>"
    )
    html_path = out / "report.html"
    html_path.write_text(page, encoding="utf-8")
    return ReportArtifacts(
        html_path=html_path,
        figure_paths={FIG1: figs["fig1"], FIG2: figs["fig2"], FIG3: figs["fig3"],
                      **({FIG4: figs["fig4"]} if "fig4" in figs else {})},
        markdown_path=md_path,
        markdown=md_summary,
        headline=hd,
        tables=tables,
    )
