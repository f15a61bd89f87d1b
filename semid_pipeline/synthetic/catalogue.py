"""The catalogue: genres → artists → tracks, their latent vectors, appeal, popularity and content.

``latent = genre centre + artist offset + track noise`` in a ``latent_dim`` musical space; the
content columns are noisy non-linear views of the latent vector (so content reveals taste
regions but not the hidden per-track ``appeal``). All draws come from the world stream in a fixed
order: reordering a line here changes every file of every world.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import WorldConfig
from .sampling import hex_ids, sigmoid, uuids
from .titles import ADJ, NOUN

ACOUSTIC_DIM = 8
GENRE_NAMES = (
    "rock", "pop", "jazz", "blues", "country", "folk", "hiphop", "rnb", "soul", "funk",
    "house", "techno", "ambient", "metal", "punk", "reggae", "latin", "classical", "indie", "disco",
)
# The default world's two-word titles: 20 × 20 = 400 combinations, so titles repeat on purpose.
_TITLE_A = ADJ[:20]
_TITLE_B = NOUN[:20]
# Spotify-style attributes: (name, low, high, logit shift). value = low + (high-low)·sigmoid(...).
ATTRIBUTES = (
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
# How content is derived from the standardised projections H of the latent vector (data table):
ACOUSTIC_GAIN, ACOUSTIC_NOISE = 1.2, 0.15  # acoustic = tanh(gain·H + noise·N)
ATTRIBUTE_GAIN, ATTRIBUTE_NOISE = 1.5, 0.3  # attribute logit = gain·H + shift + noise·N
TEMPO = (118, 22, 8, 50, 220)  # bpm: centre, gain, noise sd, clip low, clip high
LOUDNESS = (-9, 3.5, 1.5, -40, 2)  # dB: centre, gain, noise sd, clip low, clip high
DURATION = (225, 0.22, 0.2, 30, 1200)  # s: median, log gain, log noise sd, clip low, clip high
DYN_RANGE = (4, 6, 0.3)  # floor + scale·softplus(H + noise sd·N)
YEAR = (3, 2, 1950, 2018)  # release year = genre era + artist era + noise sd·N + mix·H, clipped
MODE_MAJOR = (0.8, 0.4)  # P(major) = sigmoid(a·H_valence + b)
TIME_SIGNATURES = ((3, 4, 5), (0.08, 0.9, 0.02))
# Numeric attribute columns of the per-user tracks file (MSSD names minus acoustic_vector_* and
# us_popularity_estimate; ``popularity`` is added separately).
USERS_ATTRIBUTE_COLUMNS = (
    "duration", "acousticness", "beat_strength", "bounciness", "danceability", "dyn_range_mean",
    "energy", "flatness", "instrumentalness", "key", "liveness", "loudness", "mechanism", "mode",
    "organism", "speechiness", "tempo", "time_signature", "valence",
)


@dataclass
class Catalogue:
    """Genres, artists and tracks (arrays indexed by track / artist / genre number)."""

    genre_ids: list[str]
    genre_centre: np.ndarray  # (n_genres, D)
    genre_weight: np.ndarray  # genre popularity, sums to 1
    artist_ids: list[str]
    artist_genre: np.ndarray
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
    # hard-catalogue extras (see extras.py); defaults = none
    original: np.ndarray | None = None  # track index this track is a version of, -1 for originals
    version_kind: list[str] = field(default_factory=list)  # "", "live", "remaster", "cover", ...
    albums: list[str] = field(default_factory=list)
    artist_names: list[str] = field(default_factory=list)


def _genres(cfg: WorldConfig, rng: np.random.Generator):
    G, D, st = cfg.n_genres, cfg.latent_dim, cfg.story
    sd = 1.0 / np.sqrt(D)
    centre = rng.standard_normal((G, D)) * sd
    weight = np.exp(rng.normal(0.0, st.genre_weight_sd, G))
    weight /= weight.sum()
    era = rng.uniform(st.era_range[0], st.era_range[1], G)
    n = len(GENRE_NAMES)
    ids = [f"g{i:03d}_{GENRE_NAMES[i % n]}" + (f"{i // n + 1}" if i >= n else "") for i in range(G)]
    return centre, weight, era, ids


def _artists(cfg: WorldConfig, rng: np.random.Generator, genre_weight: np.ndarray):
    """Every genre gets at least A // (2G) artists, the rest follow genre popularity."""
    G, A, D, st = cfg.n_genres, cfg.n_artists, cfg.latent_dim, cfg.story
    sd = 1.0 / np.sqrt(D)
    base = max(1, A // (2 * G))
    genre = np.r_[np.repeat(np.arange(G), base), rng.choice(G, size=A - G * base, p=genre_weight)]
    genre = genre.astype(np.int64)
    offset = rng.standard_normal((A, D)) * st.artist_offset * sd
    era = rng.normal(0.0, st.artist_era_sd, A)
    productivity = np.exp(rng.normal(0.0, st.artist_productivity_sd, A))
    fame = rng.normal(0.0, st.artist_fame_sd, A)
    ids = ["ar_" + h for h in hex_ids(rng, A, 8)]
    return genre, offset, era, productivity, fame, ids


def _content(cfg: WorldConfig, rng: np.random.Generator, latent: np.ndarray, year_base: np.ndarray):
    """Acoustic vector and Spotify-style attributes: noisy non-linear views of the latent vector."""
    T, D = latent.shape
    n_proj = ACOUSTIC_DIM + len(ATTRIBUTES) + 5
    W = rng.standard_normal((D, n_proj))
    hidden = cfg.story.content_hidden_dims
    if hidden:  # taste dimensions no content column shows (the draws stay as in a world without them)
        W[D - hidden:] = 0.0
    H = latent @ W
    H = (H - H.mean(0)) / H.std(0)
    acoustic = np.tanh(ACOUSTIC_GAIN * H[:, :ACOUSTIC_DIM] + ACOUSTIC_NOISE * rng.standard_normal((T, ACOUSTIC_DIM)))
    feats: dict[str, np.ndarray] = {}
    h_other = H[:, ACOUSTIC_DIM:]
    for j, (name, lo, hi, shift) in enumerate(ATTRIBUTES):
        x = ATTRIBUTE_GAIN * h_other[:, j] + shift + ATTRIBUTE_NOISE * rng.standard_normal(T)
        feats[name] = lo + (hi - lo) * sigmoid(x)
    k = len(ATTRIBUTES)
    h_tempo, h_loud, h_dur, h_dyn, h_mix = (h_other[:, k + i] for i in range(5))
    c, g, s, lo, hi = TEMPO
    feats["tempo"] = np.clip(c + g * h_tempo + s * rng.standard_normal(T), lo, hi)
    c, g, s, lo, hi = LOUDNESS
    feats["loudness"] = np.clip(c + g * h_loud + s * rng.standard_normal(T), lo, hi)
    c, g, s, lo, hi = DURATION
    feats["duration"] = np.clip(np.exp(np.log(c) + g * h_dur + s * rng.standard_normal(T)), lo, hi)
    floor, scale, s = DYN_RANGE
    feats["dyn_range_mean"] = floor + scale * np.log1p(np.exp(h_dyn + s * rng.standard_normal(T)))
    s, mix, lo, hi = YEAR
    feats["release_year"] = np.clip(
        np.round(year_base + s * rng.standard_normal(T) + mix * h_mix), lo, hi,
    ).astype(np.int64)
    feats["key"] = rng.integers(0, 12, T)
    a, b = MODE_MAJOR
    feats["mode_major"] = rng.random(T) < sigmoid(a * h_other[:, k - 1] + b)  # leans on valence
    values, p = TIME_SIGNATURES
    feats["time_signature"] = rng.choice(np.array(values), size=T, p=list(p))
    return acoustic, feats


def build_catalogue(cfg: WorldConfig, rng: np.random.Generator) -> Catalogue:
    """Draw the catalogue from the world stream ``rng`` (the listeners continue on the same stream)."""
    D, A, T, st = cfg.latent_dim, cfg.n_artists, cfg.n_tracks, cfg.story
    sd = 1.0 / np.sqrt(D)
    genre_centre, genre_weight, genre_era, genre_ids = _genres(cfg, rng)
    artist_genre, artist_offset, artist_era, productivity, fame, artist_ids = _artists(cfg, rng, genre_weight)

    # tracks: every artist has at least one track
    extra = rng.choice(A, size=T - A, p=productivity / productivity.sum())
    track_artist = rng.permutation(np.r_[np.arange(A), extra]).astype(np.int64)
    track_genre = artist_genre[track_artist]
    latent = genre_centre[track_genre] + artist_offset[track_artist] + rng.standard_normal((T, D)) * st.track_noise * sd
    appeal = rng.standard_normal(T)
    pop_score = st.popularity_appeal * appeal + fame[track_artist] + rng.standard_normal(T)
    rank = np.empty(T, dtype=np.int64)
    rank[np.argsort(-pop_score, kind="stable")] = np.arange(T)
    pop_weight = (rank + 1.0) ** (-cfg.popularity_exponent)
    pop_percentile = 100.0 * (T - rank) / T
    track_ids = ["t_" + u for u in uuids(rng, T)]
    titles = [
        f"{_TITLE_A[a]} {_TITLE_B[b]}"
        for a, b in zip(rng.integers(0, len(_TITLE_A), T).tolist(), rng.integers(0, len(_TITLE_B), T).tolist())
    ]
    acoustic, feats = _content(cfg, rng, latent, genre_era[track_genre] + artist_era[track_artist])
    feats["us_popularity_estimate"] = pop_percentile
    return Catalogue(
        genre_ids=genre_ids, genre_centre=genre_centre, genre_weight=genre_weight,
        artist_ids=artist_ids, artist_genre=artist_genre, track_ids=track_ids,
        track_artist=track_artist, track_genre=track_genre, latent=latent, appeal=appeal,
        pop_weight=pop_weight, pop_percentile=pop_percentile, features=feats, acoustic=acoustic,
        titles=titles,
    )
