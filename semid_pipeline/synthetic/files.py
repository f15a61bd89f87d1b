"""Writing a world: ``write_world``, its manifest, the ground-truth tables.

``write_world`` is idempotent: an up-to-date manifest (same config hash, every listed file with
its recorded size) short-circuits; otherwise the format folders are removed and rewritten and
the manifest is written last, so a half-written world never looks complete.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigError
from .chunked import DEFAULT_CHUNK_BLOCKS, write_sessions_chunked, write_users_chunked
from .config import GENERATOR_VERSION, WorldConfig, resolve
from .io import atomic_write, float_lists
from .presets import DEFAULT_CONTENT, FORMATS
from .sessions_format import SessionsWritten, write_sessions
from .users_format import UsersWritten, write_users
from .world import World, build_world

MANIFEST_NAME = "manifest.json"


def truth_tables(world: World) -> tuple[pa.Table, pa.Table]:
    cat, lis = world.cat, world.lis
    track_arr = pa.array(cat.track_ids, pa.string())
    cols = {
        "track_id": track_arr,
        "artist_id": pa.array(cat.artist_ids, pa.string()).take(pa.array(cat.track_artist)),
        "genre_id": pa.array(cat.genre_ids, pa.string()).take(pa.array(cat.track_genre)),
        "latent": float_lists(cat.latent),
        "appeal": pa.array(cat.appeal, pa.float64()),
        "popularity_weight": pa.array(cat.pop_weight, pa.float64()),
    }
    if cat.original is not None:  # hard-catalogue worlds: which track is a version of which
        orig = cat.original
        cols["original_track_id"] = pa.array([cat.track_ids[o] if o >= 0 else None for o in orig.tolist()], pa.string())
        cols["version"] = pa.array(cat.version_kind, pa.string())
        cols["title"] = pa.array(cat.titles, pa.string())
    tracks = pa.table(cols)
    users = pa.table(
        {
            "user_id": pa.array(lis.user_ids, pa.string()),
            "fav_genre_id": pa.array(cat.genre_ids, pa.string()).take(pa.array(lis.fav_genre)),
            "taste": float_lists(lis.taste),
            "user_bias": pa.array(lis.bias, pa.float64()),
            "activity": pa.array(lis.activity, pa.float64()),
            "n_stations": pa.array(world.stations.user_count, pa.int32()),
        }
    )
    return tracks, users


def ground_truth(name_or_config: str | WorldConfig, *, seed: int | None = None) -> dict[str, Any]:
    """The hidden truth of a world (regenerated, deterministic): per-track and per-user tables.

    ``tracks``: track_id, artist_id, genre_id, latent (list), appeal, popularity_weight (+
    original_track_id, version, title in hard-catalogue worlds). ``users``: user_id, fav_genre_id,
    taste (list), user_bias, activity, n_stations. ``params``: the feedback model's weights and
    the affinity scaling.
    """
    cfg = resolve(name_or_config, seed)
    world = build_world(cfg)
    tracks, users = truth_tables(world)
    return {
        "tracks": tracks.to_pandas(),
        "users": users.to_pandas(),
        "params": {
            "taste_weight": cfg.taste_weight,
            "appeal_weight": cfg.appeal_weight,
            "position_weight": cfg.position_weight,
            "affinity_mean": world.affinity_mean,
            "affinity_std": world.affinity_std,
        },
    }


@dataclass(frozen=True)
class WorldManifest:
    """What ``write_world`` wrote (paths are absolute; absent formats give None / [])."""

    users_events: Path | None
    users_tracks: Path | None
    session_logs: list[Path]
    session_tracks: list[Path]
    counts: dict[str, Any]
    out_dir: Path
    config: WorldConfig
    formats: tuple[str, ...]
    config_hash: str
    truth_tracks: Path | None = None
    truth_users: Path | None = None
    users_oracle: Path | None = None
    sessions_oracle: Path | None = None

    def files(self) -> list[Path]:
        out = [p for p in (self.users_events, self.users_tracks) if p is not None]
        out += list(self.session_logs) + list(self.session_tracks)
        out += [p for p in (self.truth_tracks, self.truth_users, self.users_oracle, self.sessions_oracle)
                if p is not None]
        return out

    def to_json(self) -> dict[str, Any]:
        rel = lambda p: None if p is None else str(Path(p).relative_to(self.out_dir))  # noqa: E731
        return {
            "generator_version": GENERATOR_VERSION,
            "config": self.config.to_dict(),
            "config_hash": self.config_hash,
            "formats": list(self.formats),
            "users_events": rel(self.users_events),
            "users_tracks": rel(self.users_tracks),
            "session_logs": [rel(p) for p in self.session_logs],
            "session_tracks": [rel(p) for p in self.session_tracks],
            "truth_tracks": rel(self.truth_tracks),
            "truth_users": rel(self.truth_users),
            "users_oracle": rel(self.users_oracle),
            "sessions_oracle": rel(self.sessions_oracle),
            "files": {rel(p): p.stat().st_size for p in self.files()},
            "counts": self.counts,
        }


def load_manifest(out_dir: str | Path) -> WorldManifest | None:
    """The manifest in ``out_dir`` if it exists and every file it lists has its recorded size.

    A manifest written before the oracle sidecar existed (no ``users_oracle`` key) is stale."""
    out_dir = Path(out_dir).resolve()
    mpath = out_dir / MANIFEST_NAME
    try:
        m = json.loads(mpath.read_text())
        files = m["files"]
        for rel, size in files.items():
            if (out_dir / rel).stat().st_size != size:
                return None
        ab = lambda r: None if r is None else out_dir / r  # noqa: E731
        return WorldManifest(
            users_events=ab(m["users_events"]),
            users_tracks=ab(m["users_tracks"]),
            session_logs=[out_dir / r for r in m["session_logs"]],
            session_tracks=[out_dir / r for r in m["session_tracks"]],
            counts=dict(m["counts"]),
            out_dir=out_dir,
            config=WorldConfig.from_dict(m["config"]),
            formats=tuple(m["formats"]),
            config_hash=m["config_hash"],
            truth_tracks=ab(m.get("truth_tracks")),
            truth_users=ab(m.get("truth_users")),
            users_oracle=ab(m["users_oracle"]),
            sessions_oracle=ab(m["sessions_oracle"]),
        )
    except (OSError, ValueError, KeyError, TypeError, ConfigError):
        return None


def _counts(cfg: WorldConfig, users: UsersWritten | None, sessions: SessionsWritten | None) -> dict[str, Any]:
    """The manifest's counts (absent formats count 0) and the date range of what was written."""
    counts: dict[str, Any] = {
        "users_events": 0, "users_positive": 0, "users_users": 0, "users_tracks": 0,
        "sessions_rows": 0, "sessions_sessions": 0, "sessions_radio_rows": 0,
        "sessions_radio_sessions": 0, "sessions_radio_negative": 0, "sessions_tracks": 0,
    }
    ranges = []
    if users is not None:
        counts.update(users_events=users.n_events, users_positive=users.n_positive, users_users=users.n_users,
                      users_tracks=users.n_tracks)
        ranges.append(users.days)
    if sessions is not None:
        counts.update(sessions_rows=sessions.n_rows, sessions_sessions=sessions.n_sessions,
                      sessions_radio_rows=sessions.n_radio_rows, sessions_radio_sessions=sessions.n_radio_sessions,
                      sessions_radio_negative=sessions.n_radio_negative, sessions_tracks=sessions.n_tracks)
        ranges.append(sessions.days)
    ranges = [r for r in ranges if r is not None]
    start = date.fromisoformat(cfg.start_date)
    lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
    counts["n_days"] = hi - lo + 1
    counts["first_date"] = (start + timedelta(days=lo)).isoformat()
    counts["last_date"] = (start + timedelta(days=hi)).isoformat()
    return counts


def _formats(cfg: WorldConfig, formats) -> tuple[str, ...]:
    if formats is None:
        formats = FORMATS if cfg.content == DEFAULT_CONTENT else ("users",)
    fmts = tuple(f for f in FORMATS if f in set(formats))
    unknown = set(formats) - set(FORMATS)
    if unknown or not fmts:
        raise ConfigError(f"write_world: formats must be a non-empty subset of {FORMATS}, got {tuple(formats)}")
    if "sessions" in fmts and cfg.content != DEFAULT_CONTENT:
        raise ConfigError(
            f"write_world: content mode {cfg.content!r} applies to the per-user format only "
            "(MSSD track files always carry the audio features)"
        )
    return fmts


def write_world(
    name_or_config: str | WorldConfig,
    out_dir: str | Path,
    *,
    formats: tuple[str, ...] | list[str] | None = None,
    seed: int | None = None,
    chunk_blocks: int = DEFAULT_CHUNK_BLOCKS,
) -> WorldManifest:
    """Generate the world and write its files (idempotent: an up-to-date manifest short-circuits).

    ``formats`` is any non-empty subset of ``("users", "sessions")`` (default: both, or
    ``("users",)`` for the metadata/genreflags content modes); ``seed`` overrides the config's
    seed. Same config + seed → byte-identical files. A config with ``listener_block > 0`` (``large``)
    is generated in blocks, ``chunk_blocks`` blocks in memory at a time (the files do not depend
    on it; see :mod:`.chunked`).
    """
    cfg = resolve(name_or_config, seed)
    fmts = _formats(cfg, formats)
    out_dir = Path(out_dir).resolve()
    chash = cfg.hash(fmts)
    existing = load_manifest(out_dir)
    if existing is not None and existing.config_hash == chash:
        return existing

    out_dir.mkdir(parents=True, exist_ok=True)
    mpath = out_dir / MANIFEST_NAME
    if mpath.exists():
        mpath.unlink()  # invalid until the new files are complete
    for sub in FORMATS:  # stale files of another config must not be picked up by a glob
        if (out_dir / sub).exists():
            shutil.rmtree(out_dir / sub)

    world = build_world(cfg)
    if cfg.listener_block > 0:
        users = write_users_chunked(world, out_dir / "users", chunk_blocks=chunk_blocks) if "users" in fmts else None
        sessions = (write_sessions_chunked(world, out_dir / "sessions", chunk_blocks=chunk_blocks)
                    if "sessions" in fmts else None)
    else:
        users = write_users(world, out_dir / "users") if "users" in fmts else None
        sessions = write_sessions(world, out_dir / "sessions") if "sessions" in fmts else None
    t_tracks, t_users = truth_tables(world)
    truth_tracks, truth_users = out_dir / "truth.parquet", out_dir / "truth_users.parquet"
    atomic_write(truth_tracks, lambda p: pq.write_table(t_tracks, p, compression="snappy"))
    atomic_write(truth_users, lambda p: pq.write_table(t_users, p, compression="snappy"))

    manifest = WorldManifest(
        users_events=users.events if users else None,
        users_tracks=users.tracks if users else None,
        session_logs=list(sessions.logs) if sessions else [],
        session_tracks=list(sessions.tracks) if sessions else [],
        counts=_counts(cfg, users, sessions),
        out_dir=out_dir, config=cfg, formats=fmts, config_hash=chash,
        truth_tracks=truth_tracks, truth_users=truth_users,
        users_oracle=users.oracle if users else None,
        sessions_oracle=sessions.oracle if sessions else None,
    )
    text = json.dumps(manifest.to_json(), indent=2, sort_keys=True) + "\n"
    atomic_write(mpath, lambda p: Path(p).write_text(text))
    return manifest


def write_world_for_spec(spec: Any, data_dir: str | Path) -> WorldManifest:
    """Write the world a synthetic ``DatasetSpec`` names into ``<data_dir>/synthetic/<spec.preset>``
    (``spec.preset`` is ``demo`` for the default world, ``demo-metadata`` for a content mode)."""
    return write_world(spec.preset, Path(data_dir) / "synthetic" / spec.preset, formats=(spec.format,))
