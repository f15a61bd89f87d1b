"""AUC by track-popularity bucket (head / torso / tail / never seen in training).

Semantic IDs are expected to help most on the tail and on unseen tracks, where a per-track row
has little or nothing to learn from; the buckets put that claim next to the history-length ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .evaluation import bootstrap_ci, stratified_auc
from .fileutil import jsonable

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
    missing = [c for c in ("stratum_id", "track_idx", "feedback", "score") if c not in scored]
    if missing:
        raise ValueError(f"scored frame lacks column(s) {missing}")
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
    return jsonable(rows)
