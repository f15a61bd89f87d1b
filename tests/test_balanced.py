"""The vectorized balanced assignment (``semid_pipeline.balanced``) gives exactly the codes of the
plain reference (tests/balanced_reference.py): random data, exact ties, near-ties, a single
level, inputs spanning several 8192-row blocks and their pieces, and cold start with existing IDs
(including over-full codes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from balanced_reference import reference_codes
from semid_pipeline import balanced


def _data(seed: int, n: int, levels: int, k: int, dim: int):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g) * 2, torch.randn(levels, k, dim, generator=g)


def _ties(seed: int, n: int, levels: int, k: int, dim: int):  # values on a 0.5 grid: many exact ties
    z, books = _data(seed, n, levels, k, dim)
    return torch.round(z * 2) / 2, torch.round(books * 2) / 2


def _near_ties(seed: int, n: int, levels: int, k: int, dim: int):  # copies a float32 ulp or so apart
    z, books = _data(seed, n // 10, levels, k, dim)
    jitter = torch.randn(n // 10 * 10, dim, generator=torch.Generator().manual_seed(seed + 1)) * 1e-7
    return z.repeat_interleave(10, 0) + jitter, books


CASES = {  # name: (maker, n, levels, k, dim)
    "random": (_data, 3000, 3, 8, 4),
    "ties": (_ties, 2000, 3, 4, 3),
    "near_ties": (_near_ties, 2000, 2, 16, 6),
    "one_level": (_data, 500, 1, 16, 3),
    "blocks_and_pieces": (_data, 8192 + 3000, 2, 32, 5),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_balanced_codes_match_the_reference(case, one_torch_thread):
    make, n, levels, k, dim = CASES[case]
    z, books = make(0, n, levels, k, dim)
    got = balanced.balanced_codes(z, books)
    np.testing.assert_array_equal(got, reference_codes(z, books))
    np.testing.assert_array_equal(got, balanced.balanced_codes(z.clone(), books.clone()))  # deterministic
    assert got.dtype == np.int64 and got.min() >= 0 and got.max() < k


@pytest.mark.parametrize("case", ["random", "ties", "near_ties"])
def test_cold_start_matches_the_reference(case, one_torch_thread):
    make, n, levels, k, dim = CASES[case]
    z, books = make(1, n, levels, k, dim)
    existing = reference_codes(make(2, n, levels, k, dim)[0], books)
    existing = np.concatenate([existing, existing[:50]])  # some codes already over capacity
    new = z[: n // 3]
    got = balanced.balanced_codes(new, books, existing_codes=existing)
    np.testing.assert_array_equal(got, reference_codes(new, books, existing))
    both = np.concatenate([existing, got])  # new tracks go to codes with room: per prefix, ≤ cap or as before
    _, gid, size = np.unique(both[:, :-1], axis=0, return_inverse=True, return_counts=True)
    cap = np.maximum(1, -(-size // k))[gid.reshape(-1)]
    key, inv, per_code = np.unique(both, axis=0, return_inverse=True, return_counts=True)
    old_per_code = np.array([(existing == row).all(1).sum() for row in key])
    assert (per_code[inv.reshape(-1)] <= np.maximum(cap, old_per_code[inv.reshape(-1)])).all()


def test_row_pieces_keep_short_blocks_whole():
    pieces = list(balanced.row_pieces(2 * 8192 + 2100))
    assert pieces[0] == (0, 1024) and pieces[-1] == (2 * 8192 + 1024, 2 * 8192 + 2100)
    assert all(b - a >= 1024 for a, b in pieces)
    assert list(balanced.row_pieces(8192 + 5))[-1] == (8192, 8197)  # a short block stays one matmul
    assert [b for _, b in pieces] == sorted({b for _, b in pieces}) and pieces[-1][1] == 2 * 8192 + 2100
