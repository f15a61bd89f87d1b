"""Evaluation: stratified AUC with bootstrap CIs, history-length and cold-start cuts,
full-catalogue top-k scoring (decomposed over embedding fields), ranking and diversity
metrics, and two model-free baselines (popularity, content logistic regression).

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
* **Ranking** (``ranking_metrics``): the target of a stratum is its first positively rated
  evaluated event; recall@k = share of strata whose target is in the top-k of the whole
  catalogue (one target, so recall@k = hit-rate@k); ndcg@k = mean of 1/log2(rank+2) for a
  hit at 0-based rank ``rank`` (0 for a miss; ideal DCG is 1).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import torch

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
    "bootstrap_ci",
    "per_stratum_table",
    "auc_by_history",
    "lift_by_bucket",
    "cold_start_auc",
    "ranking_metrics",
    "topk_decomposed",
    "topk_naive",
    "diversity_metrics",
    "popularity_scores",
    "content_baseline_scores",
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


def _mann_whitney(codes: np.ndarray, labels: np.ndarray, scores: np.ndarray, n_groups: int):
    """Per group: (U of positives vs negatives, n_pos, n_neg), ties ½, via average ranks.

    ``codes`` are integer group ids in [0, n_groups). O(n log n) (one lexsort).
    """
    n = codes.shape[0]
    if n == 0:
        z = np.zeros(n_groups)
        return z, z.copy(), z.copy()
    order = np.lexsort((scores, codes))
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


def _check_inputs(strata, labels, scores):
    labels = _as_1d(labels, "labels")
    scores = _as_1d(scores, "scores").astype(np.float64, copy=False)
    n = len(_as_1d(strata, "strata"))
    if not (len(labels) == len(scores) == n):
        raise ValueError(f"strata/labels/scores lengths differ: {n}, {len(labels)}, {len(scores)}")
    if np.isnan(scores).any():
        raise ValueError(f"scores: {int(np.isnan(scores).sum())} NaN values")
    lab = labels.astype(np.float64)
    if not np.isin(lab, (0.0, 1.0)).all():
        raise ValueError("labels: expected 0/1 values")
    return lab.astype(bool), scores


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
    auc = float(per["auc"].mean()) if len(per) else float("nan")
    return auc, per


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


def _require(scored: pd.DataFrame, cols: Iterable[str]) -> None:
    missing = [c for c in cols if c not in scored.columns]
    if missing:
        raise ValueError(f"scored frame lacks column(s) {missing}; has {list(scored.columns)}")


class _Prepared:
    """A scored frame factorised once: stratum codes, labels, scores, Mann–Whitney sums."""

    def __init__(self, scored: pd.DataFrame) -> None:
        _require(scored, _REQUIRED)
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
    _require(scored, (*_REQUIRED, "history_len"))
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
# Ranking and full-catalogue top-k
# --------------------------------------------------------------------------------------


def ranking_metrics(topk: torch.Tensor, targets: torch.Tensor, k: int = 10) -> dict:
    """recall@k and ndcg@k of one target per stratum against top-k lists.

    ``topk``: (S, K) track indices, best first (only the first ``k`` columns are used);
    ``targets``: (S,) the target track index per stratum (its first positively rated
    evaluated event); strata with a negative target (e.g. -1: no positive) are ignored.
    Returns ``{"recall@k": r, "ndcg@k": n, "n_strata": S_valid}`` (NaN metrics when none).
    """
    topk = torch.as_tensor(topk)
    targets = torch.as_tensor(targets).reshape(-1)
    if topk.ndim != 2 or topk.shape[0] != targets.shape[0]:
        raise ValueError(f"topk {tuple(topk.shape)} and targets {tuple(targets.shape)} do not match")
    top = topk[:, :k].long()
    valid = targets >= 0
    nv = int(valid.sum())
    if nv == 0:
        return {f"recall@{k}": float("nan"), f"ndcg@{k}": float("nan"), "n_strata": 0}
    top, tg = top[valid], targets[valid].long()
    hit = top == tg[:, None]  # (S, K)
    found = hit.any(dim=1)
    rank = hit.float().argmax(dim=1).double()
    gain = torch.where(found, 1.0 / torch.log2(rank + 2.0), torch.zeros_like(rank))
    return {f"recall@{k}": float(found.double().mean()), f"ndcg@{k}": float(gain.mean()), "n_strata": nv}


def _select_topk_cs(scores_cs: torch.Tensor, k: int, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k along dim 0 of a (C, S) score block -> (S, k) values, (S, k) row indices.

    Two-stage: maxima of blocks of ``block`` consecutive rows (one pass), the top-k blocks
    per column, then top-k among those blocks' k·block rows. Exact: every top-k element
    lies in one of the k blocks with the largest maxima (up to exact ties).
    """
    c, s = scores_cs.shape
    k = min(k, c)
    if c <= block * max(k, 1) * 2:
        v, i = scores_cs.T.contiguous().topk(k, dim=1)
        return v, i
    nb = -(-c // block)
    pad = nb * block - c
    if pad:
        fill = torch.full((pad, s), -math.inf, dtype=scores_cs.dtype)
        scores_cs = torch.cat([scores_cs, fill], 0)
    bmax = scores_cs.view(nb, block, s).amax(dim=1)  # (nb, S)
    blk = bmax.T.contiguous().topk(k, dim=1).indices  # (S, k)
    rows = (blk[:, :, None] * block + torch.arange(block)[None, None, :]).reshape(s, k * block)
    flat = rows * s + torch.arange(s)[:, None]
    vals = scores_cs.reshape(-1)[flat]  # (S, k*block)
    v, i = vals.topk(k, dim=1)
    return v, rows.gather(1, i)


def _merge(best_v, best_i, v, i, k):
    if best_v is None:
        return v, i
    cv = torch.cat([best_v, v], 1)
    ci = torch.cat([best_i, i], 1)
    tv, ti = cv.topk(min(k, cv.shape[1]), dim=1)
    return tv, ci.gather(1, ti)


def _exclude_mask(exclude, n) -> torch.Tensor | None:
    if exclude is None:
        return None
    ex = torch.as_tensor(exclude).long().reshape(-1)
    if ex.numel() == 0:
        return None
    m = torch.zeros(n, dtype=torch.bool)
    m[ex] = True
    return m


@torch.no_grad()
def topk_decomposed(
    hidden: torch.Tensor,
    tables: Sequence[torch.Tensor],
    codes: Sequence[torch.Tensor],
    k: int = 10,
    exclude: torch.Tensor | None = None,
    chunk: int = 16384,
    strata_chunk: int = 256,
    block: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of ``hidden @ item_emb.T`` over the whole catalogue, where the item embedding
    is a sum over fields: ``item_emb[i] = sum_f tables[f][codes[f][i]]``.

    Each field's ``k_f`` codewords are scored once per stratum (S×k_f), then the per-track
    scores are gathered and summed (``embedding_bag``, cost S·N·F) chunk by chunk over
    tracks (``chunk``) and strata (``strata_chunk``); top-k is merged across chunks.
    ``exclude``: track indices never returned (e.g. a padding row 0).
    Returns ``(scores (S, k), indices (S, k))``, best first.
    """
    if len(tables) != len(codes) or not tables:
        raise ValueError(f"need one code vector per table: {len(tables)} tables, {len(codes)} codes")
    n = int(codes[0].shape[0])
    for f, (t, c) in enumerate(zip(tables, codes)):
        if c.shape != (n,):
            raise ValueError(f"codes[{f}] has shape {tuple(c.shape)}, expected ({n},)")
        if t.ndim != 2 or t.shape[1] != hidden.shape[1]:
            raise ValueError(f"tables[{f}] has shape {tuple(t.shape)}, expected (k_f, {hidden.shape[1]})")
    sizes = [int(t.shape[0]) for t in tables]
    base = torch.tensor([0] + sizes[:-1]).cumsum(0)
    offs = torch.stack([c.long() for c in codes], 1) + base[None, :]  # (N, F)
    table = torch.cat(list(tables), 0).to(hidden.dtype)  # (K_tot, h)
    mask = _exclude_mask(exclude, n)
    n_ok = n - (int(mask.sum()) if mask is not None else 0)
    k = min(k, n_ok)
    out_v, out_i = [], []
    for s0 in range(0, hidden.shape[0], strata_chunk):
        hid = hidden[s0 : s0 + strata_chunk]
        w = (table @ hid.T).contiguous()  # (K_tot, S_c): every codeword scored once
        best_v = best_i = None
        for a in range(0, n, chunk):
            b = min(n, a + chunk)
            sc = torch.nn.functional.embedding_bag(offs[a:b], w, mode="sum")  # (C, S_c)
            if mask is not None:
                mm = mask[a:b]
                if mm.any():
                    sc[mm] = -math.inf
            v, i = _select_topk_cs(sc, k, block)
            best_v, best_i = _merge(best_v, best_i, v, i + a, k)
        out_v.append(best_v)
        out_i.append(best_i)
    if not out_v:
        return torch.empty(0, k, dtype=hidden.dtype), torch.empty(0, k, dtype=torch.long)
    return torch.cat(out_v, 0), torch.cat(out_i, 0)


@torch.no_grad()
def topk_naive(
    hidden: torch.Tensor,
    item_emb: torch.Tensor,
    k: int = 10,
    exclude: torch.Tensor | None = None,
    chunk: int = 65536,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference full-catalogue top-k: ``hidden @ item_emb.T`` (chunked over tracks) and
    ``torch.topk``. ``item_emb`` (N, h) is every track's (already built) embedding."""
    n = int(item_emb.shape[0])
    mask = _exclude_mask(exclude, n)
    n_ok = n - (int(mask.sum()) if mask is not None else 0)
    k = min(k, n_ok)
    best_v = best_i = None
    for a in range(0, n, chunk):
        sc = hidden @ item_emb[a : a + chunk].T  # (S, C)
        if mask is not None:
            mm = mask[a : a + chunk]
            if mm.any():
                sc[:, mm] = -math.inf
        v, i = sc.topk(min(k, sc.shape[1]), dim=1)
        best_v, best_i = _merge(best_v, best_i, v, i + a, k)
    if best_v is None:
        return torch.empty(hidden.shape[0], 0, dtype=hidden.dtype), torch.empty(hidden.shape[0], 0, dtype=torch.long)
    return best_v, best_i


# --------------------------------------------------------------------------------------
# Diversity
# --------------------------------------------------------------------------------------


def diversity_metrics(
    topk: Any,
    features: Any | None,
    artist: Any | None,
    release_year: Any | None,
    n_catalog: int,
) -> dict:
    """Diversity of each stratum's top-k list, averaged over strata.

    * ``ils``: intra-list similarity, the mean over strata of the mean pairwise cosine
      similarity of the list's content feature vectors (unordered pairs i<j; zero vectors
      have similarity 0). Needs ``features`` (N, D); else None.
    * ``distinct_artists``: mean number of distinct artists per list, and
      ``distinct_artist_share`` = that / list length. Needs ``artist`` (N,) (ints or
      strings; negative ints / None / NaN = unknown, each counted as its own artist).
    * ``coverage``: distinct tracks over all lists / ``n_catalog``.
    * ``recent_share``: share of list entries whose release year is ≥ (max catalogue year
      − 1), over entries with a known year. Needs ``release_year`` (N,) (NaN = unknown).
    """
    t = torch.as_tensor(topk).long()
    if t.ndim != 2:
        raise ValueError(f"topk: expected (S, K), got {tuple(t.shape)}")
    s, kk = t.shape
    idx = t.numpy()
    out: dict[str, Any] = {
        "n_strata": int(s),
        "list_len": int(kk),
        "coverage": float(len(np.unique(idx)) / n_catalog) if n_catalog else float("nan"),
        "ils": None,
        "distinct_artists": None,
        "distinct_artist_share": None,
        "recent_share": None,
    }
    if s == 0 or kk == 0:
        return out
    if features is not None and kk >= 2:
        f = torch.as_tensor(np.asarray(features), dtype=torch.float64)
        fn = torch.nn.functional.normalize(f, dim=1)
        v = fn[t]  # (S, K, D)
        g = v @ v.transpose(1, 2)  # (S, K, K)
        off = g.sum(dim=(1, 2)) - torch.diagonal(g, dim1=1, dim2=2).sum(1)
        out["ils"] = float((off / (kk * (kk - 1))).mean())
    if artist is not None:
        a = pd.Series(np.asarray(artist, dtype=object))
        codes, _ = pd.factorize(a)
        codes = codes.astype(np.int64)
        if np.issubdtype(np.asarray(artist).dtype, np.integer):
            codes = np.where(np.asarray(artist) < 0, -1, codes)
        unknown = codes < 0
        # each unknown entry is its own artist: give it a unique negative code per list slot
        lab = codes[idx]
        unk = unknown[idx]
        lab = np.where(unk, -1 - np.arange(kk)[None, :], lab)
        srt = np.sort(lab, axis=1)
        distinct = 1 + (np.diff(srt, axis=1) != 0).sum(axis=1)
        out["distinct_artists"] = float(distinct.mean())
        out["distinct_artist_share"] = float(distinct.mean() / kk)
    if release_year is not None:
        y = np.asarray(release_year, dtype=np.float64)
        if np.isfinite(y).any():
            ymax = np.nanmax(y)
            ly = y[idx]
            known = np.isfinite(ly)
            if known.any():
                out["recent_share"] = float((ly[known] >= ymax - 1).mean())
    return out


# --------------------------------------------------------------------------------------
# Baselines
# --------------------------------------------------------------------------------------


def popularity_scores(
    train_events: pd.DataFrame, eval_events: pd.DataFrame, *, prior_strength: float = 10.0
) -> np.ndarray:
    """Smoothed positive rate of each evaluated track in training.

    score(track) = (positives + a·p0) / (events + a), with p0 the global positive rate of
    the training events and a = ``prior_strength`` (a Beta(a·p0, a·(1−p0)) prior's
    posterior mean). Tracks unseen in training get p0. Returns one score per row of
    ``eval_events`` (which needs a ``track_id`` column).
    """
    _require(train_events, ("track_id", "feedback"))
    _require(eval_events, ("track_id",))
    fb = train_events["feedback"].astype(float)
    p0 = float(fb.mean()) if len(fb) else 0.5
    g = fb.groupby(train_events["track_id"].to_numpy()).agg(["sum", "count"])
    rate = (g["sum"] + prior_strength * p0) / (g["count"] + prior_strength)
    return rate.reindex(eval_events["track_id"].to_numpy()).fillna(p0).to_numpy(dtype=np.float64)


def _content_design(features: np.ndarray, histories, targets, with_labels: bool):
    """Rows of [pos_mean, neg_mean, x, x*pos_mean, x*neg_mean] per target of each stratum."""
    d = features.shape[1]
    if len(histories) != len(targets):
        raise ValueError(f"{len(histories)} histories but {len(targets)} target groups")
    h_idx = [np.asarray(h[0], dtype=np.int64).reshape(-1) for h in histories]
    h_fb = [np.asarray(h[1], dtype=np.float64).reshape(-1) for h in histories]
    t_idx = [np.asarray(t[0], dtype=np.int64).reshape(-1) for t in targets]
    lens = np.array([len(x) for x in h_idx], dtype=np.int64)
    n_str = len(histories)
    strat = np.repeat(np.arange(n_str), lens)
    all_h = np.concatenate(h_idx) if n_str else np.empty(0, np.int64)
    all_fb = np.concatenate(h_fb) if n_str else np.empty(0)
    hf = features[all_h] if len(all_h) else np.empty((0, d))
    pos_sum = np.zeros((n_str, d))
    neg_sum = np.zeros((n_str, d))
    np.add.at(pos_sum, strat[all_fb > 0.5], hf[all_fb > 0.5])
    np.add.at(neg_sum, strat[all_fb <= 0.5], hf[all_fb <= 0.5])
    n_pos = np.bincount(strat, weights=(all_fb > 0.5).astype(float), minlength=n_str)
    n_neg = lens - n_pos
    pos_mean = pos_sum / np.maximum(n_pos, 1)[:, None]
    neg_mean = neg_sum / np.maximum(n_neg, 1)[:, None]
    t_lens = np.array([len(x) for x in t_idx], dtype=np.int64)
    rows = np.repeat(np.arange(n_str), t_lens)
    cand = features[np.concatenate(t_idx)] if t_lens.sum() else np.empty((0, d))
    pm, nm = pos_mean[rows], neg_mean[rows]
    x = np.hstack([pm, nm, cand, cand * pm, cand * nm])
    y = None
    if with_labels:
        y = np.concatenate([np.asarray(t[1], dtype=np.float64).reshape(-1) for t in targets]) if n_str else np.empty(0)
        if len(y) != len(x):
            raise ValueError("targets: track_idx and feedback arrays differ in length")
    return x, y


def content_baseline_scores(
    features: Any,
    train_histories: Sequence[tuple[Any, Any]],
    train_targets: Sequence[tuple[Any, Any]],
    eval_histories: Sequence[tuple[Any, Any]],
    eval_targets: Sequence[tuple[Any, Any]],
    seed: int = 0,
    *,
    C: float = 1.0,
    max_train_rows: int = 200_000,
) -> np.ndarray:
    """Content-only logistic-regression baseline (no learned track embeddings).

    ``features``: (N, D) content vectors indexed by track index. Per stratum, a *history*
    is ``(track_idx array, feedback array)`` (the model input) and *targets* are
    ``(track_idx array, feedback array)`` (the evaluated events; the eval feedback is not
    used). Each target row gets the features ``[mean content of the history's positives,
    mean content of its negatives, candidate content, candidate ⊙ positive mean,
    candidate ⊙ negative mean]`` (means are 0 when the history has none), standardised;
    a ``LogisticRegression`` is fitted on the training rows (subsampled to
    ``max_train_rows`` with ``seed``). Returns P(positive) for every eval target row, in
    stratum order then target order (the order of concatenating ``eval_targets``).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    feats = np.asarray(features, dtype=np.float64)
    x_tr, y_tr = _content_design(feats, train_histories, train_targets, True)
    x_ev, _ = _content_design(feats, eval_histories, eval_targets, False)
    if len(x_ev) == 0:
        return np.empty(0)
    if len(x_tr) == 0 or len(np.unique(y_tr)) < 2:
        p = float(y_tr.mean()) if len(y_tr) else 0.5
        return np.full(len(x_ev), p)
    rng = np.random.default_rng(seed)
    if len(x_tr) > max_train_rows:
        keep = rng.choice(len(x_tr), size=max_train_rows, replace=False)
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    scaler = StandardScaler().fit(x_tr)
    clf = LogisticRegression(C=C, max_iter=1000, random_state=seed)
    clf.fit(scaler.transform(x_tr), y_tr.astype(int))
    return clf.predict_proba(scaler.transform(x_ev))[:, 1]


# --------------------------------------------------------------------------------------
# Bundle
# --------------------------------------------------------------------------------------


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, pd.DataFrame):
        return [_jsonable(r) for r in x.to_dict(orient="records")]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, np.ndarray):
        return [_jsonable(v) for v in x.tolist()]
    return x


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
    return _jsonable(rec)


# --------------------------------------------------------------------------------------
# AUC by track-popularity bucket
# --------------------------------------------------------------------------------------

POPULARITY_BUCKETS = ("head", "torso", "tail", "unseen")


def popularity_buckets(train_track_counts: Any, *, head_share: float = 0.5, torso_share: float = 0.3) -> np.ndarray:
    """(N+1,) bucket name per track index from its training plays.

    Tracks sorted by training plays: ``head`` = the most played tracks that together hold the
    first ``head_share`` of training events, ``torso`` the next ``torso_share``, ``tail`` the rest
    with ≥ 1 play, ``unseen`` no training play (cold start). Shares of EVENTS, not of tracks,
    so the buckets mean the same thing on catalogues of any size and skew.
    """
    c = np.asarray(train_track_counts, dtype=np.float64)
    out = np.full(len(c), "unseen", dtype=object)
    seen = np.flatnonzero(c > 0)
    if len(seen) == 0:
        return out
    order = seen[np.argsort(-c[seen], kind="stable")]
    cum = np.cumsum(c[order]) / c[order].sum()
    before = np.concatenate([[0.0], cum[:-1]])  # share held by more-played tracks
    out[order] = np.where(before < head_share, "head", np.where(before < head_share + torso_share, "torso", "tail"))
    return out


def auc_by_popularity(scored: pd.DataFrame, train_track_counts: Any, *, n_boot: int = 1000, alpha: float = 0.05,
                      seed: int = 0) -> list[dict]:
    """Stratified AUC (+ bootstrap CI) within each popularity bucket of the evaluated tracks.

    ``scored`` needs stratum_id, track_idx, feedback, score. A bucket's AUC only ranks pairs whose
    two tracks are both in the bucket (a stratum counts when it has a positive and a negative there).
    """
    _require(scored, ("stratum_id", "track_idx", "feedback", "score"))
    bucket = popularity_buckets(train_track_counts)[scored["track_idx"].to_numpy(dtype=np.int64)]
    rows = []
    for name in POPULARITY_BUCKETS:
        sub = scored[bucket == name]
        if len(sub):
            auc, per = stratified_auc(sub["stratum_id"], sub["feedback"], sub["score"])
            lo, hi = bootstrap_ci(per["auc"].to_numpy(), n_boot=n_boot, alpha=alpha, seed=seed)
        else:
            auc, per, lo, hi = float("nan"), pd.DataFrame(), float("nan"), float("nan")
        rows.append({"bucket": name, "auc": auc, "ci_lo": lo, "ci_hi": hi, "n_strata": int(len(per)),
                     "n_events": int(len(sub))})
    return _jsonable(rows)
