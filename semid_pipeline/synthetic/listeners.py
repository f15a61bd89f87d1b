"""Listeners and their radio stations.

A listener has a favourite genre, a taste vector (the genre's centre plus personal noise), a skip
bias, a lognormal activity level and an active window (late joiners, early churners). A station
belongs to a listener and is seeded by a track, an artist or a genre; the seed is the most
taste-matching of a few popular candidates of (mostly) the favourite genre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .catalogue import Catalogue
from .config import WorldConfig
from .sampling import SegmentSampler, hex_ids

TRACK_STATION, ARTIST_STATION, GENRE_STATION = 0, 1, 2


@dataclass
class Listeners:
    user_ids: list[str]
    fav_genre: np.ndarray
    taste: np.ndarray  # (n_users, D)
    bias: np.ndarray
    activity: np.ndarray  # lognormal weight
    premium: np.ndarray
    start_day: np.ndarray
    end_day: np.ndarray  # exclusive


@dataclass
class Stations:
    user: np.ndarray
    type: np.ndarray  # TRACK_STATION | ARTIST_STATION | GENRE_STATION
    seed: np.ndarray  # seed track index
    pref_cdf: np.ndarray  # (max_stations+1, max_stations): cdf over a listener's stations
    user_start: np.ndarray  # first station of each listener
    user_count: np.ndarray
    pool_row: np.ndarray  # row in the pool sampler for track stations (-1 otherwise)
    pool_sampler: SegmentSampler | None  # track stations: nearest tracks of the seed's genre


def taste_scale(latent_dim: int) -> float:
    """The per-coordinate scale of a listener's own taste noise (× ``Story.taste_noise``) and of the
    taste drift (× ``WorldConfig.taste_drift_weight``, ``feedback.draw_feedback``)."""
    return 1.0 / np.sqrt(latent_dim)


def build_listeners(cfg: WorldConfig, rng: np.random.Generator, cat: Catalogue) -> Listeners:
    U, G, D, st = cfg.n_users, cfg.n_genres, cfg.latent_dim, cfg.story
    sd = taste_scale(D)
    fav = rng.choice(G, size=U, p=cat.genre_weight)
    taste = cat.genre_centre[fav] + st.taste_noise * sd * rng.standard_normal((U, D))
    bias = cfg.user_bias_sd * rng.standard_normal(U)
    activity = np.exp(cfg.activity_sigma * rng.standard_normal(U))
    premium = rng.random(U) < st.premium_share
    late = np.floor(cfg.n_days * st.late_join_span * rng.random(U) ** 2).astype(np.int64)
    churn = np.where(rng.random(U) < st.churn_share, np.floor(cfg.n_days * st.churn_span * rng.random(U)), 0)
    churn = churn.astype(np.int64)
    end_day = np.maximum(cfg.n_days - churn, late + st.min_active_days).clip(max=cfg.n_days)
    user_ids = ["u_" + h for h in hex_ids(rng, U, 8)]
    return Listeners(user_ids=user_ids, fav_genre=fav, taste=taste, bias=bias, activity=activity,
                     premium=premium, start_day=late, end_day=end_day)


def _pref_cdf(max_stations: int) -> np.ndarray:
    """Row c: the cdf over a listener's c stations, station i preferred ∝ 1/(i+1)."""
    pref = 1.0 / np.arange(1, max_stations + 1)
    cdf = np.ones((max_stations + 1, max_stations))
    for c in range(1, max_stations + 1):
        cdf[c, :c] = np.cumsum(pref[:c]) / pref[:c].sum()
        cdf[c, c - 1] = 1.0
    return cdf


def _pool_sampler(cfg: WorldConfig, cat: Catalogue, track_st: np.ndarray, seeds: np.ndarray) -> SegmentSampler:
    """Track stations: the pool is the ``station_pool`` tracks of the seed's genre nearest to it."""
    G = cfg.n_genres
    rows_g, rows_i = [], []
    seed_genre = cat.track_genre[seeds]
    genre_members = np.argsort(cat.track_genre, kind="stable")
    gstart = np.r_[0, np.cumsum(np.bincount(cat.track_genre, minlength=G))]
    lat32 = cat.latent.astype(np.float32)
    for g in range(G):
        sts = np.flatnonzero(seed_genre == g)
        if sts.size == 0:
            continue
        members = genre_members[gstart[g]:gstart[g + 1]]
        M = min(cfg.station_pool, members.size)
        useeds, inv = np.unique(seeds[sts], return_inverse=True)  # popular seeds repeat
        zmT = np.ascontiguousarray(lat32[members].T)
        zm2 = (zmT * zmT).sum(0)[None, :]
        near_u = np.empty((useeds.size, M), dtype=np.int64)
        for lo in range(0, useeds.size, 1024):
            zs = lat32[useeds[lo:lo + 1024]]
            d2 = zm2 - 2.0 * (zs @ zmT)  # |zs|² is constant per row: irrelevant for the ranking
            if M < members.size:
                near = np.argpartition(d2, M - 1, axis=1)[:, :M]
            else:
                near = np.broadcast_to(np.arange(members.size), (zs.shape[0], M))
            near_u[lo:lo + 1024] = members[near]
        rows_g.append(np.repeat(sts, M))
        rows_i.append(near_u[inv].ravel())
    pg = np.concatenate(rows_g)
    pi = np.concatenate(rows_i)
    return SegmentSampler(pg, pi, cat.pop_weight[pi], track_st.size)


def build_stations(
    cfg: WorldConfig, rng: np.random.Generator, cat: Catalogue, lis: Listeners, genre_sampler: SegmentSampler
) -> Stations:
    U, G, st = cfg.n_users, cfg.n_genres, cfg.story
    S_max = cfg.max_stations
    count = np.minimum(1 + rng.poisson(st.extra_stations_mean, U), S_max)
    start = np.r_[0, np.cumsum(count)[:-1]]
    n_st = int(count.sum())
    user = np.repeat(np.arange(U), count)
    st_genre = np.where(
        rng.random(n_st) < st.fav_genre_station_share, lis.fav_genre[user], rng.choice(G, size=n_st, p=cat.genre_weight)
    )
    n_cand = st.seed_candidates
    cand = genre_sampler.sample(rng, np.repeat(st_genre, n_cand)).reshape(n_st, n_cand)
    cand_aff = np.einsum("sd,scd->sc", lis.taste[user], cat.latent[cand])
    seed = cand[np.arange(n_st), np.argmax(cand_aff, axis=1)]
    typ = rng.choice(3, size=n_st, p=list(st.station_type_p))
    pool_row = np.full(n_st, -1, dtype=np.int64)
    track_st = np.flatnonzero(typ == TRACK_STATION)
    pool_sampler = None
    if track_st.size:
        pool_row[track_st] = np.arange(track_st.size)
        pool_sampler = _pool_sampler(cfg, cat, track_st, seed[track_st])
    return Stations(user=user, type=typ, seed=seed, pref_cdf=_pref_cdf(S_max), user_start=start,
                    user_count=count, pool_row=pool_row, pool_sampler=pool_sampler)


def pick_stations(stations: Stations, rng: np.random.Generator, users: np.ndarray) -> np.ndarray:
    """One station per request, a listener's first stations preferred."""
    cnt = stations.user_count[users]
    cdf = stations.pref_cdf[cnt]
    r = (rng.random(users.shape[0])[:, None] > cdf).sum(1)
    r = np.minimum(r, cnt - 1)
    return stations.user_start[users] + r
