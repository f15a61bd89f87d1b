"""Per-track popularity prior: the smoothed positive rate of each track, as a model input.

On data where a track's own appeal decides most feedback (explicit ratings, skips of a weak
track), a Beta-smoothed positive rate per track beats a sequence model whose per-track bias is a
free parameter fitted by SGD: the rate is the right shrinkage for a track with 3 plays. With
``[train] popularity_prior`` the model adds ``w · z_i`` to every score, where

    rate_i = (positives_i + a · p0) / (plays_i + a)      (``smoothed_rate``; a = ``PRIOR_STRENGTH``)
    z_i    = logit(rate_i) − logit(p0)                   (0 for a track never played: the prior)

Both ``w`` and ``z`` are buffers of the model (saved in the state_dict, never trained). The model
trains with w = 0, exactly as without the switch. Then w is chosen on the VALIDATION period
(``choose_weight``: the best stratified AUC of model score + w · z, z counted over the training
period, w in 0..16): there neither the model nor z has seen the labels. The model that is tested
and served carries z counted over the data it last trained on (through the validation period
after the final fit), so the two stand to each other as they did when w was chosen.

With ``[train] prior_adjusted`` (default on) z is instead each track's effect in a logistic model
with one effect per listener (per session for MSSD data) and one per track (``track_effects``): the
track's appeal adjusted for who played it, under the same prior of ``PRIOR_STRENGTH`` pseudo-events.

With ``[train] prior_by_plays`` (default off) the weight search runs a second time with each track
shrunk toward the z its play count predicts instead of toward 0 (``plays_target``: a line in
log(1 + plays) fitted on the same events, so a track never played gets the line's value at 0
plays), and that z is kept where it ranks the validation period better: plays often follow appeal,
and on sparse data (a few plays per track) the target decides most tracks' z; where they do not,
validation keeps the z above.

With ``[train] recent_prior_days`` (default 14; 0 = off) the term is w · (z + ρ · z_recent),
z_recent the track's rate over that many days before the scored period (shrunk toward its
whole-period rate, as the trailing-rate baseline counts it) less z: ρ = 1 scores with the recent
rate, ρ = 0 as before; (w, ρ) are chosen together on validation, and the stored z already holds
ρ · z_recent (one number per track, as before). Real catalogues drift (hits wear off, releases
climb); a world with such trends (``appeal_trend_weight``) is in the README.

The prior scores feedback on a play (the stratified AUC, the paper's metric). The full-catalogue
top-k and serving rank by the model's own score: a high like rate is not a reason to play a
track, and with the prior the demo's recall@10 fell (``64|v1-k1024`` 0.240 → 0.193, ``id``
0.196 → 0.185).

Why not learn w jointly: any per-track parameter (a bias, an id row) memorises its training
labels, and z counted over the same labels says it again; trained together, the model
double-counts popularity and overfits after one epoch (measured: README "Popularity prior").
The popularity baseline's rate is the same function (``baselines`` imports it from here).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PRIOR_STRENGTH = 10.0  # pseudo-events of the Beta prior (the popularity baselines use the same)
STRATUM_STRENGTH = 1.0  # pseudo-events of a listener's / session's effect in ``track_effects``
_EPS = 1e-6


def smoothed_rate(track_idx: np.ndarray, feedback: np.ndarray, n_tokens: int, *, prior: np.ndarray | float,
                  strength: float = PRIOR_STRENGTH) -> tuple[np.ndarray, np.ndarray]:
    """(rate (n_tokens,), count (n_tokens,)): (positives + a·prior) / (events + a) per track index."""
    pos = np.bincount(track_idx, weights=feedback.astype(np.float64), minlength=n_tokens)[:n_tokens]
    cnt = np.bincount(track_idx, minlength=n_tokens)[:n_tokens].astype(np.float64)
    return (pos + strength * np.asarray(prior, dtype=np.float64)) / (cnt + strength), cnt


def _logit(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def global_rate(feedback: np.ndarray) -> float:
    """p0: the share of positive events (0.5 without events)."""
    return float(np.mean(feedback)) if len(feedback) else 0.5


def prior_rates(tracks: np.ndarray, feedback: np.ndarray, n_tokens: int, *,
                strength: float = PRIOR_STRENGTH) -> tuple[np.ndarray, float]:
    """(rate (n_tokens,) float64, p0): each track's smoothed rate over all ``tracks``/``feedback`` events."""
    t, f = np.asarray(tracks, dtype=np.int64), np.asarray(feedback, dtype=np.int64)
    p0 = global_rate(f)
    return smoothed_rate(t, f, n_tokens, prior=p0, strength=strength)[0], p0


def prior_logits(tracks: np.ndarray, feedback: np.ndarray, n_tokens: int, *,
                 strength: float = PRIOR_STRENGTH) -> np.ndarray:
    """(n_tokens,) float32 z per track index from all ``tracks``/``feedback`` events; row 0 (padding)
    and tracks without events are 0."""
    return rate_logits(*prior_rates(tracks, feedback, n_tokens, strength=strength))


def track_effects(tracks: np.ndarray, feedback: np.ndarray, strata: np.ndarray, n_tokens: int, *,
                  strength: float = PRIOR_STRENGTH, strata_strength: float = STRATUM_STRENGTH, tol: float = 1e-6,
                  max_iter: int = 200) -> np.ndarray:
    """(n_tokens,) float64 a: each track's effect in logit P(positive) = c + u_s + a_t, one effect u_s
    per stratum (``strata``: (E,) ints, a listener or a session) and one a_t per track: the track's
    appeal adjusted for who played it. The MAP under a ~ N(0, 1/λ) with λ = strength · p0 (1 − p0),
    the curvature on the logit scale of ``smoothed_rate``'s Beta prior of ``strength`` pseudo-events,
    and u ~ N(0, 1/λ_s) with λ_s of ``strata_strength`` pseudo-events; c free. 0 for the padding row
    and for tracks without events. The strata's prior is weak on purpose: listeners and sessions
    differ far more than tracks do (some skip nearly everything), and a prior as strong as the
    tracks' shrinks u, so that the tracks such listeners play take the blame (on a world built for
    it a true gap of 1.4 between good and bad tracks came out as 0.46 with 10 pseudo-events, 0.95
    with 1; on the demo sessions the validation AUC of the effects alone 0.6734 → 0.6792).

    Why: the plain rate counts every play alike, so a track played by listeners (or in sessions) that
    skip a lot looks worse than it is; with a handful of plays per track, who played it moves the
    rate as much as the track does. This is the "baseline predictor" b_u + b_i of rating models,
    for binary feedback. Block coordinate ascent: a Newton step for every a_t at once (the Hessian
    is diagonal within a block: each event has one track), then every u_s, then c, until no effect
    moves more than ``tol`` (26 / 30 rounds on the demo's sessions / users, 40 for 2 million events
    (2.6 s); 35 s for 20 million). Memory: the caller's event arrays plus ~160 MB (``_sums``)."""
    t = np.asarray(tracks)  # the caller's arrays, not copies: memory is the events' (see _sums)
    s = np.asarray(strata)
    y = np.asarray(feedback)
    a = np.zeros(n_tokens)
    if not len(y):
        return a
    n_s = int(s.max()) + 1
    p0 = float(np.clip(y.mean(), _EPS, 1 - _EPS))
    lam = strength * p0 * (1 - p0)
    lam_s = strata_strength * p0 * (1 - p0)
    u, c = np.zeros(n_s), float(_logit(p0))

    def sums(idx, n):  # Σ (y − p) and Σ p (1 − p) per index at the current effects
        return _sums(t, s, y, idx, n, c + a, u)

    played, met = np.bincount(t, minlength=n_tokens) > 0, np.bincount(s, minlength=n_s) > 0
    for _ in range(max_iter):
        moved = 0.0
        for eff, idx, n, lm, seen in ((a, t, n_tokens, lam, played), (u, s, n_s, lam_s, met)):
            r, w = sums(idx, n)
            step = (r - lm * eff) / (w + lm)
            eff += np.clip(step, -1.0, 1.0)  # damped: a track with only likes does not jump on the first round
            moved = max(moved, float(np.abs(step).max()))
            # c + a_t + u_s is unchanged when a rises and c falls alike, a direction the block steps
            # cross only slowly (145 rounds to a step of 1e-4 for 2M events); the optimum has Σ a = Σ u = 0
            # over the played tracks / the strata (sum the stationarity conditions, c being free), so
            # the mean moves to c at once (23 rounds to 1e-4, the same optimum)
            shift = float(eff[seen].mean())
            eff[seen] -= shift
            c += shift
        r, w = sums(t, n_tokens)
        c += float(r.sum() / max(w.sum(), _EPS))
        if moved < tol:
            break
    a[0] = 0.0
    return a


_CHUNK = 1 << 21  # events per pass of ``_sums``: its temporaries (~50 bytes an event) stay ~100 MB


def _sums(t: np.ndarray, s: np.ndarray, y: np.ndarray, idx: np.ndarray, n: int, ca: np.ndarray,
          u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Σ (y − p), Σ p (1 − p)) per value of ``idx`` (n,), p = σ(ca[t] + u[s]) per event, in chunks
    of ``_CHUNK`` events: the fit's memory is the caller's event arrays plus a fixed amount, not ~6
    float64 arrays per event (~57 bytes an event, 5.7 GB at 100M events, until 2026-12-04)."""
    r, w = np.zeros(n), np.zeros(n)
    for lo in range(0, len(t), _CHUNK):
        sl = slice(lo, lo + _CHUNK)
        p = 1.0 / (1.0 + np.exp(-(ca[t[sl]] + u[s[sl]])))
        r += np.bincount(idx[sl], y[sl] - p, n)
        w += np.bincount(idx[sl], p * (1 - p), n)
    return r, w


def prior_z(seqs, n_tokens: int, *, adjusted: bool, strength: float = PRIOR_STRENGTH,
            by_plays: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(z (n_tokens,) float32, rate (n_tokens,) float64) of training sequences ``seqs``
    (``splits.TrainSequences``): z the listener-adjusted track effects (``track_effects``, one stratum
    per sequence) where ``adjusted``, else ``rate_logits`` of the smoothed rate; with ``by_plays``
    each track shrunk toward what its play count predicts (``plays_target``). The rate itself is
    what the recent window (``recent_logits``) shrinks toward."""
    rate, p0 = prior_rates(seqs.tracks, seqs.feedback, n_tokens, strength=strength)
    if not adjusted:
        z = rate_logits(rate, p0)
    else:
        strata = np.repeat(np.arange(len(seqs.lengths), dtype=np.int32), seqs.lengths)  # 4 bytes an event
        z = track_effects(seqs.tracks, seqs.feedback, strata, n_tokens, strength=strength).astype(np.float32)
    if by_plays:
        z = with_plays_target(z, seqs, n_tokens, strength=strength)
    return z, rate


def with_plays_target(z: np.ndarray, seqs, n_tokens: int, *, strength: float = PRIOR_STRENGTH) -> np.ndarray:
    """``plays_target`` of ``z`` with each track's plays counted in ``seqs`` (the events z came from)."""
    return plays_target(z, np.bincount(np.asarray(seqs.tracks), minlength=n_tokens)[:n_tokens], strength=strength)


def plays_target(z: np.ndarray, plays: np.ndarray, *, strength: float = PRIOR_STRENGTH) -> np.ndarray:
    """(n_tokens,) float32: ``z`` with each track's shrinkage aimed at the value its play count
    predicts, m(n) = β₀ + β₁ · log(1 + n), instead of at 0 (empirical Bayes with one covariate).

    z shrinks a track with n plays by r = n / (n + strength) toward 0 (``smoothed_rate``; the effects
    alike), so E[z] = r · m(n): (β₀, β₁) is the least-squares fit of z on (r, r · log(1 + n)) over the
    played tracks, and the result is z + (1 − r) · m(n); a track never played gets m(0) = β₀, the
    padding row 0. Why: how often a track is played says how it is liked (hits are skipped less,
    and rated higher; plays follow appeal), and a track with 1–3 plays or none is decided by its
    shrinkage target, not by its own events. The line is fitted on the data: where plays say
    nothing, β₁ ≈ 0 and β₀ ≈ 0 (the tracks' mean effect is 0), and z stays as it was."""
    z = np.asarray(z, dtype=np.float64)
    n = np.asarray(plays, dtype=np.float64)
    played = n > 0
    played[0] = False
    if played.sum() < 2:
        return z.astype(np.float32)
    r, x = n / (n + strength), np.log1p(n)
    design = np.column_stack([r, r * x])[played]
    beta = np.linalg.lstsq(design, z[played], rcond=None)[0]  # (2,)
    out = z + (1.0 - r) * (beta[0] + beta[1] * x)
    out[0] = 0.0
    return out.astype(np.float32)


def rate_logits(rate: np.ndarray, p0: float) -> np.ndarray:
    """(n_tokens,) float32 z = logit(rate) − logit(p0) of ``prior_rates``' result; row 0 (padding) 0."""
    z = _logit(rate) - _logit(p0)
    z[0] = 0.0
    return z.astype(np.float32)


def recent_logits(splits, eval_set, rate: np.ndarray, *, days: int) -> np.ndarray | None:
    """(n_tokens,) float32 z_recent = logit(r) − logit(rate): r each track's rate over the ``days``
    before ``eval_set``'s period (the trailing-rate baseline's window and pool,
    ``baselines.trailing_rate``) shrunk toward its whole-period ``rate``; 0 for a track not played
    in the window. None where the splits carry no timestamped events before the period.

    Real catalogues drift (a hit wears off, a new release climbs); the whole-period rate averages
    that away and the trailing-window baseline does not. The score gets w · (z + ρ · z_recent),
    ρ chosen on validation with the other weights (``score_terms.choose_weights``; 0 where the
    window says nothing the whole period does not)."""
    from .baselines import BaselineConfig, known_events, period_start, trailing_rate

    start = period_start(eval_set)
    if days <= 0 or start is None:
        return None
    pool = known_events(splits, since=start - pd.Timedelta(days=days))
    if pool.empty:
        return None
    recent, cnt = trailing_rate(splits, eval_set, BaselineConfig(window_days=days), rate, pool)
    if not cnt.any():
        return None
    z = _logit(recent) - _logit(rate)
    z[0] = 0.0
    return z.astype(np.float32)


# the validation search: 0, 0.1, ..., 2, then coarser up to 16 (where the model's score barely counts)
PRIOR_WEIGHTS = tuple(round(0.1 * i, 1) for i in range(21)) + (2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0, 11.0, 16.0)


def choose_weight(strata, labels, scores, z, weights=PRIOR_WEIGHTS) -> tuple[float, list[dict]]:
    """(w, table) with w the weight of ``weights`` whose ``scores + w · z`` has the best stratified
    AUC on these (validation) events; the smallest such w on ties (0 = the prior does not help).
    ``table``: one {"weight", "auc"} row per candidate."""
    from .evaluation import stratified_auc

    s, zz = np.asarray(scores, dtype=np.float64), np.asarray(z, dtype=np.float64)
    codes = np.unique(np.asarray(strata), return_inverse=True)[1].ravel()  # once, not per candidate w
    rows = [{"weight": float(w), "auc": float(stratified_auc(codes, labels, s + w * zz)[0])} for w in weights]
    best = max(rows, key=lambda r: (r["auc"], -r["weight"]))
    return best["weight"], rows


def validation_weight(model, splits, *, recent_days: int = 0, adjusted: bool = False, by_plays: bool = False) -> dict:
    """{"weight", "recent", "recent_days", "adjusted", "by_plays", "affinity", "memory", "taste", "val_auc", "val_auc_without", "values",
    "affinity_values", "memory_values"} for a trained model with a prior, the content affinity (with its personal taste)
    and / or the listener memory (all weights 0 until now): z counted over the training period, the
    validation events scored, w, (a₊, a₋), (r_t, r_a) and b by ``score_terms.choose_weights`` (w alone: exactly
    ``choose_weight``); ``values`` / ``affinity_values`` / ``memory_values``: the numbers z, the
    affinity's content rows and the memory's track → artist map store (the model's storage beyond
    its parameters). The model keeps that z with all weights 0 (the caller sets the final ones).
    ``recent_days`` > 0: also ρ of the trailing window (``recent_logits``). ``adjusted``: z the
    listener-adjusted track effects (``prior_z``; recorded as "adjusted" for ``apply_chosen``).
    ``by_plays``: the whole search runs again with z shrunk toward the play count's prediction
    (``plays_target``), kept where validation ranks better ("by_plays" records which z won).
    No validation events: all weights 0."""
    from .score_terms import choose_weights
    from .scoring import score_eval_set
    from .splits import as_train_sequences

    n_tok = splits.vocab.n_tokens
    artist = model.has_memory and bool(model.memory_artist.any())
    taste = model.taste_weight is not None
    out = {"weight": 0.0, "recent": 0.0, "recent_days": int(recent_days), "adjusted": bool(adjusted), "by_plays": False, "affinity": [0.0, 0.0], "memory": [0.0, 0.0], "taste": 0.0, "val_auc": None, "val_auc_without": None,
           "values": n_tok if model.has_prior else 0,
           "affinity_values": int(model.affinity_table.numel()) if model.has_affinity else 0,
           "memory_values": int(model.memory_artist.numel()) if artist else 0}
    z_recent, z_by_plays = None, None
    if model.has_prior:
        seqs = as_train_sequences(splits.train)
        z, rate = prior_z(seqs, n_tok, adjusted=adjusted)
        if by_plays:
            z_by_plays = with_plays_target(z, seqs, n_tok)
        model.set_prior(z, 0.0)
        if recent_days > 0:
            z_recent = recent_logits(splits, splits.val, rate, days=recent_days)
    if model.has_affinity:
        model.set_affinity(weights=(0.0, 0.0), taste=0.0 if taste else None)
    if model.has_memory:
        model.set_memory(weights=(0.0, 0.0))
    scored = score_eval_set(model, splits.val, term_columns=True)
    if not len(scored):
        return out
    t = scored["track_idx"].to_numpy()
    sims = scored[["affinity_liked", "affinity_disliked"]].to_numpy() if model.has_affinity else None
    mem = scored[["memory_track", "memory_artist"]].to_numpy() if model.has_memory else None

    def search(z_all: np.ndarray | None) -> dict:
        return choose_weights(scored["stratum_id"], scored["feedback"], scored["score"],
                              z=None if z_all is None else z_all[t], sims=sims, mem=mem,
                              taste=scored["affinity_taste"].to_numpy() if taste else None, prior_weights=PRIOR_WEIGHTS,
                              z_recent=None if z_recent is None else z_recent[t])

    best = search(model.prior_logit.cpu().numpy() if model.has_prior else None)
    if z_by_plays is not None and (alt := search(z_by_plays))["auc"] > best["auc"]:  # ties: the target stays out
        best, out["by_plays"] = alt, True
        model.set_prior(z_by_plays, 0.0)
    return out | {"weight": best["weight"], "recent": best["recent"], "affinity": best["affinity"], "memory": best["memory"],
                  "taste": best["taste"],
                  "val_auc": best["auc"], "val_auc_without": best["auc_without"]}


def apply_chosen(model, splits, chosen: dict, *, final_fit: bool) -> None:
    """Give a trained model the weights ``validation_weight`` chose, with z counted over the data its
    weights last trained on (through the validation period after a final fit, else the training
    period), plus ρ · z_recent over the window before the test period where ρ > 0: the two then
    stand to each other as they did when w was chosen. The content
    affinity's rows and the memory's artist map never change (content and metadata, not labels)."""
    from .splits import as_train_sequences
    from .windows import through_validation

    if model.has_prior:
        seqs = through_validation(splits) if final_fit else as_train_sequences(splits.train)
        z, rate = prior_z(seqs, splits.vocab.n_tokens, adjusted=bool(chosen.get("adjusted")),
                          by_plays=bool(chosen.get("by_plays")))
        rho, days = float(chosen.get("recent") or 0.0), int(chosen.get("recent_days") or 0)
        if rho > 0 and days > 0:
            z_recent = recent_logits(splits, splits.test, rate, days=days)
            if z_recent is not None:
                z = z + np.float32(rho) * z_recent
        model.set_prior(z, chosen["weight"])
    if model.has_affinity:
        model.set_affinity(weights=chosen.get("affinity", (0.0, 0.0)),
                           taste=chosen.get("taste", 0.0) if model.taste_weight is not None else None)
    if model.has_memory:
        model.set_memory(weights=chosen.get("memory", (0.0, 0.0)))


def stored_numbers(record: dict) -> int:
    """A partition record's parameters plus the per-track values of its prior, the content rows of
    its content affinity (cosines or personal taste) and the track → artist map of its listener memory, each where it is in
    use (weight > 0): what the model stores, for parameter comparisons that stay honest with them."""
    prior = record.get("prior") or {}
    extra = int(prior.get("values") or 0) if (prior.get("weight") or 0) > 0 else 0
    if any(a > 0 for a in prior.get("affinity") or ()) or (prior.get("taste") or 0) > 0:
        extra += int(prior.get("affinity_values") or 0)
    if (prior.get("memory") or (0.0, 0.0))[1] > 0:  # the artist map; the track part stores nothing
        extra += int(prior.get("memory_values") or 0)
    return int(record.get("params_total") or 0) + extra
