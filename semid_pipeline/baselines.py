"""Model-free baselines scored on the same evaluated pairs as the models (issue 10).

A model is worth shipping only if it beats the strongest of these on the same test pairs:

* ``popularity_scores`` / ``content_baseline_scores``  the record's ``popularity`` and
                        ``content_logreg`` (track-id keyed rate; content-only logistic regression).
* ``positive_rate``     Beta-smoothed positive rate of each track over the training period
                        (the paper-style popularity baseline; tracks unseen → global rate).
* ``adjusted_popularity`` each track's effect in a logistic model with one effect per listener
                        (per session for MSSD data) and one per track, over the training period
                        (``track_prior.track_effects``): the rate adjusted for who played it, the
                        "baseline predictor" b_u + b_i of rating models (b_u drops out of a
                        per-listener AUC). With a few plays per track, a skip-prone listener's
                        plays make a track look worse than it is; this does not. With
                        ``by_plays`` (the model's ``[train] prior_by_plays``) the effects shrunk
                        toward what the play count predicts, where that ranks validation better.
* ``adjusted_popularity_by_plays`` those effects always shrunk toward what each track's play
                        count predicts (``track_prior.plays_target``), whatever the model's switch:
                        where plays follow appeal it is the stronger statistic (the sessions demo:
                        0.685 against 0.678), and the model has to beat it too.
* ``trailing_rate``     the same, over the last ``window_days`` of events known before the
                        period starts, shrunk toward the training-period rate (recency matters:
                        tastes and releases drift, real catalogues have trends).
* ``gbdt``              scikit-learn ``HistGradientBoostingClassifier`` on track popularity
                        (both rates, their counts, the adjusted effect), content (similarity to the listener's liked /
                        disliked history, a few raw dimensions) and a summary of the listener's
                        history (length, positive rate, repeats of the track / its artist).
                        Fitted on the VALIDATION period (features from events before it), scored
                        on the test period: nothing of the test period is seen.

Everything is computed from ``Splits`` (no warehouse access) and is deterministic given a seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .evaluation import require_columns
from .listener_memory import history_matches
from .splits import EvalSet, Splits, as_train_sequences
from .track_prior import PRIOR_STRENGTH, global_rate, prior_z, smoothed_rate, with_plays_target


# --------------------------------------------------------------------------------------
# Baselines
# --------------------------------------------------------------------------------------


def popularity_scores(
    train_events: pd.DataFrame, eval_events: pd.DataFrame, *, prior_strength: float = PRIOR_STRENGTH
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
    p0 = global_rate(fb)
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
# Stronger baselines (issue 10): trailing-window rate, boosted non-sequential model
# --------------------------------------------------------------------------------------


# the set of baselines and how they are computed: part of the key their cached figures are stored under
# (``stages._data_key``), so a change here recomputes them instead of reading an older set
BASELINES_VERSION = 2  # 2: adjusted_popularity_by_plays


@dataclass(frozen=True)
class BaselineConfig:
    prior_strength: float = PRIOR_STRENGTH  # Beta prior weight (pseudo-events) of the smoothed rates
    window_days: int = 14  # trailing-window length
    content_dims: int = 8  # raw content dimensions given to the boosted model
    max_iter: int = 200
    learning_rate: float = 0.05
    seed: int = 0


def _train_arrays(splits: Splits) -> tuple[np.ndarray, np.ndarray]:
    t, f = splits.train_arrays()
    return t.astype(np.int64, copy=False), f.astype(np.int64, copy=False)


def known_events(splits: Splits, since: pd.Timestamp | None = None) -> pd.DataFrame:
    """Timestamped events the splits carry (training events where ``splits.train_ts`` has them,
    evaluation inputs, validation events), deduplicated (a listener's evaluation input is also
    training data), from ``since`` on where given: the pool trailing windows are cut from."""
    since64 = None if since is None else np.datetime64(pd.Timestamp(since), "ns")
    parts = []
    t, seqs = splits.train_ts, as_train_sequences(splits.train)
    if t is not None and len(splits.train_stratum_ids) == len(seqs) and len(t) == len(seqs.tracks):
        t = np.asarray(t).astype("datetime64[ns]")
        keep = np.ones(len(t), bool) if since64 is None else t >= since64
        if keep.any():
            sid = np.repeat(np.asarray(splits.train_stratum_ids, dtype=object), seqs.lengths)[keep]
            parts.append(pd.DataFrame({"stratum_id": sid, "track_idx": seqs.tracks[keep],
                                       "feedback": seqs.feedback[keep], "ts": pd.to_datetime(t[keep])}))
    cols: dict[str, list] = {"stratum_id": [], "track_idx": [], "feedback": [], "ts": []}
    for es in (splits.val, splits.test):  # the evaluation inputs, gathered into one frame
        for i, (tr, f) in enumerate(es.inputs):
            ts = es.input_ts[i] if i < len(es.input_ts) else None
            if ts is None or len(ts) != len(tr):
                continue
            ts = np.asarray(ts).astype("datetime64[ns]")
            k = np.ones(len(ts), bool) if since64 is None else ts >= since64
            for key, v in (("stratum_id", np.full(int(k.sum()), es.stratum_ids[i], dtype=object)),
                           ("track_idx", np.asarray(tr)[k]), ("feedback", np.asarray(f)[k]), ("ts", ts[k])):
                cols[key].append(v)
    if cols["ts"]:
        parts.append(pd.DataFrame({key: np.concatenate(v) for key, v in cols.items()}))
    if len(splits.val.events):
        val = splits.val.events[["stratum_id", "track_idx", "feedback", "ts"]].assign(ts=lambda d: pd.to_datetime(d["ts"]))
        parts.append(val if since64 is None else val[val["ts"] >= pd.Timestamp(since)])
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame({"stratum_id": [], "track_idx": [], "feedback": [], "ts": pd.to_datetime([])})
    pool = pd.concat(parts, ignore_index=True)
    return pool.drop_duplicates(["stratum_id", "ts", "track_idx"]).reset_index(drop=True)


def period_start(es: EvalSet) -> pd.Timestamp | None:
    return pd.to_datetime(es.events["ts"]).min() if len(es.events) else None


def trailing_rate(splits: Splits, es: EvalSet, cfg: BaselineConfig, train_rate: np.ndarray,
                  pool: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-track rate over [start − window, start) of ``es``'s period, shrunk toward ``train_rate``."""
    n_tok = splits.vocab.n_tokens
    start = period_start(es)
    pool = known_events(splits) if pool is None else pool
    if start is None or pool.empty:
        return train_rate.copy(), np.zeros(n_tok)
    w = pool[(pool["ts"] < start) & (pool["ts"] >= start - pd.Timedelta(days=cfg.window_days))]
    return smoothed_rate(w["track_idx"].to_numpy(np.int64), w["feedback"].to_numpy(np.int64), n_tok,
                         prior=train_rate, strength=cfg.prior_strength)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)


def gbdt_features(es: EvalSet, *, train_rate, train_cnt, trail_rate, trail_cnt, effect, features: np.ndarray | None,
                  artist: np.ndarray | None, content_dims: int) -> tuple[np.ndarray, np.ndarray]:
    """(X (E, F), y (E,)) for the evaluated events of ``es`` in ``es.events`` row order."""
    e = es.events
    rows = e["row"].to_numpy(np.int64)
    t = e["track_idx"].to_numpy(np.int64)
    S = len(es)
    hist_len = np.array([len(x) for x, _ in es.inputs], dtype=np.float64)
    hist_pos = np.array([f.mean() if len(f) else np.nan for _, f in es.inputs], dtype=np.float64)
    cols = [train_rate[t], np.log1p(train_cnt[t]), trail_rate[t], np.log1p(trail_cnt[t]), effect[t],
            np.log1p(hist_len[rows]), hist_pos[rows]]
    # repeats: how often the listener met this track / its artist before, and the share liked (−1: never)
    n, s = history_matches(es.inputs, rows, t)
    cols += [n, np.where(n > 0, s / np.maximum(n, 1), -1.0)]
    if artist is not None:
        n, s = history_matches(es.inputs, rows, np.asarray(artist)[t], key_of=artist)
        cols += [n, np.where(n > 0, s / np.maximum(n, 1), -1.0)]
    if features is not None:
        F_ = np.asarray(features, dtype=np.float64)
        d = F_.shape[1]
        pos_mean, neg_mean = np.zeros((S, d)), np.zeros((S, d))
        for i, (x, f) in enumerate(es.inputs):
            if (f == 1).any():
                pos_mean[i] = F_[x[f == 1]].mean(0)
            if (f == 0).any():
                neg_mean[i] = F_[x[f == 0]].mean(0)
        c = _unit(F_[t])
        cols += [(c * _unit(pos_mean[rows])).sum(1), (c * _unit(neg_mean[rows])).sum(1)]
        cols += [F_[t, j] for j in range(min(content_dims, d))]
    X = np.column_stack(cols).astype(np.float64)
    return X, e["feedback"].to_numpy(np.int64)


def _effects(splits: Splits, n_tok: int, strength: float, *, by_plays: bool) -> tuple[np.ndarray, np.ndarray]:
    """(the listener-adjusted effects of ``adjusted_popularity`` and the trees, the same effects with
    the play-count target ``track_prior.plays_target``). The first are ``prior_z``'s; with ``by_plays``
    they are the second where those rank the validation period better, as the prior chooses."""
    from .evaluation import stratified_auc

    seqs = as_train_sequences(splits.train)
    effect = prior_z(seqs, n_tok, adjusted=True, strength=strength)[0]
    target = with_plays_target(effect, seqs, n_tok, strength=strength)
    e = splits.val.events
    if not by_plays or not len(e):
        return effect, target
    t, y = e["track_idx"].to_numpy(np.int64), e["feedback"].to_numpy(np.int64)
    better = stratified_auc(e["stratum_id"], y, target[t])[0] > stratified_auc(e["stratum_id"], y, effect[t])[0]
    return (target if better else effect), target


def baseline_scores(splits: Splits, *, features: np.ndarray | None = None, artist: np.ndarray | None = None,
                    cfg: BaselineConfig = BaselineConfig(), by_plays: bool = False) -> dict[str, dict[str, np.ndarray]]:
    """name → {"val": scores, "test": scores}, each aligned with ``<period>.events`` rows.
    ``by_plays``: the adjusted effects (their baseline, and the trees' feature) as the model's prior
    takes them with ``[train] prior_by_plays``.

    The boosted model has no validation scores of its own (it is fitted there): its "val" entry
    is absent. Tracks of the catalogue never played in training get the global rate."""
    n_tok = splits.vocab.n_tokens
    ti, tf = _train_arrays(splits)
    p0 = global_rate(tf)
    train_rate, train_cnt = smoothed_rate(ti, tf, n_tok, prior=p0, strength=cfg.prior_strength)
    effect, by_plays_effect = _effects(splits, n_tok, cfg.prior_strength, by_plays=by_plays)
    starts = [period_start(es) for es in (splits.val, splits.test)]
    starts = [x for x in starts if x is not None]
    pool = known_events(splits, since=min(starts) - pd.Timedelta(days=cfg.window_days) if starts else None)
    out: dict[str, dict[str, np.ndarray]] = {"positive_rate": {}, "adjusted_popularity": {},
                                             "adjusted_popularity_by_plays": {}, "trailing_rate": {}}
    feats: dict[str, tuple] = {}
    for period, es in (("val", splits.val), ("test", splits.test)):
        if not len(es.events):
            continue
        t = es.events["track_idx"].to_numpy(np.int64)
        tr, tc = trailing_rate(splits, es, cfg, train_rate, pool)
        out["positive_rate"][period] = train_rate[t]
        out["adjusted_popularity"][period] = effect[t]
        out["adjusted_popularity_by_plays"][period] = by_plays_effect[t]
        out["trailing_rate"][period] = tr[t]
        feats[period] = gbdt_features(es, train_rate=train_rate, train_cnt=train_cnt, trail_rate=tr, trail_cnt=tc, effect=effect,
                                      features=features, artist=artist, content_dims=cfg.content_dims)
    if "val" in feats and "test" in feats and len(np.unique(feats["val"][1])) == 2:
        from sklearn.ensemble import HistGradientBoostingClassifier

        clf = HistGradientBoostingClassifier(max_iter=cfg.max_iter, learning_rate=cfg.learning_rate,
                                             random_state=cfg.seed, early_stopping=False)
        clf.fit(*feats["val"])
        out["gbdt"] = {"test": clf.predict_proba(feats["test"][0])[:, 1]}
    return out
