"""Benchmark of the evaluation hot paths (prints figures; no assertions).

1. Stratified AUC + bootstrap CI (1000 resamples) for 100k strata of ~20 events each; and, side by
   side, what the weight search repeats per candidate: the (stratum, score) order by ``np.lexsort``
   against ``_group_score_order``, and ``stratified_auc`` against the reusable ``stratified_auc_of``.
   The personal taste's Newton fit (``content_affinity.personal_tastes``) per stratum at session
   (T = 10) and per-user (T = 400) input lengths, with what a million strata would cost; and a
   whole period of skewed input lengths in input-order chunks against ``scoring.length_chunks``.
2. Full-catalogue top-10 for 1M tracks, 5 fields (4 levels of k=1024 + a tie field),
   h=64, for 1, 16 and 256 strata per call (serving one request at a time vs offline batches): decomposed (codeword scores gathered per track) vs naive (build the
   (N, h) item table, matmul, torch.topk), with the speed ratio.

Run: ``.venv/bin/python bench/bench_evaluation.py [--strata 100000] [--tracks 1000000]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from semid_pipeline.evaluation import _group_score_order, bootstrap_ci, evaluate_scored, stratified_auc, stratified_auc_of  # noqa: E402
from semid_pipeline.content_affinity import AFFINITY_DIMS, personal_tastes  # noqa: E402
from semid_pipeline.scoring import _select_topk_cs, length_chunks, topk_decomposed, topk_naive  # noqa: E402


def bench_auc(n_strata: int, events: int, n_boot: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    n = n_strata * events
    strata = np.repeat(np.arange(n_strata), events)
    stratum_id = pd.Series(strata).map(lambda i: f"s{i:07d}")
    y = rng.integers(0, 2, n)
    score = np.round(rng.normal(size=n) + 0.6 * y, 2)  # rounded: ties present
    hist = np.repeat(rng.integers(1, 400, n_strata), events)
    scored = pd.DataFrame(
        {"stratum_id": stratum_id, "track_id": rng.integers(0, 50000, n).astype(str),
         "feedback": y, "score": score, "history_len": hist, "is_cold": rng.random(n) < 0.05}
    )
    print(f"== stratified AUC: {n_strata:,} strata x {events} events = {n:,} rows, {n_boot} bootstrap resamples")
    t0 = time.perf_counter()
    auc, per = stratified_auc(scored["stratum_id"], scored["feedback"], scored["score"])
    t1 = time.perf_counter()
    lo, hi = bootstrap_ci(per, n_boot=n_boot, seed=seed)
    t2 = time.perf_counter()
    print(f"  AUC {auc:.4f}  95% CI [{lo:.4f}, {hi:.4f}]  strata used {len(per):,}")
    print(f"  stratified_auc {t1 - t0:.2f} s   bootstrap_ci {t2 - t1:.2f} s   total {t2 - t0:.2f} s")
    t3 = time.perf_counter()
    rec = evaluate_scored(scored, n_boot=n_boot, seed=seed)
    t4 = time.perf_counter()
    print(f"  evaluate_scored (AUC+CI, 7 history buckets with CIs, cold start) {t4 - t3:.2f} s;"
          f" cold-start AUC {rec['cold_start']['auc']:.4f} over {rec['cold_start']['n_pairs']:,} pairs")


def bench_search_auc(sizes: list[tuple[int, int]], repeat: int = 5, seed: int = 0) -> None:
    """Per candidate of a weight search: the ordering and the whole AUC, old and new, side by side."""
    print("\n== one AUC of a weight search (fixed strata and labels, new scores each call; best of "
          f"{repeat})")
    for n_strata, events in sizes:
        rng = np.random.default_rng(seed)
        n = n_strata * events
        strata = rng.permutation(np.repeat(np.arange(n_strata), events))  # interleaved, as scored frames are
        stratum_id = np.array([f"s{i:07d}" for i in range(n_strata)], dtype=object)[strata]
        y = rng.integers(0, 2, n)
        s = np.round(rng.normal(size=n) + 0.6 * y, 3)
        best = lambda f: min(_time_once(f) for _ in range(repeat))  # noqa: E731
        lex = best(lambda: np.lexsort((s, strata)))
        new = best(lambda: _group_score_order(strata, s))
        of = stratified_auc_of(stratum_id, y)
        assert of(s) == stratified_auc(stratum_id, y, s)[0]
        full = best(lambda: stratified_auc(stratum_id, y, s))
        reuse = best(lambda: of(s))
        print(f"  {n:>10,} events, {n_strata:>9,} strata: order lexsort {lex * 1e3:8.1f} ms, radix {new * 1e3:7.1f} ms"
              f" ({lex / new:.1f}x); stratified_auc (radix) {full * 1e3:8.1f} ms, stratified_auc_of {reuse * 1e3:7.1f} ms"
              f" ({full / reuse:.1f}x)")


def bench_taste(shapes: list[tuple[int, int]], repeat: int = 3) -> None:
    """The personal taste's per-stratum cost, in the batches ``scoring.taste_scores`` forms."""
    print(f"\n== personal taste (Newton, {AFFINITY_DIMS} content dims + intercept, float64; best of {repeat})")
    g = torch.Generator().manual_seed(0)
    for batch, t in shapes:
        v = torch.randn(batch, t, AFFINITY_DIMS, generator=g)
        fb = (torch.rand(batch, t, generator=g) < 0.5).long()
        valid = torch.rand(batch, t, generator=g) < 0.9
        s = min(_time_once(lambda: personal_tastes(v, fb, valid)) for _ in range(repeat))
        print(f"  T={t:>3} events, {batch:>5} strata per batch: {s * 1e3:7.1f} ms, {s / batch * 1e6:6.0f} us per stratum"
              f" = {s / batch * 1e6:,.0f} s per million strata")


def bench_taste_chunks(n_strata: int = 4000, repeat: int = 2, seed: int = 0) -> None:
    """The taste of a whole period, side by side: chunks in input order sized by the period's longest
    input (until 2026-12-04) against ``scoring.length_chunks`` (sorted by length, each chunk its own
    width). Input lengths are skewed as listening histories are: log-normal, median 30, cut at 400."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(np.round(np.exp(rng.normal(np.log(30), 1.2, n_strata))), 1, 400).astype(np.int64)
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n_strata, 400, AFFINITY_DIMS, generator=g)
    fb = (torch.rand(n_strata, 400, generator=g) < 0.5).long()
    longest = int(lengths.max())
    step = max(1, min(1024, 200_000 // longest))
    ways = {"input order, chunks sized by the longest": [np.arange(b, min(b + step, n_strata))
                                                         for b in range(0, n_strata, step)],
            "length_chunks": length_chunks(lengths, batch_size=1024)}
    print(f"\n== personal taste of a whole period: {n_strata:,} strata, input lengths median "
          f"{int(np.median(lengths))}, p90 {int(np.percentile(lengths, 90))}, max {longest} (best of {repeat})")
    out = {}
    for name, chunks in ways.items():
        def run():
            beta = torch.zeros(n_strata, AFFINITY_DIMS)
            for idx in chunks:
                w = max(int(lengths[idx].max()), 1)
                valid = torch.arange(w)[None, :] >= (w - torch.from_numpy(lengths[idx]))[:, None]  # left-padded
                beta[torch.from_numpy(idx)] = personal_tastes(v[idx, -w:], fb[idx, -w:], valid)
            return beta
        s = min(_time_once(run) for _ in range(repeat))
        out[name] = (s, run())
        cells = sum(len(c) * max(int(lengths[c].max()), 1) for c in chunks)
        print(f"  {name:<42} {len(chunks):>4} chunks, {cells / lengths.sum():5.2f} padded cells per event, "
              f"{s:6.2f} s = {s / n_strata * 1e6:,.0f} s per million strata")
    (a, beta_a), (b, beta_b) = out.values()
    print(f"  speed-up {a / b:.2f}x; largest difference of the tastes {float((beta_a - beta_b).abs().max()):.1e}")


def _time_once(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


CPU: dict[str, float] = {}


def _time(fn, repeat: int = 1, name: str = ""):
    """Best wall time over ``repeat`` runs (process CPU time of that run kept in CPU)."""
    best = float("inf")
    out = None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        w = time.perf_counter() - t
        if w < best:
            best, CPU[name] = w, time.process_time() - c
    return best, out


@torch.no_grad()
def bench_topk(n_tracks: int, k_codes: int, h: int, n_strata: int, levels: int, repeat: int) -> None:
    torch.manual_seed(0)
    print(f"\n== full-catalogue top-10: N={n_tracks:,} tracks, {levels} levels x k={k_codes} + tie field,"
          f" h={h}, S={n_strata} strata, threads={torch.get_num_threads()}")
    tables = [torch.randn(k_codes, h) / h**0.5 for _ in range(levels)]
    codes = [torch.randint(0, k_codes, (n_tracks,)) for _ in range(levels)]
    tie = torch.randint(0, 8, (n_tracks,))  # the tie field: small table
    tables.append(torch.randn(8, h) / h**0.5)
    codes.append(tie)
    hidden = torch.randn(n_strata, h)
    exclude = torch.tensor([0])  # padding row

    def build():
        emb = tables[0][codes[0]]
        for t, c in zip(tables[1:], codes[1:]):
            emb += t[c]
        return emb

    t_build, emb = _time(build, repeat, "build")
    t_naive, (vn, inn) = _time(lambda: topk_naive(hidden, emb, 10, exclude=exclude), repeat, "naive")
    t_dec, (vd, ind) = _time(lambda: topk_decomposed(hidden, tables, codes, 10, exclude=exclude), repeat, "dec")

    def naive_blocked():  # matmul scoring + the same two-stage top-k selection as decomposed
        best = None
        for a in range(0, n_tracks, 16384):
            sc = emb[a : a + 16384] @ hidden.T
            if a == 0:
                sc[0] = -float("inf")
            v, i = _select_topk_cs(sc, 10, 64)
            if best is None:
                best = (v, i + a)
            else:
                cv, ci = torch.cat([best[0], v], 1), torch.cat([best[1], i + a], 1)
                tv, ti = cv.topk(10, dim=1)
                best = (tv, ci.gather(1, ti))
        return best

    t_nb, (vb, ib) = _time(naive_blocked, repeat, "nb")
    same = (ind == inn).all(dim=1)
    print(f"  naive: build item table {t_build:.2f} s + matmul/topk {t_naive:.2f} s = {t_build + t_naive:.2f} s"
          f"  (process CPU {CPU['build']:.2f} + {CPU['naive']:.2f} s)")
    print(f"  naive matmul + two-stage selection (no build) {t_nb:.2f} s  (CPU {CPU['nb']:.2f} s)")
    print(f"  decomposed (gather-sum codeword scores + two-stage selection) {t_dec:.2f} s  (CPU {CPU['dec']:.2f} s)")
    print(f"  speed ratio naive(build+score)/decomposed = {(t_build + t_naive) / t_dec:.1f}x;"
          f" naive(score only, table cached)/decomposed = {t_naive / t_dec:.1f}x;"
          f" matmul+same selection/decomposed = {t_nb / t_dec:.1f}x")
    print(f"  identical top-10 indices for {int(same.sum())}/{n_strata} strata;"
          f" max |score diff| {float((vd - vn).abs().max()):.2e}")
    if not bool(same.all()):
        # any difference must be a float near-tie at the list boundary
        bad = (~same).nonzero().flatten()[:3].tolist()
        for s in bad:
            print(f"   stratum {s}: naive {inn[s].tolist()} vs decomposed {ind[s].tolist()}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--strata", type=int, default=100_000)
    ap.add_argument("--events", type=int, default=20)
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--tracks", type=int, default=1_000_000)
    ap.add_argument("--k", type=int, default=1024)
    ap.add_argument("--h", type=int, default=64)
    ap.add_argument("--levels", type=int, default=4)
    ap.add_argument("--topk-strata", default="1,16,256",
                    help="comma-separated numbers of strata scored per call (1 = one request at a time)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
          "(other jobs on the machine inflate wall times)")
    bench_auc(args.strata, args.events, args.boot)
    bench_search_auc([(768, 33), (100_000, 20), (70_000, 30)])
    bench_taste([(1024, 10), (500, 400)])
    bench_taste_chunks()
    for s in (int(x) for x in str(args.topk_strata).split(",")):
        bench_topk(args.tracks, args.k, args.h, s, args.levels, args.repeat)
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
