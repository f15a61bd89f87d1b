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

from .catalogue import ACOUSTIC_DIM, ATTRIBUTES, DURATION, DYN_RANGE, LOUDNESS, TEMPO, YEAR, Catalogue
from .config import WorldConfig
from .sampling import STREAM_EXTRAS, SegmentSampler, rng_for
from .titles import PLACE, album_titles, artist_names, song_titles

# kind: (share among versions, latent jitter in units of sd, content jitter in units of a column's sd)
VERSION_KINDS = {
    "live": (0.30, 0.05, 0.08),
    "remaster": (0.25, 0.02, 0.03),
    "edit": (0.10, 0.04, 0.06),
    "cover": (0.20, 0.15, 0.20),
    "soundalike": (0.15, 0.10, 0.12),
}
# per-kind details (data table): live versions are longer and sound live, remasters come years later
LIVE_LIVENESS = (0.7, 1.0)  # liveness of a live version: uniform in [a, b]
LIVE_LENGTHEN = (1.02, 1.2)  # a live version's duration / the original's
LIVE_YEARS_AFTER = 12  # recorded 0..11 years after the original
REMASTER_YEARS_AFTER = (8, 35)  # remastered a..b-1 years after the original (capped at the last year)
SOUNDALIKE_YEARS_AFTER = 4
LIVE_PAREN_SHARE = 0.5  # "Song (Live)" rather than "Song - Live at <Place>"
REMASTER_YEAR_SHARE = 0.6  # "Song - <year> Remaster" rather than "Song (Remastered)"
ACOUSTIC_JITTER_SCALE = 0.5  # the acoustic vector lies in [-1, 1]: half a unit per unit of jitter
_EDITS = ("Radio Edit", "Acoustic", "Single Version", "Demo", "Extended Mix")
_COVER = list(VERSION_KINDS).index("cover")
COVER_REDRAWS = 8  # a cover's original must be by another artist of its genre
# value ranges a jittered attribute stays in (the catalogue's own ranges)
_BOUNDS = {name: (lo, hi) for name, lo, hi, _ in ATTRIBUTES} | {
    "tempo": (TEMPO[3], TEMPO[4]), "loudness": (LOUDNESS[3], LOUDNESS[4]),
    "duration": (DURATION[3], DURATION[4]), "dyn_range_mean": (DYN_RANGE[0], np.inf),
}
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


def _restricted_sampler(group: np.ndarray, pool: np.ndarray, weight: np.ndarray, n_groups: int):
    """A popularity sampler over the ``pool`` tracks of each group; groups without any are absent."""
    present = np.zeros(n_groups, dtype=bool)
    present[group[pool]] = True
    compact = np.cumsum(present) - 1
    sampler = SegmentSampler(compact[group[pool]], pool, weight[pool], int(present.sum()))
    return sampler, present, compact


def _pick_originals(cfg: WorldConfig, cat: Catalogue, rng, versions: np.ndarray, kinds: np.ndarray) -> np.ndarray:
    """An original per version (∝ popularity, never itself a version; -1 where none exists):
    same-artist kinds from the version's artist (a one-track artist covers someone instead),
    covers from the version's genre by another artist (a few redraws, then none)."""
    pool = np.setdiff1d(np.arange(cfg.n_tracks), versions)
    orig = np.full(versions.size, -1, dtype=np.int64)
    by_artist, has_artist, a_idx = _restricted_sampler(cat.track_artist, pool, cat.pop_weight, cfg.n_artists)
    same = kinds != _COVER
    art = cat.track_artist[versions]
    ok = same & has_artist[art]
    orig[ok] = by_artist.sample(rng, a_idx[art[ok]])
    kinds[same & ~ok] = _COVER
    by_genre, has_genre, g_idx = _restricted_sampler(cat.track_genre, pool, cat.pop_weight, cfg.n_genres)
    gen = cat.track_genre[versions]
    for _ in range(COVER_REDRAWS):
        todo = np.flatnonzero((kinds == _COVER) & (orig < 0) & has_genre[gen])
        if todo.size == 0:
            break
        pick = by_genre.sample(rng, g_idx[gen[todo]])
        good = cat.track_artist[pick] != art[todo]
        orig[todo[good]] = pick[good]
    return orig


def _near_duplicates(cfg: WorldConfig, cat: Catalogue, rng: np.random.Generator) -> None:
    n_dup = int(round(cfg.near_duplicate_share * cfg.n_tracks))
    if n_dup == 0:
        return
    names = list(VERSION_KINDS)
    p = np.array([VERSION_KINDS[k][0] for k in names])
    versions = rng.permutation(cfg.n_tracks)[:n_dup]
    kinds = rng.choice(len(names), size=n_dup, p=p / p.sum())
    orig = _pick_originals(cfg, cat, rng, versions, kinds)
    keep = orig >= 0
    d, o, kinds = versions[keep], orig[keep], kinds[keep]
    cat.original[d] = o
    for i, k in zip(d.tolist(), kinds.tolist()):
        cat.version_kind[i] = names[k]
    lat_jit = np.array([VERSION_KINDS[k][1] for k in names])[kinds]
    feat_jit = np.array([VERSION_KINDS[k][2] for k in names])[kinds]
    _copy_content(cfg, cat, rng, d, o, lat_jit, feat_jit)
    _version_titles(cat, rng, d, o, [names[k] for k in kinds.tolist()])


def _copy_content(cfg: WorldConfig, cat: Catalogue, rng, d, o, lat_jit, feat_jit) -> None:
    """Versions get their original's latent vector and content plus a small per-kind jitter."""
    sd = 1.0 / np.sqrt(cfg.latent_dim)
    n = d.size
    cat.latent[d] = cat.latent[o] + (lat_jit * sd)[:, None] * rng.standard_normal((n, cfg.latent_dim))
    noise = rng.standard_normal((n, ACOUSTIC_DIM))
    cat.acoustic[d] = np.clip(cat.acoustic[o] + (ACOUSTIC_JITTER_SCALE * feat_jit)[:, None] * noise, -1.0, 1.0)
    f = cat.features
    for name, col in f.items():
        if name in ("us_popularity_estimate", "release_year"):
            continue
        if name in ("key", "mode_major", "time_signature"):
            col[d] = col[o]
            continue
        lo, hi = _BOUNDS.get(name, (-np.inf, np.inf))
        col[d] = np.clip(col[o] + feat_jit * float(col.std()) * rng.standard_normal(n), lo, hi)


def _version_titles(cat: Catalogue, rng, d: np.ndarray, o: np.ndarray, kinds: list[str]) -> None:
    """Titles (and years) as the table in the module docstring says."""
    f, hi = cat.features, YEAR[3]
    u = rng.random(d.size)
    offset = rng.integers(0, 1000, d.size)  # one draw per version, mapped per kind below
    for i, j, kind, ui, off in zip(d.tolist(), o.tolist(), kinds, u.tolist(), offset.tolist()):
        title, year_o = cat.titles[j], int(f["release_year"][j])
        if kind == "live":
            (l0, l1), (s0, s1) = LIVE_LIVENESS, LIVE_LENGTHEN
            f["liveness"][i] = l0 + (l1 - l0) * ui
            f["duration"][i] = min(DURATION[4], f["duration"][j] * (s0 + (s1 - s0) * ui))
            f["release_year"][i] = min(hi, year_o + off % LIVE_YEARS_AFTER)
            live = f"{title} (Live)" if ui < LIVE_PAREN_SHARE else f"{title} - Live at {PLACE[off % len(PLACE)]}"
            cat.titles[i] = live
        elif kind == "remaster":
            a, b = REMASTER_YEARS_AFTER
            year = min(hi, year_o + a + off % (b - a))
            f["release_year"][i] = year
            cat.titles[i] = f"{title} - {year} Remaster" if ui < REMASTER_YEAR_SHARE else f"{title} (Remastered)"
        elif kind == "edit":
            f["release_year"][i] = year_o
            cat.titles[i] = f"{title} ({_EDITS[off % len(_EDITS)]})"
        elif kind == "cover":
            cat.titles[i] = title
        else:  # soundalike: own title, a year near the original's
            f["release_year"][i] = min(hi, year_o + off % SOUNDALIKE_YEARS_AFTER)


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
