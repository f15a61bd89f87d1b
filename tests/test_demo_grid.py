"""``make demo``'s grid workers (the parallel run itself is exercised by test_browser's demo)."""

from __future__ import annotations


def test_demo_grid_workers_get_balanced_cell_lists():
    """``make demo`` trains the grid in parallel workers: every cell exactly once, in order within
    a worker, loads (Σ h) as even as the largest-first rule makes them."""
    from assets.demo import balanced_parts

    keys = [f"{h}|{s}" for h in (32, 64, 128) for s in ("id", "v0-k64", "v1-k64", "v1-k1024")]
    parts = balanced_parts(keys, 2)
    assert sorted(k for p in parts for k in p) == sorted(keys)
    assert all(p == sorted(p, key=keys.index) for p in parts)
    loads = [sum(int(k.split("|")[0]) for k in p) for p in parts]
    assert abs(loads[0] - loads[1]) <= 32, loads
    assert balanced_parts(keys[:1], 2) == [keys[:1]]
