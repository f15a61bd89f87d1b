"""Torch k-means for the tokenizers: nearest-code search in blocks, k-means++ seeding, Lloyd
iterations, residual k-means over L levels and greedy residual assignment.

Shared by the RQ-VAE (codebook initialisation, refinement) and the ``rqkmeans`` scheme; seeded,
so the same data and seed give the same centroids.
"""

from __future__ import annotations

import numpy as np
import torch

ENCODE_BATCH = 32768  # rows per block when assigning codes (keeps (B, K) distance blocks in cache-ish memory)


def as_tensor(X: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(np.ascontiguousarray(X) if isinstance(X, np.ndarray) else X, dtype=torch.float32)
    if t.ndim != 2:
        raise ValueError(f"expected a 2-d array (N, D), got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError("input contains NaN or infinite values: impute/standardize features first")
    return t


def nearest_code(x: torch.Tensor, c: torch.Tensor, c_sq: torch.Tensor | None = None) -> torch.Tensor:
    """Index of the nearest codeword for each row: argmin ‖x‖² − 2x·c + ‖c‖² (‖x‖² is constant per row)."""
    # x (B, D), c (K, D) -> (B,)
    if c_sq is None:
        c_sq = (c * c).sum(1)  # (K,)
    d = torch.addmm(c_sq.unsqueeze(0), x, c.t(), beta=1.0, alpha=-2.0)  # (B, K)
    return d.argmin(1)


def _min_sq_dists(x: torch.Tensor, c: torch.Tensor, block: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
    """(nearest index, squared distance to it) for every row, computed in blocks."""
    c_sq = (c * c).sum(1)  # (K,)
    idx, dist = [], []
    for s in range(0, x.shape[0], block):
        xb = x[s : s + block]  # (B, D)
        d = torch.addmm(c_sq.unsqueeze(0), xb, c.t(), beta=1.0, alpha=-2.0)  # (B, K)
        m, i = d.min(1)
        idx.append(i)
        dist.append((m + (xb * xb).sum(1)).clamp_min_(0.0))
    return torch.cat(idx), torch.cat(dist)


@torch.no_grad()
def kmeans_pp(x: torch.Tensor, k: int, g: torch.Generator, max_points: int = 64) -> torch.Tensor:
    """k-means++ seeding on a random subsample of at most ``max_points * k`` rows; returns (k, D)."""
    n = x.shape[0]
    if n > max_points * k:
        x = x[torch.randperm(n, generator=g)[: max_points * k]]
        n = x.shape[0]
    x_sq = (x * x).sum(1)  # (N,)
    c = torch.empty(k, x.shape[1])  # (k, D)
    c[0] = x[torch.randint(n, (1,), generator=g)]
    d2 = (x_sq - 2 * (x @ c[0]) + c[0].dot(c[0])).clamp_min_(0.0)  # (N,)
    for j in range(1, k):
        total = d2.sum()
        if total <= 0:  # every point already sits on a centroid
            pick = torch.randint(n, (1,), generator=g)
        else:
            pick = torch.multinomial(d2 / total, 1, generator=g)
        c[j] = x[pick]
        d2 = torch.minimum(d2, (x_sq - 2 * (x @ c[j]) + c[j].dot(c[j])).clamp_min_(0.0))
    return c


@torch.no_grad()
def kmeans(
    x: torch.Tensor | np.ndarray, k: int, iters: int = 20, seed: int = 0, *, init: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means with k-means++ seeding; returns (centroids (k, D), labels (N,)).

    Distances are matmul-based. Empty clusters are re-seeded with the points farthest from their
    centroid (deterministic). With fewer distinct points than k, duplicate centroids are allowed.
    ``init`` starts from given centroids instead of k-means++.
    """
    x = as_tensor(x)
    n, dim = x.shape  # (N, D)
    if n == 0:
        raise ValueError("k-means needs at least one point")
    g = torch.Generator().manual_seed(int(seed))
    if init is not None:
        c = init.detach().clone().float()  # (k, D)
    else:
        c = kmeans_pp(x, k, g)  # (k, D)
    labels = None
    for _ in range(iters):
        new_labels, dist = _min_sq_dists(x, c)
        if labels is not None and torch.equal(new_labels, labels):
            break
        labels = new_labels
        sums = torch.zeros(k, dim).index_add_(0, labels, x)  # (k, D)
        counts = torch.bincount(labels, minlength=k)  # (k,)
        empty = counts == 0
        c = torch.where(empty.unsqueeze(1), c, sums / counts.clamp_min(1).unsqueeze(1).float())
        n_empty = int(empty.sum())
        if n_empty and n > k:
            far = dist.topk(min(n_empty, n)).indices  # farthest points become the new centroids
            c[empty.nonzero().squeeze(1)[: far.numel()]] = x[far]
    labels, _ = _min_sq_dists(x, c)
    return c, labels


def residual_kmeans(
    x: torch.Tensor | np.ndarray, *, levels: int, k: int, iters: int = 20, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual k-means: level l clusters the residuals left by levels < l. Returns (codebooks (L, k, D), codes (N, L))."""
    r = as_tensor(x).clone()  # (N, D)
    books, codes = [], []
    for level in range(levels):
        c, lab = kmeans(r, k, iters, seed + 1009 * level)
        books.append(c)
        codes.append(lab)
        r -= c[lab]
    return torch.stack(books), torch.stack(codes, 1)


@torch.no_grad()
def residual_assign(x: torch.Tensor | np.ndarray, codebooks: torch.Tensor, batch_size: int = ENCODE_BATCH) -> torch.Tensor:
    """Greedy nearest-codeword assignment level by level; x (N, D), codebooks (L, K, D) -> codes (N, L)."""
    x = as_tensor(x)
    L = codebooks.shape[0]
    c_sq = (codebooks * codebooks).sum(-1)  # (L, K)
    out = torch.empty(x.shape[0], L, dtype=torch.long)
    for s in range(0, x.shape[0], batch_size):
        r = x[s : s + batch_size].clone()  # (B, D)
        for level in range(L):
            idx = nearest_code(r, codebooks[level], c_sq[level])  # (B,)
            out[s : s + batch_size, level] = idx
            r -= codebooks[level][idx]
    return out
