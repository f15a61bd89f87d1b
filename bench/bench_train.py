"""Training throughput and peak memory: ``id`` vs a semantic-ID representation vs a reference SASRec.

    .venv/bin/python bench/bench_train.py [--steps 15] [--hidden 64] [--k 1024] [--threads 2]
        [--device cuda] [--batch-size 1024] [--max-lens 50 400] [--no-memory]

Data: the ``bench`` synthetic preset (≥ 1M events, 100k tracks) written with
``semid_pipeline.synthetic.write_world``, ingested into a scratch DuckDB and split with
``splits.load_splits``; if any of that is unavailable, an equivalent world is synthesised here.
Every contender trains on THE SAME pre-drawn batches (TrainConfig defaults: batch 128, max_len 50),
steps interleaved contender by contender so a noisy shared machine hurts all alike:

* ``ours-id``         semid SASRec, one embedding row per track, cfg.sampled_negatives negatives
* ``ours-<k>``        semid SASRec, random 4-level semantic IDs with codebook k (+ tie level)
* ``ours-id-neg1``    semid SASRec (id), one sampled negative per position (the reference's work)
* ``ours-id-attn``    semid SASRec (id), the attention probabilities dropped with ``dropout`` as until
                      2026-12-04 (``attention_dropout`` is 0 since: the same validation AUC, faster)
* (each at every ``--max-lens`` history length: default the configured max_len and 400 events)
* ``reference``       SASRec written the usual way (per-item nn.Embedding, nn.MultiheadAttention,
                      pre-LN blocks with the same 4h MLP and attention dropout, one sampled negative,
                      BCE on pos/neg logits)

Every step runs under the training's autocast (bf16 on CUDA, nothing on CPU); on CUDA every batch
shape is run once per contender before the timing (else the first contender of a step pays CUDA's
first-use costs for a new shape).

Throughput = predicted training events (real next events) per second of forward+backward+AdamW:
the median over the timed steps (robust to load spikes on a shared machine), the mean, and events per
CPU-second of the process (time.process_time: insensitive to other processes competing for the cores).
Peak memory = peak RSS (VmHWM, reset after start-up) of a fresh subprocess running 3 steps of one
contender minus its RSS before the model is built (CPU), or torch.cuda.max_memory_allocated on a GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from semid_pipeline.config import SplitConfig, TrainConfig  # noqa: E402
from semid_pipeline.model import SASRec, build_track_encoder  # noqa: E402
from semid_pipeline.objective import next_event_loss  # noqa: E402
from semid_pipeline.objective import make_optimizer  # noqa: E402
from semid_pipeline.scoring import autocast  # noqa: E402
from semid_pipeline.resources_usage import reset_high_water_mark, current_rss_mb, peak_rss_mb  # noqa: E402
from semid_pipeline.windows import make_windows  # noqa: E402

CACHE = Path(os.environ.get("SEMID_BENCH_CACHE", Path(tempfile.gettempdir()) / "semid_bench_train"))


# ------------------------------------------------------------------------------------------------
# reference SASRec (the usual way)


class RefBlock(nn.Module):
    def __init__(self, h: int, heads: int, dropout: float, ffn: int, attn_dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(h)
        self.attn = nn.MultiheadAttention(h, heads, dropout=attn_dropout, batch_first=True)
        self.ln2 = nn.LayerNorm(h)
        self.ffn = nn.Sequential(nn.Linear(h, ffn), nn.GELU(), nn.Linear(ffn, h), nn.Dropout(dropout))

    def forward(self, x, causal, pad):
        q = self.ln1(x)
        a, _ = self.attn(q, q, q, attn_mask=causal, need_weights=False)
        x = x + a
        x = x + self.ffn(self.ln2(x))
        return x * pad


class RefSASRec(nn.Module):
    def __init__(self, n_items: int, h: int, layers: int, heads: int, max_len: int, dropout: float,
                 attn_dropout: float):
        super().__init__()
        self.item_emb = nn.Embedding(n_items + 1, h, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, h)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([RefBlock(h, heads, dropout, 4 * h, attn_dropout) for _ in range(layers)])
        self.ln = nn.LayerNorm(h)
        self.h = h

    def forward(self, seq):  # (B, T) left-padded
        B, T = seq.shape
        pad = (seq > 0).unsqueeze(-1).float()
        x = self.item_emb(seq) * math.sqrt(self.h) + self.pos_emb(torch.arange(T, device=seq.device))
        x = self.drop(x) * pad
        causal = ~torch.ones(T, T, dtype=torch.bool, device=seq.device).tril()
        for blk in self.blocks:
            x = blk(x, causal, pad)
        return self.ln(x)

    def loss(self, seq, neg):  # seq (B, T+1), neg (B, T)
        x, pos = seq[:, :-1], seq[:, 1:]
        h = self(x)
        pl = (h * self.item_emb(pos)).sum(-1)
        nl = (h * self.item_emb(neg)).sum(-1)
        m = ((pos > 0) & (x > 0)).float()
        loss = (F.binary_cross_entropy_with_logits(pl, torch.ones_like(pl), reduction="none") * m
                + F.binary_cross_entropy_with_logits(nl, torch.zeros_like(nl), reduction="none") * m).sum() / m.sum()
        return loss, int(m.sum())


# ------------------------------------------------------------------------------------------------
# data


def load_bench_sequences(log) -> tuple[list, int, str]:
    """Training sequences (track_idx, feedback) of the bench preset, the number of tracks, and a label."""
    try:
        from semid_pipeline import warehouse as wh
        from semid_pipeline.config import IngestConfig, parse_dataset_spec
        from semid_pipeline.ingest import ingest_dataset
        from semid_pipeline.splits import load_splits

        CACHE.mkdir(parents=True, exist_ok=True)
        db = CACHE / "bench_users.duckdb"
        t0 = time.perf_counter()
        if not db.exists():
            ingest_dataset(parse_dataset_spec("synthetic:bench:users"), warehouse=db.with_suffix(".tmp"),
                           cfg=IngestConfig(), data_dir=CACHE)
            os.replace(db.with_suffix(".tmp"), db)
        with wh.connect(db, read_only=True) as con:
            n_events = con.execute("SELECT count(*) FROM feedback_events").fetchone()[0]
            sp = load_splits(con, SplitConfig())
        log(f"data: synthetic bench preset via write_world + ingest + load_splits: {n_events:,} events, "
            f"{sp.vocab.n_tracks:,} tracks, {len(sp.train):,} training users, "
            f"{sp.n_train_events:,} training events ({time.perf_counter() - t0:.0f}s)")
        return sp.train, sp.vocab.n_tracks, "synthetic:bench:users"
    except Exception as e:  # noqa: BLE001 - fall back to an in-script world
        log(f"data: bench preset unavailable ({type(e).__name__}: {str(e)[:120]}); synthesising in the script")
    rng = np.random.default_rng(0)
    n_tracks, n_users = 100_000, 25_000
    lens = np.clip(rng.lognormal(3.3, 1.0, n_users).astype(int), 3, 400)
    pop = 1.0 / np.arange(1, n_tracks + 1) ** 0.8
    pop /= pop.sum()
    tracks = rng.choice(n_tracks, size=int(lens.sum()), p=pop) + 1
    fb = (rng.random(len(tracks)) < 0.5).astype(np.int64)
    cuts = np.cumsum(lens)[:-1]
    seqs = list(zip(np.split(tracks, cuts), np.split(fb, cuts)))
    log(f"data: in-script world: {len(tracks):,} events, {n_tracks:,} tracks, {n_users:,} users")
    return seqs, n_tracks, "in-script"


def draw_batches(seqs, n_tracks: int, cfg: TrainConfig, steps: int, seed: int = 0):
    tracks, fbs, lengths = make_windows(seqs, cfg.max_len)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(tracks), generator=gen)
    out = []
    for i in range(steps):
        idx = perm[i * cfg.batch_size: (i + 1) * cfg.batch_size]
        T1 = int(lengths[idx].max())
        x, f = tracks[idx][:, -T1:], fbs[idx][:, -T1:]
        negs = torch.randint(1, n_tracks + 1, (len(idx), T1 - 1, cfg.sampled_negatives), generator=gen)
        out.append((x.contiguous(), f.contiguous(), negs))
    return out, len(tracks)


# ------------------------------------------------------------------------------------------------
# contenders


def random_codes(n_tracks: int, k: int, levels: int = 4, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.integers(0, k, size=(n_tracks, levels)), columns=[f"c{i + 1}" for i in range(levels)])
    df["tie"] = df.groupby(list(df.columns)).cumcount()
    df.insert(0, "track_id", [f"t{i:07d}" for i in range(n_tracks)])
    return df


def build(name: str, n_tracks: int, h: int, cfg: TrainConfig, k: int, device):
    torch.manual_seed(0)
    if name == "reference":
        attn = cfg.dropout if cfg.attention_dropout is None else cfg.attention_dropout  # as ours
        model = RefSASRec(n_tracks, h, cfg.layers, cfg.heads, cfg.max_len, cfg.dropout, attn).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

        def step(x, f, negs):
            with autocast(device):  # as training: bf16 on CUDA, nothing on CPU
                loss, n = model.loss(x, negs[..., 0])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return n
        return model, step
    rep = "id" if name.startswith("ours-id") else f"v0-k{k}"
    tbl = random_codes(n_tracks, k) if rep != "id" else None
    enc = build_track_encoder(scheme=rep, hidden=h, n_tracks=n_tracks,
                              track_ids=[f"t{i:07d}" for i in range(n_tracks)], id_table=tbl)
    # ours-id-attn: the attention probabilities dropped with ``dropout`` (the default before 2026-12-04)
    model = SASRec(encoder=enc, hidden=h, layers=cfg.layers, heads=cfg.heads, max_len=cfg.max_len, dropout=cfg.dropout,
                   attention_dropout=None if name.endswith("-attn") else cfg.attention_dropout).to(device)
    opt = make_optimizer(model, cfg)
    n_neg = 1 if name.endswith("neg1") else cfg.sampled_negatives

    def step(x, f, negs):
        with autocast(device):
            loss, n = next_event_loss(model, x, f, negs[..., :n_neg])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return n
    return model, step


def memory_worker(args) -> None:
    """Subprocess: peak memory (model + optimizer + activations) of a few training steps of one contender."""
    batches = torch.load(args.batches, weights_only=True)
    device = torch.device(args.device)
    cfg = TrainConfig(**json.loads(args.cfg))
    exact = reset_high_water_mark()
    base = current_rss_mb()
    _, step = build(args.worker, args.n_tracks, args.hidden, cfg, args.k, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for x, f, negs in batches[:3]:
        step(x.to(device), f.to(device), negs.to(device))
    out = {"peak_rss_mb": peak_rss_mb() - base if exact and base is not None else float("nan")}
    if device.type == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print("RESULT " + json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--k", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=TrainConfig().batch_size, help="windows per step")
    ap.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True,
                    help="peak memory per contender (one subprocess each)")
    ap.add_argument("--worker")
    ap.add_argument("--batches")
    ap.add_argument("--n-tracks", type=int)
    ap.add_argument("--cfg")
    ap.add_argument("--max-lens", type=int, nargs="+", default=[TrainConfig().max_len, 400],
                    help="history lengths to compare at (the paper's per-user inputs reach 400 events)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        return memory_worker(args)

    t_start = time.perf_counter()
    seqs, n_tracks, label = load_bench_sequences(print)
    for max_len in args.max_lens:
        print(f"\n=== history length (max_len) {max_len} ===")
        run_length(args, replace(TrainConfig(), max_len=max_len, batch_size=args.batch_size), seqs, n_tracks, label)
    print(f"total bench time {time.perf_counter() - t_start:.0f}s")


def run_length(args, cfg: TrainConfig, seqs, n_tracks: int, label: str) -> None:
    """Every contender on the same batches of windows of ``cfg.max_len`` events; prints the table."""
    t_start = time.perf_counter()
    device = torch.device(args.device)
    batches, n_windows = draw_batches(seqs, n_tracks, cfg, args.warmup + args.steps)
    print(f"batches: {args.warmup} warm-up + {args.steps} timed steps of {cfg.batch_size} windows × ≤{cfg.max_len} "
          f"(from {n_windows:,} windows); h={args.hidden}, layers={cfg.layers}, heads={cfg.heads}, "
          f"threads={torch.get_num_threads()}, device={device.type}")

    names = ["ours-id", f"ours-k{args.k}", "ours-id-neg1", "ours-id-attn", "reference"]
    contenders = {n: build(n, n_tracks, args.hidden, cfg, args.k, device) for n in names}
    for n, (m, _) in contenders.items():
        m.train()
    secs = {n: 0.0 for n in names}
    events = {n: 0 for n in names}
    rates = {n: [] for n in names}  # per-step events/s: the median shrugs off load spikes of a shared machine
    cpu = {n: 0.0 for n in names}  # process CPU seconds: what a contender costs, whatever else runs
    if device.type == "cuda":  # every batch shape once per contender first: allocator, kernel choices
        for x, f, negs in batches:
            for n in names:
                contenders[n][1](x.to(device), f.to(device), negs.to(device))
        torch.cuda.synchronize()
    for i, (x, f, negs) in enumerate(batches):
        x, f, negs = x.to(device), f.to(device), negs.to(device)
        for n in (names if i % 2 == 0 else names[::-1]):  # alternate order: no contender always first
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            ev = contenders[n][1](x, f, negs)
            c1 = time.process_time()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= args.warmup:
                dt = time.perf_counter() - t0
                secs[n] += dt
                events[n] += ev
                rates[n].append(ev / dt)
                cpu[n] += c1 - c0
    params = {n: sum(p.numel() for p in m.parameters()) for n, (m, _) in contenders.items()}
    del contenders

    # peak memory: one fresh subprocess per contender on the same batches
    mem = {}
    with tempfile.TemporaryDirectory() as tmp:
        bpath = Path(tmp) / "batches.pt"
        torch.save(batches[:3], bpath)
        for n in (names if args.memory else []):
            cmd = [sys.executable, __file__, "--worker", n, "--batches", str(bpath), "--n-tracks", str(n_tracks),
                   "--hidden", str(args.hidden), "--k", str(args.k), "--threads", str(args.threads),
                   "--device", args.device, "--cfg", json.dumps({**vars(cfg)})]
            res = subprocess.run(cmd, capture_output=True, text=True)
            line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
            mem[n] = json.loads(line[0][7:]) if line else {"error": res.stderr[-300:]}

    rows = []
    for n in names:
        eps = events[n] / secs[n]
        m = mem.get(n, {})
        rows.append({"contender": n, "events/s": round(float(np.median(rates[n]))), "mean events/s": round(eps),
                     "events/CPU-s": round(events[n] / max(cpu[n], 1e-9)),
                     "ms/step": round(1000 * secs[n] / args.steps, 1),
                     "params": params[n], "peak_mem_MB": round(m.get("cuda_peak_mb", m.get("peak_rss_mb", float("nan"))), 1)})
    df = pd.DataFrame(rows).set_index("contender")
    print()
    print(df.to_string())
    eps = df["events/s"]
    cps = df["events/CPU-s"]
    print()
    print("ratios (median wall-clock events/s; in brackets: events per CPU-second)")
    def ratio(a: str, b: str) -> str:
        return f"{eps[a] / eps[b]:.2f}×  [{cps[a] / cps[b]:.2f}×]"

    print(f"semantic k={args.k} / id:                  {ratio(f'ours-k{args.k}', 'ours-id')}  (aim ≥ 0.9)")
    print(f"ours id (S={cfg.sampled_negatives} negatives) / reference:   {ratio('ours-id', 'reference')}  (aim ≥ 1.0)")
    print(f"ours id (S=1, same work) / reference:     {ratio('ours-id-neg1', 'reference')}")
    print(f"attention dropout {cfg.attention_dropout} / {cfg.dropout} (id):     {ratio('ours-id', 'ours-id-attn')}")
    print(f"parameters semantic / id:                 {df.loc[f'ours-k{args.k}', 'params'] / df.loc['ours-id', 'params']:.3f}")
    print(f"data: {label}; max_len {cfg.max_len}; {time.perf_counter() - t_start:.0f}s")


if __name__ == "__main__":
    main()
