"""Benchmark: semid's RQ-VAE (v1) and residual k-means vs the `semantic-id` PyPI package's RQKMeans.

100k tracks × 30 synthetic content features (64 clusters in an 8-d latent space pushed through a
random tanh network, plus noise; standardized), L=4, k=256, torch on 2 threads. Prints a table.

Collision-aware IDs (issue 11) add three parts:
  text      text encoders side by side (bench_text_encoders.py): all-MiniLM-L6-v2 vs the static
            table distilled from it vs hashed tokens — titles/s on 2 and 1 threads, peak RSS, the
            one-time distillation, top-10 neighbour overlap with MiniLM, version / unrelated
            cosines (aim ≥ 2,000 titles/s on 2 threads)
  balanced  fit + assign time of v1 / rqkmeans with the balanced last level vs greedy (aim ≤ 1.5×)
  metadata  a metadata-only catalogue (bench/metadata_world.py, default 100k tracks): unique-tuple
            share, max tie, share in groups > 2 at k = 256 / 1024, balanced on/off, MiniLM and
            minilm-static vs the hashed-token fallback (done when: v1-k256 ≥ 0.97 unique and max
            tie ≤ 3 with balanced on)

    .venv/bin/pip install semantic-id    # bench-only peer
    .venv/bin/python bench/bench_semantic_ids.py [--tracks 100000] [--features 30] [--parts peer,text,balanced,metadata]
        [--meta-tracks 100000] [--meta-ks 256,1024] [--cache DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from semid_pipeline import kmeans as km  # noqa: E402
from semid_pipeline import rqvae as rq  # noqa: E402
from semid_pipeline.config import RQVAEConfig  # noqa: E402
from semid_pipeline.semantic_ids import add_tie_level, codebook_quality, make_table  # noqa: E402
from bench_ids_parts import balanced_part, metadata_part  # noqa: E402
from bench_text_encoders import text_part  # noqa: E402

L, K = 4, 256


def synthetic_features(n: int, f: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (64, 8))
    z = centers[rng.integers(0, 64, n)] + rng.normal(0, 1, (n, 8))  # (N, 8)
    w1 = rng.normal(0, 1 / np.sqrt(8), (8, 64))
    w2 = rng.normal(0, 1 / np.sqrt(64), (64, f))
    X = np.tanh(z @ w1) @ w2 + 0.05 * rng.normal(size=(n, f))  # (N, F)
    return ((X - X.mean(0)) / X.std(0)).astype(np.float32)


def summarize(name, codes, X, recon, fit_s, assign_per_s, n):
    ids = [f"t{i:07d}" for i in range(n)]
    table = make_table(ids, codes, add_tie_level(ids, codes))
    q = codebook_quality(table, K, X=X, recon_error=recon)
    return {
        "method": name, "fit_s": fit_s, "assign_tracks_per_s": assign_per_s,
        **{f"util_{c}": v for c, v in q["utilization"].items()},
        "unique_share": q["unique_tuple_share"], "max_tie": q["max_tie"], "recon_err": recon,
        "nbr_pres": q["neighbour_preservation"], "nbr_pres_rand": q["neighbour_preservation_random"],
    }


def timed_assign(fn, X, repeats=3):
    fn(X[:1000])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        codes = fn(X)
        best = min(best, time.perf_counter() - t)
    return codes, len(X) / best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tracks", type=int, default=100_000)
    ap.add_argument("--features", type=int, default=30)
    ap.add_argument("--peer-n-init", type=int, default=1, help="semantic-id RQKMeans n_init (its default 10 takes minutes)")
    ap.add_argument("--parts", default="peer,text,balanced,metadata")
    ap.add_argument("--meta-tracks", type=int, default=100_000)
    ap.add_argument("--meta-ks", default="256,1024")
    ap.add_argument("--text-titles", type=int, default=5000)
    ap.add_argument("--cache", default=None, help="text-embedding cache folder (default: a temp folder)")
    ap.add_argument("--meta-schemes", default="v1,rqkmeans")
    ap.add_argument("--no-hashed", action="store_true", help="skip the hashed-token rows of the metadata part")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (1 on an oversubscribed machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    parts = set(args.parts.split(","))
    X = synthetic_features(args.tracks, args.features)
    if "text" in parts:
        text_part(args.text_titles, min(3000, args.text_titles), args.cache)
    if "balanced" in parts:
        balanced_part(X)
    if "metadata" in parts:
        metadata_part(args.meta_tracks, [int(k) for k in args.meta_ks.split(",")], cache=args.cache,
                      schemes=tuple(args.meta_schemes.split(",")), hashed=not args.no_hashed)
    if "peer" not in parts:
        return
    xt = torch.from_numpy(X)
    rows = []

    # semid v1: RQ-VAE
    cfg = RQVAEConfig()
    t, c0 = time.perf_counter(), time.process_time()
    model, hist = rq.fit_rqvae(X, cfg=cfg, codebook_size=K, levels=L, seed=0)
    fit_s = time.perf_counter() - t
    cpu_s = time.process_time() - c0
    codes, tps = timed_assign(lambda a: model.encode_codes(a).numpy(), X)
    rows.append(summarize("semid v1 (RQ-VAE)", codes, X, model.reconstruction_error(X), fit_s, tps, args.tracks))
    print(f"[v1] fit {fit_s:.1f}s wall, {cpu_s:.1f}s CPU (2 threads: ≥ {cpu_s / 2:.1f}s wall on an idle machine), "
          f"dead-code resets {hist['dead_code_resets']}", flush=True)

    # semid rqkmeans (same code path as semantic_ids.fit_semantic_ids: fit on ≤50k, assign all)
    t = time.perf_counter()
    g = torch.Generator().manual_seed(0)
    sub = xt[torch.randperm(len(xt), generator=g)[:50_000]]
    books, _ = km.residual_kmeans(sub, levels=L, k=K, iters=cfg.kmeans_iters, seed=0)
    fit_s = time.perf_counter() - t
    codes, tps = timed_assign(lambda a: km.residual_assign(a, books).numpy(), X)
    ct = torch.from_numpy(codes)
    recon = float(((sum(books[l][ct[:, l]] for l in range(L)) - xt) ** 2).sum(1).mean())
    rows.append(summarize("semid rqkmeans", codes, X, recon, fit_s, tps, args.tracks))
    print(f"[rqkmeans] fit {fit_s:.1f}s", flush=True)

    # peer: semantic-id RQKMeans (sklearn KMeans per level)
    try:
        from semantic_id import RQKMeans
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("semantic-id not installed: .venv/bin/pip install semantic-id")
    else:
        with threadpool_limits(2):
            peer = RQKMeans(n_levels=L, n_clusters=K, random_state=0, n_init=args.peer_n_init)
            t = time.perf_counter()
            peer.fit(X)
            fit_s = time.perf_counter() - t
            codes, tps = timed_assign(lambda a: peer.encode(a, batch_size=32768).astype(np.int64), X)
        recon = float(((peer.decode(codes) - X) ** 2).sum(1).mean())
        rows.append(summarize(f"semantic-id RQKMeans (n_init={args.peer_n_init})", codes, X, recon, fit_s, tps, args.tracks))

    keys = list(rows[0])
    print(f"\n{args.tracks} tracks × {args.features} features, L={L}, k={K}, torch threads={torch.get_num_threads()}")
    print(" | ".join(f"{k:>14}" if i else f"{k:<34}" for i, k in enumerate(keys)))
    for r in rows:
        cells = []
        for i, k in enumerate(keys):
            v = r.get(k)
            s = v if isinstance(v, str) else ("—" if v is None else (f"{v:,.0f}" if k == "assign_tracks_per_s" else f"{v:.4g}"))
            cells.append(f"{s:>14}" if i else f"{s:<34}")
        print(" | ".join(cells))
    print(f"(load average at end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
