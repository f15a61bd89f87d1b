"""A metadata-only catalogue for benchmarks: artist, genre, album, title — no audio columns.

Why: the default synthetic world has clean audio features and hides the collapse real
catalogues show (issue 11). This generator is built from word lists only (no personal data) and
plants what real catalogues have: many artists with a handful of albums, titles drawn from a
small vocabulary (so distinct songs share words), covers (same title, another artist) and
versions ("X (Live)", "X - Remaster", "X (Acoustic)", "X - Radio Edit") of the same song.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

WORDS = (
    "love night heart fire dream blue summer rain dance light river home moon city gold wild sky road "
    "time girl boy baby world star sun ocean shadow angel devil glory storm winter spring autumn black "
    "white red green silver electric velvet golden broken lonely crazy sweet bitter last first lost "
    "found tonight forever never again away back down up high low slow fast young old new real free "
    "paradise heaven highway midnight morning evening memory story secret promise letter window door "
    "train car bridge mountain valley desert island garden fever magic mirror echo whisper thunder"
).split()
GENRES = ("rock", "pop", "jazz", "hip hop", "folk", "electronic", "country", "soul", "metal", "blues",
          "reggae", "classical", "punk", "indie", "r&b", "latin", "house", "techno", "ambient", "gospel")
VERSIONS = ((" (Live)", 0.12), (" - Remaster", 0.08), (" (Acoustic)", 0.04), (" - Radio Edit", 0.03))


def _phrase(rng: np.random.Generator, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS, size=int(rng.integers(lo, hi + 1)))).title()


def metadata_catalog(n: int, *, seed: int = 0) -> pd.DataFrame:
    """``n`` tracks: track_id, artist_id (a name), genre_id, album, title, release_year."""
    rng = np.random.default_rng(seed)
    n_artists = max(1, n // 12)
    artists = [("The " if rng.random() < 0.3 else "") + _phrase(rng, 1, 2) for _ in range(n_artists)]
    artist_genre = rng.integers(0, len(GENRES), n_artists)
    rows, songs = [], []
    while len(rows) < n:
        a = int(rng.integers(0, n_artists))
        album = _phrase(rng, 1, 3)
        year = int(rng.integers(1960, 2025))
        for _ in range(int(rng.integers(4, 13))):
            r = rng.random()
            if songs and r < 0.05:  # a cover: someone else's title
                title = songs[int(rng.integers(0, len(songs)))]
            else:
                title = _phrase(rng, 1, 4)
                songs.append(title)
            rows.append((artists[a], GENRES[artist_genre[a]], album, title, year))
            for suffix, p in VERSIONS:  # versions of the same song on the same artist
                if rng.random() < p:
                    rows.append((artists[a], GENRES[artist_genre[a]], album, title + suffix, year + int(rng.integers(0, 20))))
    rows = rows[:n]
    df = pd.DataFrame(rows, columns=["artist_id", "genre_id", "album", "title", "release_year"])
    df.insert(0, "track_id", [f"mt{i:07d}" for i in range(n)])
    return df
