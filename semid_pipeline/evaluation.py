"""Evaluation: stratified AUC with bootstrap CIs, history-length and cold-start cuts,
ranking and diversity metrics (of top-k lists from ``scoring``), and two model-free baselines (popularity, content logistic regression).

Pure functions on numpy / pandas / torch; no dagster, no I/O.

Inputs
------
A *scored* frame is what a model writes per evaluated period, one row per evaluated event::

    stratum_id  str    session (MSSD) or user: the AUC stratum
    track_id    str
    feedback    0/1    1 = positive
    score       float  model score (higher = more likely positive)
    history_len int    model input length in events (excluding the evaluated events)
    is_cold     bool   the track had no training events (optional; needed for cold start)

Definitions
-----------
* **Stratified AUC** (the paper's headline metric): for each stratum, the share of its
  (positive, negative) pairs in which the positive scores higher, ties counting ½ (the
  Mann–Whitney U statistic divided by n_pos·n_neg, computed from average ranks inside the
  stratum, never by enumerating pairs); strata lacking either label are excluded; the
  result is the unweighted mean over strata.
* **Confidence interval**: percentile bootstrap resampling *strata* with replacement.
* **History length of a stratum**: the *minimum* ``history_len`` over its rows, i.e. the
  input the model had before the stratum's first evaluated event.
* **Cold-start AUC** (primary definition, ``"at_least_one_cold"``): restrict each stratum's
  (positive, negative) pairs to those where *at least one* of the two tracks is cold (never
  appeared in training); per stratum the correct-pair share over those pairs, averaged over
  strata having at least one such pair. Computed exactly as U_all − U_warm-only. The
  stricter ``"both_cold"`` variant (both tracks cold) is reported alongside, as is the
  pair-pooled AUC.
* Ranking and diversity of top-k lists: ``ranking``; model-free baselines: ``baselines``.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from .fileutil import jsonable

DEFAULT_BUCKETS: tuple[tuple[int, int], ...] = (
    (1, 2),
    (3, 5),
    (6, 10),
    (11, 20),
    (21, 50),
    (51, 100),
    (101, 400),
)

COLD_START_DEFINITION = (
    "pairs (positive, negative) of one stratum in which at least one of the two tracks had "
    "no training events; per-stratum share ranked correctly (ties 1/2), averaged over the "
    "strata having at least one such pair"
)

__all__ = [
    "DEFAULT_BUCKETS",
    "COLD_START_DEFINITION",
    "stratified_auc",
    "stratified_auc_of",
    "bootstrap_ci",
    "per_stratum_table",
    "auc_by_history",
    "lift_by_bucket",
    "cold_start_auc",
    "evaluate_scored",
    "bucket_label",
]


# --------------------------------------------------------------------------------------
# Stratified AUC
# --------------------------------------------------------------------------------------


def _as_1d(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {a.shape}")
    return a


def _group_score_order(codes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Indices sorting by (code, score) like ``np.lexsort((scores, codes))`` (equal scores of a group
    in any order): a quicksort of the scores, then stable uint16 (radix) passes over the codes, 16
    bits at a time. 0.5 ms against the lexsort's 2.7 ms on the demo's 25,707 validation events."""
    order, shift = np.argsort(scores), 0
    c, top = codes[order], int(codes.max()) if len(codes) else 0
    while True:
        p = np.argsort(((c >> shift) & 0xFFFF).astype(np.uint16), kind="stable")
        order, c, shift = order[p], c[p], shift + 16
        if top >> shift == 0:
            return order


def _mann_whitney(codes: np.ndarray, labels: np.ndarray, scores: np.ndarray, n_groups: int):
    """Per group: (U of positives vs negatives, n_pos, n_neg), ties ½, via average ranks.

    ``codes`` are integer group ids in [0, n_groups). O(n log n) (``_group_score_order``).
    """
    n = codes.shape[0]
    if n == 0:
        z = np.zeros(n_groups)
        return z, z.copy(), z.copy()
    order = _group_score_order(codes, scores)
    c = codes[order]
    s = scores[order]
    y = labels[order].astype(np.float64)
    new = np.empty(n, dtype=bool)
    new[0] = True
    np.logical_or(c[1:] != c[:-1], s[1:] != s[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], n)  # exclusive
    counts = np.bincount(codes, minlength=n_groups).astype(np.int64)
    group_start = np.cumsum(counts) - counts
    # 1-based average rank of each tie group inside its stratum
    avg_rank = (starts + ends - 1) / 2.0 - group_start[c[starts]] + 1.0
    rank = np.repeat(avg_rank, ends - starts)
    r_pos = np.bincount(c, weights=rank * y, minlength=n_groups)
    n_pos = np.bincount(c, weights=y, minlength=n_groups)
    n_neg = counts - n_pos
    u = r_pos - n_pos * (n_pos + 1.0) / 2.0
    return u, n_pos, n_neg


def _factorize(strata: Any) -> tuple[np.ndarray, np.ndarray]:
    codes, uniques = pd.factorize(pd.Series(_as_1d(strata, "strata")), sort=False)
    if (codes < 0).any():
        raise ValueError("strata: missing (null) stratum ids")
    return codes.astype(np.int64), np.asarray(uniques)


def _check_inputs(strata, labels, scores=None):  # → (labels as bool, scores as float64 or None)
    labels = _as_1d(labels, "labels")
    n = len(_as_1d(strata, "strata"))
    if len(labels) != n:
        raise ValueError(f"strata/labels lengths differ: {n}, {len(labels)}")
    lab = labels.astype(np.float64)
    if not np.isin(lab, (0.0, 1.0)).all():
        raise ValueError("labels: expected 0/1 values")
    return lab.astype(bool), None if scores is None else _check_scores(scores, n)


def _check_scores(scores, n: int) -> np.ndarray:
    s = _as_1d(scores, "scores").astype(np.float64, copy=False)
    if len(s) != n:
        raise ValueError(f"scores: {len(s)} values for {n} events")
    if np.isnan(s).any():
        raise ValueError(f"scores: {int(np.isnan(s).sum())} NaN values")
    return s


def _per_stratum_frame(uniques, u, n_pos, n_neg) -> tuple[pd.DataFrame, np.ndarray]:
    ok = (n_pos > 0) & (n_neg > 0)
    per = pd.DataFrame(
        {
            "stratum_id": uniques[ok],
            "auc": u[ok] / (n_pos[ok] * n_neg[ok]),
            "n_pos": n_pos[ok].astype(np.int64),
            "n_neg": n_neg[ok].astype(np.int64),
        }
    )
    return per, ok


def stratified_auc(strata: Any, labels: Any, scores: Any) -> tuple[float, pd.DataFrame]:
    """Stratified AUC: mean over strata of the per-stratum AUC (ties ½).

    Returns ``(auc, per_stratum)`` where ``per_stratum`` has columns
    ``stratum_id, auc, n_pos, n_neg`` for the strata with at least one positive and one
    negative (the others are excluded). ``auc`` is NaN when no stratum qualifies.
    """
    y, s = _check_inputs(strata, labels, scores)
    codes, uniques = _factorize(strata)
    u, n_pos, n_neg = _mann_whitney(codes, y, s, len(uniques))
    per, _ = _per_stratum_frame(uniques, u, n_pos, n_neg)
    auc = float(per["auc"].to_numpy().mean()) if len(per) else float("nan")
    return auc, per


def stratified_auc_of(strata: Any, labels: Any):
    """scores → ``stratified_auc(strata, labels, scores)[0]`` for many score vectors of the same events
    (a weight search): strata and labels checked and factorised once, no per-stratum frame."""
    y, _ = _check_inputs(strata, labels)
    codes, uniques = _factorize(strata)

    def auc(scores: Any) -> float:
        u, n_pos, n_neg = _mann_whitney(codes, y, _check_scores(scores, len(codes)), len(uniques))
        ok = (n_pos > 0) & (n_neg > 0)
        return float((u[ok] / (n_pos[ok] * n_neg[ok])).mean()) if ok.any() else float("nan")

    return auc


def bootstrap_ci(
    per_stratum_auc: Any,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int | None = 0,
    *,
    max_chunk_elems: int = 4_000_000,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean per-stratum AUC, resampling strata.

    ``per_stratum_auc``: array of per-stratum AUCs, or the ``per_stratum`` DataFrame of
    :func:`stratified_auc`. Resamples are drawn as index matrices in chunks of at most
    ``max_chunk_elems`` entries (memory bound). Returns ``(nan, nan)`` for no strata.
    """
    if isinstance(per_stratum_auc, pd.DataFrame):
        a = per_stratum_auc["auc"].to_numpy(dtype=np.float64)
    else:
        a = _as_1d(per_stratum_auc, "per_stratum_auc").astype(np.float64)
    n = a.shape[0]
    if n == 0 or n_boot <= 0:
        return float("nan"), float("nan")
    if n == 1:
        return float(a[0]), float(a[0])
    rng = np.random.default_rng(seed)
    rows = max(1, min(n_boot, max_chunk_elems // n))
    means = np.empty(n_boot)
    dtype = np.int32 if n < 2**31 else np.int64
    for b0 in range(0, n_boot, rows):
        b1 = min(n_boot, b0 + rows)
        idx = rng.integers(0, n, size=(b1 - b0, n), dtype=dtype)
        means[b0:b1] = a[idx].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)


# --------------------------------------------------------------------------------------
# Cuts: history length, cold start
# --------------------------------------------------------------------------------------


_REQUIRED = ("stratum_id", "feedback", "score")


def require_columns(scored: pd.DataFrame, cols: Iterable[str]) -> None:
    missing = [c for c in cols if c not in scored.columns]
    if missing:
        raise ValueError(f"scored frame lacks column(s) {missing}; has {list(scored.columns)}")


class _Prepared:
    """A scored frame factorised once: stratum codes, labels, scores, Mann–Whitney sums."""

    def __init__(self, scored: pd.DataFrame) -> None:
        require_columns(scored, _REQUIRED)
        self.y, self.s = _check_inputs(scored["stratum_id"], scored["feedback"], scored["score"])
        self.codes, self.uniques = _factorize(scored["stratum_id"])
        self.g = len(self.uniques)
        self.u, self.n_pos, self.n_neg = _mann_whitney(self.codes, self.y, self.s, self.g)
        self.per, ok = _per_stratum_frame(self.uniques, self.u, self.n_pos, self.n_neg)
        if "history_len" in scored.columns and self.g:
            hist = np.full(self.g, np.iinfo(np.int64).max, dtype=np.int64)
            np.minimum.at(hist, self.codes, scored["history_len"].to_numpy(dtype=np.int64))
            self.per["history_len"] = hist[ok]
        self.cold = (
            scored["is_cold"].fillna(False).to_numpy(dtype=bool) if "is_cold" in scored.columns else None
        )


def per_stratum_table(scored: pd.DataFrame) -> pd.DataFrame:
    """Per-stratum AUC table of a scored frame, plus ``history_len`` (minimum over the
    stratum's rows) when the frame has that column. Only strata with both labels."""
    return _Prepared(scored).per


def bucket_label(bucket: Sequence[int]) -> str:
    lo, hi = int(bucket[0]), int(bucket[1])
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def _by_history_from_per(per, buckets, n_boot, alpha, seed) -> pd.DataFrame:
    rows = []
    hist = per["history_len"].to_numpy() if "history_len" in per.columns else None
    for i, b in enumerate(buckets):
        lo, hi = int(b[0]), int(b[1])
        if hist is None:
            sub = np.empty(0)
        else:
            sub = per["auc"].to_numpy()[(hist >= lo) & (hist <= hi)]
        auc = float(sub.mean()) if len(sub) else float("nan")
        s = None if seed is None else seed + 1 + i
        ci = bootstrap_ci(sub, n_boot=n_boot, alpha=alpha, seed=s) if len(sub) else (float("nan"),) * 2
        rows.append(
            {"bucket": bucket_label(b), "lo": lo, "hi": hi, "n_strata": int(len(sub)),
             "auc": auc, "ci_lo": ci[0], "ci_hi": ci[1]}
        )
    return pd.DataFrame(rows, columns=["bucket", "lo", "hi", "n_strata", "auc", "ci_lo", "ci_hi"])


def auc_by_history(
    scored: pd.DataFrame,
    buckets: Sequence[tuple[int, int]] = DEFAULT_BUCKETS,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int | None = 0,
) -> pd.DataFrame:
    """Stratified AUC per history-length bucket (inclusive bounds; a stratum's history
    length is the minimum ``history_len`` over its rows; strata outside every bucket are
    left out). Columns: ``bucket, lo, hi, n_strata, auc, ci_lo, ci_hi`` (NaN when empty)."""
    require_columns(scored, (*_REQUIRED, "history_len"))
    return _by_history_from_per(per_stratum_table(scored), buckets, n_boot, alpha, seed)


def lift_by_bucket(model_buckets: Any, baseline_buckets: Any) -> pd.DataFrame:
    """AUC lift of a model over a baseline per history bucket.

    Inputs: :func:`auc_by_history` frames (or lists of their row dicts). Output columns:
    ``bucket, n_strata, auc, baseline_auc, lift, lift_ci_lo, lift_ci_hi``, in the model's
    bucket order. ``lift = auc - baseline_auc``; the lift CI is an *approximation* that
    treats the two AUCs as independent normal estimates (half-widths combined in
    quadrature); a paired bootstrap needs the per-stratum tables of both models.
    """
    m = pd.DataFrame(list(model_buckets) if not isinstance(model_buckets, pd.DataFrame) else model_buckets)
    b = pd.DataFrame(
        list(baseline_buckets) if not isinstance(baseline_buckets, pd.DataFrame) else baseline_buckets
    )
    cols = ["bucket", "n_strata", "auc", "baseline_auc", "lift", "lift_ci_lo", "lift_ci_hi"]
    if m.empty or "bucket" not in m.columns:
        return pd.DataFrame(columns=cols)
    for df in (m, b):
        for c in ("auc", "ci_lo", "ci_hi"):
            if c not in df.columns:
                df[c] = np.nan
        df["bucket"] = df["bucket"].astype(str) if "bucket" in df.columns else pd.Series(dtype=str)
    if "n_strata" not in m.columns:
        m["n_strata"] = np.nan
    if "bucket" not in b.columns:
        b = pd.DataFrame(columns=["bucket", "auc", "ci_lo", "ci_hi"])
    j = m[["bucket", "n_strata", "auc", "ci_lo", "ci_hi"]].merge(
        b[["bucket", "auc", "ci_lo", "ci_hi"]].rename(
            columns={"auc": "baseline_auc", "ci_lo": "b_lo", "ci_hi": "b_hi"}
        ),
        on="bucket",
        how="left",
    )
    auc = pd.to_numeric(j["auc"], errors="coerce").astype(float)
    base = pd.to_numeric(j["baseline_auc"], errors="coerce").astype(float)
    j["auc"], j["baseline_auc"] = auc, base
    j["lift"] = auc - base
    hw_m = (pd.to_numeric(j["ci_hi"], errors="coerce") - pd.to_numeric(j["ci_lo"], errors="coerce")) / 2
    hw_b = (pd.to_numeric(j["b_hi"], errors="coerce") - pd.to_numeric(j["b_lo"], errors="coerce")) / 2
    hw = np.sqrt(hw_m.astype(float) ** 2 + hw_b.astype(float) ** 2)
    j["lift_ci_lo"] = j["lift"] - hw
    j["lift_ci_hi"] = j["lift"] + hw
    return j[cols].reset_index(drop=True)


def cold_start_auc(
    scored: pd.DataFrame, *, n_boot: int = 0, alpha: float = 0.05, seed: int | None = 0
) -> dict:
    """Cold-start AUC (see module docstring for the definition).

    Returns a dict: ``definition, auc, auc_pooled, n_pairs, n_strata, ci_lo, ci_hi`` for the
    primary "at least one cold track" pairs, and ``both_cold: {auc, auc_pooled, n_pairs,
    n_strata}``. AUCs are NaN (n_pairs 0) when there are no such pairs or no ``is_cold``
    column.
    """
    return _cold_start(_Prepared(scored) if len(scored) else None, n_boot, alpha, seed)


def _cold_start(prep: "_Prepared | None", n_boot: int, alpha: float, seed: int | None) -> dict:
    nan = float("nan")
    out: dict[str, Any] = {
        "definition": COLD_START_DEFINITION,
        "auc": nan, "auc_pooled": nan, "n_pairs": 0, "n_strata": 0, "ci_lo": nan, "ci_hi": nan,
        "both_cold": {"auc": nan, "auc_pooled": nan, "n_pairs": 0, "n_strata": 0},
    }
    if prep is None or prep.cold is None:
        return out
    codes, y, s, g, cold = prep.codes, prep.y, prep.s, prep.g, prep.cold
    w = ~cold
    u_w, p_w, n_w = _mann_whitney(codes[w], y[w], s[w], g)
    u_c, p_c, n_c = _mann_whitney(codes[cold], y[cold], s[cold], g)

    def summarise(u, pairs):
        ok = pairs > 0
        if not ok.any():
            return None
        per = u[ok] / pairs[ok]
        return per, float(per.mean()), float(u[ok].sum() / pairs[ok].sum()), int(pairs[ok].sum()), int(ok.sum())

    one = summarise(prep.u - u_w, prep.n_pos * prep.n_neg - p_w * n_w)
    if one is not None:
        per, out["auc"], out["auc_pooled"], out["n_pairs"], out["n_strata"] = one
        if n_boot:
            out["ci_lo"], out["ci_hi"] = bootstrap_ci(per, n_boot=n_boot, alpha=alpha, seed=seed)
    both = summarise(u_c, p_c * n_c)
    if both is not None:
        _, a, ap, npairs, ns = both
        out["both_cold"] = {"auc": a, "auc_pooled": ap, "n_pairs": npairs, "n_strata": ns}
    return out


# --------------------------------------------------------------------------------------
# Bundle
# --------------------------------------------------------------------------------------


def evaluate_scored(
    scored: pd.DataFrame,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    buckets: Sequence[tuple[int, int]] = DEFAULT_BUCKETS,
    min_strata: int = 0,
) -> dict:
    """The evaluation record of one scored period (JSON-able: NaN becomes None).

    Keys: ``auc, ci_lo, ci_hi, n_strata, n_events, n_pos, n_neg, n_strata_excluded,
    by_history`` (list of bucket dicts, see :func:`auc_by_history`; empty without a
    ``history_len`` column), ``cold_start`` (see :func:`cold_start_auc`) and
    ``enough_strata`` (n_strata ≥ ``min_strata``).
    """
    prep = _Prepared(scored)
    per = prep.per
    auc = float(per["auc"].mean()) if len(per) else float("nan")
    lo, hi = bootstrap_ci(per["auc"].to_numpy(), n_boot=n_boot, alpha=alpha, seed=seed)
    n_all = prep.g
    rec: dict[str, Any] = {
        "auc": auc,
        "ci_lo": lo,
        "ci_hi": hi,
        "n_strata": int(len(per)),
        "n_strata_excluded": n_all - int(len(per)),
        "n_events": int(len(scored)),
        "n_pos": int(prep.y.sum()),
        "n_neg": int(len(prep.y) - prep.y.sum()),
        "enough_strata": bool(len(per) >= min_strata),
        "alpha": alpha,
        "n_boot": n_boot,
    }
    if "history_len" in per.columns:
        rec["by_history"] = _by_history_from_per(per, buckets, n_boot, alpha, seed).to_dict(orient="records")
    else:
        rec["by_history"] = []
    rec["cold_start"] = _cold_start(prep, n_boot, alpha, seed)
    return jsonable(rec)
