"""The per-user format: ``users/events.parquet`` + ``users/tracks.parquet`` (+ ``oracle.parquet``).

Each listener's events are grouped into station "sittings" spread over the listener's active
window; sittings never overlap in time and events inside one are spaced by the listened duration
(positives play most of the track, negatives are skipped after a few seconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .feedback import HOUR_PROFILE, dedupe, draw_feedback, events_per_user, sitting_key
from .io import atomic_write
from .listeners import pick_stations
from .oracle import write_oracle
from .sampling import STREAM_USERS, rng_for
from .tracks_table import users_tracks_table
from .world import World


@dataclass
class UserEvents:
    """Generated per-user events, sorted by (listener, timestamp, track number)."""

    user: np.ndarray
    track: np.ndarray
    ts: np.ndarray  # seconds since start_date
    feedback: np.ndarray  # int8 1/0
    p_positive: np.ndarray
    bias: float


@dataclass
class UsersWritten:
    events: Path
    tracks: Path
    oracle: Path
    n_events: int
    n_positive: int
    n_users: int
    n_tracks: int
    days: tuple[int, int] | None  # first and last day index with an event


def _sittings(world: World, rng: np.random.Generator, users: np.ndarray, n_u: np.ndarray):
    """Sittings of ``sitting_min + Poisson`` tracks, enough per listener to cover n_u (last one cut).

    ``users``: the listeners generated (all of them, or one block); ``n_u``: their event counts."""
    st = world.cfg.story
    k_u = n_u // st.sitting_min + 1
    seg_user = np.repeat(users, k_u)
    L = st.sitting_min + rng.poisson(st.sitting_extra_mean, seg_user.size)
    seg_first = np.r_[0, np.cumsum(k_u)[:-1]]
    cum = np.cumsum(L)
    base = np.r_[0, cum][seg_first]
    end_in_user = cum - np.repeat(base, k_u)
    start_in_user = end_in_user - L
    seg_n = np.repeat(n_u, k_u)
    keep = start_in_user < seg_n
    sit_user = seg_user[keep]
    sit_len = np.minimum(end_in_user[keep], seg_n[keep]) - start_in_user[keep]
    return sit_user, sit_len


def _no_overlap(cfg, sit_user, sit_start, sit_dur) -> np.ndarray:
    """Sitting start times with no overlap per listener: t_i = max(s_i, t_{i-1} + d_{i-1})."""
    order = np.lexsort((sit_start, sit_user))
    su, ss, sd_ = sit_user[order], sit_start[order], sit_dur[order]
    first_of_user = np.r_[True, su[1:] != su[:-1]]
    cd = np.cumsum(sd_)
    ubase = np.maximum.accumulate(np.where(first_of_user, cd - sd_, 0.0))
    D_excl = cd - sd_ - ubase
    big = 4.0 * (cfg.n_days * 86400.0 + cfg.max_user_events * cfg.story.max_track_seconds)
    v = ss - D_excl + su * big
    t_sorted = np.maximum.accumulate(v) - su * big + D_excl
    sit_t = np.empty(sit_user.size)
    sit_t[order] = t_sorted
    return sit_t


def generate_users(world: World) -> UserEvents:
    """Every listener's events at once, from the users stream (the one-shot path)."""
    cfg = world.cfg
    n_u = events_per_user(cfg, world.lis.activity, cfg.n_events)
    return generate_user_block(world, rng_for(cfg, STREAM_USERS), np.arange(cfg.n_users), n_u)


def generate_user_block(world: World, rng: np.random.Generator, users: np.ndarray, n_u: np.ndarray) -> UserEvents:
    """The events of ``users`` (ascending listener indices, ``n_u`` events each) drawn from ``rng``;
    the feedback intercept is calibrated on these events."""
    cfg, st, cat, lis = world.cfg, world.cfg.story, world.cat, world.lis
    sit_user, sit_len = _sittings(world, rng, users, n_u)
    n_sit = sit_user.size
    sit_station = pick_stations(world.stations, rng, sit_user)
    span = lis.end_day[sit_user] - lis.start_day[sit_user]
    sit_day = lis.start_day[sit_user] + np.floor(rng.random(n_sit) * span).astype(np.int64)
    sit_hour = rng.choice(24, size=n_sit, p=HOUR_PROFILE / HOUR_PROFILE.sum())
    sit_start = sit_day * 86400.0 + sit_hour * 3600.0 + rng.random(n_sit) * 3600.0

    ev_sit = np.repeat(np.arange(n_sit), sit_len)
    ev_user = sit_user[ev_sit]
    sit_first = np.r_[0, np.cumsum(sit_len)[:-1]]
    ev_pos = np.arange(ev_sit.size) - sit_first[ev_sit] + 1
    ev_station = sit_station[ev_sit]
    tracks = world.sample_station_tracks(rng, ev_station)
    tracks = dedupe(
        rng, ev_sit, tracks,
        lambda idx: world.sample_station_tracks(rng, ev_station[idx]),
        lambda idx: world.genre_sampler.sample(rng, cat.track_genre[world.stations.seed[ev_station[idx]]]),
        world,
    )
    fb = draw_feedback(world, rng, ev_user, tracks, ev_pos, days=sit_day[ev_sit],
                       sittings=sitting_key(sit_user, sit_day, sit_hour)[ev_sit])

    dur = cat.features["duration"][tracks]
    gap = np.where(
        fb.positive, dur * rng.uniform(*st.played_share, ev_sit.size), rng.uniform(*st.skip_seconds, ev_sit.size)
    ) + st.gap_seconds
    gcum = np.cumsum(gap)
    gbase = np.r_[0.0, gcum][sit_first]
    offset = gcum - gap - np.repeat(gbase, sit_len)  # exclusive cumsum inside the sitting
    sit_dur = np.add.reduceat(gap, sit_first)
    sit_t = _no_overlap(cfg, sit_user, sit_start, sit_dur)
    ts = np.floor(sit_t[ev_sit] + offset).astype(np.int64)

    keep = ts < cfg.n_days * 86400
    ev_user, tracks, ts, positive, p = ev_user[keep], tracks[keep], ts[keep], fb.positive[keep], fb.p_positive[keep]
    o = np.lexsort((tracks, ts, ev_user))
    return UserEvents(user=ev_user[o], track=tracks[o], ts=ts[o], feedback=positive[o].astype(np.int8),
                      p_positive=p[o], bias=fb.bias)


def track_id_ranks(world: World) -> np.ndarray:
    """Rank of each track number's track_id string (ingestion orders ties by the string)."""
    tid_rank = np.empty(len(world.cat.track_ids), dtype=np.int64)
    tid_rank[np.argsort(np.array(world.cat.track_ids, dtype=object), kind="stable")] = np.arange(tid_rank.size)
    return tid_rank


def ingestion_positions(world: World, ev: UserEvents, tid_rank: np.ndarray | None = None) -> np.ndarray:
    """1-based position of each event as ingestion numbers it: rank within the listener by
    timestamp, then track_id (the string, not the track number; ``tid_rank`` from
    :func:`track_id_ranks`, computed when not given)."""
    tid_rank = track_id_ranks(world) if tid_rank is None else tid_rank
    order = np.lexsort((tid_rank[ev.track], ev.ts, ev.user))
    u = ev.user[order]
    first = np.r_[True, u[1:] != u[:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(u.size), 0))
    pos = np.empty(u.size, dtype=np.int64)
    pos[order] = np.arange(u.size) - start + 1
    return pos


def events_table(world: World, ev: UserEvents) -> pa.Table:
    """The ``events.parquet`` rows of ``ev`` (user_id, track_id, timestamp, feedback, artist_id, genre_id)."""
    cfg, cat = world.cfg, world.cat
    epoch = np.datetime64(cfg.start_date, "s")
    ts = (epoch + ev.ts.astype("timedelta64[s]")).astype("datetime64[us]")
    return pa.table(
        {
            "user_id": pa.array(world.lis.user_ids, pa.string()).take(pa.array(ev.user)),
            "track_id": pa.array(cat.track_ids, pa.string()).take(pa.array(ev.track)),
            "timestamp": pa.array(ts, pa.timestamp("us")),
            "feedback": pa.array(ev.feedback, pa.int8()),
            "artist_id": pa.array(cat.artist_ids, pa.string()).take(pa.array(cat.track_artist[ev.track])),
            "genre_id": pa.array(cat.genre_ids, pa.string()).take(pa.array(cat.track_genre[ev.track])),
        }
    )


def write_users(world: World, dirpath: Path) -> UsersWritten:
    ev = generate_users(world)
    dirpath.mkdir(parents=True, exist_ok=True)
    events = events_table(world, ev)
    tracks = users_tracks_table(world)
    ev_path, tr_path, or_path = dirpath / "events.parquet", dirpath / "tracks.parquet", dirpath / "oracle.parquet"
    atomic_write(ev_path, lambda p: pq.write_table(events, p, compression="snappy"))
    atomic_write(tr_path, lambda p: pq.write_table(tracks, p, compression="snappy", use_dictionary=False))
    write_oracle(or_path, events.column("user_id"), ingestion_positions(world, ev), ev.p_positive)
    days = ev.ts // 86400
    return UsersWritten(
        events=ev_path, tracks=tr_path, oracle=or_path, n_events=int(events.num_rows),
        n_positive=int(ev.feedback.sum()), n_users=int(np.unique(ev.user).size), n_tracks=int(tracks.num_rows),
        days=(int(days.min()), int(days.max())) if days.size else None,
    )
