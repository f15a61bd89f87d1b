"""The terms chosen on validation, on top of the model's own feedback score: how they add up
(``combine``) and how their weights are chosen (``choose_weights``).

    score + w · (z + ρ · z_recent) (``track_prior``) + a₊ · cos₊ − a₋ · cos₋ + b · û·β (``content_affinity``)
          + r_t · m_track + r_a · m_artist (``listener_memory``)

Training never sees them; ``track_prior.validation_weight`` scores the validation period with all
weights 0 and asks ``choose_weights`` for the weights, ``track_prior.apply_chosen`` sets them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .content_affinity import AFFINITY_WEIGHTS, TASTE_WEIGHTS
from .listener_memory import MEMORY_WEIGHTS

# ρ of w · (z + ρ · z_recent): how much the trailing window's deviation from the whole-period rate counts
RECENT_SHARES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


def combine(scores: np.ndarray, z: np.ndarray | None, sims: np.ndarray | None, w: float,
            a: Sequence[float], mem: np.ndarray | None = None, r: Sequence[float] = (0.0, 0.0),
            taste: np.ndarray | None = None, b: float = 0.0) -> np.ndarray:
    """scores + w · z + a₊ · sims[:, 0] − a₋ · sims[:, 1] + r_t · mem[:, 0] + r_a · mem[:, 1] (the
    listener memory, ``listener_memory``) + b · taste (the personal taste); a term that is None adds nothing."""
    out = np.asarray(scores, dtype=np.float64).copy()
    if z is not None:
        out += w * np.asarray(z, dtype=np.float64)
    if sims is not None:
        out += a[0] * sims[:, 0] - a[1] * sims[:, 1]
    if mem is not None:
        out += r[0] * mem[:, 0] + r[1] * mem[:, 1]
    if taste is not None:
        out += b * np.asarray(taste, dtype=np.float64)
    return out


def choose_weights(strata, labels, scores, *, z: np.ndarray | None, sims: np.ndarray | None,
                   prior_weights: Sequence[float], mem: np.ndarray | None = None, taste: np.ndarray | None = None,
                   z_recent: np.ndarray | None = None, rounds: int = 2) -> dict:
    """{"weight": w, "recent": ρ, "affinity": [a₊, a₋], "memory": [r_t, r_a], "taste": b, "auc": with them,
    "auc_without": all 0} maximising the stratified AUC of ``combine`` on these (validation) events:
    ``rounds`` of coordinate ascent, w over ``prior_weights`` (with ``z_recent``, the trailing
    window's deviation from z (``track_prior.recent_logits``), (w, ρ) of w · (z + ρ · z_recent)
    together over ``prior_weights`` × ``RECENT_SHARES``: ρ = 1 is the window's own rate, and where
    the whole-period rate alone ranks badly w must move with ρ), then (a₊, a₋) together over
    ``AFFINITY_WEIGHTS``², then (r_t, r_a) together over ``listener_memory.MEMORY_WEIGHTS``², each
    step keeping the smallest weights on ties (a term that does not help stays 0; a₊ and a₋ one at
    a time: `id` validation AUC 0.6950 instead of 0.6963), then b over ``TASTE_WEIGHTS`` in each round. With the personal taste a second
    search runs too and the better of the two is kept: the same rounds without the taste, then it
    joins at that optimum (one more round: b, w, (a₊, a₋); every step only improves), so adding the
    taste never ends below the search without it on these events. Greedy paths from 0 differ:
    on the sparse per-user world the joint search ended 0.0009 below the search without the taste,
    on the demo the staged one ended 0.0007 below the joint one (`64|id`).
    The recent share likewise: the whole search runs with ρ = 0 first, then again with the (w, ρ)
    grid from 0 and as one more round from the first result; a result with ρ replaces the first
    only where its validation AUC is higher (on the metadata-only world the joint path alone ended
    0.0009 below the search without ρ, `64|id`).
    Each point's AUC is computed once (the steps and searches revisit points), by
    ``evaluation.stratified_auc_of``: the whole search took 0.3–0.9 s on the demo's validation
    period (`id` at h=32/64/128, 25,707 events; 5.1 s with a fresh ``stratified_auc`` per point)
    before the recent share; with it, 2,782 points at ~1.6 ms each, 5.1 s (`32|v1-k1024`,
    2026-12-05; the demo's cells spend 1.5–8.6 s each choosing weights, validation scoring included).
    ``z`` / ``sims`` / ``mem`` / ``taste`` / ``z_recent`` None: that term is off."""
    from .evaluation import stratified_auc_of

    of = stratified_auc_of(strata, labels)  # the strata factorised once, not per candidate
    seen: dict[tuple, float] = {}  # the searches revisit points (each step's current weights, the second search's first round)

    def auc(*, w: tuple[float, float], a: Sequence[float], r: Sequence[float], b: float) -> float:
        key = (tuple(w), tuple(a), tuple(r), b)  # w = (w, ρ)
        if key not in seen:
            zz = z if not w[1] else z + w[1] * z_recent
            seen[key] = of(combine(scores, zz, sims, w[0], a, mem, r, taste, b))
        return seen[key]

    def smallest(pair):  # ties: the smallest sum, then the smaller first weight
        return -sum(pair), -pair[0]

    grids = {}  # term → (candidates, tie-break); the current weights are always among the candidates
    with_recent = None  # the prior's (w, ρ) candidates with the recent share; ρ = 0 only until then
    if z is not None:
        grids["w"] = ([(w, 0.0) for w in prior_weights], lambda c: (-c[0], -c[1]))
        if z_recent is not None:
            z_recent = np.asarray(z_recent, dtype=np.float64)
            with_recent = ([(w, rho) for w in prior_weights for rho in RECENT_SHARES], lambda c: (-c[0], -c[1]))
    if sims is not None:
        grids["a"] = ([(ap, an) for ap in AFFINITY_WEIGHTS for an in AFFINITY_WEIGHTS], smallest)
    if mem is not None:
        ra = MEMORY_WEIGHTS if mem[:, 1].any() else (0.0,)
        grids["r"] = ([(rt, x) for rt in MEMORY_WEIGHTS for x in ra], smallest)
    if taste is not None:
        grids["b"] = (TASTE_WEIGHTS, lambda c: (-c,))
    zero = {"w": (0.0, 0.0), "a": (0.0, 0.0), "r": (0.0, 0.0), "b": 0.0}
    without = auc(**zero)

    def ascend(cur: dict, best: float, terms: list[str], n: int) -> tuple[dict, float]:
        """n rounds from ``cur``; each step: the best AUC, the smallest weights on ties."""
        for _ in range(n):
            for t in terms:
                cands, tie = grids[t]
                best, cur[t] = max(((auc(**(cur | {t: c})), c) for c in cands), key=lambda p: (p[0], *tie(p[1])))
        return cur, best

    terms = [t for t in ("w", "a", "r", "b") if t in grids]

    def search() -> tuple[dict, float]:
        cur, best = ascend(dict(zero), without, terms, rounds)
        if "b" in grids:  # also: the taste joins at the optimum without it; the better search is kept
            alt, alt_best = ascend(dict(zero), without, terms[:-1], rounds)
            alt, alt_best = ascend(alt, alt_best, ["b", *(t for t in ("w", "a") if t in grids)], 1)
            if alt_best > best:
                cur, best = alt, alt_best
        return cur, best

    cur, best = search()
    if with_recent is not None:  # the recent share: searched jointly from 0, and joining at the optimum
        grids["w"] = with_recent  # without it (one more round); kept only where validation rises
        for alt, alt_best in (search(), ascend(dict(cur), best, terms, 1)):
            if alt_best > best:
                cur, best = alt, alt_best
    (w, rho), a, r, b = cur["w"], cur["a"], cur["r"], cur["b"]
    return {"weight": float(w), "recent": float(rho) if w else 0.0, "affinity": [float(a[0]), float(a[1])], "memory": [float(r[0]), float(r[1])],
            "taste": float(b), "auc": best, "auc_without": without}
