"""Ranking and diversity of full-catalogue top-k lists (the lists come from ``scoring``).

* **Ranking** (``ranking_metrics``): the target of a stratum is its first positively rated
  evaluated event; recall@k = share of strata whose target is in the top-k of the whole
  catalogue (one target, so recall@k = hit-rate@k); ndcg@k = mean of 1/log2(rank+2) for a
  hit at 0-based rank ``rank`` (0 for a miss; ideal DCG is 1).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch


# --------------------------------------------------------------------------------------
# Ranking
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
