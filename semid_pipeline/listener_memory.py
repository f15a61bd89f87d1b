"""Listener memory (``[train] listener_memory``): what this listener already said about this very
track, and about its artist, as a term of the feedback score.

A sequence model reads the history into one state and scores a candidate by a dot product with
it: it cannot look the candidate up in the history. On listening data people meet the same tracks
and artists again and again, and who skipped a track once tends to skip it again; the boosted-trees
baseline reads exactly that (its repeat features), and on a world where listeners keep their own
opinion of a track it beat every model by 0.027 (README, "Listener memory"). With the switch the
feedback score becomes

    score + w · z  (``track_prior``)  + a · cos  (``content_affinity``)  + r_t · m_track + r_a · m_artist

    m_track  = (likes − dislikes) / (plays + 1) of this track in the stratum's input, 0 if never met
    m_artist = the same over the input's plays of the track's artist

The input is the whole one the evaluation holds (a listener's last ≤ 400 events, the first half of
a session), not only the model's last ``max_len``: a repeat 300 plays back still says something.
(r_t, r_a) are buffers of the model (never trained) chosen on the VALIDATION period together with
w and a (``score_terms.choose_weights``: the smallest weights on ties, so 0 where the term does not help). The
track part stores nothing; the artist part stores the track → artist map (``memory_artist``, one
number per track, counted by ``track_prior.stored_numbers`` where r_a > 0) and exists only where
the scheme reads metadata: never for ``v0`` without song decomposition (the control).
Like the prior it scores feedback on a play; top-k lists and serving exclude what was heard.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

# the validation grid of r_t and r_a (m lies in (−1, 1); the model's scores span a few units)
MEMORY_WEIGHTS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)


def history_matches(inputs: Sequence[tuple[np.ndarray, np.ndarray]], rows: np.ndarray, keys: np.ndarray,
                    key_of: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(plays (E,), likes (E,)) float64: for each evaluated event e, how often its stratum's input
    ``inputs[rows[e]]`` = (tracks, feedback) holds a track with the same key as ``keys[e]``, and how
    many of those were liked. Keys are track indices, or ``key_of[track]`` (e.g. its artist; key 0 =
    unknown never matches) when ``key_of`` is given."""
    rows, keys = np.asarray(rows, dtype=np.int64), np.asarray(keys, dtype=np.int64)
    plays, likes = np.zeros(len(rows)), np.zeros(len(rows))
    lens = np.array([len(x) for x, _ in inputs], dtype=np.int64)
    if not len(rows) or not lens.sum():
        return plays, likes
    ht = np.concatenate([np.asarray(x, dtype=np.int64) for x, _ in inputs])
    hist = pd.DataFrame({"row": np.repeat(np.arange(len(inputs)), lens),
                         "k": ht if key_of is None else np.asarray(key_of)[ht],
                         "f": np.concatenate([np.asarray(f, dtype=np.float64) for _, f in inputs])})
    if key_of is not None:
        hist = hist[hist["k"] > 0]
    g = hist.groupby(["row", "k"], sort=False)["f"].agg(["count", "sum"]).reset_index()
    m = pd.DataFrame({"row": rows, "k": keys, "i": np.arange(len(rows))}).merge(g, on=["row", "k"], how="inner")
    plays[m["i"].to_numpy()], likes[m["i"].to_numpy()] = m["count"].to_numpy(float), m["sum"].to_numpy(float)
    return plays, likes


def evidence(inputs: Sequence[tuple[np.ndarray, np.ndarray]], rows: np.ndarray, tracks: np.ndarray,
             artist: np.ndarray | None) -> np.ndarray:
    """(E, 2) float64: m_track, m_artist = (likes − dislikes) / (plays + 1) of each evaluated event's
    track / artist in its stratum's input; the artist column is 0 without an artist map."""
    tracks = np.asarray(tracks, dtype=np.int64)
    out = np.zeros((len(tracks), 2))
    n, s = history_matches(inputs, rows, tracks)
    out[:, 0] = (2 * s - n) / (n + 1.0)
    if artist is not None and np.asarray(artist).any():
        artist = np.asarray(artist, dtype=np.int64)
        n, s = history_matches(inputs, rows, artist[tracks], key_of=artist)
        out[:, 1] = (2 * s - n) / (n + 1.0)
    return out


def artist_map(scheme, cfg, track_artist: np.ndarray | None) -> np.ndarray | None:
    """The (N+1,) track → artist map the artist part reads for an ``IdScheme`` under a
    ``TrainConfig``, or None: without artists in the data, and for random codes without song
    decomposition (``v0``, the control, reads no metadata)."""
    if track_artist is None or (scheme.random_codes and not (cfg.song_decomposition or scheme.decomposition)):
        return None
    return np.asarray(track_artist, dtype=np.int64)
