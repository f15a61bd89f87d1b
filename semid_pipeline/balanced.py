"""Collision-aware semantic IDs: a capacity-constrained (balanced) LAST learned level.

Why: on weak content (metadata-only catalogues, genre flags) many tracks share a 3-level prefix
and then also their nearest last-level code, so the L-tuples collide and the non-learned ``tie``
counter grows into thousands of values that carry no meaning. Practitioners keep the learned
levels and make the last one *balanced*: each track takes the nearest last-level code that is
still free under its (c1..c_{L-1}) prefix. Levels 1..L-1 stay exactly the paper's greedy
residual assignment, so the coarse semantics are untouched; only the finest level, which mostly
separates near-identical items anyway, trades a little quantization error for distinct tuples.

The assignment works on a latent ``z`` (N, D) and residual codebooks (L, K, D), which covers both
``v1`` (z = RQ-VAE encoder output, the quantizer's codebooks) and ``rqkmeans`` (z = features).

Algorithm (deterministic, vectorized over all prefixes at once):
  * a prefix group g with ``n_g`` tracks (new + already placed) gets a per-code capacity
    ``cap_g = max(1, ceil(n_g / K))``: 1 while the group fits into the codebook (all distinct),
    an even spread otherwise (so the tie counter stays ≤ cap_g − 1);
  * codes already used by existing tracks (cold start) count against that capacity, so new
    tracks prefer free codes and existing IDs are never touched;
  * rounds: every unplaced track proposes its nearest code with room left in its group; each
    (group, code) keeps its closest proposers up to its room (ties: smaller row index, i.e.
    sorted track_id); the rest try again. Every round places ≥ 1 track, and total capacity
    covers every track, so it ends.
"""

from __future__ import annotations

import numpy as np
import torch

from .determinism import deterministic

DIST_BLOCK = 8192  # rows per distance block (bounded memory for (rows, K) matrices)


def greedy_prefix(z: torch.Tensor, books: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    """Levels 1..L-1 by plain greedy residual assignment: (prefix codes (N, L-1), last residual (N, D))."""
    r = z.clone()
    L = books.shape[0]
    prefix = torch.empty(z.shape[0], L - 1, dtype=torch.long)
    for level in range(L - 1):
        c = books[level]
        c_sq = (c * c).sum(1)
        idx = torch.cat([torch.addmm(c_sq.unsqueeze(0), r[s : s + DIST_BLOCK], c.t(), beta=1.0, alpha=-2.0).argmin(1)
                         for s in range(0, r.shape[0], DIST_BLOCK)]) if r.shape[0] else torch.zeros(0, dtype=torch.long)
        prefix[:, level] = idx
        r -= c[idx]
    return prefix.numpy(), r


def _sq_dists(r: torch.Tensor, book: torch.Tensor) -> np.ndarray:
    """(N, K) squared distances (float32), in blocks."""
    c_sq = (book * book).sum(1)
    out = np.empty((r.shape[0], book.shape[0]), dtype=np.float32)
    for s in range(0, r.shape[0], DIST_BLOCK):
        rb = r[s : s + DIST_BLOCK]
        d = torch.addmm(c_sq.unsqueeze(0), rb, book.t(), beta=1.0, alpha=-2.0) + (rb * rb).sum(1, keepdim=True)
        out[s : s + DIST_BLOCK] = d.clamp_min_(0.0).numpy()
    return out


class _Load:
    """Sparse per-(group, code) load: sorted keys + counts, looked up with searchsorted."""

    def __init__(self, keys: np.ndarray):
        self.keys, self.counts = np.unique(keys, return_counts=True) if len(keys) else (np.zeros(0, np.int64), np.zeros(0, np.int64))

    def get(self, keys: np.ndarray) -> np.ndarray:
        if not len(self.keys):
            return np.zeros(len(keys), np.int64)
        pos = np.clip(np.searchsorted(self.keys, keys), 0, len(self.keys) - 1)
        return np.where(self.keys[pos] == keys, self.counts[pos], 0)

    def add(self, keys: np.ndarray) -> None:
        if len(keys):
            allk = np.concatenate([self.keys, keys])
            allc = np.concatenate([self.counts, np.ones(len(keys), np.int64)])
            self.keys, inv = np.unique(allk, return_inverse=True)
            self.counts = np.bincount(inv.reshape(-1), weights=allc, minlength=len(self.keys)).astype(np.int64)


def _accept(rows: np.ndarray, keys: np.ndarray, dist: np.ndarray, room: np.ndarray) -> np.ndarray:
    """Boolean mask over proposals: per key, the ``room`` closest (then smallest row) win."""
    order = np.lexsort((rows, dist, keys))
    ks = keys[order]
    starts = np.r_[0, np.flatnonzero(np.diff(ks)) + 1] if len(ks) else np.zeros(0, np.int64)
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(ks)]))
    rank = np.arange(len(ks)) - run_start
    ok = np.zeros(len(ks), bool)
    ok[order] = rank < room[order]
    return ok


def balanced_last_level(
    prefix: np.ndarray, residual: torch.Tensor, book: torch.Tensor, *, existing_codes: np.ndarray | None = None
) -> np.ndarray:
    """Last-level codes (N,) under a per-prefix capacity (see the module docstring).

    ``prefix`` (N, L-1) and ``residual`` (N, D) are the new tracks' greedy prefix and residual;
    ``existing_codes`` (M, L) are IDs already given out (cold start), which occupy capacity.
    """
    n, K = prefix.shape[0], int(book.shape[0])
    if n == 0:
        return np.zeros(0, np.int64)
    ex = np.zeros((0, prefix.shape[1] + 1), np.int64) if existing_codes is None else np.asarray(existing_codes, np.int64)
    both = np.concatenate([prefix.astype(np.int64), ex[:, :-1]]) if prefix.shape[1] else np.zeros((n + len(ex), 0), np.int64)
    if both.shape[1]:
        _, gid = np.unique(both, axis=0, return_inverse=True)
        gid = gid.reshape(-1).astype(np.int64)
    else:
        gid = np.zeros(n + len(ex), np.int64)
    g_new, g_old = gid[:n], gid[n:]
    cap = np.maximum(1, -(-np.bincount(gid) // K))  # ceil(total / K) per group
    load = _Load(g_old * K + ex[:, -1])
    out = np.full(n, -1, np.int64)
    # round 1: everyone proposes the unconstrained nearest code (no (N, K) matrix needed)
    c_sq = (book * book).sum(1)
    near, near_d = [], []
    for s in range(0, n, DIST_BLOCK):
        rb = residual[s : s + DIST_BLOCK]
        d = torch.addmm(c_sq.unsqueeze(0), rb, book.t(), beta=1.0, alpha=-2.0)
        m, i = d.min(1)
        near.append(i.numpy())
        near_d.append((m + (rb * rb).sum(1)).numpy())
    near, near_d = np.concatenate(near), np.concatenate(near_d)
    rows = np.arange(n)
    keys = g_new * K + near
    ok = _accept(rows, keys, near_d, cap[g_new] - load.get(keys))
    out[ok] = near[ok]
    load.add(keys[ok])
    left = rows[~ok]
    if not len(left):
        return out
    # later rounds: full distance rows for the displaced tracks only, full codes masked out
    D = _sq_dists(residual[torch.from_numpy(left)], book)  # (n_left, K), rows stay; placed rows go inactive
    g_left = g_new[left]
    by_g = np.argsort(g_left, kind="stable")  # D rows grouped by prefix: a full key masks one column of a run
    g_sorted = g_left[by_g]
    codes = np.arange(K)
    full = (cap[g_left][:, None] - load.get((g_left[:, None] * K + codes[None, :]).reshape(-1)).reshape(len(left), K)) <= 0
    D[full] = np.inf
    active = np.ones(len(left), bool)
    while active.any():
        rows = np.flatnonzero(active)
        pick = D[rows].argmin(1)
        pick_d = D[rows, pick]
        keys = g_left[rows] * K + pick
        ok = _accept(left[rows], keys, pick_d, cap[g_left[rows]] - load.get(keys))
        out[left[rows[ok]]] = pick[ok]
        load.add(keys[ok])
        active[rows[ok]] = False
        filled = np.unique(keys[ok])
        filled = filled[load.get(filled) >= cap[filled // K]]  # keys that just ran out of room
        lo = np.searchsorted(g_sorted, filled // K, side="left")
        hi = np.searchsorted(g_sorted, filled // K, side="right")
        for a, b, c in zip(lo, hi, filled % K):
            D[by_g[a:b], c] = np.inf
    return out


def balanced_codes(z: np.ndarray | torch.Tensor, books: torch.Tensor, *, existing_codes: np.ndarray | None = None) -> np.ndarray:
    """All L codes (N, L): greedy levels 1..L-1, balanced last level (deterministic kernels)."""
    z = torch.as_tensor(np.ascontiguousarray(z) if isinstance(z, np.ndarray) else z, dtype=torch.float32)
    books = torch.as_tensor(books, dtype=torch.float32)
    with deterministic(), torch.no_grad():
        prefix, r = greedy_prefix(z, books)
        last = balanced_last_level(prefix, r, books[-1], existing_codes=existing_codes)
    return np.concatenate([prefix, last[:, None]], axis=1).astype(np.int64)
