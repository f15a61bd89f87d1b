"""The tracks tables of both formats, per content mode.

``audio`` (default): keys, release year, title, Spotify-style numeric attributes, ``popularity``
and the acoustic ``embedding``. ``metadata``: track_id, artist_id, artist, genre_id, genre, album,
title; no numeric column at all. ``genreflags``: track_id, title, release_year and one 0/1 column
``genre_<name>`` per coarse genre name (a track has exactly one flag). MSSD ``tf_0.csv`` always
carries the full MSSD schema.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..schema import MSSD_TRACK_COLUMNS
from .catalogue import ACOUSTIC_DIM, GENRE_NAMES, USERS_ATTRIBUTE_COLUMNS
from .world import World


def _audio(world: World) -> pa.Table:
    cat, f = world.cat, world.cat.features
    cols: dict[str, pa.Array] = {
        "track_id": pa.array(cat.track_ids, pa.string()),
        "artist_id": pa.array(cat.artist_ids, pa.string()).take(pa.array(cat.track_artist)),
        "genre_id": pa.array(cat.genre_ids, pa.string()).take(pa.array(cat.track_genre)),
        "release_year": pa.array(f["release_year"], pa.int32()),
        "title": pa.array(cat.titles, pa.string()),
    }
    for name in USERS_ATTRIBUTE_COLUMNS:
        if name == "mode":
            cols[name] = pa.array(f["mode_major"].astype(np.int8), pa.int8())
        elif name in ("key", "time_signature"):
            cols[name] = pa.array(f[name], pa.int32())
        else:
            cols[name] = pa.array(np.round(f[name], 6), pa.float64())
    cols["popularity"] = pa.array(np.round(cat.pop_percentile, 4), pa.float64())
    emb = np.round(cat.acoustic, 6).astype(np.float32)
    cols["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel(), pa.float32()), ACOUSTIC_DIM).cast(
        pa.list_(pa.float32())
    )
    return pa.table(cols)


def genre_name(genre_index: int) -> str:
    return GENRE_NAMES[genre_index % len(GENRE_NAMES)]


def _metadata(world: World) -> pa.Table:
    cat = world.cat
    artist = pa.array(cat.track_artist)
    genre = pa.array(cat.track_genre)
    return pa.table(
        {
            "track_id": pa.array(cat.track_ids, pa.string()),
            "artist_id": pa.array(cat.artist_ids, pa.string()).take(artist),
            "artist": pa.array(cat.artist_names, pa.string()).take(artist),
            "genre_id": pa.array(cat.genre_ids, pa.string()).take(genre),
            "genre": pa.array([genre_name(g) for g in range(len(cat.genre_ids))], pa.string()).take(genre),
            "album": pa.array(cat.albums, pa.string()),
            "title": pa.array(cat.titles, pa.string()),
        }
    )


def _genreflags(world: World) -> pa.Table:
    cat = world.cat
    coarse = np.array([GENRE_NAMES.index(genre_name(g)) for g in range(len(cat.genre_ids))])[cat.track_genre]
    cols: dict[str, pa.Array] = {
        "track_id": pa.array(cat.track_ids, pa.string()),
        "title": pa.array(cat.titles, pa.string()),
        "release_year": pa.array(cat.features["release_year"], pa.int32()),
    }
    for j in sorted(set(coarse.tolist())):
        cols[f"genre_{GENRE_NAMES[j]}"] = pa.array((coarse == j).astype(np.int8), pa.int8())
    return pa.table(cols)


def users_tracks_table(world: World) -> pa.Table:
    return {"audio": _audio, "metadata": _metadata, "genreflags": _genreflags}[world.cfg.content](world)


def mssd_tracks_table(world: World) -> pa.Table:
    cat, f = world.cat, world.cat.features
    tf_cols: dict[str, pa.Array] = {}
    for name in MSSD_TRACK_COLUMNS:
        if name == "track_id":
            tf_cols[name] = pa.array(cat.track_ids, pa.string())
        elif name == "mode":
            tf_cols[name] = pa.array(np.where(f["mode_major"], "major", "minor").tolist(), pa.string())
        elif name in ("key", "time_signature", "release_year"):
            tf_cols[name] = pa.array(f[name], pa.int32())
        elif name.startswith("acoustic_vector_"):
            tf_cols[name] = pa.array(np.round(cat.acoustic[:, int(name.rsplit("_", 1)[1])], 6), pa.float64())
        else:
            tf_cols[name] = pa.array(np.round(f[name], 6), pa.float64())
    return pa.table(tf_cols)
