"""The report's figures (matplotlib, Agg backend): training curve, AUC vs k, AUC vs parameters,
lift over ``id`` by history length. Each takes the tidy frame of ``report.records_frame``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

_SCHEME_COLORS = {"id": "black", "v0": "tab:orange", "v1": "tab:blue", "rqkmeans": "tab:green"}
_EXTRA_COLORS = ["tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"]


def _bucket_frame(by_history: list) -> pd.DataFrame:
    b = pd.DataFrame(by_history or [])
    if b.empty or "bucket" not in b.columns:
        return pd.DataFrame(columns=["bucket", "n_strata", "auc", "ci_lo", "ci_hi"])
    for c in ("n_strata", "auc", "ci_lo", "ci_hi"):
        b[c] = pd.to_numeric(b[c], errors="coerce") if c in b.columns else np.nan
    b["bucket"] = b["bucket"].astype(str)
    return b


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_training_curve(history: Sequence[dict], path: str | Path, *, title: str = "") -> Path:
    """Training loss and validation stratified AUC per epoch (one recommender partition)."""
    plt = _plt()
    epochs = [r["epoch"] for r in history]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(epochs, [r["loss"] for r in history], "o-", color="tab:gray", label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    ax2.plot(epochs, [r["val_auc"] for r in history], "s-", color="tab:blue", label="validation AUC")
    ax2.set_ylabel("validation stratified AUC")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="center right", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _color(scheme: str, extra: dict) -> str:
    if scheme in _SCHEME_COLORS:
        return _SCHEME_COLORS[scheme]
    if scheme not in extra:
        extra[scheme] = _EXTRA_COLORS[len(extra) % len(_EXTRA_COLORS)]
    return extra[scheme]


def _yerr(sub: pd.DataFrame) -> np.ndarray | None:
    lo = (sub["test_auc"] - sub["test_ci_lo"]).to_numpy(dtype=float)
    hi = (sub["test_ci_hi"] - sub["test_auc"]).to_numpy(dtype=float)
    if np.isnan(lo).all() and np.isnan(hi).all():
        return None
    return np.vstack([np.nan_to_num(lo).clip(0), np.nan_to_num(hi).clip(0)])


def _no_data(ax, msg: str = "no data") -> None:
    ax.text(0.5, 0.5, msg, ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_auc_vs_k(df: pd.DataFrame, path: Path, *, dataset: str = "") -> Path:
    """Fig 1: test AUC vs codebook size (log2 x) per scheme with CI error bars; the id
    baseline as a horizontal line with its CI band; one panel per h."""
    plt = _plt()
    ok = df[~df["test_auc"].isna()] if len(df) else df
    hs = sorted({int(v) for v in ok["h"].dropna()}) if len(ok) else []
    n = max(1, len(hs))
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4.2), squeeze=False, sharey=True)
    extra: dict = {}
    if not hs:
        _no_data(axes[0, 0])
    for ax, h in zip(axes[0], hs):
        sub = ok[ok["h"] == h]
        sem = sub[(sub["scheme"] != "id") & sub["k"].notna()]
        for scheme, g in sem.groupby("scheme", sort=True):
            g = g.sort_values("k")
            ax.errorbar(g["k"].astype(float), g["test_auc"], yerr=_yerr(g), marker="o", capsize=3,
                        color=_color(scheme, extra), label=scheme)
        idr = sub[sub["scheme"] == "id"]
        if len(idr):
            r = idr.iloc[0]
            ax.axhline(r["test_auc"], color="black", ls="--", lw=1.2, label=f"id baseline ({r['test_auc']:.4f})")
            if not (math.isnan(r["test_ci_lo"]) or math.isnan(r["test_ci_hi"])):
                ax.axhspan(r["test_ci_lo"], r["test_ci_hi"], color="gray", alpha=0.2, lw=0)
        if len(sem):
            ax.set_xscale("log", base=2)
            ks = sorted({int(v) for v in sem["k"]})
            ax.set_xticks(ks)
            ax.set_xticklabels([str(v) for v in ks])
        elif not len(idr):
            _no_data(ax)
        ax.set_xlabel("codebook size k (log2)")
        ax.set_title(f"h = {h}")
        ax.grid(alpha=0.3)
        if len(sem) or len(idr):
            ax.legend(fontsize=8, loc="best")
    axes[0, 0].set_ylabel("test stratified AUC")
    fig.suptitle(f"Fig 1 — AUC vs codebook size{(' — ' + dataset) if dataset else ''}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_auc_vs_params(df: pd.DataFrame, path: Path, *, dataset: str = "") -> Path:
    """Fig 2: AUC vs trainable parameters (log x); k-sweeps (solid, same scheme & h across
    k) and h-sweeps (dashed, same scheme & k across h); id points marked with stars."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 5.0))
    ok = df[~df["test_auc"].isna() & ~df["params_total"].isna()] if len(df) else df
    ok = ok[ok["params_total"] > 0] if len(ok) else ok
    extra: dict = {}
    if not len(ok):
        _no_data(ax, "no partitions with AUC and parameter counts")
    else:
        hs = sorted({int(v) for v in ok["h"].dropna()})
        markers = ["o", "s", "^", "D", "v", "P", "X"]
        mk = {h: markers[i % len(markers)] for i, h in enumerate(hs)}
        sem = ok[ok["scheme"] != "id"]
        for (scheme, h), g in sem.groupby(["scheme", "h"], sort=True):
            g = g.sort_values("params_total")
            ax.plot(g["params_total"], g["test_auc"], "-", color=_color(scheme, extra), alpha=0.8, lw=1.5)
        for (scheme, k), g in sem[sem["k"].notna()].groupby(["scheme", "k"], sort=True):
            if len(g) > 1:
                g = g.sort_values("params_total")
                ax.plot(g["params_total"], g["test_auc"], "--", color=_color(scheme, extra), alpha=0.6, lw=1)
        for _, r in sem.iterrows():
            ax.scatter(r["params_total"], r["test_auc"], marker=mk.get(r["h"], "o"),
                       color=_color(r["scheme"], extra), zorder=3, s=36)
            ax.annotate(f"k{r['k']}" if r["k"] is not None else "", (r["params_total"], r["test_auc"]),
                        textcoords="offset points", xytext=(4, 3), fontsize=7)
        ids = ok[ok["scheme"] == "id"].sort_values("params_total")
        if len(ids):
            ax.plot(ids["params_total"], ids["test_auc"], ":", color="black", lw=1)
            ax.scatter(ids["params_total"], ids["test_auc"], marker="*", s=160, color="black", zorder=4)
            for _, r in ids.iterrows():
                ax.annotate(f"id h{r['h']}", (r["params_total"], r["test_auc"]), textcoords="offset points",
                            xytext=(4, -10), fontsize=7)
        ax.set_xscale("log")
        # legend: schemes (colour), h (marker), line styles
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=_color(s, extra), lw=2, label=s) for s in sorted(sem["scheme"].unique())]
        handles += [Line2D([], [], color="gray", marker=mk[h], ls="", label=f"h={h}") for h in hs]
        handles += [Line2D([], [], color="gray", ls="-", label="k-sweep (same scheme, h)"),
                    Line2D([], [], color="gray", ls="--", label="h-sweep (same scheme, k)")]
        if len(ids):
            handles.append(Line2D([], [], color="black", marker="*", ls="", markersize=10, label="id baseline"))
        ax.legend(handles=handles, fontsize=8, loc="best")
    ax.set_xlabel("trainable parameters (log)")
    ax.set_ylabel("test stratified AUC")
    ax.grid(alpha=0.3, which="both")
    ax.set_title(f"Fig 2 — AUC vs trainable parameters{(' — ' + dataset) if dataset else ''}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _has_hist(frame: pd.DataFrame) -> np.ndarray:
    return np.array([bool(v) for v in frame["by_history"]], dtype=bool)


def _fig3_h(df: pd.DataFrame, lifts: pd.DataFrame, prefer_h: int | None) -> int | None:
    if prefer_h is not None and (df["h"] == prefer_h).any():
        return prefer_h
    if len(lifts) and lifts["lift"].notna().any():
        counts = lifts[lifts["lift"].notna()].groupby("h")["partition"].nunique()
        return int(counts.idxmax())
    hs = df[_has_hist(df)]["h"].dropna()
    return int(hs.mode().iloc[0]) if len(hs) else None


def plot_lift_by_history(df: pd.DataFrame, lifts: pd.DataFrame, path: Path, *, h: int | None = None,
                         dataset: str = "") -> Path:
    """Fig 3: AUC lift over the id baseline per history-length bucket, grouped bars per
    scheme (its largest k), for one h (``h`` or the h with most lifts). Without an id
    model at that h the absolute bucket AUCs are shown instead."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.0, 4.6))
    extra: dict = {}
    hh = _fig3_h(df, lifts, h) if len(df) else None
    title = "Fig 3 — AUC lift over id by history length"
    if hh is None:
        _no_data(ax, "no per-bucket results")
    else:
        sub = df[(df["h"] == hh) & (df["scheme"] != "id")]
        pick = sub[_has_hist(sub)]
        pick = pick.sort_values("k", na_position="first").groupby("scheme", sort=True).tail(1)
        lf = lifts[(lifts["h"] == hh) & lifts["partition"].isin(pick["partition_key"])] if len(lifts) else lifts
        use_lift = len(lf) and lf["lift"].notna().any()
        if use_lift:
            data = {p: g.set_index("bucket") for p, g in lf.groupby("partition", sort=True)}
            order = list(dict.fromkeys(lf["bucket"]))
            val, lo_c, hi_c = "lift", "lift_ci_lo", "lift_ci_hi"
        else:
            frames = []
            for _, r in pick.iterrows():
                b = _bucket_frame(r["by_history"])
                b["partition"] = r["partition_key"]
                frames.append(b)
            idr = df[(df["h"] == hh) & (df["scheme"] == "id")]
            for _, r in idr.iterrows():
                b = _bucket_frame(r["by_history"])
                b["partition"] = r["partition_key"]
                frames.append(b)
            allb = pd.concat(frames) if frames else pd.DataFrame(columns=["bucket", "partition"])
            data = {p: g.set_index("bucket") for p, g in allb.groupby("partition", sort=True)}
            order = list(dict.fromkeys(allb["bucket"]))
            val, lo_c, hi_c = "auc", "ci_lo", "ci_hi"
            title = "Fig 3 — AUC by history length (no id baseline at this h)"
        if not data:
            _no_data(ax, "no per-bucket results")
        else:
            x = np.arange(len(order))
            w = 0.8 / len(data)
            scheme_of = dict(zip(df["partition_key"], df["scheme"]))
            for i, (p, g) in enumerate(data.items()):
                g = g.reindex(order)
                y = g[val].to_numpy(dtype=float)
                err = np.vstack([(y - g[lo_c].to_numpy(dtype=float)).clip(0), (g[hi_c].to_numpy(dtype=float) - y).clip(0)])
                err = np.nan_to_num(err)
                ax.bar(x - 0.4 + w * (i + 0.5), np.nan_to_num(y), w, yerr=err, capsize=2,
                       color=_color(scheme_of.get(p, "?"), extra), alpha=0.85, label=p,
                       edgecolor="black" if scheme_of.get(p) == "id" else None)
            ax.set_xticks(x)
            ax.set_xticklabels(order)
            if use_lift:
                ax.axhline(0, color="black", lw=1)
                ax.set_ylabel("AUC − id AUC (same h)")
            else:
                allv = np.concatenate([g[val].to_numpy(dtype=float) for g in data.values()])
                if np.isfinite(allv).any():
                    ax.set_ylim(max(0.0, float(np.nanmin(allv)) - 0.05), None)
                ax.set_ylabel("bucket stratified AUC")
            ax.legend(fontsize=8, loc="best")
        ax.set_xlabel("input (history) length bucket, events")
        title += f" (h = {hh})"
    ax.grid(alpha=0.3, axis="y")
    ax.set_title(title + (f" — {dataset}" if dataset else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
