"""The feedback model and the draw helpers both file formats share.

``P(positive) = sigmoid(taste_weight · z(taste·latent) + appeal_weight · appeal + user bias +
context offset − position_weight · (position − 1) [+ pair_opinion_weight · ε(listener, track)]
[+ appeal_trend_weight · s(track) · (2 · day / (n_days − 1) − 1)] + b)``, the taste plus
``taste_drift_weight`` · sd · d(listener, day) where the taste drifts (``taste_drift``; off by default)
and ``mood_weight`` · sd · m(sitting, position) where sittings have moods (``sitting_mood``; off by default),
``z`` standardising the affinity on the world's reference pairs, ``ε`` a standard-normal opinion
drawn once per (listener, track) pair (``pair_opinion``; off by default), ``s`` a standard-normal
trend per track (``track_trend``; off by default) and ``b`` solved so the
expected positive share is ``positive_share``.
The probability itself is kept: it is the oracle of ``oracle.parquet``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from .config import WorldConfig
from .listeners import taste_scale
from .sampling import sigmoid
from .world import World


@dataclass
class Feedback:
    positive: np.ndarray  # bool per event
    p_positive: np.ndarray  # the generator's probability of a positive
    bias: float  # the calibrated intercept b


def calibrate_bias(logit: np.ndarray, target: float) -> float:
    """Intercept b with mean(sigmoid(logit + b)) = target (on an evenly strided subsample)."""
    logit = logit[:: max(1, logit.size // 200_000)]
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if sigmoid(logit + mid).mean() < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def pair_opinion(seed: int, users: np.ndarray, tracks: np.ndarray) -> np.ndarray:
    """(E,) standard-normal ε(listener, track), the same at every play of the pair: a splitmix64
    hash of (seed, listener, track) as a uniform, through the normal quantile (no RNG stream used,
    so the rest of the world is drawn exactly as without it)."""
    from scipy.special import ndtri

    return ndtri(hash_uniform(seed, users, tracks))


def hash_uniform(seed: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(E,) uniform in (0, 1) per (seed, a, b), a and b (E,) integers: a splitmix64 hash, no RNG stream."""
    with np.errstate(over="ignore"):
        x = (np.asarray(a, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
             ^ np.asarray(b, dtype=np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
             ^ np.uint64(int(seed) & 0xFFFFFFFFFFFFFFFF) * np.uint64(0x165667B19E3779F9))
        for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
            x = (x ^ (x >> np.uint64(shift))) * np.uint64(mult)
        x = x ^ (x >> np.uint64(31))
    return ((x >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)  # (0, 1)


def track_trend(seed: int, tracks: np.ndarray) -> np.ndarray:
    """(E,) standard-normal s(track) of the appeal trend: ``pair_opinion``'s hash with its own seed."""
    return pair_opinion(int(seed) ^ 0x7E3D, np.zeros(len(tracks), dtype=np.int64), tracks)


DRIFT_DAYS = 30.0  # correlation time of the taste drift: corr 0.63 two weeks apart, 0.14 two months apart


def hashed_walks(seed: int, keys: np.ndarray, steps: np.ndarray, dim: int, length: float, *,
                 first: int = 0) -> np.ndarray:
    """(E, dim) per key and coordinate a stationary Ornstein-Uhlenbeck walk with unit variance and
    correlation length ``length`` steps, read at each event's step (``steps``: (E,) integers >= 0):
    w(0) = ε(0), w(t) = a · w(t−1) + √(1 − a²) · ε(t), a = exp(−1 / length), the ε
    ``pair_opinion``'s hash per (seed, key, coordinate, first + step) (no RNG stream). Walked for the
    keys of the call only, up to their largest step."""
    keys, steps = np.asarray(keys, dtype=np.int64), np.asarray(steps, dtype=np.int64)
    uniq, inv = np.unique(keys, return_inverse=True)
    T = int(steps.max()) + 1 if steps.size else 1
    cell = (np.arange(dim)[:, None] * 100_000 + first + np.arange(T)[None, :]).ravel()  # (dim · T,) coordinate, step
    eps = pair_opinion(seed, np.repeat(uniq, dim * T), np.tile(cell, len(uniq))).reshape(len(uniq), dim, T)
    a = np.exp(-1.0 / length)
    walk = np.empty_like(eps)
    walk[:, :, 0] = eps[:, :, 0]
    for t in range(1, T):
        walk[:, :, t] = a * walk[:, :, t - 1] + np.sqrt(1 - a * a) * eps[:, :, t]
    return walk[inv.ravel(), :, steps]  # (E, dim)


def taste_drift(seed: int, users: np.ndarray, days: np.ndarray, dim: int) -> np.ndarray:
    """(E, dim) d(listener, day): per listener and latent coordinate a ``hashed_walks`` walk over the
    days with correlation time ``DRIFT_DAYS``."""
    return hashed_walks(int(seed) ^ 0x5D21, users, days, dim, DRIFT_DAYS)


def sitting_mood(seed: int, sittings: np.ndarray, positions: np.ndarray, dim: int, length: float) -> np.ndarray:
    """(E, dim) m(sitting, position): per sitting and latent coordinate a ``hashed_walks`` walk along
    the sitting's positions (1, 2, ...) with correlation length ``length`` tracks
    (``Story.mood_positions``; 8: corr 0.88 to the next track, 0.29 ten tracks on).
    ``sittings``: (E,) an integer key per sitting (``sitting_key``)."""
    return hashed_walks(int(seed) ^ 0x3A07, sittings, np.asarray(positions, dtype=np.int64) - 1, dim, length,
                        first=1)  # ε hashed by position


def sitting_key(users: np.ndarray, days: np.ndarray, hours: np.ndarray) -> np.ndarray:
    """(n,) the mood's key of a sitting / session: its listener, day and hour (a listener's sittings
    in one hour share a mood)."""
    users, days, hours = (np.asarray(x, dtype=np.int64) for x in (users, days, hours))
    return (users * 100_000 + days) * 24 + hours


def draw_feedback(world: World, rng: np.random.Generator, users, tracks, positions, offset=0.0,
                  days: np.ndarray | None = None, sittings: np.ndarray | None = None) -> Feedback:
    """``days``: each event's day index (the clock of the appeal trend and the taste drift; needed
    when either is on); ``sittings``: each event's sitting key (``sitting_key``; needed for the mood)."""
    cfg = world.cfg
    if (cfg.appeal_trend_weight or cfg.taste_drift_weight) and days is None:
        raise ValueError("appeal_trend_weight and taste_drift_weight need each event's day")
    if cfg.mood_weight and sittings is None:
        raise ValueError("mood_weight needs each event's sitting")
    aff = world.affinity(users, tracks)
    sd = taste_scale(cfg.latent_dim)
    if cfg.taste_drift_weight:  # the listener's taste today: + weight · sd · d(listener, day)
        drift = taste_drift(cfg.seed, users, days, cfg.latent_dim)  # (E, D)
        aff = aff + cfg.taste_drift_weight * sd * np.einsum("ij,ij->i", drift, world.cat.latent[tracks])
    if cfg.mood_weight:  # the sitting's mood, drifting track by track: + weight · sd · m(sitting, position)
        mood = sitting_mood(cfg.seed, sittings, positions, cfg.latent_dim, cfg.story.mood_positions)  # (E, D)
        k = cfg.story.mood_dims
        if k:  # a mood along a few directions only (e.g. energy, calm), as large in all
            mood[:, k:] = 0.0
            mood *= np.sqrt(cfg.latent_dim / k)
        aff = aff + cfg.mood_weight * sd * np.einsum("ij,ij->i", mood, world.cat.latent[tracks])
    z = (aff - world.affinity_mean) / world.affinity_std
    logit = (
        cfg.taste_weight * z
        + cfg.appeal_weight * world.cat.appeal[tracks]
        + world.lis.bias[users]
        - cfg.position_weight * (positions - 1)
        + offset
    )
    if cfg.pair_opinion_weight:
        logit = logit + cfg.pair_opinion_weight * pair_opinion(cfg.seed, users, tracks)
    if cfg.appeal_trend_weight:
        clock = 2.0 * np.asarray(days, dtype=np.float64) / max(cfg.n_days - 1, 1) - 1.0
        logit = logit + cfg.appeal_trend_weight * track_trend(cfg.seed, tracks) * clock
    b = calibrate_bias(logit, cfg.positive_share)
    p = sigmoid(logit + b)
    return Feedback(positive=rng.random(p.shape[0]) < p, p_positive=p, bias=b)


def dedupe(
    rng: np.random.Generator, group: np.ndarray, tracks: np.ndarray, redraw, wide_redraw, world: World,
    rounds: int = 10,
) -> np.ndarray:
    """Redraw tracks repeated inside one group (sitting/session): first from the same pool, then
    (small pools, e.g. an artist with three tracks) from the genre, finally from the whole
    catalogue by popularity. A few repeats may remain."""
    tracks = tracks.copy()
    n_tracks = world.cfg.n_tracks
    for r in range(rounds):
        key = group.astype(np.int64) * n_tracks + tracks
        order = np.argsort(key, kind="stable")
        sk = key[order]
        dup_sorted = np.r_[False, sk[1:] == sk[:-1]]
        if not dup_sorted.any():
            break
        idx = np.sort(order[dup_sorted])
        if r < 4:
            tracks[idx] = redraw(idx)
        elif r < 8:
            tracks[idx] = wide_redraw(idx)
        else:
            tracks[idx] = world.global_sampler.sample(rng, np.zeros(idx.size, dtype=np.int64))
    return tracks


def events_per_user(cfg: WorldConfig, activity: np.ndarray, target: int) -> np.ndarray:
    """Per-listener event counts ∝ activity, clipped to [min, max]_user_events, summing to ~target."""
    lo, hi = 1e-6, 1e6
    for _ in range(80):
        mid = np.sqrt(lo * hi)
        n = np.clip(np.round(activity * mid), cfg.min_user_events, cfg.max_user_events)
        if n.sum() < target:
            lo = mid
        else:
            hi = mid
    return np.clip(np.round(activity * hi), cfg.min_user_events, cfg.max_user_events).astype(np.int64)


def day_weights(cfg: WorldConfig) -> np.ndarray:
    start = date.fromisoformat(cfg.start_date)
    bump = cfg.story.weekend_weight
    w = np.array([bump if (start + timedelta(days=d)).weekday() >= 5 else 1.0 for d in range(cfg.n_days)])
    return w / w.sum()


# Relative listening by hour of day (quiet at night, peaks at commute and evening).
HOUR_PROFILE = np.array(
    [2, 1.2, 0.8, 0.5, 0.5, 0.8, 2, 4, 6, 5, 4.5, 4.5, 5, 5, 4.5, 4.5, 5, 6, 6.5, 6.5, 6, 5, 4, 3],
    dtype=np.float64,
)
