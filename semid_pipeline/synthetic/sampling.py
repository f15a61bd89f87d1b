"""Random streams and vectorised samplers shared by the world's parts.

Each purpose draws from its own stream (``rng_for(cfg, stream)``): 0 the world, 1 the users
format, 2 the sessions format, 3 the hard-catalogue extras (near duplicates, titles, albums).
Separate streams are why writing one format alone gives the same files as writing both, and
why the extras leave the default world untouched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .config import WorldConfig

STREAM_WORLD, STREAM_USERS, STREAM_SESSIONS, STREAM_EXTRAS = 0, 1, 2, 3


def rng_for(cfg: "WorldConfig", stream: int) -> np.random.Generator:
    """Independent stream per purpose (see the STREAM_* constants)."""
    return np.random.default_rng([int(cfg.seed) & 0xFFFFFFFF, (int(cfg.seed) >> 32) & 0xFFFFFFFF, stream])


def hex_ids(rng: np.random.Generator, n: int, nbytes: int) -> list[str]:
    h = rng.bytes(n * nbytes).hex()
    w = 2 * nbytes
    return [h[i * w:(i + 1) * w] for i in range(n)]


def uuids(rng: np.random.Generator, n: int) -> list[str]:
    return [f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}" for h in hex_ids(rng, n, 16)]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class SegmentSampler:
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
