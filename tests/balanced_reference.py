"""The balanced assignment written plainly (a loop per level over whole 8192-row blocks, a dict of
loads, one Python pass per track and round), kept as the reference that tests/test_balanced.py
compares the vectorized ``semid_pipeline.balanced`` with. Same arithmetic: the argmin of
``addmm(‖c‖², r, cᵀ, α=−2)`` per block; rounds rank by ``that + ‖r‖²`` (round 1) and by the
clamped ``addmm + ‖r‖²`` matrix (later rounds, full codes excluded)."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import torch

BLOCK = 8192


def _blocks(r: torch.Tensor, book: torch.Tensor) -> torch.Tensor:
    c_sq = (book * book).sum(1)
    return torch.cat([torch.addmm(c_sq.unsqueeze(0), r[s : s + BLOCK], book.t(), beta=1.0, alpha=-2.0)
                      for s in range(0, r.shape[0], BLOCK)])


def _sq(r: torch.Tensor) -> torch.Tensor:
    return torch.cat([(r[s : s + BLOCK] * r[s : s + BLOCK]).sum(1) for s in range(0, r.shape[0], BLOCK)])


def reference_codes(z: torch.Tensor, books: torch.Tensor, existing_codes: np.ndarray | None = None) -> np.ndarray:
    z, books = torch.as_tensor(z, dtype=torch.float32), torch.as_tensor(books, dtype=torch.float32)
    n, L, K = z.shape[0], books.shape[0], books.shape[1]
    codes = np.zeros((n, L), np.int64)
    r = z.clone()
    for level in range(L - 1):
        codes[:, level] = _blocks(r, books[level]).argmin(1).numpy()
        r = r - books[level][torch.from_numpy(codes[:, level])]
    raw = _blocks(r, books[-1])  # (N, K)
    sq = _sq(r)
    near = raw.argmin(1).numpy()
    near_d = (raw[torch.arange(n), torch.from_numpy(near)] + sq).numpy()
    prefix = [tuple(int(v) for v in row[:-1]) for row in codes]
    ex = [] if existing_codes is None else [tuple(int(v) for v in row) for row in np.asarray(existing_codes)]
    size = Counter(prefix) + Counter(row[:-1] for row in ex)
    cap = {p: max(1, -(-size[p] // K)) for p in size}
    load = Counter((row[:-1], row[-1]) for row in ex)
    out = np.full(n, -1, np.int64)
    active = list(range(n))
    first, later = True, {}
    while active:
        if not first and not later:  # after round 1: distance rows of the displaced tracks, in their own blocks
            left = r[torch.tensor(active)]
            sub = (_blocks(left, books[-1]) + _sq(left)[:, None]).clamp_min(0.0).numpy()
            later = {i: sub[j] for j, i in enumerate(active)}
        proposals = defaultdict(list)
        for i in active:
            if first:
                code, dist = int(near[i]), float(near_d[i])
            else:
                row = later[i].copy()
                row[[c for c in range(K) if load[(prefix[i], c)] >= cap[prefix[i]]]] = np.inf
                code = int(row.argmin())
                dist = float(row[code])
            proposals[(prefix[i], code)].append((dist, i))
        for key, props in proposals.items():
            room = cap[key[0]] - load[key]
            for dist, i in sorted(props)[: max(room, 0)]:
                out[i] = key[1]
                load[key] += 1
        active = [i for i in active if out[i] < 0]
        first = False
    codes[:, -1] = out
    return codes
