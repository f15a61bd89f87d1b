"""Training, checkpoint/resume, validation scoring and a fast stratified AUC for ``SASRec``.

Loss: binary cross-entropy of each NEXT event's feedback — the hidden state at t scores the track
at t+1 with label = its feedback (positive 1, negative 0) — the main term, plus
``cfg.negative_weight`` × the mean BCE of ``cfg.sampled_negatives`` catalogue tracks per position
drawn uniformly (label 0), an optional extra term (see ``next_event_loss``). Padding is masked.
Batches group windows of similar length (``length_bucketed_batches``): long histories stay cheap.

Every epoch is checkpointed to ``out_dir/checkpoint.pt`` (weights, optimizer, scaler, RNG states,
history); a re-run with the same configuration resumes after the last completed epoch and ends
with exactly the weights and history an uninterrupted run would have. The best (validation AUC)
weights are ``out_dir/model.pt`` (a state_dict) described by ``out_dir/config.json``.
Nothing is pickled: only state_dicts, tensors and plain containers, read with ``weights_only=True``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from . import evaluation
from .config import TrainConfig
from .errors import IdTableMismatchError, SemidError
from .model import SASRec, TrackEncoder, build_track_encoder, parse_representation, semantic_fields
from .splits import EvalSet, Splits, TrackVocab

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
CONFIG = "config.json"


# ------------------------------------------------------------------------------------------------
# stratified AUC


def per_stratum_auc(stratum, label, score) -> pd.Series:
    """AUC of each stratum with >= 1 positive and >= 1 negative (ties count ½), indexed by stratum.

    Thin view of :func:`evaluation.stratified_auc` (the one implementation of the metric)."""
    if len(np.asarray(stratum)) == 0:
        return pd.Series(dtype=np.float64, name="auc")
    _, per = evaluation.stratified_auc(stratum, label, score)
    return per.set_index("stratum_id")["auc"].rename("auc")


def stratified_auc(stratum, label, score) -> float:
    """Mean over strata of the share of (positive, negative) pairs ranked correctly (ties ½)."""
    auc = per_stratum_auc(stratum, label, score)
    return float(auc.mean()) if len(auc) else float("nan")


# ------------------------------------------------------------------------------------------------
# data: training windows


def make_windows(seqs: list[tuple[np.ndarray, np.ndarray]], max_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Chunk sequences into left-padded windows of max_len + 1 events (max_len inputs, shifted targets).

    Windows are cut from the most recent event backwards and overlap by one event, so every
    transition (t → t+1) is trained exactly once. Returns tracks (W, max_len+1), feedback
    (W, max_len+1) and lengths (W,). Sequences of a single event carry no transition and are skipped.
    """
    span = max_len + 1
    bounds: list[tuple[int, int, int]] = []
    for i, (t, _) in enumerate(seqs):
        end = len(t)
        while end >= 2:
            start = max(0, end - span)
            bounds.append((i, start, end))
            end = start + 1  # overlap one event
            if start == 0:
                break
    W = len(bounds)
    tracks = np.zeros((W, span), dtype=np.int64)
    fb = np.zeros((W, span), dtype=np.int64)
    lengths = np.zeros(W, dtype=np.int64)
    for w, (i, s, e) in enumerate(bounds):
        n = e - s
        tracks[w, span - n:] = seqs[i][0][s:e]
        fb[w, span - n:] = seqs[i][1][s:e]
        lengths[w] = n
    return torch.from_numpy(tracks), torch.from_numpy(fb), torch.from_numpy(lengths)


def length_bucketed_batches(lengths: torch.Tensor, batch_size: int, gen: torch.Generator,
                            pool_batches: int = 32) -> list[torch.Tensor]:
    """Shuffled batches of window indices, each drawn from windows of similar length.

    A batch is padded to its longest window; with long histories (max_len 400) one long user in
    a random batch pads 127 short ones to 400. Windows are shuffled, cut into pools of
    ``pool_batches`` batches, sorted by length inside a pool, batched, and the batches shuffled:
    still random, little padding. Deterministic given ``gen``.
    """
    W = len(lengths)
    perm = torch.randperm(W, generator=gen)
    pool = batch_size * pool_batches
    batches: list[torch.Tensor] = []
    for p in range(0, W, pool):
        chunk = perm[p: p + pool]
        chunk = chunk[torch.argsort(lengths[chunk], stable=True)]
        batches.extend(chunk[b: b + batch_size] for b in range(0, len(chunk), batch_size))
    order = torch.randperm(len(batches), generator=gen)
    return [batches[i] for i in order]


def left_pad(seqs: list[tuple[np.ndarray, np.ndarray]], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Last ``max_len`` events of each sequence, left-padded to the longest: (S, T) tracks and feedback."""
    T = max(1, min(max_len, max((len(t) for t, _ in seqs), default=1)))
    tracks = np.zeros((len(seqs), T), dtype=np.int64)
    fb = np.zeros((len(seqs), T), dtype=np.int64)
    for i, (t, f) in enumerate(seqs):
        t, f = t[-T:], f[-T:]
        if len(t):
            tracks[i, T - len(t):] = t
            fb[i, T - len(t):] = f
    return torch.from_numpy(tracks), torch.from_numpy(fb)


# ------------------------------------------------------------------------------------------------
# loss


def next_event_loss(model: SASRec, tracks: torch.Tensor, feedback: torch.Tensor, negatives: torch.Tensor | None,
                    *, negative_weight: float = 1.0) -> tuple[torch.Tensor, int]:
    """tracks/feedback (B, T+1) left-padded windows; negatives (B, T, S) or None → (loss, #events).

    loss = mean over observed next events of BCE(logit, feedback)        (the metric's question)
         + negative_weight · mean over events of mean_S BCE(negative logit, 0)   (optional extra)

    The main term asks what the AUC asks: which of the listener's plays are liked. Uniform
    catalogue negatives teach "played vs random track" (which popularity answers better); they
    are kept as a weighted extra term. Being uniform, their logQ correction is a constant and is
    not applied. ``negative_weight = 1`` with S negatives weighs each negative like the observed
    event divided by S.
    """
    x, fx = tracks[:, :-1], feedback[:, :-1]  # (B, T) inputs
    y, fy = tracks[:, 1:], feedback[:, 1:]  # (B, T) next events
    mask = ((x > 0) & (y > 0)).float()  # (B, T): a real next event with a real history
    vecs = model.encoder(tracks)  # (B, T+1, h): one lookup serves inputs and next-event targets
    h = model(x, fx, track_vecs=vecs[:, :-1])  # (B, T, h)
    pos_logit = (h * vecs[:, 1:].to(h.dtype)).sum(-1)  # (B, T)
    if model.encoder.has_bias:
        pos_logit = pos_logit + model.encoder.track_bias(y).to(pos_logit.dtype)
    n = mask.sum().clamp_min(1.0)
    obs = F.binary_cross_entropy_with_logits(pos_logit.float(), (fy > 0).float(), reduction="none")  # (B, T)
    loss = (obs * mask).sum() / n
    if negatives is not None and negatives.shape[-1] > 0 and negative_weight > 0:
        neg_logit = model.score(h, negatives).float()  # (B, T, S)
        neg = F.binary_cross_entropy_with_logits(neg_logit, torch.zeros_like(neg_logit), reduction="none")
        loss = loss + negative_weight * (neg.mean(-1) * mask).sum() / n
    return loss, int(mask.sum())


# ------------------------------------------------------------------------------------------------
# scoring evaluation sets


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def final_hidden(model: SASRec, eval_set: EvalSet, *, max_len: int | None = None, batch_size: int = 1024
                 ) -> torch.Tensor:
    """(S, h) float32 hidden state after each stratum's input (its last max_len events), on CPU."""
    max_len = min(max_len or model.max_len, model.max_len)
    device = _device_of(model)
    was_training = model.training
    model.eval()
    S = len(eval_set)
    out = torch.zeros(S, model.hidden)
    lengths = np.array([min(len(t), max_len) for t, _ in eval_set.inputs], dtype=np.int64)
    order = np.argsort(lengths, kind="stable")  # similar lengths together: little padding
    amp = _autocast(device)
    for b in range(0, S, batch_size):
        rows = order[b: b + batch_size]
        tracks, fb = left_pad([eval_set.inputs[i] for i in rows], max_len)
        with amp:
            h = model(tracks.to(device), fb.to(device))[:, -1]  # (b, h)
        out[torch.from_numpy(rows)] = h.float().cpu()
    model.train(was_training)
    return out


@torch.no_grad()
def score_eval_set(model: SASRec, eval_set: EvalSet, *, max_len: int | None = None, batch_size: int = 1024,
                   train_track_counts: np.ndarray | None = None) -> pd.DataFrame:
    """One row per evaluated event: stratum_id, track_id, track_idx, feedback, score, history_len, is_cold.

    ``history_len`` is the stratum's input length in events (≤ max_user_history / half a session),
    the activity measure for per-segment analysis; the model itself reads the last ``max_len``.

    ``is_cold`` = the track had no training events (from ``train_track_counts`` if given, else the
    eval set's own ``is_cold`` column written by the split).
    """
    ev = eval_set.events
    cols = ["stratum_id", "track_id", "track_idx", "feedback", "score", "history_len", "is_cold"]
    if len(eval_set) == 0:
        return pd.DataFrame({c: [] for c in cols})
    max_len = min(max_len or model.max_len, model.max_len)
    device = _device_of(model)
    hid = final_hidden(model, eval_set, max_len=max_len, batch_size=batch_size)  # (S, h)
    rows = torch.from_numpy(np.array(ev["row"], dtype=np.int64))  # copies: writable
    tidx = torch.from_numpy(np.array(ev["track_idx"], dtype=np.int64))
    scores = torch.empty(len(ev))
    step = max(batch_size * 64, 1)
    was_training = model.training
    model.eval()
    for s in range(0, len(ev), step):
        t = tidx[s: s + step].to(device)
        cand = model.encoder(t).float()  # (E, h)
        sc = (hid[rows[s: s + step]].to(device) * cand).sum(-1)
        if model.encoder.has_bias:
            sc = sc + model.encoder.track_bias(t).float()
        scores[s: s + step] = sc.cpu()
    model.train(was_training)
    hist = eval_set.history_len  # events available as input (the model reads the last max_len of them)
    if train_track_counts is not None:
        is_cold = np.asarray(train_track_counts)[tidx.numpy()] == 0
    elif "is_cold" in ev:
        is_cold = ev["is_cold"].to_numpy(dtype=bool)
    else:
        is_cold = np.zeros(len(ev), dtype=bool)
    return pd.DataFrame({
        "stratum_id": ev["stratum_id"].to_numpy(),
        "track_id": ev["track_id"].to_numpy(),
        "track_idx": tidx.numpy(),
        "feedback": ev["feedback"].to_numpy(dtype=np.int64),
        "score": scores.numpy().astype(np.float64),
        "history_len": hist[ev["row"].to_numpy(dtype=np.int64)],
        "is_cold": is_cold,
    })


def evaluate_auc(model: SASRec, eval_set: EvalSet, *, max_len: int | None = None, batch_size: int = 1024) -> float:
    scored = score_eval_set(model, eval_set, max_len=max_len, batch_size=batch_size)
    return stratified_auc(scored["stratum_id"], scored["feedback"], scored["score"])


# ------------------------------------------------------------------------------------------------
# training


@dataclass(frozen=True)
class TrainResult:
    config: dict
    parameter_counts: dict
    history: list[dict]
    best_epoch: int
    best_val_auc: float
    wall_seconds: float
    events_per_s: float
    checkpoint: Path  # out_dir/model.pt (best weights, state_dict)
    resumed_from_epoch: int | None = None
    model: SASRec | None = field(default=None, repr=False, compare=False)  # best weights, eval mode

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}  # no deep copy of the model
        d["checkpoint"] = str(self.checkpoint)
        return json.loads(json.dumps(d, default=str))


def _autocast(device: torch.device):
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast(device_type="cuda", dtype=dtype)
    return nullcontext()


@contextmanager
def _deterministic(enabled: bool):
    before = torch.are_deterministic_algorithms_enabled()
    warn_before = torch.is_deterministic_algorithms_warn_only_enabled()
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_before)


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_write_text(text: str, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def model_from_splits(*, representation: str, hidden: int, splits: Splits, id_table: pd.DataFrame | None,
                      cfg: TrainConfig, with_track_field: bool = False) -> SASRec:
    """A freshly initialised SASRec for a representation (seed the RNG first for reproducibility).

    ``with_track_field``: the hybrid encoder (per-track row + summed codewords) for semantic IDs."""
    encoder = build_track_encoder(
        representation=representation, hidden=hidden, n_tracks=splits.vocab.n_tracks,
        track_ids=splits.vocab.track_ids, id_table=id_table,
        artist=splits.track_artist, n_artists=splits.n_artists,
        genre=splits.track_genre, n_genres=splits.n_genres,
        song_decomposition=cfg.song_decomposition, with_track_field=with_track_field,
        with_bias=cfg.item_bias,
    )
    return SASRec(encoder=encoder, hidden=hidden, layers=cfg.layers, heads=cfg.heads, max_len=cfg.max_len,
                  dropout=cfg.dropout, use_sequence=cfg.use_sequence)


def run_config(*, representation: str, hidden: int, splits: Splits, id_table_hash: str | None,
               cfg: TrainConfig, encoder: TrackEncoder) -> dict:
    """The JSON-able description written to config.json (a resume only continues an identical one)."""
    return {
        "representation": representation,
        "hidden": hidden,
        "train": asdict(cfg),
        "vocab_size": splits.vocab.n_tracks,
        "vocab_fingerprint": splits.vocab.fingerprint(),
        "id_table_hash": id_table_hash,
        "kind": splits.kind,
        "fields": [[name, encoder.field_sizes[name]] for name in encoder.field_names],
        "data": {"train_sequences": len(splits.train), "train_events": splits.n_train_events,
                 "val_strata": len(splits.val), "val_events": len(splits.val.events)},
    }


def _param_groups(model: torch.nn.Module, weight_decay: float, lr: float | None = None,
                  bias_lr_scale: float = 1.0) -> list[dict]:
    """Decay on matrices / tables; the per-code biases (``encoder.bias``) in a group of their own
    with ``lr · bias_lr_scale``: they start at 0 and must reach popularity logits of ±1–2, which at
    the transformer's learning rate takes longer than the transformer needs to overfit."""
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    item_bias = [p for n, p in model.named_parameters() if n == "encoder.bias"]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 and n != "encoder.bias"]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if item_bias:
        g = {"params": item_bias, "weight_decay": 0.0}
        if lr is not None:
            g["lr"] = lr * bias_lr_scale
        groups.append(g)
    return groups


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (decay on matrices and embedding tables only); the fused kernel where torch has one.

    The fused kernel does one pass over each parameter instead of ~10: with an ``id`` table of
    N·h parameters updated densely every step, that is most of the optimizer's cost on a CPU.
    """
    groups = _param_groups(model, cfg.weight_decay, cfg.lr, cfg.bias_lr_scale)
    try:
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), foreach=False)


def train_recommender(*, representation: str, hidden: int, splits: Splits, id_table: pd.DataFrame | None,
                      id_table_hash: str | None, cfg: TrainConfig, out_dir: Path,
                      log: Callable[[str], None] = print, device: str | None = None,
                      on_epoch_end: Callable[[dict], None] | None = None,
                      eval_batch_size: int = 1024, with_track_field: bool = False) -> TrainResult:
    """Train one model; resume from ``out_dir/checkpoint.pt`` when a run with this config was cut off.

    ``on_epoch_end(record)`` runs after each epoch's checkpoint is on disk (tests use it to
    simulate a crash). Returns the best-validation-AUC weights in ``TrainResult.model``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if representation != "id" and id_table is None:
        raise ValueError(f"representation {representation!r} needs its semantic-ID table")
    parse_representation(representation)
    tag = f"[{representation} h={hidden}]"

    with _deterministic(dev.type == "cpu"):
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)  # batching + negative sampling
        model = model_from_splits(representation=representation, hidden=hidden, splits=splits,
                                  id_table=id_table, cfg=cfg, with_track_field=with_track_field).to(dev)
        config = run_config(representation=representation, hidden=hidden, splits=splits,
                            id_table_hash=id_table_hash, cfg=cfg, encoder=model.encoder)
        config = json.loads(json.dumps(config))
        counts = model.parameter_counts()
        opt = make_optimizer(model, cfg)
        use_scaler = dev.type == "cuda" and not torch.cuda.is_bf16_supported()
        scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        amp = _autocast(dev)

        history: list[dict] = []
        best_epoch, best_auc, bad_epochs, start_epoch, finished = -1, -math.inf, 0, 0, False
        resumed_from = None
        ckpt_path = out_dir / CHECKPOINT
        if ckpt_path.exists():
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
            if ckpt.get("config") == config:
                model.load_state_dict(ckpt["model"])
                opt.load_state_dict(ckpt["optimizer"])
                scaler.load_state_dict(ckpt["scaler"])
                torch.set_rng_state(ckpt["rng_torch"])
                gen.set_state(ckpt["rng_gen"])
                if dev.type == "cuda" and ckpt.get("rng_cuda") is not None:
                    torch.cuda.set_rng_state_all(ckpt["rng_cuda"])
                history = list(ckpt["history"])
                best_epoch, best_auc = ckpt["best_epoch"], ckpt["best_val_auc"]
                bad_epochs, finished = ckpt["bad_epochs"], ckpt["finished"]
                start_epoch = resumed_from = ckpt["epoch"] + 1
                log(f"{tag} resuming after epoch {start_epoch} from {ckpt_path}"
                    + (" (already finished)" if finished else ""))
            else:
                log(f"{tag} {ckpt_path} belongs to a different configuration: starting over")
                for stale in (ckpt_path, out_dir / MODEL):
                    stale.unlink(missing_ok=True)
        _atomic_write_text(json.dumps(config, indent=2, sort_keys=True), out_dir / CONFIG)

        tracks, fbs, lengths = make_windows(splits.train, cfg.max_len)
        if len(tracks) == 0:
            raise SemidError("no training sequence has two or more events: nothing to train on")
        tracks, fbs = tracks.to(dev), fbs.to(dev)
        W, N, S = len(tracks), splits.vocab.n_tracks, cfg.sampled_negatives
        if start_epoch == 0:
            log(f"{tag} {counts['total']:,} parameters ({counts['track_representation']:,} track representation); "
                f"{W:,} windows, {N:,} tracks, device {dev.type}")

        epoch = start_epoch
        while not finished and epoch < cfg.epochs:
            model.train()
            t0 = time.perf_counter()
            loss_sum, loss_n, n_events = 0.0, 0, 0
            for idx in length_bucketed_batches(lengths, cfg.batch_size, gen):
                T1 = int(lengths[idx].max())  # longest window in the batch (left-padded)
                x = tracks[idx.to(dev)][:, -T1:]  # (B, T+1)
                f = fbs[idx.to(dev)][:, -T1:]
                negs = None
                if S > 0 and cfg.negative_weight > 0:
                    negs = torch.randint(1, N + 1, (len(idx), T1 - 1, S), generator=gen).to(dev)  # (B, T, S)
                with amp:
                    loss, n = next_event_loss(model, x, f, negs, negative_weight=cfg.negative_weight)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                loss_sum += float(loss.detach()) * n
                loss_n += n
                n_events += n
            train_s = time.perf_counter() - t0
            val_auc = evaluate_auc(model, splits.val, max_len=cfg.max_len, batch_size=eval_batch_size)
            seconds = time.perf_counter() - t0
            record = {
                "epoch": epoch + 1,
                "loss": loss_sum / max(loss_n, 1),
                "val_auc": val_auc,
                "events": n_events,
                "events_per_s": n_events / max(train_s, 1e-9),
                "train_seconds": train_s,
                "seconds": seconds,
            }
            history.append(record)
            improved = math.isnan(val_auc) or val_auc > best_auc  # no validation strata: keep the latest
            if improved:
                best_epoch, best_auc, bad_epochs = epoch + 1, val_auc, 0
                _atomic_save(model.state_dict(), out_dir / MODEL)
            else:
                bad_epochs += 1
            finished = bad_epochs >= cfg.patience or epoch + 1 >= cfg.epochs
            _atomic_save({
                "config": config,
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scaler": scaler.state_dict(),
                "rng_torch": torch.get_rng_state(),
                "rng_gen": gen.get_state(),
                "rng_cuda": torch.cuda.get_rng_state_all() if dev.type == "cuda" else None,
                "history": history,
                "best_epoch": best_epoch,
                "best_val_auc": best_auc,
                "bad_epochs": bad_epochs,
                "finished": finished,
            }, ckpt_path)
            log(f"{tag} epoch {epoch + 1}/{cfg.epochs} loss {record['loss']:.4f} val AUC {val_auc:.4f} "
                f"{record['events_per_s']:,.0f} events/s {seconds:.1f}s" + (" *" if improved else ""))
            if on_epoch_end is not None:
                on_epoch_end(record)
            epoch += 1
            if finished and bad_epochs >= cfg.patience and epoch < cfg.epochs:
                log(f"{tag} early stop: no validation improvement for {cfg.patience} epochs")

        model.load_state_dict(torch.load(out_dir / MODEL, map_location=dev, weights_only=True))
        model.eval()

    train_s = sum(r["train_seconds"] for r in history)
    return TrainResult(
        config=config,
        parameter_counts=counts,
        history=history,
        best_epoch=int(best_epoch),
        best_val_auc=float(best_auc),
        wall_seconds=float(sum(r["seconds"] for r in history)),
        events_per_s=float(sum(r["events"] for r in history) / max(train_s, 1e-9)),
        checkpoint=out_dir / MODEL,
        resumed_from_epoch=resumed_from,
        model=model,
    )


# ------------------------------------------------------------------------------------------------
# loading


def load_recommender(out_dir: Path, *, splits_vocab: TrackVocab, id_table: pd.DataFrame | None,
                     id_table_hash: str | None, device: str = "cpu") -> SASRec:
    """The best model of ``out_dir`` (eval mode). Refuses a semantic-ID table other than its own."""
    out_dir = Path(out_dir)
    config = json.loads((out_dir / CONFIG).read_text())
    if config.get("id_table_hash") != id_table_hash:
        raise IdTableMismatchError(
            f"model in {out_dir} was trained on semantic-ID table {config.get('id_table_hash')!r} "
            f"but was given table {id_table_hash!r}; retrain it or pass the table it was trained on"
        )
    if config["vocab_size"] != splits_vocab.n_tracks or config.get("vocab_fingerprint") != splits_vocab.fingerprint():
        raise SemidError(
            f"model in {out_dir} was trained on a {config['vocab_size']}-track vocabulary "
            f"({config.get('vocab_fingerprint', '?')[:12]}) but the splits have {splits_vocab.n_tracks} "
            f"({splits_vocab.fingerprint()[:12]}): the data set changed since training"
        )
    cfg = TrainConfig(**config["train"])
    hidden = config["hidden"]
    n_tok = splits_vocab.n_tokens
    fields = {name: (np.zeros(n_tok, dtype=np.int64), size) for name, size in config["fields"]}
    encoder = TrackEncoder(fields=fields, hidden=hidden, with_bias=cfg.item_bias)  # codes come from the state_dict
    model = SASRec(encoder=encoder, hidden=hidden, layers=cfg.layers, heads=cfg.heads, max_len=cfg.max_len,
                   dropout=cfg.dropout, use_sequence=cfg.use_sequence)
    model.load_state_dict(torch.load(out_dir / MODEL, map_location="cpu", weights_only=True))
    scheme, k = parse_representation(config["representation"])
    if scheme != "id" and id_table is not None:  # the hash is a claim: check the codes themselves
        sem, _ = semantic_fields(id_table, splits_vocab.track_ids, k=k)
        have = model.encoder.field_codes()
        for name, (codes, size) in sem.items():
            if name not in have or not torch.equal(have[name], torch.as_tensor(codes)):
                raise IdTableMismatchError(
                    f"model in {out_dir} (ID table {config.get('id_table_hash')!r}): the given table "
                    f"{id_table_hash!r} assigns different {name} codes than the ones the model was trained with"
                )
    return model.to(device).eval()
