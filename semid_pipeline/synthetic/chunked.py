"""Chunked generation for catalogue-sized worlds (``WorldConfig.listener_block > 0``: ``large``).

The one-shot writers draw every event of a format from one random stream, so their memory grows
with the data set. Here the events come in *blocks*: block ``b`` of the per-user format is the
listeners ``[b·B, (b+1)·B)`` (``B = listener_block``), block ``b`` of the sessions format is
``B`` sessions, and each block draws from its own stream ``(seed, format stream, b + 1)``; the
feedback intercept is calibrated per block. A *chunk* (``chunk_blocks`` blocks) is what is held
in memory at once; it never changes the files: blocks are written in order, parquet row groups
have a fixed row count (:class:`FixedRowGroups`), each CSV part is a stream of whole blocks. So
memory is bounded by the chunk (plus the world: catalogue, listeners, stations), not by the
number of events, and same seed → byte-identical files whatever the chunk size.

Differences from the one-shot layout (by design, ``large`` only): an MSSD log part is a run of
session blocks in generation order (not sorted by session id), and the per-user events are
written listener block by listener block (the same (listener, timestamp, track) order).
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..schema import MSSD_LOG_COLUMNS, MSSD_TRACK_COLUMNS
from .feedback import events_per_user
from .io import atomic_write, csv_bytes, write_csv
from .oracle import oracle_table
from .sampling import STREAM_SESSIONS, STREAM_USERS
from .sessions_format import SessionsWritten, _part_table, generate_session_block, n_sessions
from .tracks_table import mssd_tracks_table, users_tracks_table
from .users_format import UsersWritten, events_table, generate_user_block, ingestion_positions, track_id_ranks
from .world import World

ROW_GROUP_ROWS = 1 << 20  # rows per parquet row group of the chunked files (fixed: chunk-size independent)
DEFAULT_CHUNK_BLOCKS = 4


def block_rng(world: World, stream: int, block: int) -> np.random.Generator:
    """Block ``block``'s own stream of a format (never the one-shot stream ``rng_for(cfg, stream)``)."""
    seed = int(world.cfg.seed)
    return np.random.default_rng([seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF, stream, block + 1])


class FixedRowGroups:
    """A parquet file written table by table in row groups of exactly ``rows`` rows (the last one
    shorter), so the file does not depend on how the rows were fed; atomic (temp file + rename)."""

    def __init__(self, path: Path, *, rows: int = ROW_GROUP_ROWS, **options) -> None:
        self.path, self.rows, self.options = Path(path), rows, options
        self.tmp = self.path.with_name(self.path.name + f".tmp{os.getpid()}")
        self._writer: pq.ParquetWriter | None = None
        self._buf: list[pa.Table] = []
        self._n = 0

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.tmp, table.schema, compression="snappy", **self.options)
        self._buf.append(table)
        self._n += table.num_rows
        while self._n >= self.rows:
            self._flush(self.rows)

    def _flush(self, n: int) -> None:
        t = pa.concat_tables(self._buf)
        self._writer.write_table(t.slice(0, n), row_group_size=n)
        rest = t.slice(n)
        self._buf, self._n = ([rest] if rest.num_rows else []), rest.num_rows

    def close(self) -> None:
        if self._n:
            self._flush(self._n)
        if self._writer is not None:
            self._writer.close()
            os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self.tmp.unlink(missing_ok=True)


def _chunks(n_blocks: int, chunk_blocks: int) -> Iterator[range]:
    step = max(1, int(chunk_blocks))
    for lo in range(0, n_blocks, step):
        yield range(lo, min(lo + step, n_blocks))


def write_users_chunked(world: World, dirpath: Path, *, chunk_blocks: int = DEFAULT_CHUNK_BLOCKS) -> UsersWritten:
    """``users/events.parquet`` + ``oracle.parquet`` block by block; ``tracks.parquet`` at once."""
    cfg = world.cfg
    B, U = cfg.listener_block, cfg.n_users
    n_u = events_per_user(cfg, world.lis.activity, cfg.n_events)  # global: block-independent
    tid_rank = track_id_ranks(world)
    dirpath.mkdir(parents=True, exist_ok=True)
    ev_path, tr_path, or_path = dirpath / "events.parquet", dirpath / "tracks.parquet", dirpath / "oracle.parquet"
    ev_w, or_w = FixedRowGroups(ev_path), FixedRowGroups(or_path)
    n_ev = n_pos = n_users = 0
    days = [np.iinfo(np.int64).max, -1]
    try:
        for chunk in _chunks(-(-U // B), chunk_blocks):
            blocks = []
            for b in chunk:
                users = np.arange(b * B, min((b + 1) * B, U))
                blocks.append(generate_user_block(world, block_rng(world, STREAM_USERS, b), users, n_u[users]))
            for ev in blocks:
                table = events_table(world, ev)
                ev_w.write(table)
                or_w.write(oracle_table(table.column("user_id"), ingestion_positions(world, ev, tid_rank),
                                        ev.p_positive))
                n_ev, n_pos = n_ev + table.num_rows, n_pos + int(ev.feedback.sum())
                n_users += int(np.unique(ev.user).size)
                if ev.ts.size:
                    days = [min(days[0], int(ev.ts.min() // 86400)), max(days[1], int(ev.ts.max() // 86400))]
            del blocks
        ev_w.close()
        or_w.close()
    except BaseException:
        ev_w.abort()
        or_w.abort()
        raise
    tracks = users_tracks_table(world)
    atomic_write(tr_path, lambda p: pq.write_table(tracks, p, compression="snappy", use_dictionary=False))
    return UsersWritten(events=ev_path, tracks=tr_path, oracle=or_path, n_events=n_ev, n_positive=n_pos,
                        n_users=n_users, n_tracks=int(tracks.num_rows),
                        days=(days[0], days[1]) if days[1] >= 0 else None)


class _SessionStats:
    def __init__(self) -> None:
        self.rows = self.sessions = self.radio_rows = self.radio_sessions = self.radio_negative = 0
        self.days = [np.iinfo(np.int64).max, -1]

    def add(self, s) -> None:
        radio = s.s_ctx[s.ev_s] == 0
        self.rows += int(s.ev_s.size)
        self.sessions += int(s.n_sessions)
        self.radio_rows += int(radio.sum())
        self.radio_sessions += int((s.s_ctx == 0).sum())
        self.radio_negative += int((s.behaviour.skip_2 & radio).sum())
        self.days = [min(self.days[0], int(s.s_day.min())), max(self.days[1], int(s.s_day.max()))]


def _write_log_part(world: World, path: Path, part: int, blocks: range, sizes: np.ndarray, or_w: FixedRowGroups,
                    stats: _SessionStats, date_arr: pa.Array, chunk_blocks: int) -> None:
    """One ``log_<part>.csv[.gz]``: the header, then each block's rows (a stream, atomic)."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as raw:
            out = gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=1, mtime=0) \
                if world.cfg.gzip_logs else raw
            out.write((",".join(MSSD_LOG_COLUMNS) + "\n").encode())
            for chunk in _chunks(len(blocks), chunk_blocks):
                drawn = [(b, generate_session_block(world, block_rng(world, STREAM_SESSIONS, b), int(sizes[b])))
                         for b in (blocks[i] for i in chunk)]
                for b, s in drawn:
                    sid = [f"{part}_{u}" for u in s.s_uuid]
                    table = _part_table(world, s, sid, np.arange(s.ev_s.size), 0, date_arr)
                    out.write(csv_bytes(table, None))
                    or_w.write(oracle_table(table.column("session_id"), s.pos, s.p_positive))
                    stats.add(s)
            if out is not raw:
                out.close()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_sessions_chunked(world: World, dirpath: Path, *,
                           chunk_blocks: int = DEFAULT_CHUNK_BLOCKS) -> SessionsWritten:
    """``sessions/log_<n>.csv[.gz]`` block by block (parts are runs of blocks), ``tf_0.csv`` at once."""
    cfg = world.cfg
    B, n_s = cfg.listener_block, n_sessions(cfg)
    n_blocks = -(-n_s // B)
    sizes = np.full(n_blocks, B, dtype=np.int64)
    sizes[-1] = n_s - B * (n_blocks - 1)
    parts = min(cfg.session_parts, n_blocks)
    bounds = np.linspace(0, n_blocks, parts + 1).round().astype(np.int64)
    start = date.fromisoformat(cfg.start_date)
    date_arr = pa.array([(start + timedelta(days=d)).isoformat() for d in range(cfg.n_days)], pa.string())
    dirpath.mkdir(parents=True, exist_ok=True)
    oracle = dirpath / "oracle.parquet"
    or_w, stats, logs = FixedRowGroups(oracle), _SessionStats(), []
    try:
        for p in range(parts):
            path = dirpath / (f"log_{p}.csv.gz" if cfg.gzip_logs else f"log_{p}.csv")
            _write_log_part(world, path, p, range(int(bounds[p]), int(bounds[p + 1])), sizes, or_w, stats,
                            date_arr, chunk_blocks)
            logs.append(path)
        or_w.close()
    except BaseException:
        or_w.abort()
        raise
    tf = mssd_tracks_table(world)
    tf_path = dirpath / "tf_0.csv"
    write_csv(tf_path, tf, MSSD_TRACK_COLUMNS, False)
    return SessionsWritten(
        logs=logs, tracks=[tf_path], oracle=oracle, n_rows=stats.rows, n_sessions=stats.sessions,
        n_radio_rows=stats.radio_rows, n_radio_sessions=stats.radio_sessions,
        n_radio_negative=stats.radio_negative, n_tracks=int(tf.num_rows), days=(stats.days[0], stats.days[1]),
    )
