"""Model-free baselines on the test period: track popularity and content-only logistic regression."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from .evaluation import require_columns


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
    require_columns(train_events, ("track_id", "feedback"))
    require_columns(eval_events, ("track_id",))
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
