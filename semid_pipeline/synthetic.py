"""The embedded synthetic music world: a deterministic stand-in for Spotify MSSD and Pandora-style data.

``write_world(preset_or_config, out_dir)`` writes REAL FILES in the two input formats the pipeline
ingests, so the synthetic data goes through exactly the same loading code as real data:

``out_dir/sessions/``  Spotify MSSD format: ``log_<n>.csv`` (``.csv.gz`` for the bench preset)
                       with exactly :data:`schema.MSSD_LOG_COLUMNS` (booleans ``true``/``false``,
                       dates ``YYYY-MM-DD``) and ``tf_0.csv`` with exactly
                       :data:`schema.MSSD_TRACK_COLUMNS` (``mode`` is ``major``/``minor``).
``out_dir/users/``     per-user format: ``events.parquet`` (user_id, track_id, timestamp,
                       feedback 1/0, artist_id, genre_id) and ``tracks.parquet`` (keys, release
                       year, title, Spotify-style numeric attributes, ``popularity`` and an
                       ``embedding`` list<float32>[8], the acoustic vector).
``out_dir/truth.parquet``, ``out_dir/truth_users.parquet``  the hidden ground truth (per-track
                       genre, artist, latent vector, appeal, popularity weight; per-user taste,
                       favourite genre, skip bias, activity) for analysis and tests.
``out_dir/manifest.json``  config, config hash, file sizes and the counts of what was written.

The story
---------
* **Genres → artists → tracks.** Each genre has a centre in a 16-dim latent "musical" space;
  each artist belongs to one genre and has an offset from its centre; each track of an artist
  adds its own noise: ``latent = genre centre + artist offset + track noise``. Artist sizes are
  skewed (a few prolific artists, many with a handful of tracks).
* **Content is a noisy, non-linear view of the latent vector.** The 8-dim acoustic vector is
  ``tanh`` of random projections plus noise; the Spotify attributes (acousticness, energy,
  valence, ...) are sigmoids of other random projections mapped onto their documented ranges;
  tempo, loudness, duration, dynamic range are monotone maps of projections with noise;
  release year follows a per-genre era; key is uniform noise, mode leans on the valence
  projection, time signature is mostly 4. The popularity columns (``us_popularity_estimate``,
  ``popularity``) are percentiles of the track's popularity weight, not of its content.
* **Appeal.** Every track has an ``appeal`` scalar, independent of its content: content features
  cannot reveal it, a per-track ID embedding can learn it from enough feedback. Popularity is
  weakly correlated with appeal (good songs get played more), popularity weights are Zipf-like
  in the popularity rank.
* **Listeners** have a favourite genre and a taste vector in the latent space (their favourite
  genre's centre plus personal noise), a personal skip bias and a lognormal activity level
  (many light listeners, a few heavy ones; per-user events are capped at ``max_user_events``).
* **Radio stations** belong to a listener and are seeded by a track, an artist or a genre
  (seed chosen from the listener's favourite genre most of the time, the most taste-matching of a
  few popular candidates). Candidate pools: genre station → the genre's tracks; artist station →
  the artist's tracks half of the time, the artist's genre otherwise; track station → the
  ``station_pool`` tracks of the seed's genre nearest to the seed in latent space. Within a pool,
  tracks are drawn by popularity weight (Zipf-like within the pool); a track is not repeated
  inside one sitting/session (duplicates are redrawn a few times).
* **Feedback.** ``P(positive) = sigmoid(taste_weight · z(taste·latent) + appeal_weight · appeal
  + user bias + context offset − position_weight · (position − 1) + b)`` where ``z`` standardises
  the affinity over the generated events and ``b`` is solved (bisection) so that the expected
  positive share equals ``positive_share`` (≈ half negative, like MSSD's ``skip_2``). Later
  tracks in a sitting/session are skipped more.
* **Sessions format (MSSD):** each session is one listener on one station (or, for the
  non-radio ``1 − radio_share`` of sessions, a chart / genre playlist / collection context) on one
  day: 10–20 tracks (a third of them exactly 20, like MSSD's truncation). ``skip_2`` true ⇔
  negative; ``skip_1 ⊂ skip_2 ⊂ skip_3`` and ``not_skipped = not skip_3``. The other behaviour
  columns (pauses, seeks, shuffle, reasons) are plausible filler, consistent with the skips.
* **Users format:** each listener's events are grouped into station "sittings" (3–~20 tracks)
  spread over the listener's active window (most listeners are active to the end of the period,
  some join late or churn early), sittings never overlap in time, events inside a sitting are
  spaced by the listened duration.
* Both formats come from the same world (tracks, artists, genres, listeners, stations), so they
  share track ids; each format uses its own random stream, so writing only one format gives the
  same files as writing both. Same seed → byte-identical files.

Limits (what this world does NOT model)
---------------------------------------
No temporal dynamics: tastes, popularity and the catalogue are static (no new releases, trends,
or weekly habits beyond a diurnal hour profile and a weekend bump); feedback of an event does not
depend on earlier feedback (no fatigue beyond the position effect, no sequential dependence a
transformer could exploit beyond "this user likes this region of latent space"); stations do not
adapt to feedback; MSSD sessions carry no user id and sessions of one listener are independent;
MSSD's behaviour columns (pauses, seeks, shuffle, reasons, premium) carry no signal beyond the
skips; the numbers are plausible, not fitted to any real data set. Use it to exercise the
pipeline and to check that semantic IDs can exploit content; do not read its AUCs as evidence
about real music.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .errors import ConfigError
from .schema import MSSD_LOG_COLUMNS, MSSD_TRACK_COLUMNS

__all__ = [
    "GENERATOR_VERSION",
    "PRESETS",
    "WorldConfig",
    "WorldManifest",
    "preset",
    "write_world",
    "ground_truth",
    "load_manifest",
]

GENERATOR_VERSION = "1"
FORMATS = ("users", "sessions")
MANIFEST_NAME = "manifest.json"
ACOUSTIC_DIM = 8

# Non-radio MSSD contexts and their share among non-radio sessions.
_OTHER_CONTEXTS = ("editorial_playlist", "user_collection", "catalog", "charts", "personalized_playlist")
_OTHER_CONTEXT_P = (0.30, 0.25, 0.15, 0.10, 0.20)
# Additive logit offset per context (people skip less inside their own collection).
_CONTEXT_OFFSET = {
    "radio": 0.0,
    "editorial_playlist": 0.1,
    "user_collection": 0.6,
    "catalog": 0.2,
    "charts": -0.1,
    "personalized_playlist": 0.3,
}
# Relative listening by hour of day (quiet at night, peaks at commute and evening).
_HOUR_PROFILE = np.array(
    [2, 1.2, 0.8, 0.5, 0.5, 0.8, 2, 4, 6, 5, 4.5, 4.5, 5, 5, 4.5, 4.5, 5, 6, 6.5, 6.5, 6, 5, 4, 3],
    dtype=np.float64,
)
_REASONS = ("trackdone", "fwdbtn", "backbtn", "endplay", "logout", "clickrow", "playbtn", "appload")
_GENRE_NAMES = (
    "rock", "pop", "jazz", "blues", "country", "folk", "hiphop", "rnb", "soul", "funk",
    "house", "techno", "ambient", "metal", "punk", "reggae", "latin", "classical", "indie", "disco",
)
_TITLE_A = (
    "Blue", "Golden", "Silent", "Electric", "Midnight", "Broken", "Wild", "Velvet", "Lonely", "Neon",
    "Crimson", "Summer", "Winter", "Hollow", "Burning", "Paper", "Silver", "Distant", "Sweet", "Heavy",
)
_TITLE_B = (
    "River", "Heart", "Road", "Sky", "Dream", "Fire", "Rain", "Train", "Light", "City",
    "Ocean", "Garden", "Mirror", "Shadow", "Highway", "Morning", "Echo", "Stone", "Wave", "Song",
)
# Spotify-style attributes: (name, low, high, logit shift). value = low + (high-low)·sigmoid(...).
_ATTRIBUTES = (
    ("acousticness", 0.0, 1.0, -0.5),
    ("beat_strength", 0.0, 1.0, 0.0),
    ("bounciness", 0.0, 1.0, 0.0),
    ("danceability", 0.0, 1.0, 0.3),
    ("energy", 0.0, 1.0, 0.2),
    ("flatness", 0.6, 1.2, 0.0),
    ("instrumentalness", 0.0, 1.0, -1.5),
    ("liveness", 0.0, 1.0, -1.8),
    ("mechanism", 0.0, 1.0, 0.0),
    ("organism", 0.0, 1.0, 0.0),
    ("speechiness", 0.0, 1.0, -2.0),
    ("valence", 0.0, 1.0, 0.0),
)
# Numeric attribute columns of the per-user tracks file (MSSD names minus acoustic_vector_* and
# us_popularity_estimate; ``popularity`` is added separately).
USERS_ATTRIBUTE_COLUMNS = (
    "duration", "acousticness", "beat_strength", "bounciness", "danceability", "dyn_range_mean",
    "energy", "flatness", "instrumentalness", "key", "liveness", "loudness", "mechanism", "mode",
    "organism", "speechiness", "tempo", "time_signature", "valence",
)


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorldConfig:
    """Everything that determines a synthetic world (and therefore its files)."""

    name: str = "custom"
    n_tracks: int = 4000
    n_artists: int = 400
    n_genres: int = 20
    n_users: int = 2000
    n_events: int = 120_000  # target rows of the per-user events file
    n_session_events: int = 120_000  # target rows of the MSSD session logs
    n_days: int = 70
    start_date: str = "2018-06-01"
    seed: int = 0
    latent_dim: int = 16
    session_parts: int = 2  # number of log_<n>.csv files
    gzip_logs: bool = False  # write log_<n>.csv.gz
    radio_share: float = 0.7  # share of MSSD sessions with context_type radio
    positive_share: float = 0.5  # target share of positive feedback (both formats)
    min_user_events: int = 5
    max_user_events: int = 1000
    activity_sigma: float = 1.3  # lognormal spread of listener activity
    popularity_exponent: float = 0.9  # Zipf exponent of track popularity weights
    taste_weight: float = 2.0  # logit weight of the standardised taste·latent affinity
    appeal_weight: float = 0.8  # logit weight of the hidden per-track appeal
    position_weight: float = 0.04  # logit decrease per position inside a sitting/session
    user_bias_sd: float = 0.5  # spread of per-listener skip propensity
    station_pool: int = 50  # candidate pool size of track-seeded stations
    max_stations: int = 6  # stations per listener (1 + Poisson(1.5), capped)

    def __post_init__(self) -> None:
        problems = []
        if self.n_genres < 1 or self.n_artists < self.n_genres or self.n_tracks < self.n_artists:
            problems.append("need 1 <= n_genres <= n_artists <= n_tracks")
        if self.n_users < 1 or self.n_events < 1 or self.n_session_events < 1:
            problems.append("n_users, n_events and n_session_events must be positive")
        if self.n_days < 1:
            problems.append("n_days must be positive")
        if not 0.0 < self.radio_share <= 1.0:
            problems.append("radio_share must be in (0, 1]")
        if not 0.05 < self.positive_share < 0.95:
            problems.append("positive_share must be in (0.05, 0.95)")
        if self.session_parts < 1:
            problems.append("session_parts must be >= 1")
        if not 1 <= self.min_user_events <= self.max_user_events:
            problems.append("need 1 <= min_user_events <= max_user_events")
        try:
            date.fromisoformat(self.start_date)
        except (TypeError, ValueError):
            problems.append(f"start_date {self.start_date!r} is not YYYY-MM-DD")
        if problems:
            raise ConfigError("WorldConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "WorldConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def hash(self, formats: tuple[str, ...] = FORMATS) -> str:
        """Stable hash of the config, the formats and the generator version."""
        payload = json.dumps(
            {"config": self.to_dict(), "formats": sorted(formats), "generator": GENERATOR_VERSION},
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()


PRESETS: dict[str, WorldConfig] = {
    "tiny": WorldConfig(
        name="tiny", n_tracks=300, n_artists=30, n_genres=6, n_users=200,
        n_events=9_000, n_session_events=6_000, n_days=60, session_parts=1, station_pool=30,
    ),
    "demo": WorldConfig(
        name="demo", n_tracks=6_000, n_artists=500, n_genres=20, n_users=2_000,
        n_events=120_000, n_session_events=120_000, n_days=70, session_parts=2,
    ),
    "bench": WorldConfig(
        name="bench", n_tracks=100_000, n_artists=8_000, n_genres=50, n_users=25_000,
        n_events=1_200_000, n_session_events=1_200_000, n_days=90, session_parts=8, gzip_logs=True,
    ),
}


def preset(name: str) -> WorldConfig:
    """The named preset (``tiny`` for tests, ``demo`` the default, ``bench`` ≥ 1M events)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown synthetic preset {name!r}; expected one of {', '.join(PRESETS)}"
        ) from None


def _resolve(name_or_config: str | WorldConfig, seed: int | None) -> WorldConfig:
    cfg = preset(name_or_config) if isinstance(name_or_config, str) else name_or_config
    if not isinstance(cfg, WorldConfig):
        raise ConfigError(f"expected a preset name or a WorldConfig, got {type(name_or_config).__name__}")
    if seed is not None:
        cfg = replace(cfg, seed=int(seed))
    return cfg


# --------------------------------------------------------------------------------------------
# random helpers
# --------------------------------------------------------------------------------------------


def _rng(cfg: WorldConfig, stream: int) -> np.random.Generator:
    """Independent stream per purpose: 0 world, 1 users format, 2 sessions format."""
    return np.random.default_rng([int(cfg.seed) & 0xFFFFFFFF, (int(cfg.seed) >> 32) & 0xFFFFFFFF, stream])


def _hex_ids(rng: np.random.Generator, n: int, nbytes: int) -> list[str]:
    h = rng.bytes(n * nbytes).hex()
    w = 2 * nbytes
    return [h[i * w:(i + 1) * w] for i in range(n)]


def _uuids(rng: np.random.Generator, n: int) -> list[str]:
    return [f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}" for h in _hex_ids(rng, n, 16)]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class _SegmentSampler:
    """Draw one item per request from a group's items with probability ∝ weight (vectorised).

    Items are laid out group by group; the cumulative weight inside group ``g`` is mapped onto
    ``[g, g+1]``, so one ``searchsorted`` of ``g + U`` samples every request at once.
    """

    def __init__(self, groups: np.ndarray, items: np.ndarray, weights: np.ndarray, n_groups: int) -> None:
        order = np.lexsort((items, groups))
        g = groups[order].astype(np.int64)
        w = weights[order].astype(np.float64)
        self.items = items[order].astype(np.int64)
        counts = np.bincount(g, minlength=n_groups)
        if (counts == 0).any():
            raise ValueError("every group needs at least one item")
        starts = np.r_[0, np.cumsum(counts)[:-1]]
        cw = np.cumsum(w)
        before = np.r_[0.0, cw][starts]  # cumulative weight before each group
        totals = np.add.reduceat(w, starts)
        frac = (cw - np.repeat(before, counts)) / np.repeat(totals, counts)
        ends = starts + counts - 1
        frac[ends] = 1.0
        self.cdf = g + frac
        self.ends = ends

    def sample(self, rng: np.random.Generator, group_ids: np.ndarray) -> np.ndarray:
        group_ids = np.asarray(group_ids, dtype=np.int64)
        u = rng.random(group_ids.shape[0])
        pos = np.searchsorted(self.cdf, group_ids + u, side="right")
        pos = np.minimum(pos, self.ends[group_ids])  # guard against float round-off
        return self.items[pos]


# --------------------------------------------------------------------------------------------
# the world
# --------------------------------------------------------------------------------------------


@dataclass
class _World:
    cfg: WorldConfig
    # tracks
    track_ids: list[str]
    track_artist: np.ndarray
    track_genre: np.ndarray
    latent: np.ndarray  # (n_tracks, D) float64
    appeal: np.ndarray
    pop_weight: np.ndarray
    pop_percentile: np.ndarray  # 0..100
    features: dict[str, np.ndarray]  # MSSD tf columns except track_id, mode as bool major
    acoustic: np.ndarray  # (n_tracks, 8)
    titles: list[str]
    # artists / genres
    artist_ids: list[str]
    artist_genre: np.ndarray
    genre_ids: list[str]
    # listeners
    user_ids: list[str]
    user_fav_genre: np.ndarray
    taste: np.ndarray  # (n_users, D)
    user_bias: np.ndarray
    user_activity: np.ndarray  # lognormal weight
    user_premium: np.ndarray
    user_start_day: np.ndarray
    user_end_day: np.ndarray  # exclusive
    # stations
    station_user: np.ndarray
    station_type: np.ndarray  # 0 track, 1 artist, 2 genre
    station_seed: np.ndarray  # seed track index
    station_pref_cdf: np.ndarray  # (max_stations+1, max_stations): cdf over a user's stations
    user_station_start: np.ndarray
    user_station_count: np.ndarray
    station_pool_row: np.ndarray  # row in pool sampler for track stations (-1 otherwise)
    # samplers
    genre_sampler: _SegmentSampler
    artist_sampler: _SegmentSampler
    pool_sampler: _SegmentSampler | None
    global_sampler: _SegmentSampler
    affinity_mean: float = 0.0
    affinity_std: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)

    def sample_station_tracks(self, rng: np.random.Generator, stations: np.ndarray) -> np.ndarray:
        out = np.empty(stations.shape[0], dtype=np.int64)
        typ = self.station_type[stations]
        seed = self.station_seed[stations]
        coin = rng.random(stations.shape[0])
        m_genre = (typ == 2) | ((typ == 1) & (coin < 0.5))
        m_artist = (typ == 1) & ~m_genre
        m_track = typ == 0
        out[m_genre] = self.genre_sampler.sample(rng, self.track_genre[seed[m_genre]])
        out[m_artist] = self.artist_sampler.sample(rng, self.track_artist[seed[m_artist]])
        if m_track.any():
            out[m_track] = self.pool_sampler.sample(rng, self.station_pool_row[stations[m_track]])
        return out

    def affinity(self, users: np.ndarray, tracks: np.ndarray) -> np.ndarray:
        """taste·latent per (user, track) pair, in float32 chunks (the gathers dominate)."""
        if "taste32" not in self.extra:
            self.extra["taste32"] = self.taste.astype(np.float32)
            self.extra["latent32"] = self.latent.astype(np.float32)
        t32, l32 = self.extra["taste32"], self.extra["latent32"]
        out = np.empty(users.shape[0], dtype=np.float64)
        step = 262_144
        for lo in range(0, users.shape[0], step):
            u, t = users[lo:lo + step], tracks[lo:lo + step]
            out[lo:lo + step] = np.einsum("ij,ij->i", t32[u], l32[t])
        return out


def _build_world(cfg: WorldConfig) -> _World:
    rng = _rng(cfg, 0)
    D, G, A, T, U = cfg.latent_dim, cfg.n_genres, cfg.n_artists, cfg.n_tracks, cfg.n_users
    sd = 1.0 / np.sqrt(D)

    # genres
    genre_centre = rng.standard_normal((G, D)) * sd
    genre_weight = np.exp(rng.normal(0.0, 0.5, G))
    genre_weight /= genre_weight.sum()
    genre_era = rng.uniform(1965, 2014, G)
    genre_ids = [
        f"g{i:03d}_{_GENRE_NAMES[i % len(_GENRE_NAMES)]}" + (f"{i // len(_GENRE_NAMES) + 1}" if i >= len(_GENRE_NAMES) else "")
        for i in range(G)
    ]

    # artists: every genre gets at least A // (2G) artists, the rest follow genre popularity
    base = max(1, A // (2 * G))
    artist_genre = np.r_[np.repeat(np.arange(G), base), rng.choice(G, size=A - G * base, p=genre_weight)]
    artist_genre = artist_genre.astype(np.int64)
    artist_offset = rng.standard_normal((A, D)) * 0.6 * sd
    artist_era = rng.normal(0.0, 5.0, A)
    artist_productivity = np.exp(rng.normal(0.0, 0.9, A))
    artist_fame = rng.normal(0.0, 0.5, A)
    artist_ids = ["ar_" + h for h in _hex_ids(rng, A, 8)]

    # tracks: every artist has at least one track
    extra = rng.choice(A, size=T - A, p=artist_productivity / artist_productivity.sum())
    track_artist = rng.permutation(np.r_[np.arange(A), extra]).astype(np.int64)
    track_genre = artist_genre[track_artist]
    latent = genre_centre[track_genre] + artist_offset[track_artist] + rng.standard_normal((T, D)) * 0.45 * sd
    appeal = rng.standard_normal(T)
    pop_score = 0.5 * appeal + artist_fame[track_artist] + rng.standard_normal(T)
    rank = np.empty(T, dtype=np.int64)
    rank[np.argsort(-pop_score, kind="stable")] = np.arange(T)
    pop_weight = (rank + 1.0) ** (-cfg.popularity_exponent)
    pop_percentile = 100.0 * (T - rank) / T
    track_ids = ["t_" + u for u in _uuids(rng, T)]
    titles = [
        f"{_TITLE_A[a]} {_TITLE_B[b]}"
        for a, b in zip(rng.integers(0, len(_TITLE_A), T).tolist(), rng.integers(0, len(_TITLE_B), T).tolist())
    ]

    # content: noisy non-linear views of the latent vector
    n_proj = ACOUSTIC_DIM + len(_ATTRIBUTES) + 5
    W = rng.standard_normal((D, n_proj))
    H = latent @ W
    H = (H - H.mean(0)) / H.std(0)
    acoustic = np.tanh(1.2 * H[:, :ACOUSTIC_DIM] + 0.15 * rng.standard_normal((T, ACOUSTIC_DIM)))
    feats: dict[str, np.ndarray] = {}
    h_other = H[:, ACOUSTIC_DIM:]
    for j, (name, lo, hi, shift) in enumerate(_ATTRIBUTES):
        x = 1.5 * h_other[:, j] + shift + 0.3 * rng.standard_normal(T)
        feats[name] = lo + (hi - lo) * _sigmoid(x)
    k = len(_ATTRIBUTES)
    h_tempo, h_loud, h_dur, h_dyn, h_mix = (h_other[:, k + i] for i in range(5))
    feats["tempo"] = np.clip(118 + 22 * h_tempo + 8 * rng.standard_normal(T), 50, 220)
    feats["loudness"] = np.clip(-9 + 3.5 * h_loud + 1.5 * rng.standard_normal(T), -40, 2)
    feats["duration"] = np.clip(np.exp(np.log(225) + 0.22 * h_dur + 0.2 * rng.standard_normal(T)), 30, 1200)
    feats["dyn_range_mean"] = 4 + 6 * np.log1p(np.exp(h_dyn + 0.3 * rng.standard_normal(T)))
    feats["release_year"] = np.clip(
        np.round(genre_era[track_genre] + artist_era[track_artist] + 3 * rng.standard_normal(T) + 2 * h_mix),
        1950, 2018,
    ).astype(np.int64)
    feats["key"] = rng.integers(0, 12, T)
    feats["mode_major"] = rng.random(T) < _sigmoid(0.8 * h_other[:, k - 1] + 0.4)  # leans on valence
    feats["time_signature"] = rng.choice(np.array([3, 4, 5]), size=T, p=[0.08, 0.9, 0.02])
    feats["us_popularity_estimate"] = pop_percentile

    # listeners
    user_fav_genre = rng.choice(G, size=U, p=genre_weight)
    taste = genre_centre[user_fav_genre] + 0.8 * sd * rng.standard_normal((U, D))
    user_bias = cfg.user_bias_sd * rng.standard_normal(U)
    user_activity = np.exp(cfg.activity_sigma * rng.standard_normal(U))
    user_premium = rng.random(U) < 0.7
    late = np.floor(cfg.n_days * 0.5 * rng.random(U) ** 2).astype(np.int64)
    churn = np.where(rng.random(U) < 0.25, np.floor(cfg.n_days * 0.4 * rng.random(U)), 0).astype(np.int64)
    user_start_day = late
    user_end_day = np.maximum(cfg.n_days - churn, user_start_day + 7).clip(max=cfg.n_days)
    user_ids = ["u_" + h for h in _hex_ids(rng, U, 8)]

    # samplers
    all_tracks = np.arange(T)
    genre_sampler = _SegmentSampler(track_genre, all_tracks, pop_weight, G)
    artist_sampler = _SegmentSampler(track_artist, all_tracks, pop_weight, A)
    global_sampler = _SegmentSampler(np.zeros(T, dtype=np.int64), all_tracks, pop_weight, 1)

    # stations: 1 + Poisson(1.5) per listener, seeded from (mostly) the favourite genre
    S_max = cfg.max_stations
    user_station_count = np.minimum(1 + rng.poisson(1.5, U), S_max)
    user_station_start = np.r_[0, np.cumsum(user_station_count)[:-1]]
    n_st = int(user_station_count.sum())
    station_user = np.repeat(np.arange(U), user_station_count)
    st_genre = np.where(
        rng.random(n_st) < 0.75, user_fav_genre[station_user], rng.choice(G, size=n_st, p=genre_weight)
    )
    n_cand = 5
    cand = genre_sampler.sample(rng, np.repeat(st_genre, n_cand)).reshape(n_st, n_cand)
    cand_aff = np.einsum("sd,scd->sc", taste[station_user], latent[cand])
    station_seed = cand[np.arange(n_st), np.argmax(cand_aff, axis=1)]
    station_type = rng.choice(3, size=n_st, p=[0.4, 0.35, 0.25])
    pref = 1.0 / np.arange(1, S_max + 1)
    pref_cdf = np.ones((S_max + 1, S_max))
    for c in range(1, S_max + 1):
        pref_cdf[c, :c] = np.cumsum(pref[:c]) / pref[:c].sum()
        pref_cdf[c, c - 1] = 1.0

    # track stations: pool = the station_pool nearest tracks of the seed's genre
    station_pool_row = np.full(n_st, -1, dtype=np.int64)
    track_st = np.flatnonzero(station_type == 0)
    pool_sampler = None
    if track_st.size:
        station_pool_row[track_st] = np.arange(track_st.size)
        rows_g, rows_i = [], []
        seeds = station_seed[track_st]
        seed_genre = track_genre[seeds]
        genre_members = np.argsort(track_genre, kind="stable")
        gstart = np.r_[0, np.cumsum(np.bincount(track_genre, minlength=G))]
        lat32 = latent.astype(np.float32)
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
        pool_sampler = _SegmentSampler(pg, pi, pop_weight[pi], track_st.size)

    world = _World(
        cfg=cfg, track_ids=track_ids, track_artist=track_artist, track_genre=track_genre,
        latent=latent, appeal=appeal, pop_weight=pop_weight, pop_percentile=pop_percentile,
        features=feats, acoustic=acoustic, titles=titles, artist_ids=artist_ids,
        artist_genre=artist_genre, genre_ids=genre_ids, user_ids=user_ids,
        user_fav_genre=user_fav_genre, taste=taste, user_bias=user_bias,
        user_activity=user_activity, user_premium=user_premium, user_start_day=user_start_day,
        user_end_day=user_end_day, station_user=station_user, station_type=station_type,
        station_seed=station_seed, station_pref_cdf=pref_cdf,
        user_station_start=user_station_start, user_station_count=user_station_count,
        station_pool_row=station_pool_row, genre_sampler=genre_sampler,
        artist_sampler=artist_sampler, pool_sampler=pool_sampler, global_sampler=global_sampler,
    )
    # affinity standardisation: a fixed reference sample of listener × station-track pairs
    ref = min(200_000, 50 * U)
    ru = rng.integers(0, U, ref)
    rs = user_station_start[ru] + (rng.random(ref) * user_station_count[ru]).astype(np.int64)
    rt = world.sample_station_tracks(rng, rs)
    aff = world.affinity(ru, rt)
    world.affinity_mean = float(aff.mean())
    world.affinity_std = float(aff.std() + 1e-12)
    return world


def _pick_stations(world: _World, rng: np.random.Generator, users: np.ndarray) -> np.ndarray:
    cnt = world.user_station_count[users]
    cdf = world.station_pref_cdf[cnt]
    r = (rng.random(users.shape[0])[:, None] > cdf).sum(1)
    r = np.minimum(r, cnt - 1)
    return world.user_station_start[users] + r


def _dedupe(
    rng: np.random.Generator, group: np.ndarray, tracks: np.ndarray, redraw, wide_redraw, world: "_World",
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


def _calibrate_bias(logit: np.ndarray, target: float) -> float:
    """Intercept b with mean(sigmoid(logit + b)) = target (on an evenly strided subsample)."""
    logit = logit[:: max(1, logit.size // 200_000)]
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if _sigmoid(logit + mid).mean() < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _feedback(world: _World, rng: np.random.Generator, users, tracks, positions, offset=0.0):
    cfg = world.cfg
    z = (world.affinity(users, tracks) - world.affinity_mean) / world.affinity_std
    logit = (
        cfg.taste_weight * z
        + cfg.appeal_weight * world.appeal[tracks]
        + world.user_bias[users]
        - cfg.position_weight * (positions - 1)
        + offset
    )
    b = _calibrate_bias(logit, cfg.positive_share)
    p = _sigmoid(logit + b)
    return (rng.random(p.shape[0]) < p), b


def _events_per_user(cfg: WorldConfig, activity: np.ndarray, target: int) -> np.ndarray:
    lo, hi = 1e-6, 1e6
    for _ in range(80):
        mid = np.sqrt(lo * hi)
        n = np.clip(np.round(activity * mid), cfg.min_user_events, cfg.max_user_events)
        if n.sum() < target:
            lo = mid
        else:
            hi = mid
    return np.clip(np.round(activity * hi), cfg.min_user_events, cfg.max_user_events).astype(np.int64)


def _day_weights(cfg: WorldConfig) -> np.ndarray:
    start = date.fromisoformat(cfg.start_date)
    w = np.array([1.2 if (start + timedelta(days=d)).weekday() >= 5 else 1.0 for d in range(cfg.n_days)])
    return w / w.sum()


# --------------------------------------------------------------------------------------------
# users format
# --------------------------------------------------------------------------------------------


def _generate_users(world: _World) -> dict[str, Any]:
    cfg = world.cfg
    rng = _rng(cfg, 1)
    U = cfg.n_users
    n_u = _events_per_user(cfg, world.user_activity, cfg.n_events)

    # sittings: lengths 3 + Poisson(9), enough per user to cover n_u, the last one truncated
    k_u = n_u // 3 + 1
    seg_user = np.repeat(np.arange(U), k_u)
    L = 3 + rng.poisson(9, seg_user.size)
    seg_first = np.r_[0, np.cumsum(k_u)[:-1]]
    cum = np.cumsum(L)
    base = np.r_[0, cum][seg_first]
    end_in_user = cum - np.repeat(base, k_u)
    start_in_user = end_in_user - L
    keep = start_in_user < n_u[seg_user]
    sit_user = seg_user[keep]
    sit_len = np.minimum(end_in_user[keep], n_u[sit_user]) - start_in_user[keep]
    n_sit = sit_user.size

    sit_station = _pick_stations(world, rng, sit_user)
    span = world.user_end_day[sit_user] - world.user_start_day[sit_user]
    sit_day = world.user_start_day[sit_user] + np.floor(rng.random(n_sit) * span).astype(np.int64)
    hour_p = _HOUR_PROFILE / _HOUR_PROFILE.sum()
    sit_hour = rng.choice(24, size=n_sit, p=hour_p)
    sit_start = sit_day * 86400.0 + sit_hour * 3600.0 + rng.random(n_sit) * 3600.0

    ev_sit = np.repeat(np.arange(n_sit), sit_len)
    ev_user = sit_user[ev_sit]
    sit_first = np.r_[0, np.cumsum(sit_len)[:-1]]
    ev_pos = np.arange(ev_sit.size) - sit_first[ev_sit] + 1
    ev_station = sit_station[ev_sit]
    tracks = world.sample_station_tracks(rng, ev_station)
    tracks = _dedupe(
        rng,
        ev_sit,
        tracks,
        lambda idx: world.sample_station_tracks(rng, ev_station[idx]),
        lambda idx: world.genre_sampler.sample(rng, world.track_genre[world.station_seed[ev_station[idx]]]),
        world,
    )
    positive, bias = _feedback(world, rng, ev_user, tracks, ev_pos)

    # timing: positives play (most of) the track, negatives are thumbed/skipped after a few seconds
    dur = world.features["duration"][tracks]
    gap = np.where(positive, dur * rng.uniform(0.9, 1.0, ev_sit.size), rng.uniform(5, 45, ev_sit.size)) + 2.0
    gcum = np.cumsum(gap)
    gbase = np.r_[0.0, gcum][sit_first]
    offset = gcum - gap - np.repeat(gbase, sit_len)  # exclusive cumsum inside the sitting
    sit_dur = np.add.reduceat(gap, sit_first)

    # no overlapping sittings of one listener: t_i = max(s_i, t_{i-1} + d_{i-1})
    order = np.lexsort((sit_start, sit_user))
    su, ss, sd_ = sit_user[order], sit_start[order], sit_dur[order]
    first_of_user = np.r_[True, su[1:] != su[:-1]]
    cd = np.cumsum(sd_)
    ubase = np.maximum.accumulate(np.where(first_of_user, cd - sd_, 0.0))
    D_excl = cd - sd_ - ubase
    big = 4.0 * (cfg.n_days * 86400.0 + cfg.max_user_events * 1300.0)
    v = ss - D_excl + su * big
    t_sorted = np.maximum.accumulate(v) - su * big + D_excl
    sit_t = np.empty(n_sit)
    sit_t[order] = t_sorted
    ts = np.floor(sit_t[ev_sit] + offset).astype(np.int64)

    keep = ts < cfg.n_days * 86400
    ev_user, tracks, ts, positive = ev_user[keep], tracks[keep], ts[keep], positive[keep]
    o = np.lexsort((tracks, ts, ev_user))
    return {
        "user": ev_user[o],
        "track": tracks[o],
        "ts": ts[o],
        "feedback": positive[o].astype(np.int8),
        "bias": bias,
    }


def _write_users(world: _World, dirpath: Path) -> tuple[dict[str, Path], dict[str, Any]]:
    cfg = world.cfg
    ev = _generate_users(world)
    dirpath.mkdir(parents=True, exist_ok=True)
    user_arr = pa.array(world.user_ids, pa.string())
    track_arr = pa.array(world.track_ids, pa.string())
    artist_arr = pa.array(world.artist_ids, pa.string())
    genre_arr = pa.array(world.genre_ids, pa.string())
    epoch = np.datetime64(cfg.start_date, "s")
    ts = (epoch + ev["ts"].astype("timedelta64[s]")).astype("datetime64[us]")
    events = pa.table(
        {
            "user_id": user_arr.take(pa.array(ev["user"])),
            "track_id": track_arr.take(pa.array(ev["track"])),
            "timestamp": pa.array(ts, pa.timestamp("us")),
            "feedback": pa.array(ev["feedback"], pa.int8()),
            "artist_id": artist_arr.take(pa.array(world.track_artist[ev["track"]])),
            "genre_id": genre_arr.take(pa.array(world.track_genre[ev["track"]])),
        }
    )
    f = world.features
    cols: dict[str, pa.Array] = {
        "track_id": track_arr,
        "artist_id": artist_arr.take(pa.array(world.track_artist)),
        "genre_id": genre_arr.take(pa.array(world.track_genre)),
        "release_year": pa.array(f["release_year"], pa.int32()),
        "title": pa.array(world.titles, pa.string()),
    }
    for name in USERS_ATTRIBUTE_COLUMNS:
        if name == "mode":
            cols[name] = pa.array(f["mode_major"].astype(np.int8), pa.int8())
        elif name in ("key", "time_signature"):
            cols[name] = pa.array(f[name], pa.int32())
        else:
            cols[name] = pa.array(np.round(f[name], 6), pa.float64())
    cols["popularity"] = pa.array(np.round(world.pop_percentile, 4), pa.float64())
    emb = np.round(world.acoustic, 6).astype(np.float32)
    cols["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel(), pa.float32()), ACOUSTIC_DIM).cast(
        pa.list_(pa.float32())
    )
    tracks = pa.table(cols)
    paths = {"events": dirpath / "events.parquet", "tracks": dirpath / "tracks.parquet"}
    _atomic_write(paths["events"], lambda p: pq.write_table(events, p, compression="snappy"))
    _atomic_write(paths["tracks"], lambda p: pq.write_table(tracks, p, compression="snappy", use_dictionary=False))
    days = ev["ts"] // 86400
    counts = {
        "users_events": int(events.num_rows),
        "users_positive": int(ev["feedback"].sum()),
        "users_users": int(np.unique(ev["user"]).size),
        "users_tracks": int(tracks.num_rows),
        "_days": (int(days.min()), int(days.max())) if days.size else None,
        "_bias": ev["bias"],
    }
    return paths, counts


# --------------------------------------------------------------------------------------------
# sessions format (MSSD)
# --------------------------------------------------------------------------------------------


def _generate_sessions(world: _World) -> dict[str, Any]:
    cfg = world.cfg
    rng = _rng(cfg, 2)
    mean_len = 0.35 * 20 + 0.65 * 14.5
    n_s = max(1, int(round(cfg.n_session_events / mean_len)))
    s_len = np.where(rng.random(n_s) < 0.35, 20, rng.integers(10, 20, n_s)).astype(np.int64)
    act = world.user_activity / world.user_activity.sum()
    s_user = rng.choice(cfg.n_users, size=n_s, p=act)
    radio = rng.random(n_s) < cfg.radio_share
    other = rng.choice(len(_OTHER_CONTEXTS), size=n_s, p=np.array(_OTHER_CONTEXT_P))
    contexts = np.array(("radio",) + _OTHER_CONTEXTS, dtype=object)
    s_ctx = np.where(radio, 0, other + 1)
    s_station = _pick_stations(world, rng, s_user)
    s_genre = np.where(
        rng.random(n_s) < 0.6, world.user_fav_genre[s_user], rng.integers(0, cfg.n_genres, n_s)
    )
    s_day = rng.choice(cfg.n_days, size=n_s, p=_day_weights(cfg))
    s_hour = rng.choice(24, size=n_s, p=_HOUR_PROFILE / _HOUR_PROFILE.sum())
    s_shuffle = rng.random(n_s) < np.where(radio, 0.05, 0.35)

    ev_s = np.repeat(np.arange(n_s), s_len)
    s_first = np.r_[0, np.cumsum(s_len)[:-1]]
    pos = np.arange(ev_s.size) - s_first[ev_s] + 1
    ev_user = s_user[ev_s]
    ev_ctx = s_ctx[ev_s]
    charts_code = 1 + _OTHER_CONTEXTS.index("charts")

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
        g = np.where(c == 0, world.track_genre[world.station_seed[s_station[ev_s[idx]]]], s_genre[ev_s[idx]])
        return world.genre_sampler.sample(rng, g)

    tracks = _dedupe(rng, ev_s, draw(np.arange(ev_s.size)), draw, wide, world)
    ctx_off = np.array([_CONTEXT_OFFSET[c] for c in contexts])[ev_ctx]
    positive, bias = _feedback(world, rng, ev_user, tracks, pos, ctx_off)

    n = ev_s.size
    neg = ~positive
    skip_2 = neg
    skip_1 = neg & (rng.random(n) < 0.55)
    skip_3 = neg | (rng.random(n) < 0.25)
    not_skipped = ~skip_3
    # reasons: the end reason follows the skip; the next start reason repeats it
    # codes into _REASONS: 0 trackdone, 1 fwdbtn, 2 backbtn, 3 endplay, 4 logout, 5 clickrow, ...
    r_end = np.where(skip_3, np.where(rng.random(n) < 0.9, 1, 2), 0).astype(np.int8)
    last = pos == s_len[ev_s]
    end_alt = rng.random(n)
    r_end[last & ~skip_3 & (end_alt < 0.15)] = 3
    r_end[last & ~skip_3 & (end_alt > 0.92)] = 4
    first = pos == 1
    start_choice = np.array([5, 6, 7, 0, 1], dtype=np.int8)  # clickrow playbtn appload trackdone fwdbtn
    r_start = np.empty(n, dtype=np.int8)
    r_start[~first] = r_end[np.flatnonzero(~first) - 1]
    r_start[first] = start_choice[rng.choice(5, size=int(first.sum()), p=[0.35, 0.2, 0.15, 0.2, 0.1])]
    # pauses: mutually exclusive; context switches only at the start of a session
    pause_u = rng.random(n)
    first_pause = np.where(first, pause_u < 0.6, False)
    no_pause = (~first_pause) & (pause_u < 0.88)
    short_pause = (~first_pause) & (pause_u >= 0.88) & (pause_u < 0.95)
    long_pause = (~first_pause) & (pause_u >= 0.95)
    context_switch = first & (rng.random(n) < 0.1)
    seekfwd = rng.poisson(np.where(skip_3, 0.15, 0.03))
    seekback = rng.poisson(0.03, n)
    s_uuid = _uuids(rng, n_s)
    return {
        "n_sessions": n_s, "s_len": s_len, "s_user": s_user, "s_ctx": s_ctx, "contexts": contexts,
        "s_day": s_day, "s_hour": s_hour, "s_shuffle": s_shuffle, "s_uuid": s_uuid,
        "ev_s": ev_s, "pos": pos, "track": tracks, "skip_1": skip_1, "skip_2": skip_2,
        "skip_3": skip_3, "not_skipped": not_skipped, "context_switch": context_switch,
        "no_pause": no_pause, "short_pause": short_pause, "long_pause": long_pause,
        "seekfwd": seekfwd, "seekback": seekback, "r_start": r_start, "r_end": r_end,
        "bias": bias,
    }


def _csv_bytes(table: pa.Table, header: list[str]) -> bytes:
    sink = io.BytesIO()
    sink.write((",".join(header) + "\n").encode())
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    return sink.getvalue()


def _write_csv(path: Path, table: pa.Table, header: list[str], compress: bool) -> None:
    data = _csv_bytes(table, header)
    if compress:  # mtime=0 and no file name in the header: byte-identical reruns
        data = gzip.compress(data, compresslevel=1, mtime=0)
    _atomic_write(path, lambda q: Path(q).write_bytes(data))


def _write_sessions(world: _World, dirpath: Path) -> tuple[dict[str, list[Path]], dict[str, Any]]:
    cfg = world.cfg
    s = _generate_sessions(world)
    dirpath.mkdir(parents=True, exist_ok=True)
    n_s = s["n_sessions"]
    start = date.fromisoformat(cfg.start_date)
    date_arr = pa.array([(start + timedelta(days=d)).isoformat() for d in range(cfg.n_days)], pa.string())
    track_arr = pa.array(world.track_ids, pa.string())
    ctx_arr = pa.array(list(s["contexts"]), pa.string())
    reasons = pa.array(list(_REASONS), pa.string())
    parts = min(cfg.session_parts, n_s)
    bounds = np.linspace(0, n_s, parts + 1).round().astype(np.int64)
    s_first = np.r_[0, np.cumsum(s["s_len"])]
    logs: list[Path] = []
    pool = ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1))  # CSV + gzip release the GIL
    jobs = []
    for p in range(parts):
        a, b = int(bounds[p]), int(bounds[p + 1])
        sid = [f"{p}_{u}" for u in s["s_uuid"][a:b]]
        order = np.argsort(np.array(sid, dtype=object), kind="stable")
        sess = np.arange(a, b)[order]
        lens = s["s_len"][sess]
        rows = np.repeat(s_first[sess] - np.r_[0, np.cumsum(lens)[:-1]], lens) + np.arange(int(lens.sum()))
        ev_s = s["ev_s"][rows]
        sid_arr = pa.array(sid, pa.string())
        local = (ev_s - a).astype(np.int64)

        def col(x, t):
            return pa.array(x[rows], t)

        table = pa.table(
            {
                "session_id": sid_arr.take(pa.array(local)),
                "session_position": col(s["pos"], pa.int32()),
                "session_length": pa.array(s["s_len"][ev_s], pa.int32()),
                "track_id_clean": track_arr.take(pa.array(s["track"][rows])),
                "skip_1": col(s["skip_1"], pa.bool_()),
                "skip_2": col(s["skip_2"], pa.bool_()),
                "skip_3": col(s["skip_3"], pa.bool_()),
                "not_skipped": col(s["not_skipped"], pa.bool_()),
                "context_switch": col(s["context_switch"].astype(np.int8), pa.int8()),
                "no_pause_before_play": col(s["no_pause"].astype(np.int8), pa.int8()),
                "short_pause_before_play": col(s["short_pause"].astype(np.int8), pa.int8()),
                "long_pause_before_play": col(s["long_pause"].astype(np.int8), pa.int8()),
                "hist_user_behavior_n_seekfwd": col(s["seekfwd"], pa.int32()),
                "hist_user_behavior_n_seekback": col(s["seekback"], pa.int32()),
                "hist_user_behavior_is_shuffle": pa.array(s["s_shuffle"][ev_s], pa.bool_()),
                "hour_of_day": pa.array(s["s_hour"][ev_s], pa.int32()),
                "date": date_arr.take(pa.array(s["s_day"][ev_s])),
                "premium": pa.array(world.user_premium[s["s_user"][ev_s]], pa.bool_()),
                "context_type": ctx_arr.take(pa.array(s["s_ctx"][ev_s])),
                "hist_user_behavior_reason_start": reasons.take(pa.array(s["r_start"][rows])),
                "hist_user_behavior_reason_end": reasons.take(pa.array(s["r_end"][rows])),
            }
        )
        assert table.column_names == MSSD_LOG_COLUMNS
        path = dirpath / (f"log_{p}.csv.gz" if cfg.gzip_logs else f"log_{p}.csv")
        jobs.append(pool.submit(_write_csv, path, table, MSSD_LOG_COLUMNS, cfg.gzip_logs))
        logs.append(path)

    f = world.features
    tf_cols: dict[str, pa.Array] = {}
    for name in MSSD_TRACK_COLUMNS:
        if name == "track_id":
            tf_cols[name] = track_arr
        elif name == "mode":
            tf_cols[name] = pa.array(np.where(f["mode_major"], "major", "minor").tolist(), pa.string())
        elif name in ("key", "time_signature", "release_year"):
            tf_cols[name] = pa.array(f[name], pa.int32())
        elif name.startswith("acoustic_vector_"):
            tf_cols[name] = pa.array(np.round(world.acoustic[:, int(name.rsplit("_", 1)[1])], 6), pa.float64())
        else:
            tf_cols[name] = pa.array(np.round(f[name], 6), pa.float64())
    tf = pa.table(tf_cols)
    tf_path = dirpath / "tf_0.csv"
    jobs.append(pool.submit(_write_csv, tf_path, tf, MSSD_TRACK_COLUMNS, False))
    try:
        for j in jobs:
            j.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

    radio_rows = s["s_ctx"][s["ev_s"]] == 0
    counts = {
        "sessions_rows": int(s["ev_s"].size),
        "sessions_sessions": int(n_s),
        "sessions_radio_rows": int(radio_rows.sum()),
        "sessions_radio_sessions": int((s["s_ctx"] == 0).sum()),
        "sessions_radio_negative": int((s["skip_2"] & radio_rows).sum()),
        "sessions_tracks": int(tf.num_rows),
        "_days": (int(s["s_day"].min()), int(s["s_day"].max())),
        "_bias": s["bias"],
    }
    return {"logs": logs, "tracks": [tf_path]}, counts


# --------------------------------------------------------------------------------------------
# ground truth, manifest, entry point
# --------------------------------------------------------------------------------------------


def _truth_tables(world: _World) -> tuple[pa.Table, pa.Table]:
    D = world.cfg.latent_dim

    def lists(x: np.ndarray) -> pa.Array:
        return pa.FixedSizeListArray.from_arrays(pa.array(x.astype(np.float32).ravel(), pa.float32()), D).cast(
            pa.list_(pa.float32())
        )

    track_arr = pa.array(world.track_ids, pa.string())
    tracks = pa.table(
        {
            "track_id": track_arr,
            "artist_id": pa.array(world.artist_ids, pa.string()).take(pa.array(world.track_artist)),
            "genre_id": pa.array(world.genre_ids, pa.string()).take(pa.array(world.track_genre)),
            "latent": lists(world.latent),
            "appeal": pa.array(world.appeal, pa.float64()),
            "popularity_weight": pa.array(world.pop_weight, pa.float64()),
        }
    )
    users = pa.table(
        {
            "user_id": pa.array(world.user_ids, pa.string()),
            "fav_genre_id": pa.array(world.genre_ids, pa.string()).take(pa.array(world.user_fav_genre)),
            "taste": lists(world.taste),
            "user_bias": pa.array(world.user_bias, pa.float64()),
            "activity": pa.array(world.user_activity, pa.float64()),
            "n_stations": pa.array(world.user_station_count, pa.int32()),
        }
    )
    return tracks, users


def ground_truth(name_or_config: str | WorldConfig, *, seed: int | None = None) -> dict[str, Any]:
    """The hidden truth of a world (regenerated, deterministic): per-track and per-user tables.

    ``tracks``: track_id, artist_id, genre_id, latent (list), appeal, popularity_weight.
    ``users``: user_id, fav_genre_id, taste (list), user_bias, activity, n_stations (user ids are
    those of the users format). ``params``: the feedback model's weights and the affinity scaling.
    """
    cfg = _resolve(name_or_config, seed)
    world = _build_world(cfg)
    tracks, users = _truth_tables(world)
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

    def files(self) -> list[Path]:
        out = [p for p in (self.users_events, self.users_tracks) if p is not None]
        out += list(self.session_logs) + list(self.session_tracks)
        out += [p for p in (self.truth_tracks, self.truth_users) if p is not None]
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
            "files": {rel(p): p.stat().st_size for p in self.files()},
            "counts": self.counts,
        }


def load_manifest(out_dir: str | Path) -> WorldManifest | None:
    """The manifest in ``out_dir`` if it exists and every file it lists has its recorded size."""
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
        )
    except (OSError, ValueError, KeyError, TypeError, ConfigError):
        return None


def _atomic_write(path: Path, writer) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        writer(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_world(
    name_or_config: str | WorldConfig,
    out_dir: str | Path,
    *,
    formats: tuple[str, ...] | list[str] = FORMATS,
    seed: int | None = None,
) -> WorldManifest:
    """Generate the world and write its files (idempotent: an up-to-date manifest short-circuits).

    ``formats`` is any non-empty subset of ``("users", "sessions")``; ``seed`` overrides the
    config's seed. Same config + seed → byte-identical files.
    """
    cfg = _resolve(name_or_config, seed)
    fmts = tuple(f for f in FORMATS if f in set(formats))
    unknown = set(formats) - set(FORMATS)
    if unknown or not fmts:
        raise ConfigError(f"write_world: formats must be a non-empty subset of {FORMATS}, got {tuple(formats)}")
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

    world = _build_world(cfg)
    counts: dict[str, Any] = {
        "users_events": 0, "users_positive": 0, "users_users": 0, "users_tracks": 0,
        "sessions_rows": 0, "sessions_sessions": 0, "sessions_radio_rows": 0,
        "sessions_radio_sessions": 0, "sessions_radio_negative": 0, "sessions_tracks": 0,
    }
    day_ranges = []
    users_paths: dict[str, Path] = {}
    sess_paths: dict[str, list[Path]] = {"logs": [], "tracks": []}
    if "users" in fmts:
        users_paths, c = _write_users(world, out_dir / "users")
        day_ranges.append(c.pop("_days"))
        c.pop("_bias")
        counts.update(c)
    if "sessions" in fmts:
        sess_paths, c = _write_sessions(world, out_dir / "sessions")
        day_ranges.append(c.pop("_days"))
        c.pop("_bias")
        counts.update(c)
    day_ranges = [r for r in day_ranges if r is not None]
    start = date.fromisoformat(cfg.start_date)
    lo = min(r[0] for r in day_ranges)
    hi = max(r[1] for r in day_ranges)
    counts["n_days"] = hi - lo + 1
    counts["first_date"] = (start + timedelta(days=lo)).isoformat()
    counts["last_date"] = (start + timedelta(days=hi)).isoformat()

    t_tracks, t_users = _truth_tables(world)
    truth_tracks, truth_users = out_dir / "truth.parquet", out_dir / "truth_users.parquet"
    _atomic_write(truth_tracks, lambda p: pq.write_table(t_tracks, p, compression="snappy"))
    _atomic_write(truth_users, lambda p: pq.write_table(t_users, p, compression="snappy"))

    manifest = WorldManifest(
        users_events=users_paths.get("events"),
        users_tracks=users_paths.get("tracks"),
        session_logs=list(sess_paths["logs"]),
        session_tracks=list(sess_paths["tracks"]),
        counts=counts,
        out_dir=out_dir,
        config=cfg,
        formats=fmts,
        config_hash=chash,
        truth_tracks=truth_tracks,
        truth_users=truth_users,
    )
    text = json.dumps(manifest.to_json(), indent=2, sort_keys=True) + "\n"
    _atomic_write(mpath, lambda p: Path(p).write_text(text))
    return manifest
