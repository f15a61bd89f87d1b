"""Training and checkpoint/resume for ``SASRec`` (scoring lives in ``scoring``).

Loss (``objective.next_event_loss``): BCE of each NEXT event's feedback, plus a weighted term of
sampled catalogue negatives; ``cfg.horizon`` > 1 scores the next H events from each state.
``cfg.content_init``: the track tables start at the content's principal components (``content_init``).
Batches group windows of similar length (``length_bucketed_batches``): long histories stay cheap.

Every epoch is checkpointed to ``out_dir/checkpoint.pt`` (weights, optimizer, scaler, RNG states,
history); a re-run with the same configuration resumes after the last completed epoch and ends
with exactly the weights and history an uninterrupted run would have. The best (validation AUC)
weights are ``out_dir/model.pt`` (a state_dict) described by ``out_dir/config.json``; with
``cfg.final_fit_epochs`` they then train that many epochs more on the data through the validation
period (``_final_fit``), and model.pt holds the result. The weights of the terms chosen on validation
(``score_terms``) are 0 while training, then chosen (``_choose_prior``).
Nothing is pickled: only state_dicts, tensors and plain containers, read with ``weights_only=True``.

Under torchrun (``[train] processes`` = N > 1) every rank runs the same loop on its shard of each
batch (``distributed``); rank 0 validates and writes the files. On CUDA batches are copied from
pinned memory without blocking and the forward pass runs in bf16 autocast (fp16 + loss scaling
where bf16 is missing).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from . import distributed
from .config import TrainConfig
from .determinism import deterministic
from .distributed import Dist, shard
from .errors import SemidError, SplitError
from .fileutil import atomic_write, atomic_write_json
from .content_affinity import field_table
from .content_init import content_hash, init_from_content, uses_content
from .listener_memory import artist_map
from .model import SASRec, build_track_encoder
from .objective import NegativeSampler, make_optimizer, next_event_loss
from .schemes import IdScheme
from .scoring import autocast, evaluate_auc
from .splits import Splits
from .track_prior import apply_chosen, validation_weight
from .windows import TrainingWindows, length_bucketed_batches, through_validation

from .checkpoints import CHECKPOINT, CONFIG, MODEL, run_config


# ------------------------------------------------------------------------------------------------
# training (the loss: ``objective``; content initialisation: ``content_init``)


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
    prior: dict | None = None  # [train] popularity_prior: ``track_prior.validation_weight``'s dict
    model: SASRec | None = field(default=None, repr=False, compare=False)  # best weights, eval mode

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}  # no deep copy of the model
        d["checkpoint"] = str(self.checkpoint)
        return json.loads(json.dumps(d, default=str))


def _atomic_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def model_from_splits(*, scheme: IdScheme, hidden: int, splits: Splits, id_table: pd.DataFrame | None,
                      cfg: TrainConfig, max_tie_embeddings: int | None = None,
                      content: np.ndarray | None = None) -> SASRec:
    """A freshly initialised SASRec for an ID scheme (seed the RNG first for reproducibility);
    its tie table is capped at ``max_tie_embeddings`` rows (``[semantic_ids]``; None = uncapped).
    ``cfg.content_init`` / ``content_affinity`` read ``content`` (N+1, D), aligned to the vocabulary
    (``features.content_for_vocab``); ``cfg.listener_memory`` stores the track → artist map.
    """
    encoder = build_track_encoder(
        scheme=scheme, hidden=hidden, n_tracks=splits.vocab.n_tracks,
        track_ids=splits.vocab.track_ids, id_table=id_table,
        artist=splits.track_artist, n_artists=splits.n_artists,
        genre=splits.track_genre, n_genres=splits.n_genres,
        song_decomposition=cfg.song_decomposition or scheme.decomposition, max_tie_embeddings=max_tie_embeddings,
        with_track_field=scheme.hybrid,
        with_bias=cfg.item_bias,
    )
    if (reads := uses_content(scheme, cfg)) and content is None:
        switch = "content_init" if cfg.content_init else "content_affinity"
        raise ValueError(f"[train] {switch}: {scheme.key!r} needs the content features (content=...)")
    if reads and cfg.content_init:
        init_from_content(encoder, content=content, hidden=hidden, std=cfg.content_init_std)
    affinity = field_table(encoder, content) if reads and cfg.content_affinity else None
    model = SASRec(encoder=encoder, hidden=hidden, layers=cfg.layers, heads=cfg.heads, max_len=cfg.max_len,
                   dropout=cfg.dropout, attention_dropout=cfg.attention_dropout, use_sequence=cfg.use_sequence,
                   prior_tokens=splits.vocab.n_tokens if cfg.popularity_prior else 0,
                   affinity_dims=affinity.shape[1] if affinity is not None else 0,
                   memory_tokens=splits.vocab.n_tokens if cfg.listener_memory else 0,
                   personal_taste=affinity is not None and cfg.personal_taste)
    if affinity is not None:
        model.set_affinity(table=affinity)
    if cfg.listener_memory and (artist := artist_map(scheme, cfg, splits.track_artist)) is not None:
        model.set_memory(artist=artist)
    return model


@dataclass
class _Progress:
    """What a checkpoint carries besides the tensors: the epochs so far and early-stopping state."""

    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_auc: float = -math.inf
    bad_epochs: int = 0
    epoch: int = 0  # the next epoch to train (0-based)
    finished: bool = False
    resumed_from: int | None = None
    final_fit_done: bool = False  # [train] final_fit_epochs ran; model.pt holds the final-fit weights
    final_fit_seconds: float = 0.0
    prior: dict | None = None  # [train] popularity_prior: the weight chosen on validation (``_choose_prior``)


@dataclass(frozen=True)
class _Trainer:
    """The objects one training run updates (built once, shared by epochs and checkpoints)."""

    model: SASRec
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    gen: torch.Generator  # batching + negative sampling (same seed and draws on every rank)
    dev: torch.device
    dist: Dist
    anchor: torch.Tensor | None = None  # the track table at init ([train] content_anchor), else None


def _resume(tr: _Trainer, *, config: dict, out_dir: Path, log: Callable[[str], None], tag: str) -> _Progress:
    """Progress restored from ``out_dir/checkpoint.pt`` when it belongs to ``config`` (every rank
    reads it); rank 0 removes a checkpoint of another configuration and writes config.json."""
    ckpt_path, prog, stale = out_dir / CHECKPOINT, _Progress(), False
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if ckpt.get("config") == config:
            tr.model.load_state_dict(ckpt["model"])
            tr.opt.load_state_dict(ckpt["optimizer"])
            tr.scaler.load_state_dict(ckpt["scaler"])
            torch.set_rng_state(ckpt["rng_torch"])
            tr.gen.set_state(ckpt["rng_gen"])
            if tr.dev.type == "cuda" and ckpt.get("rng_cuda") is not None and not tr.dist.active:
                torch.cuda.set_rng_state_all(ckpt["rng_cuda"])
            prog = _Progress(history=list(ckpt["history"]), best_epoch=ckpt["best_epoch"],
                             best_auc=ckpt["best_val_auc"], bad_epochs=ckpt["bad_epochs"],
                             epoch=ckpt["epoch"] + 1, finished=ckpt["finished"], resumed_from=ckpt["epoch"] + 1,
                             final_fit_done=bool(ckpt.get("final_fit_done", False)),
                             final_fit_seconds=float(ckpt.get("final_fit_seconds", 0.0)),
                             prior=ckpt.get("prior"))
            log(f"{tag} resuming after epoch {prog.epoch} from {ckpt_path}"
                + (" (already finished)" if prog.finished else ""))
        else:
            log(f"{tag} {ckpt_path} belongs to a different configuration: starting over")
            stale = True
    tr.dist.barrier()  # every rank has read the checkpoint before rank 0 touches the folder
    if tr.dist.is_main:
        if stale:
            for path in (ckpt_path, out_dir / MODEL):
                path.unlink(missing_ok=True)
        atomic_write_json(out_dir / CONFIG, config, indent=2, sort_keys=True)
    tr.dist.barrier()
    return prog


def _to_device(t: torch.Tensor, dev: torch.device) -> torch.Tensor:
    """A CPU batch on the training device: pinned memory + asynchronous copy on CUDA, as is on CPU."""
    if dev.type != "cuda" or t.device.type == "cuda":
        return t.to(dev)
    return t.pin_memory().to(dev, non_blocking=True)


def _left_pad(t: torch.Tensor, width: int) -> torch.Tensor:
    """(b, w) → (b, width) with zeros on the left: a rank's shard padded to its whole batch's width."""
    return t if t.shape[1] == width else F.pad(t, (width - t.shape[1], 0))


def _train_epoch(tr: _Trainer, windows: TrainingWindows, *, cfg: TrainConfig, sampler: NegativeSampler,
                 amp) -> tuple[float, int]:
    """One pass over the windows → (Σ batch-mean loss × batch events, events), over all ranks.

    Every rank draws the same batches and negatives and trains its shard of each batch; the
    loss of a shard is its partial sum over the GLOBAL event count, the gradients are summed
    over ranks: the step is the single-process step on the whole batch."""
    tr.model.train()
    d, S = tr.dist, cfg.sampled_negatives
    params = [p for p in tr.model.parameters() if p.requires_grad]
    loss_sum, n_events = 0.0, 0
    for idx in length_bucketed_batches(windows.lengths, cfg.batch_size, tr.gen):
        T1 = int(windows.lengths[idx].max())  # the whole batch's width (B, T+1)
        negs = None
        if S > 0 and cfg.negative_weight > 0:
            negs = sampler.draw((len(idx), T1 - 1, S), tr.gen)  # (B, T, S)
        mine = shard(idx, d)
        n_batch = int((windows.lengths[idx] - 1).sum()) if d.active else None  # global events of the batch
        tr.opt.zero_grad(set_to_none=True)
        loss_val, n = 0.0, 0
        if len(mine):
            x, f = (_to_device(_left_pad(t, T1), tr.dev) for t in windows.batch(mine))  # (b, T+1) each
            my_negs = None if negs is None else _to_device(shard(negs, d), tr.dev)  # (b, T, S)
            with amp:
                loss, n = next_event_loss(tr.model, x, f, my_negs, negative_weight=cfg.negative_weight,
                                          normaliser=n_batch, horizon=cfg.horizon,
                                          neg_logq=None if sampler.logq is None else sampler.logq.to(tr.dev))
            tr.scaler.scale(loss).backward()
            loss_val = float(loss.detach())
        d.sum_grads(params)
        tr.scaler.step(tr.opt)
        tr.scaler.update()
        if tr.anchor is not None:  # L2-SP: back toward the content-initialised start
            with torch.no_grad():
                table = tr.model.encoder.table
                table.sub_((table - tr.anchor) * (cfg.lr * cfg.content_anchor))
        n_global = n if n_batch is None else n_batch
        loss_sum += loss_val * n_global
        n_events += n_global
    if d.active:
        loss_sum = d.sum_floats([loss_sum], tr.dev)[0]  # each rank holds its shards' part of every batch mean
    return loss_sum, n_events


def _save_checkpoint(tr: _Trainer, prog: _Progress, *, config: dict, epoch: int, path: Path) -> None:
    _atomic_save({
        "config": config,
        "epoch": epoch,
        "model": tr.model.state_dict(),
        "optimizer": tr.opt.state_dict(),
        "scaler": tr.scaler.state_dict(),
        "rng_torch": torch.get_rng_state(),
        "rng_gen": tr.gen.get_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if tr.dev.type == "cuda" else None,
        "history": prog.history,
        "best_epoch": prog.best_epoch,
        "best_val_auc": prog.best_auc,
        "bad_epochs": prog.bad_epochs,
        "finished": prog.finished,
        "final_fit_done": prog.final_fit_done,
        "final_fit_seconds": prog.final_fit_seconds,
        "prior": prog.prior,
    }, path)


def _run_epoch(tr: _Trainer, prog: _Progress, windows: TrainingWindows, *, splits: Splits, cfg: TrainConfig,
               config: dict, out_dir: Path, eval_batch_size: int, amp, log: Callable[[str], None],
               tag: str) -> dict:
    """Train epoch ``prog.epoch``, validate (rank 0; the AUC is broadcast), keep the best weights,
    checkpoint (rank 0) and advance ``prog``. Returns the epoch's history record."""
    epoch, d = prog.epoch, tr.dist
    d.seed_dropout(cfg.seed, epoch)
    t0 = time.perf_counter()
    loss_sum, n_events = _train_epoch(tr, windows, cfg=cfg, sampler=NegativeSampler.of(cfg, splits), amp=amp)
    train_s = time.perf_counter() - t0
    val_auc = math.nan
    if d.is_main:
        val_auc = evaluate_auc(tr.model, splits.val, max_len=cfg.max_len, batch_size=eval_batch_size)
    val_auc = d.broadcast_float(val_auc, tr.dev)
    seconds = time.perf_counter() - t0
    record = {
        "epoch": epoch + 1,
        "loss": loss_sum / max(n_events, 1),
        "val_auc": val_auc,
        "events": n_events,
        "events_per_s": n_events / max(train_s, 1e-9),
        "train_seconds": train_s,
        "seconds": seconds,
    }
    prog.history.append(record)
    if math.isnan(val_auc) and len(splits.val.stratum_ids) > 0:
        raise SemidError(
            f"{tag} validation AUC is NaN after epoch {epoch + 1} (loss {record['loss']:.4g}): the model "
            "diverged or the validation pairs are degenerate; lower [train] lr or check the data"
        )
    improved = math.isnan(val_auc) or val_auc > prog.best_auc  # no validation strata: keep the latest
    if improved:
        prog.best_epoch, prog.best_auc, prog.bad_epochs = epoch + 1, val_auc, 0
        if d.is_main:
            _atomic_save(tr.model.state_dict(), out_dir / MODEL)
    else:
        prog.bad_epochs += 1
    prog.finished = prog.bad_epochs >= cfg.patience or epoch + 1 >= cfg.epochs
    if d.is_main:
        _save_checkpoint(tr, prog, config=config, epoch=epoch, path=out_dir / CHECKPOINT)
    d.barrier()  # the checkpoint is on disk before any rank goes on
    log(f"{tag} epoch {epoch + 1}/{cfg.epochs} loss {record['loss']:.4f} val AUC {val_auc:.4f} "
        f"{record['events_per_s']:,.0f} events/s {seconds:.1f}s" + (" *" if improved else ""))
    prog.epoch += 1
    return record


def _final_fit(tr: _Trainer, prog: _Progress, *, splits: Splits, cfg: TrainConfig, config: dict, out_dir: Path,
               amp, log: Callable[[str], None], tag: str) -> None:
    """``[train] final_fit_epochs``: from the best (validation) weights, that many epochs over the
    training data extended through the validation period; the result replaces model.pt. The
    checkpoint records it first (a crash in between rewrites model.pt from it; never two fits)."""
    if prog.final_fit_done:
        if tr.dist.is_main:  # model.pt may predate the checkpoint's final-fit weights
            _atomic_save(tr.model.state_dict(), out_dir / MODEL)
        tr.dist.barrier()
        return
    tr.model.load_state_dict(torch.load(out_dir / MODEL, map_location=tr.dev, weights_only=True))
    windows = TrainingWindows.from_sequences(through_validation(splits), max_len=cfg.max_len, directory=out_dir)
    sampler = NegativeSampler.of(cfg, splits)
    for e in range(cfg.final_fit_epochs):
        tr.dist.seed_dropout(cfg.seed, cfg.epochs + e)
        t0 = time.perf_counter()
        loss_sum, n = _train_epoch(tr, windows, cfg=cfg, sampler=sampler, amp=amp)
        seconds = time.perf_counter() - t0
        prog.final_fit_seconds += seconds
        log(f"{tag} final fit {e + 1}/{cfg.final_fit_epochs} (through the validation period): "
            f"loss {loss_sum / max(n, 1):.4f}, {n:,} events, {seconds:.1f}s")
    prog.final_fit_done = True
    if tr.dist.is_main:
        _save_checkpoint(tr, prog, config=config, epoch=prog.epoch - 1, path=out_dir / CHECKPOINT)
        _atomic_save(tr.model.state_dict(), out_dir / MODEL)
    tr.dist.barrier()


def train_recommender(*, scheme: IdScheme, hidden: int, splits: Splits, id_table: pd.DataFrame | None,
                      id_table_hash: str | None, cfg: TrainConfig, out_dir: Path,
                      log: Callable[[str], None] = print, device: str | None = None,
                      on_epoch_end: Callable[[dict], None] | None = None,
                      eval_batch_size: int = 1024, max_tie_embeddings: int | None = None,
                      content: np.ndarray | None = None) -> TrainResult:
    """Train one model; resume from ``out_dir/checkpoint.pt`` when a run with this config was cut off.

    ``on_epoch_end(record)`` runs after each epoch's checkpoint is on disk (tests use it to
    simulate a crash). Returns the best-validation-AUC weights in ``TrainResult.model``. The tie
    table has at most ``max_tie_embeddings`` rows (``[semantic_ids] max_tie_embeddings``).
    ``content`` (N+1, D): content features aligned to the vocabulary, needed with ``cfg.content_init``.
    Under torchrun (``[train] processes`` > 1) every rank calls this; see ``distributed``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if not scheme.is_id and id_table is None:
        raise ValueError(f"ID scheme {scheme.key!r} needs its semantic-ID table")
    d = distributed.from_env(dev)
    if d.world != cfg.processes:
        raise SemidError(f"[train] processes = {cfg.processes} but this run has {d.world} process(es) "
                         "(WORLD_SIZE): launch it with torchrun --nproc-per-node equal to [train] processes")
    dev = distributed.device_for(d, dev)
    tag = f"[{scheme.key} h={hidden}]" + (f"[rank {d.rank}/{d.world}]" if d.active else "")
    if not d.is_main:
        log = lambda _msg: None  # noqa: E731  (rank 0 alone logs)

    with deterministic(dev.type == "cpu" or cfg.deterministic):
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)  # batching + negative sampling
        model = model_from_splits(scheme=scheme, hidden=hidden, splits=splits,
                                  id_table=id_table, cfg=cfg, max_tie_embeddings=max_tie_embeddings,
                                  content=content).to(dev)
        config = run_config(scheme=scheme, hidden=hidden, splits=splits, id_table_hash=id_table_hash, cfg=cfg,
                            encoder=model.encoder, max_tie_embeddings=max_tie_embeddings,
                            content_hash=content_hash(content) if uses_content(scheme, cfg) else None)
        config = json.loads(json.dumps(config))
        counts = model.parameter_counts()
        use_scaler = dev.type == "cuda" and not torch.cuda.is_bf16_supported()  # bf16 needs no loss scaling
        anchored = cfg.content_anchor > 0 and cfg.content_init and uses_content(scheme, cfg)
        tr = _Trainer(model=model, opt=make_optimizer(model, cfg), gen=gen, dev=dev, dist=d,
                      scaler=torch.amp.GradScaler("cuda", enabled=use_scaler),
                      anchor=model.encoder.table.detach().clone() if anchored else None)
        prog = _resume(tr, config=config, out_dir=out_dir, log=log, tag=tag)

        # memory-mapped under out_dir (written once, per-process temp + rename: ranks may race safely)
        windows = TrainingWindows.from_sequences(splits.train, max_len=cfg.max_len, directory=out_dir)
        if len(windows) == 0:
            raise SplitError(splits.training_problem or "no training sequence has two or more events: nothing to train on")
        if prog.epoch == 0:
            log(f"{tag} {counts['total']:,} parameters ({counts['track_representation']:,} track representation); "
                f"{len(windows):,} windows, {splits.vocab.n_tracks:,} tracks, device {dev.type}"
                + (f", {d.world} processes" if d.active else ""))

        while not prog.finished and prog.epoch < cfg.epochs:
            record = _run_epoch(tr, prog, windows, splits=splits, cfg=cfg, config=config, out_dir=out_dir,
                                eval_batch_size=eval_batch_size, amp=autocast(dev), log=log, tag=tag)
            if on_epoch_end is not None:
                on_epoch_end(record)
            if prog.finished and prog.bad_epochs >= cfg.patience and prog.epoch < cfg.epochs:
                log(f"{tag} early stop: no validation improvement for {cfg.patience} epochs")

        if model.has_terms and prog.prior is None:
            _choose_prior(tr, prog, splits=splits, config=config, out_dir=out_dir, log=log, tag=tag,
                          days=cfg.recent_prior_days, adjusted=cfg.prior_adjusted, by_plays=cfg.prior_by_plays)
        if cfg.final_fit_epochs > 0:
            _final_fit(tr, prog, splits=splits, cfg=cfg, config=config, out_dir=out_dir, amp=autocast(dev),
                       log=log, tag=tag)
        model.load_state_dict(torch.load(out_dir / MODEL, map_location=dev, weights_only=True))
        if model.has_terms:  # the weights chosen on validation, z as last trained
            apply_chosen(model, splits, prog.prior, final_fit=cfg.final_fit_epochs > 0)
            if d.is_main:
                _atomic_save(model.state_dict(), out_dir / MODEL)
            d.barrier()
        model.eval()
    return _result(prog, config=config, counts=counts, out_dir=out_dir, model=model)


def _choose_prior(tr: _Trainer, prog: _Progress, *, splits: Splits, config: dict, out_dir: Path,
                  log: Callable[[str], None], tag: str, days: int, adjusted: bool, by_plays: bool) -> None:
    """The prior's, affinity's and memory's weights chosen for the best weights (``track_prior.
    validation_weight``), kept in the checkpoint. Rank 0 chooses, all get them."""
    tr.model.load_state_dict(torch.load(out_dir / MODEL, map_location=tr.dev, weights_only=True))
    prior = validation_weight(tr.model, splits, recent_days=days, adjusted=adjusted, by_plays=by_plays) if tr.dist.is_main else {
        "weight": math.nan, "recent": math.nan, "recent_days": days, "adjusted": adjusted, "by_plays": by_plays, "affinity": [math.nan] * 2, "memory": [math.nan] * 2, "taste": math.nan}
    prior |= {key: tr.dist.broadcast_float(prior[key], tr.dev) for key in ("weight", "recent", "taste", "by_plays")}
    prior |= {key: [tr.dist.broadcast_float(a, tr.dev) for a in prior[key]] for key in ("affinity", "memory")} | {"by_plays": bool(prior["by_plays"])}
    prog.prior = prior
    if tr.dist.is_main:
        _save_checkpoint(tr, prog, config=config, epoch=prog.epoch - 1, path=out_dir / CHECKPOINT)
    tr.dist.barrier()
    if prior.get("val_auc") is not None:
        log(f"{tag} prior w = {prior['weight']:g} (recent ρ {prior['recent']:g}), affinity a = {prior['affinity']}, taste b = {prior['taste']:g}, "
            f"memory r = {prior['memory']} (validation AUC {prior['val_auc']:.4f}, without {prior['val_auc_without']:.4f})")


def _result(prog: _Progress, *, config: dict, counts: dict, out_dir: Path, model: SASRec) -> TrainResult:
    history = prog.history
    train_s = sum(r["train_seconds"] for r in history)
    return TrainResult(
        config=config,
        parameter_counts=counts,
        history=history,
        best_epoch=int(prog.best_epoch),
        best_val_auc=float(prog.best_auc),
        wall_seconds=float(sum(r["seconds"] for r in history) + prog.final_fit_seconds),  # + the final fit
        events_per_s=float(sum(r["events"] for r in history) / max(train_s, 1e-9)),
        checkpoint=out_dir / MODEL,
        resumed_from_epoch=prog.resumed_from,
        prior=prog.prior,
        model=model,
    )
