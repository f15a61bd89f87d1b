"""The world: catalogue + listeners + stations, the track samplers and the taste affinity.

``build_world(cfg)`` is deterministic in ``cfg``: the catalogue, listeners and stations come
from the world stream in that order, the hard-catalogue extras (near duplicates, titles,
albums) from their own stream, so the default world never depends on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .catalogue import Catalogue, build_catalogue
from .config import WorldConfig
from .extras import add_extras
from .listeners import (
    ARTIST_STATION, GENRE_STATION, TRACK_STATION, Listeners, Stations, build_listeners, build_stations,
)
from .sampling import STREAM_WORLD, SegmentSampler, rng_for


@dataclass
class World:
    cfg: WorldConfig
    cat: Catalogue
    lis: Listeners
    stations: Stations
    genre_sampler: SegmentSampler  # a genre's tracks by popularity
    artist_sampler: SegmentSampler  # an artist's tracks by popularity
    global_sampler: SegmentSampler  # the whole catalogue by popularity
    affinity_mean: float = 0.0
    affinity_std: float = 1.0
    _cache: dict[str, Any] = field(default_factory=dict)

    def sample_station_tracks(self, rng: np.random.Generator, stations: np.ndarray) -> np.ndarray:
        """One track per request from each station's pool (genre, artist or nearest-track pool)."""
        st, cat = self.stations, self.cat
        out = np.empty(stations.shape[0], dtype=np.int64)
        typ = st.type[stations]
        seed = st.seed[stations]
        coin = rng.random(stations.shape[0])
        to_genre = coin < self.cfg.story.artist_station_genre_share
        m_genre = (typ == GENRE_STATION) | ((typ == ARTIST_STATION) & to_genre)
        m_artist = (typ == ARTIST_STATION) & ~m_genre
        m_track = typ == TRACK_STATION
        out[m_genre] = self.genre_sampler.sample(rng, cat.track_genre[seed[m_genre]])
        out[m_artist] = self.artist_sampler.sample(rng, cat.track_artist[seed[m_artist]])
        if m_track.any():
            out[m_track] = st.pool_sampler.sample(rng, st.pool_row[stations[m_track]])
        return out

    def affinity(self, users: np.ndarray, tracks: np.ndarray) -> np.ndarray:
        """taste·latent per (user, track) pair, in float32 chunks (the gathers dominate)."""
        if "taste32" not in self._cache:
            self._cache["taste32"] = self.lis.taste.astype(np.float32)
            self._cache["latent32"] = self.cat.latent.astype(np.float32)
        t32, l32 = self._cache["taste32"], self._cache["latent32"]
        out = np.empty(users.shape[0], dtype=np.float64)
        step = 262_144
        for lo in range(0, users.shape[0], step):
            u, t = users[lo:lo + step], tracks[lo:lo + step]
            out[lo:lo + step] = np.einsum("ij,ij->i", t32[u], l32[t])
        return out


def build_world(cfg: WorldConfig) -> World:
    rng = rng_for(cfg, STREAM_WORLD)
    cat = build_catalogue(cfg, rng)
    add_extras(cfg, cat)  # no-op for the default world; its own stream otherwise
    lis = build_listeners(cfg, rng, cat)
    T = cfg.n_tracks
    all_tracks = np.arange(T)
    genre_sampler = SegmentSampler(cat.track_genre, all_tracks, cat.pop_weight, cfg.n_genres)
    artist_sampler = SegmentSampler(cat.track_artist, all_tracks, cat.pop_weight, cfg.n_artists)
    global_sampler = SegmentSampler(np.zeros(T, dtype=np.int64), all_tracks, cat.pop_weight, 1)
    stations = build_stations(cfg, rng, cat, lis, genre_sampler)
    world = World(cfg=cfg, cat=cat, lis=lis, stations=stations, genre_sampler=genre_sampler,
                  artist_sampler=artist_sampler, global_sampler=global_sampler)
    # affinity standardisation: a fixed reference sample of listener × station-track pairs
    U, st = cfg.n_users, cfg.story
    ref = min(st.affinity_ref_pairs, st.affinity_ref_per_user * U)
    ru = rng.integers(0, U, ref)
    rs = stations.user_start[ru] + (rng.random(ref) * stations.user_count[ru]).astype(np.int64)
    rt = world.sample_station_tracks(rng, rs)
    aff = world.affinity(ru, rt)
    world.affinity_mean = float(aff.mean())
    world.affinity_std = float(aff.std() + 1e-12)
    return world
