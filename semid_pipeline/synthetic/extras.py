"""Hard-catalogue extras: realistic names and near-duplicate tracks (non-default worlds only).

Real catalogues are full of tracks whose content is a near copy of another's: live versions,
remasters, radio edits and acoustic takes by the same artist, covers by another artist of the
same genre, and same-artist sound-alikes. ``add_extras`` turns ``near_duplicate_share`` of the
tracks into such versions of an original (chosen ∝ popularity: hits get covered and remastered):

==============  ===========================  ===========================  ======================
kind            artist                       title                        content / latent
==============  ===========================  ===========================  ======================
``live``        same as the original         ``Song (Live)`` or           original + jitter,
                                             ``Song - Live at <Place>``   longer, high liveness
``remaster``    same                         ``Song - <year> Remaster``   original + tiny jitter
``edit``        same                         ``Song (Radio Edit)`` ...    original + jitter
``cover``       another artist, same genre   ``Song`` (identical)         original + more jitter
``soundalike``  same                         its own title                original + jitter
==============  ===========================  ===========================  ======================

A version keeps its own appeal and popularity (listeners may love the live take and skip the
remaster). Everything is drawn from the extras stream, after the catalogue: with
``near_duplicate_share = 0`` and ``content = "audio"`` nothing here runs, so the default world
is untouched. ``catalogue.original`` holds each version's original (-1 for originals).
"""

from __future__ import annotations

import numpy as np

from .catalogue import ACOUSTIC_DIM, Catalogue, YEAR
from .config import WorldConfig
from .sampling import STREAM_EXTRAS, rng_for
from .titles import PLACE, album_titles, artist_names, song_titles

# kind: (share among versions, latent jitter in units of sd, content jitter in units of a column's sd)
VERSION_KINDS = {
    "live": (0.30, 0.05, 0.08),
    "remaster": (0.25, 0.02, 0.03),
    "edit": (0.10, 0.04, 0.06),
    "cover": (0.20, 0.15, 0.20),
    "soundalike": (0.15, 0.10, 0.12),
}
_EDITS = ("Radio Edit", "Acoustic", "Single Version", "Demo", "Extended Mix")
_SAME_ARTIST = ("live", "remaster", "edit", "soundalike")
TRACKS_PER_ALBUM = 10  # an artist has 1 + n_tracks // TRACKS_PER_ALBUM albums


def has_extras(cfg: WorldConfig) -> bool:
    return cfg.content != "audio" or cfg.near_duplicate_share > 0


def add_extras(cfg: WorldConfig, cat: Catalogue) -> None:
    """Add names, albums and near duplicates to ``cat`` in place (no-op for the default world)."""
    if not has_extras(cfg):
        return
    rng = rng_for(cfg, STREAM_EXTRAS)
    T = cfg.n_tracks
    cat.titles = song_titles(rng, T)
    cat.artist_names = artist_names(rng, cfg.n_artists)
    cat.original = np.full(T, -1, dtype=np.int64)
    cat.version_kind = [""] * T
    _near_duplicates(cfg, cat, rng)
    cat.albums = _albums(cfg, cat, rng)


def _pick_original(rng, kind, d, cat, is_version, by_artist, by_genre) -> int:
    if kind in _SAME_ARTIST:
        cand = [t for t in by_artist[cat.track_artist[d]] if not is_version[t] and t != d]
    else:
        cand = [t for t in by_genre[cat.track_genre[d]] if not is_version[t] and cat.track_artist[t] != cat.track_artist[d]]
    if not cand:
        return -1
    w = cat.pop_weight[cand]
    return int(cand[int(np.searchsorted(np.cumsum(w) / w.sum(), rng.random(), side="right").clip(max=len(cand) - 1))])


def _near_duplicates(cfg: WorldConfig, cat: Catalogue, rng: np.random.Generator) -> None:
    T = cfg.n_tracks
    n_dup = int(round(cfg.near_duplicate_share * T))
    if n_dup == 0:
        return
    kinds = list(VERSION_KINDS)
    p = np.array([VERSION_KINDS[k][0] for k in kinds])
    versions = rng.permutation(T)[:n_dup]
    is_version = np.zeros(T, dtype=bool)
    is_version[versions] = True
    by_artist: dict[int, list[int]] = {}
    by_genre: dict[int, list[int]] = {}
    for t in range(T):
        by_artist.setdefault(int(cat.track_artist[t]), []).append(t)
        by_genre.setdefault(int(cat.track_genre[t]), []).append(t)
    drawn = rng.choice(len(kinds), size=n_dup, p=p / p.sum())
    for d, k in zip(versions.tolist(), drawn.tolist()):
        kind = kinds[k]
        o = _pick_original(rng, kind, d, cat, is_version, by_artist, by_genre)
        if o < 0 and kind in _SAME_ARTIST:  # a one-track artist: cover someone instead
            kind = "cover"
            o = _pick_original(rng, kind, d, cat, is_version, by_artist, by_genre)
        if o < 0:
            is_version[d] = False
            continue
        _copy_version(cfg, cat, rng, d, o, kind)


def _copy_version(cfg: WorldConfig, cat: Catalogue, rng: np.random.Generator, d: int, o: int, kind: str) -> None:
    """Make track ``d`` a ``kind`` version of track ``o``: near-copied latent, content and title."""
    _, lat_jit, feat_jit = VERSION_KINDS[kind]
    sd = 1.0 / np.sqrt(cfg.latent_dim)
    cat.original[d] = o
    cat.version_kind[d] = kind
    cat.latent[d] = cat.latent[o] + lat_jit * sd * rng.standard_normal(cfg.latent_dim)
    cat.acoustic[d] = np.clip(cat.acoustic[o] + feat_jit * rng.standard_normal(ACOUSTIC_DIM) * 0.5, -1.0, 1.0)
    f = cat.features
    for name, col in f.items():
        if name in ("us_popularity_estimate", "release_year"):
            continue
        if name in ("key", "mode_major", "time_signature"):
            col[d] = col[o]
        else:
            col[d] = col[o] + feat_jit * float(col.std()) * rng.standard_normal()
    for name in ("acousticness", "beat_strength", "bounciness", "danceability", "energy",
                 "instrumentalness", "liveness", "mechanism", "organism", "speechiness", "valence"):
        f[name][d] = float(np.clip(f[name][d], 0.0, 1.0))
    f["flatness"][d] = float(np.clip(f["flatness"][d], 0.6, 1.2))
    f["duration"][d] = float(np.clip(f["duration"][d], 30, 1200))
    f["dyn_range_mean"][d] = max(4.0, float(f["dyn_range_mean"][d]))
    year_o, hi = int(f["release_year"][o]), YEAR[3]
    title = cat.titles[o]
    if kind == "live":
        f["liveness"][d] = float(rng.uniform(0.7, 1.0))
        f["duration"][d] = float(min(1200.0, f["duration"][o] * rng.uniform(1.02, 1.2)))
        f["release_year"][d] = min(hi, year_o + int(rng.integers(0, 12)))
        place = PLACE[int(rng.integers(0, len(PLACE)))]
        cat.titles[d] = f"{title} (Live)" if rng.random() < 0.5 else f"{title} - Live at {place}"
    elif kind == "remaster":
        year = min(hi, year_o + int(rng.integers(8, 35)))
        f["release_year"][d] = year
        cat.titles[d] = f"{title} - {year} Remaster" if rng.random() < 0.6 else f"{title} (Remastered)"
    elif kind == "edit":
        f["release_year"][d] = year_o
        cat.titles[d] = f"{title} ({_EDITS[int(rng.integers(0, len(_EDITS)))]})"
    elif kind == "cover":
        cat.titles[d] = title
    else:  # soundalike: own title, own year near the original's
        f["release_year"][d] = min(hi, year_o + int(rng.integers(0, 4)))


def _albums(cfg: WorldConfig, cat: Catalogue, rng: np.random.Generator) -> list[str]:
    """Each artist's tracks spread over its albums; live versions land on a live album."""
    counts = np.bincount(cat.track_artist, minlength=cfg.n_artists)
    n_alb = 1 + counts // TRACKS_PER_ALBUM
    names = album_titles(rng, int(n_alb.sum()))
    first = np.r_[0, np.cumsum(n_alb)[:-1]]
    pick = (rng.random(cfg.n_tracks) * n_alb[cat.track_artist]).astype(np.int64)
    albums = [names[first[a] + k] for a, k in zip(cat.track_artist.tolist(), pick.tolist())]
    for d, kind in enumerate(cat.version_kind):
        if kind == "live":
            albums[d] = f"Live at {cat.titles[d].rsplit('Live at ', 1)[-1]}" if "Live at" in cat.titles[d] else "Live"
        elif kind == "remaster":
            albums[d] = f"{albums[cat.original[d]]} (Remastered)"
    return albums
