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
from typing import Any, Sequence

import pandas as pd

from .report_quality import quality_sections
from .report_tables import (  # noqa: F401 (the report's public names: ``report.records_frame`` ...)
    _lift_wide, _num, _to_html, _topk, baselines_table, diversity_table, lift_table, normalize_record,
    records_frame, summary_table, to_markdown,
)
from .report_plots import plot_auc_vs_k, plot_auc_vs_params, plot_lift_by_history
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
# Headline
# --------------------------------------------------------------------------------------


def headline_numbers(df: pd.DataFrame, production: str | None = None) -> dict:
    """Headline figures: best partition, id baseline(s), best semantic vs id at the same h (hybrid
    rows excluded: they keep a per-track row),
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
    # semantic IDs proper: hybrid rows keep a per-track row (more parameters than id; reported apart)
    sem = ok[~ok["scheme"].isin(["id", "hybrid"]) & ~ok["id_auc"].isna()]
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


def _param_change(reduction_pct: float | None) -> str:
    if reduction_pct is None:
        return ""
    return f", {reduction_pct:.1f}% fewer parameters" if reduction_pct >= 0 else f", {-reduction_pct:.1f}% more parameters"


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
        red = _param_change(b.get("param_reduction_pct"))
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


@dataclass(frozen=True)
class _Content:
    """Everything a report shows, computed once; rendered as Markdown and as HTML."""

    df: pd.DataFrame
    tables: dict[str, pd.DataFrame]  # summary, lifts, lifts_wide, diversity, baselines
    headline: dict
    figures: dict[str, Path]  # fig1..fig3 (+ fig4 with ID quality)
    lead: list  # ReportSections above the partitions (verdict, findings)
    tail: list  # ReportSections below the tables


def _content(records: Sequence[dict], out: Path, *, dataset: str, production: str | None, fig3_h: int | None,
             sections: Sequence[ReportSection], id_quality: pd.DataFrame | None,
             diagnostics: dict | None = None) -> _Content:
    df = records_frame(records)
    lifts = lift_table(df)
    tables = {"summary": summary_table(df), "lifts": lifts, "lifts_wide": _lift_wide(lifts),
              "diversity": diversity_table(df), "baselines": baselines_table(df)}
    lead, tail = quality_sections(records, ReportSection, diagnostics)  # verdict + findings on top; ceiling, ...
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
        tables["summary"] = iqr.with_quality_columns(tables["summary"], merged)
        figs["fig4"] = iqr.plot_auc_vs_unique_share(merged, out / FIG4, dataset=dataset)
    return _Content(df=df, tables=tables, headline=headline_numbers(df, production), figures=figs,
                    lead=list(lead), tail=[*tail, *sections])


def _markdown(c: _Content, *, title: str, dataset: str) -> str:
    t = c.tables
    return (
        f"# {title}\n\n" + (f"Data set: `{dataset}`\n\n" if dataset else "")
        + "".join(f"## {sec.title}\n\n{sec.markdown}\n" for sec in c.lead)
        + "## Partitions\n\n" + to_markdown(t["summary"])
        + "\n## AUC lift over id by history bucket\n\n" + to_markdown(t["lifts_wide"])
        + f"\n## Diversity of top-{_topk(c.df)} lists\n\n" + to_markdown(t["diversity"])
        + "\n## Model-free baselines\n\n" + to_markdown(t["baselines"])
        + "".join(f"\n## {sec.title}\n\n{sec.markdown}\n" for sec in c.tail)
    )


_FIGURE_TITLES = {
    "fig1": "Figure 1 — AUC vs codebook size",
    "fig2": "Figure 2 — AUC vs trainable parameters",
    "fig3": "Figure 3 — lift over id by history length",
    "fig4": "Figure 4 — AUC vs unique-tuple share",
}


def _html_page(c: _Content, *, title: str, dataset: str) -> str:
    t = c.tables
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='note'>Data set: <code>{html.escape(dataset)}</code></p>" if dataset else "",
        *(f"<h2>{html.escape(sec.title)}</h2>\n{sec.html}" for sec in c.lead),
        "<h2>Headline</h2>", _headline_html(c.headline),
        "<h2>Partitions</h2>",
        "<p class='note'>Test AUC = stratified AUC (mean over strata of the share of (positive, negative) "
        "pairs ranked correctly, ties ½), 95% bootstrap CI over strata. Parameter reduction is relative "
        "to the id model at the same h, counting the popularity prior's per-track values (one number "
        "per track: its positive rate, adjusted for who played it with [train] prior_adjusted; column prior w; column recent ρ: w · (z + ρ · the last days' deviation from z); column plays target, where a partition "
        "kept it ([train] prior_by_plays): z shrunk toward what the track's play count predicts instead of toward 0, "
        "the same number per track) and the content affinity's content rows (column affinity a+/a-: "
        "a+ · cos(track content, liked history) − a- · cos(…, disliked history), content as the "
        "track's ID fields say it) and the listener memory's track → artist map (column memory r "
        "track/artist: r_t · m(track) + r_a · m(artist), m = (likes − dislikes) / (plays + 1) of it in "
        "the listener's input) where a weight is above 0; column taste b: b · (track content · the "
        "listener's personal taste, a logistic regression of their feedback on content), on the "
        "same content rows.</p>",
        _to_html(t["summary"]),
        *(f"<h2>{_FIGURE_TITLES[name]}</h2>\n<img alt='{name}' src='{png_data_uri(path)}'>"
          for name, path in c.figures.items()),
        "<h2>AUC lift over id by history bucket</h2>",
        "<p class='note'>lift = bucket AUC − id bucket AUC at the same h.</p>",
        _to_html(t["lifts_wide"]),
        f"<h2>Diversity of top-{_topk(c.df)} lists</h2>", _to_html(t["diversity"]),
        "<h2>Model-free baselines</h2>", _to_html(t["baselines"]),
        *(f"<h2>{html.escape(sec.title)}</h2>\n{sec.html}" for sec in c.tail),
    ]
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(body) + "</body></html>"
    )


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
    diagnostics: dict | None = None,
) -> ReportArtifacts:
    """Render tables, the three figures and a self-contained ``report.html`` into
    ``out_dir`` from stored evaluation records. ``production``: a partition key to
    headline (e.g. "64|v1-k256"); its h is Fig 3's default h. ``id_quality``
    (``id_quality_report.id_quality_table``): unique-tuple share and max tie per scheme in the
    partitions table, and Fig 4 (AUC vs unique-tuple share). ``diagnostics``
    (``stages.diagnostics_record``): the bias-only and shuffled rows, next to the ceilings."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    c = _content(records, out, dataset=dataset, production=production, fig3_h=fig3_h, sections=sections,
                 id_quality=id_quality, diagnostics=diagnostics)
    md_path = out / "summary.md"
    md_path.write_text(_markdown(c, title=title, dataset=dataset))
    html_path = out / "report.html"
    html_path.write_text(_html_page(c, title=title, dataset=dataset), encoding="utf-8")
    fig_files = {FIG1: "fig1", FIG2: "fig2", FIG3: "fig3", FIG4: "fig4"}
    return ReportArtifacts(
        html_path=html_path,
        figure_paths={name: c.figures[key] for name, key in fig_files.items() if key in c.figures},
        markdown_path=md_path,
        markdown=to_markdown(c.tables["summary"]),
        headline=c.headline,
        tables=c.tables,
    )
