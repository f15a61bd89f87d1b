"""Text encoders side by side (issue 11): full all-MiniLM-L6-v2 vs the static table distilled from
it (``static_text.py``, ``text_encoder = "minilm-static"``) vs the hashed-token fallback.

Speed: titles/s on 2 and 1 torch threads, each measurement in its own process (peak RSS, and
``encoder_mb`` = peak RSS minus the RSS after the imports: the encoder's own), on titles from the synthetic world's generator (``synthetic/titles.py``). The
one-time distillation (every vocabulary token through MiniLM, PCA, SIF weights) is timed too.
Quality, against full MiniLM on the first ``--quality`` titles: top-10 nearest-neighbour overlap
(cosine), mean cosine of "X" to "X (Live)" / "X - Remaster" and of random unrelated pairs.
The hashed row's vectors are its bag of hashed title words (before the SVD).

    .venv/bin/python bench/bench_text_encoders.py [--titles 5000] [--quality 3000]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from semid_pipeline.synthetic.titles import song_titles  # noqa: E402


def _rss_mb() -> float:
    """Peak RSS of this process: VmHWM (ru_maxrss survives exec on Linux, so a spawned child
    would report its parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _encoder(kind: str, cache_dir: str):
    """(encode function, seconds to load, note) for ``kind``."""
    import pandas as pd

    from semid_pipeline import features, static_text as st, text_encoder as te

    t = time.perf_counter()
    if kind == "minilm":
        enc, note = te.load_sentence_encoder(), te.MODEL_NAME
    elif kind == "minilm-static":
        enc = st.load_static_encoder(Path(cache_dir))
        enc.table  # noqa: B018 (loads the table: part of the load time)
        note = f"{enc.name}, table {'distilled now' if enc.distilled_now else 'from cache'}"
    else:
        def hashed(texts):
            H = features._hashed_onehot(pd.DataFrame({"title": list(texts)}))
            return H / np.maximum(np.linalg.norm(H, axis=1, keepdims=True), 1e-12)
        return hashed, time.perf_counter() - t, "hashed title words (crc32 % 4096)"
    return enc.encode, time.perf_counter() - t, note


def _child(kind: str, threads: int, titles: list[str], quality: list[str], cache_dir: str, out) -> None:
    """One measurement in a fresh process: titles/s, peak RSS; the quality sets' vectors when asked."""
    import torch

    torch.set_num_threads(threads)
    from semid_pipeline import features, static_text, text_encoder  # noqa: F401 (imports before the baseline)

    base_mb = _rss_mb()
    if kind == "distill":
        from semid_pipeline import static_text as st

        t = time.perf_counter()
        enc = st.load_static_encoder(Path(cache_dir))
        enc.table  # noqa: B018 (distils the table: the table's first use)
        out.put({"seconds": time.perf_counter() - t, "tokens": enc.table.meta["tokens_distilled"],
                 "dim": enc.dim, "peak_rss_mb": _rss_mb(), "encoder_mb": _rss_mb() - base_mb,
                 "distilled_now": enc.distilled_now})
        return
    encode, load_s, note = _encoder(kind, cache_dir)
    encode(titles[:200])  # warm-up
    best = float("inf")
    for _ in range(1 if kind == "minilm" else 3):
        t = time.perf_counter()
        encode(titles)
        best = min(best, time.perf_counter() - t)
    res = {"titles_per_s": len(titles) / best, "peak_rss_mb": _rss_mb(), "encoder_mb": _rss_mb() - base_mb,
           "load_s": load_s, "note": note}
    if quality:
        res["vectors"] = [np.asarray(encode(q), np.float32) for q in (quality, [x + " (Live)" for x in quality],
                                                                       [x + " - Remaster" for x in quality])]
    out.put(res)


def _run(kind: str, threads: int, titles, quality, cache_dir: str) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(kind, threads, titles, quality, cache_dir, q))
    p.start()
    while True:  # a child that died (import error, out of memory) must not hang the bench
        try:
            res = q.get(timeout=5)
            break
        except queue.Empty:
            if not p.is_alive():
                raise RuntimeError(f"{kind} ({threads} threads): the measuring process exited with {p.exitcode}")
    p.join()
    return res


def _quality(vectors: list[np.ndarray], ref: list[np.ndarray], seed: int = 0) -> dict:
    """Top-10 overlap with ``ref`` (full MiniLM) and the version / unrelated cosines."""
    def top10(E):
        S = E @ E.T
        np.fill_diagonal(S, -np.inf)
        return np.argpartition(-S, 10, axis=1)[:, :10]

    base, live, remaster = vectors
    ours, theirs = top10(base), top10(ref[0])
    overlap = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ours, theirs)]))
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, len(base), (2, 4 * len(base)))
    keep = i != j
    return {"top10_overlap": overlap,
            "cos_versions": float(np.mean(np.r_[(base * live).sum(1), (base * remaster).sum(1)])),
            "cos_unrelated": float(np.mean((base[i[keep]] * base[j[keep]]).sum(1)))}


def text_part(n_titles: int = 5000, n_quality: int = 3000, cache_dir: str | None = None) -> list[dict]:
    """The side-by-side table (printed and returned)."""
    titles = list(dict.fromkeys(song_titles(np.random.default_rng(1), n_titles)))
    quality = titles[:n_quality]
    with tempfile.TemporaryDirectory() as tmp:
        cache = cache_dir or tmp
        d = _run("distill", 2, [], [], cache)
        print(f"\ndistillation (2 threads): {d['tokens']} token forwards + PCA to {d['dim']} dims in "
              f"{d['seconds']:.1f} s, peak RSS {d['peak_rss_mb']:.0f} MB (+{d['encoder_mb']:.0f} MB over the imports)"
              f"{'' if d['distilled_now'] else ' (table was already cached: --cache)'}", flush=True)
        rows, ref = [], None
        for kind in ("minilm", "minilm-static", "hashed"):
            for threads in (2, 1):
                r = _run(kind, threads, titles, quality if threads == 2 else [], cache)
                if kind == "minilm" and threads == 2:
                    ref = r["vectors"]
                q = _quality(r["vectors"], ref) if "vectors" in r else {}
                rows.append({"encoder": kind, "threads": threads, "titles_per_s": r["titles_per_s"],
                             "peak_rss_mb": r["peak_rss_mb"], "encoder_mb": r["encoder_mb"], "load_s": r["load_s"], **q})
                print(rows[-1], f"({r['note']}; load average {os.getloadavg()[0]:.1f})", flush=True)
    _print_table(f"text encoders on {len(titles)} generated titles (quality on the first {len(quality)}; "
                 "aim ≥ 2,000 titles/s on 2 threads)", rows)
    return rows


def _print_table(title: str, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    print(f"\n{title}\n" + " | ".join(f"{k:>13}" for k in keys))
    for r in rows:
        print(" | ".join(f"{r[k]:>13}" if isinstance(r.get(k), str) else f"{r[k]:>13.4g}" if k in r else " " * 13
                         for k in keys))
    print(f"(load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)", flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--titles", type=int, default=5000)
    ap.add_argument("--quality", type=int, default=3000)
    ap.add_argument("--cache", default=None, help="folder for the distilled table (default: a temp folder)")
    args = ap.parse_args()
    text_part(args.titles, args.quality, args.cache)
