"""Benchmark of serving (prints figures; no assertions). Loopback only, bounded loops.

For synthetic catalogues (random codes, 4 levels of k=1024 + tie, h=64, untrained weights: the
cost does not depend on training) of 100k and 1M tracks:

1. batch lists/s of the core ``Recommender.recommend_batch`` (what the ``recommendations`` asset
   runs): top-50 lists for 1,024 listeners with 50-event histories, artist cap 3;
2. ``POST /recommend`` (top-10, 50-event history) against ``semid_pipeline.service`` run by
   uvicorn in a separate process on 127.0.0.1: latency p50/p95/p99 and requests/s with 1 and 8
   concurrent clients (keep-alive sessions).

Aims on 2 cores: p99 < 50 ms at 100k with 1 client; >= 1,000 lists/s batch at 100k.
Run: ``.venv/bin/python bench/bench_serve.py [--tracks 100000 1000000] [--requests 300]``
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from semid_pipeline.serving import Recommender, ServePolicy  # noqa: E402
from semid_pipeline.serving_load import random_bundle  # noqa: E402


def make_recommender(n_tracks: int, seed: int = 0) -> Recommender:
    bundle = random_bundle(n_tracks=n_tracks, k=1024, levels=4, hidden=64, n_artists=max(1, n_tracks // 12),
                           cold_share=0.1, seed=seed)
    return Recommender(bundle=bundle)


def histories(rec: Recommender, count: int, length: int = 50, seed: int = 1) -> list[list[tuple[str, int]]]:
    rng = np.random.default_rng(seed)
    ids = rec.vocab.track_ids
    return [[(str(ids[t]), int(f)) for t, f in zip(rng.integers(0, len(ids), length), rng.integers(0, 2, length))]
            for _ in range(count)]


def bench_batch(rec: Recommender, listeners: int) -> dict:
    hists = histories(rec, listeners)
    rec.recommend_batch(hists[:32], n=50)  # warm-up
    t0 = time.perf_counter()
    lists = rec.recommend_batch(hists, n=50, policy=ServePolicy())
    s = time.perf_counter() - t0
    assert all(len(x.track_ids) == 50 for x in lists)
    return {"listeners": listeners, "seconds": s, "lists_per_s": listeners / s}


# ------------------------------------------------------------------------------------------------
# HTTP


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_server(n_tracks: int, port: int, threads: int) -> None:
    """Child process: a uvicorn server over a synthetic partition."""
    import torch
    import uvicorn

    from semid_pipeline.config import ServeConfig
    from semid_pipeline.service import create_app

    torch.set_num_threads(threads)
    rec = make_recommender(n_tracks)
    app = create_app(loader=lambda key: rec, partition_key=rec.partition_key, cfg=ServeConfig(), recommender=rec)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _wait_up(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    import requests

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit("bench server exited")
        try:
            if requests.get(url + "/healthz", timeout=1).ok:
                return
        except requests.ConnectionError:
            time.sleep(0.5)
    raise SystemExit("bench server did not start")


def bench_http(url: str, bodies: list[dict], clients: int, total: int) -> dict:
    import requests

    lat: list[float] = []
    lock = threading.Lock()
    per = max(1, total // clients)

    def client(c: int) -> None:
        mine = []
        with requests.Session() as s:
            for r in range(per):
                body = bodies[(c * per + r) % len(bodies)]
                t0 = time.perf_counter()
                resp = s.post(url + "/recommend", json=body, timeout=60)
                mine.append(time.perf_counter() - t0)
                assert resp.status_code == 200, resp.text
        with lock:
            lat.extend(mine)

    with requests.Session() as s:  # warm-up
        for b in bodies[:10]:
            s.post(url + "/recommend", json=b, timeout=60)
    t0 = time.perf_counter()
    ts = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    ms = np.array(lat) * 1e3
    return {"clients": clients, "requests": len(lat), "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)), "p99_ms": float(np.percentile(ms, 99)), "req_per_s": len(lat) / wall}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tracks", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--requests", type=int, default=300, help="requests per (catalogue, clients) cell")
    p.add_argument("--listeners", type=int, default=1024, help="batch size of the batch benchmark")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the server / batch")
    p.add_argument("--server", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.server:
        run_server(args.tracks[0], args.port, args.threads)
        return

    import torch

    torch.set_num_threads(args.threads)
    print(f"serving benchmark: torch {torch.__version__}, {os.cpu_count()} CPUs, {args.threads} torch threads")
    for n in args.tracks:
        rec = make_recommender(n)
        b = bench_batch(rec, args.listeners)
        print(f"[batch] {n:>9,} tracks: {b['listeners']} top-50 lists in {b['seconds']:.2f}s = "
              f"{b['lists_per_s']:,.0f} lists/s")
        bodies = [{"history": [{"track_id": t, "feedback": f} for t, f in h], "n": 10} for h in histories(rec, 64)]
        del rec
        port = _free_port()
        proc = subprocess.Popen([sys.executable, __file__, "--server", "--tracks", str(n), "--port", str(port),
                                 "--threads", str(args.threads)])
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_up(url, proc)
            for clients in (1, 8):
                r = bench_http(url, bodies, clients, args.requests)
                print(f"[http]  {n:>9,} tracks, {clients} client(s): p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, "
                      f"p99 {r['p99_ms']:.1f} ms, {r['req_per_s']:,.0f} req/s ({r['requests']} requests)")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
