"""The Spotify MSSD format: ``sessions/log_<n>.csv[.gz]`` + ``sessions/tf_0.csv`` (+ ``oracle.parquet``).

Each session is one listener on one station (or, for the non-radio ``1 − radio_share``, a chart
/ genre playlist / collection context) on one day: 10–20 tracks, a third exactly 20 (MSSD's
truncation). ``skip_2`` true ⇔ negative; ``skip_1 ⊂ skip_2 ⊂ skip_3``, ``not_skipped = not
skip_3``; the other behaviour columns are plausible filler, consistent with the skips.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..schema import MSSD_LOG_COLUMNS, MSSD_TRACK_COLUMNS
from .behaviour import REASONS, Behaviour, draw_behaviour
from .feedback import HOUR_PROFILE, day_weights, dedupe, draw_feedback, sitting_key
from .io import write_csv
from .listeners import pick_stations
from .oracle import write_oracle
from .sampling import STREAM_SESSIONS, rng_for, uuids
from .tracks_table import mssd_tracks_table
from .world import World

# Non-radio MSSD contexts and their share among non-radio sessions.
OTHER_CONTEXTS = ("editorial_playlist", "user_collection", "catalog", "charts", "personalized_playlist")
OTHER_CONTEXT_P = (0.30, 0.25, 0.15, 0.10, 0.20)
# Additive logit offset per context (people skip less inside their own collection).
CONTEXT_OFFSET = {
    "radio": 0.0,
    "editorial_playlist": 0.1,
    "user_collection": 0.6,
    "catalog": 0.2,
    "charts": -0.1,
    "personalized_playlist": 0.3,
}
CONTEXTS = ("radio",) + OTHER_CONTEXTS
MSSD_MAX_LEN = 20


@dataclass
class Sessions:
    """Generated sessions (per session ``s_*``) and their events (per event, in session order)."""

    n_sessions: int
    s_len: np.ndarray
    s_user: np.ndarray
    s_ctx: np.ndarray  # index into CONTEXTS
    s_day: np.ndarray
    s_hour: np.ndarray
    s_shuffle: np.ndarray
    s_uuid: list[str]
    ev_s: np.ndarray
    pos: np.ndarray
    track: np.ndarray
    p_positive: np.ndarray
    behaviour: Behaviour
    bias: float


@dataclass
class SessionsWritten:
    logs: list[Path]
    tracks: list[Path]
    oracle: Path
    n_rows: int
    n_sessions: int
    n_radio_rows: int
    n_radio_sessions: int
    n_radio_negative: int
    n_tracks: int
    days: tuple[int, int]


def _session_tracks(world: World, rng, ev_s, ev_ctx, s_station, s_genre) -> np.ndarray:
    charts_code = CONTEXTS.index("charts")

    def draw(idx: np.ndarray) -> np.ndarray:
        out = np.empty(idx.size, dtype=np.int64)
        c = ev_ctx[idx]
        m_r = c == 0
        m_c = c == charts_code
        m_g = ~(m_r | m_c)
        out[m_r] = world.sample_station_tracks(rng, s_station[ev_s[idx[m_r]]])
        out[m_c] = world.global_sampler.sample(rng, np.zeros(int(m_c.sum()), dtype=np.int64))
        out[m_g] = world.genre_sampler.sample(rng, s_genre[ev_s[idx[m_g]]])
        return out

    def wide(idx: np.ndarray) -> np.ndarray:
        c = ev_ctx[idx]
        seed_genre = world.cat.track_genre[world.stations.seed[s_station[ev_s[idx]]]]
        return world.genre_sampler.sample(rng, np.where(c == 0, seed_genre, s_genre[ev_s[idx]]))

    return dedupe(rng, ev_s, draw(np.arange(ev_s.size)), draw, wide, world)


def n_sessions(cfg) -> int:
    """Sessions to draw so that the logs hold about ``n_session_events`` rows."""
    st = cfg.story
    lo_len, hi_len = st.session_len_range
    mean_len = st.full_session_share * MSSD_MAX_LEN + (1 - st.full_session_share) * (lo_len + hi_len - 1) / 2
    return max(1, int(round(cfg.n_session_events / mean_len)))


def generate_sessions(world: World) -> Sessions:
    """Every session at once, from the sessions stream (the one-shot path)."""
    return generate_session_block(world, rng_for(world.cfg, STREAM_SESSIONS), n_sessions(world.cfg))


def generate_session_block(world: World, rng: np.random.Generator, n_s: int) -> Sessions:
    """``n_s`` sessions (listeners drawn by activity from the whole world) drawn from ``rng``."""
    cfg, st = world.cfg, world.cfg.story
    lo_len, hi_len = st.session_len_range
    s_len = np.where(rng.random(n_s) < st.full_session_share, MSSD_MAX_LEN, rng.integers(lo_len, hi_len, n_s))
    s_len = s_len.astype(np.int64)
    act = world.lis.activity / world.lis.activity.sum()
    s_user = rng.choice(cfg.n_users, size=n_s, p=act)
    radio = rng.random(n_s) < cfg.radio_share
    other = rng.choice(len(OTHER_CONTEXTS), size=n_s, p=np.array(OTHER_CONTEXT_P))
    s_ctx = np.where(radio, 0, other + 1)
    s_station = pick_stations(world.stations, rng, s_user)
    s_genre = np.where(
        rng.random(n_s) < st.session_fav_genre_share, world.lis.fav_genre[s_user], rng.integers(0, cfg.n_genres, n_s)
    )
    s_day = rng.choice(cfg.n_days, size=n_s, p=day_weights(cfg))
    s_hour = rng.choice(24, size=n_s, p=HOUR_PROFILE / HOUR_PROFILE.sum())
    s_shuffle = rng.random(n_s) < np.where(radio, st.shuffle_share[0], st.shuffle_share[1])

    ev_s = np.repeat(np.arange(n_s), s_len)
    s_first = np.r_[0, np.cumsum(s_len)[:-1]]
    pos = np.arange(ev_s.size) - s_first[ev_s] + 1
    ev_ctx = s_ctx[ev_s]
    tracks = _session_tracks(world, rng, ev_s, ev_ctx, s_station, s_genre)
    ctx_off = np.array([CONTEXT_OFFSET[c] for c in CONTEXTS])[ev_ctx]
    fb = draw_feedback(world, rng, s_user[ev_s], tracks, pos, ctx_off, days=s_day[ev_s],
                       sittings=sitting_key(s_user, s_day, s_hour)[ev_s])
    behaviour = draw_behaviour(st, rng, fb.positive, pos, s_len[ev_s])
    return Sessions(
        n_sessions=n_s, s_len=s_len, s_user=s_user, s_ctx=s_ctx, s_day=s_day, s_hour=s_hour,
        s_shuffle=s_shuffle, s_uuid=uuids(rng, n_s), ev_s=ev_s, pos=pos, track=tracks,
        p_positive=fb.p_positive, behaviour=behaviour, bias=fb.bias,
    )


def _part_table(world: World, s: Sessions, sid: list[str], rows: np.ndarray, a: int, date_arr) -> pa.Table:
    ev_s = s.ev_s[rows]
    b = s.behaviour
    local = (ev_s - a).astype(np.int64)

    def col(x, t):
        return pa.array(x[rows], t)

    table = pa.table(
        {
            "session_id": pa.array(sid, pa.string()).take(pa.array(local)),
            "session_position": col(s.pos, pa.int32()),
            "session_length": pa.array(s.s_len[ev_s], pa.int32()),
            "track_id_clean": pa.array(world.cat.track_ids, pa.string()).take(pa.array(s.track[rows])),
            "skip_1": col(b.skip_1, pa.bool_()),
            "skip_2": col(b.skip_2, pa.bool_()),
            "skip_3": col(b.skip_3, pa.bool_()),
            "not_skipped": col(b.not_skipped, pa.bool_()),
            "context_switch": col(b.context_switch.astype(np.int8), pa.int8()),
            "no_pause_before_play": col(b.no_pause.astype(np.int8), pa.int8()),
            "short_pause_before_play": col(b.short_pause.astype(np.int8), pa.int8()),
            "long_pause_before_play": col(b.long_pause.astype(np.int8), pa.int8()),
            "hist_user_behavior_n_seekfwd": col(b.seekfwd, pa.int32()),
            "hist_user_behavior_n_seekback": col(b.seekback, pa.int32()),
            "hist_user_behavior_is_shuffle": pa.array(s.s_shuffle[ev_s], pa.bool_()),
            "hour_of_day": pa.array(s.s_hour[ev_s], pa.int32()),
            "date": date_arr.take(pa.array(s.s_day[ev_s])),
            "premium": pa.array(world.lis.premium[s.s_user[ev_s]], pa.bool_()),
            "context_type": pa.array(list(CONTEXTS), pa.string()).take(pa.array(s.s_ctx[ev_s])),
            "hist_user_behavior_reason_start": pa.array(list(REASONS), pa.string()).take(pa.array(b.r_start[rows])),
            "hist_user_behavior_reason_end": pa.array(list(REASONS), pa.string()).take(pa.array(b.r_end[rows])),
        }
    )
    assert table.column_names == MSSD_LOG_COLUMNS
    return table


def part_bounds(cfg, s: Sessions) -> np.ndarray:
    """Session index bounds of the ``log_<p>`` files: sessions [bounds[p], bounds[p + 1]) go to part p."""
    parts = min(cfg.session_parts, s.n_sessions)
    return np.linspace(0, s.n_sessions, parts + 1).round().astype(np.int64)


def session_ids(s: Sessions, part: int, a: int, b: int) -> list[str]:
    """The ``session_id`` column values of sessions a..b-1, written to part ``part``."""
    return [f"{part}_{u}" for u in s.s_uuid[a:b]]


def write_sessions(world: World, dirpath: Path) -> SessionsWritten:
    cfg = world.cfg
    s = generate_sessions(world)
    dirpath.mkdir(parents=True, exist_ok=True)
    start = date.fromisoformat(cfg.start_date)
    date_arr = pa.array([(start + timedelta(days=d)).isoformat() for d in range(cfg.n_days)], pa.string())
    bounds = part_bounds(cfg, s)
    parts = len(bounds) - 1
    s_first = np.r_[0, np.cumsum(s.s_len)]
    logs: list[Path] = []
    ev_sid: list[pa.Array] = []
    ev_rows: list[np.ndarray] = []
    pool = ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1))  # CSV + gzip release the GIL
    jobs = []
    for p in range(parts):
        a, b = int(bounds[p]), int(bounds[p + 1])
        sid = session_ids(s, p, a, b)
        order = np.argsort(np.array(sid, dtype=object), kind="stable")
        sess = np.arange(a, b)[order]
        lens = s.s_len[sess]
        rows = np.repeat(s_first[sess] - np.r_[0, np.cumsum(lens)[:-1]], lens) + np.arange(int(lens.sum()))
        table = _part_table(world, s, sid, rows, a, date_arr)
        ev_sid.append(table.column("session_id").combine_chunks())
        ev_rows.append(rows)
        path = dirpath / (f"log_{p}.csv.gz" if cfg.gzip_logs else f"log_{p}.csv")
        jobs.append(pool.submit(write_csv, path, table, MSSD_LOG_COLUMNS, cfg.gzip_logs))
        logs.append(path)
    tf = mssd_tracks_table(world)
    tf_path = dirpath / "tf_0.csv"
    jobs.append(pool.submit(write_csv, tf_path, tf, MSSD_TRACK_COLUMNS, False))
    try:
        for j in jobs:
            j.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    rows = np.concatenate(ev_rows)
    oracle = dirpath / "oracle.parquet"
    write_oracle(oracle, pa.concat_arrays(ev_sid), s.pos[rows], s.p_positive[rows])
    radio_rows = s.s_ctx[s.ev_s] == 0
    return SessionsWritten(
        logs=logs, tracks=[tf_path], oracle=oracle, n_rows=int(s.ev_s.size), n_sessions=int(s.n_sessions),
        n_radio_rows=int(radio_rows.sum()), n_radio_sessions=int((s.s_ctx == 0).sum()),
        n_radio_negative=int((s.behaviour.skip_2 & radio_rows).sum()), n_tracks=int(tf.num_rows),
        days=(int(s.s_day.min()), int(s.s_day.max())),
    )
