"""The training objective: BCE on each observed next event's feedback (optionally the next
``horizon`` events) plus a weighted term of sampled catalogue negatives (``NegativeSampler``:
uniform, or by popularity with the logQ correction); and the optimizer (``make_optimizer``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .config import TrainConfig
from .model import SASRec
from .splits import Splits


def next_event_loss(model: SASRec, tracks: torch.Tensor, feedback: torch.Tensor, negatives: torch.Tensor | None,
                    *, negative_weight: float = 1.0, normaliser: int | None = None,
                    horizon: int = 1, neg_logq: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """tracks/feedback (B, T+1) left-padded windows; negatives (B, T, S) or None → (loss, #events).

    loss = mean over observed next events of BCE(logit, feedback)        (the metric's question)
         + negative_weight · mean over events of mean_S BCE(negative logit, 0)   (optional extra)

    The main term asks what the AUC asks: which of the listener's plays are liked. Uniform
    catalogue negatives teach "played vs random track" (which popularity answers better); they
    are kept as a weighted extra term. Being uniform, their logQ correction is a constant and is
    not applied; negatives drawn by popularity pass ``neg_logq`` (``NegativeSampler``). ``negative_weight = 1`` with S negatives weighs each negative like the observed
    event divided by S. ``normaliser``: divide by this event count instead of the batch's own
    (data-parallel ranks pass the whole batch's count, so their partial losses sum to its mean).
    """
    x, fx = tracks[:, :-1], feedback[:, :-1]  # (B, T) inputs
    y, fy = tracks[:, 1:], feedback[:, 1:]  # (B, T) next events
    mask = ((x > 0) & (y > 0)).float()  # (B, T): a real next event with a real history
    vecs = model.encoder(tracks)  # (B, T+1, h): one lookup serves inputs and next-event targets
    h = model(x, fx, track_vecs=vecs[:, :-1])  # (B, T, h)
    pos_logit = (h * vecs[:, 1:].to(h.dtype)).sum(-1)  # (B, T)
    if model.encoder.has_bias:
        pos_logit = pos_logit + model.encoder.track_bias(y).to(pos_logit.dtype)
    n = mask.sum().clamp_min(1.0) if normaliser is None else float(max(normaliser, 1))
    if horizon > 1:  # h_t scores each of the next `horizon` events of the window: mean BCE per position
        T = x.shape[1]
        pair_logit = torch.einsum("bth,bjh->btj", h, vecs[:, 1:].to(h.dtype))  # (B, T, T): h_t · vec(y_j)
        if model.encoder.has_bias:
            pair_logit = pair_logit + model.encoder.track_bias(y).to(pair_logit.dtype)[:, None, :]
        ahead = torch.arange(T, device=x.device)[None, :] - torch.arange(T, device=x.device)[:, None]  # j - t
        pairs = ((ahead >= 0) & (ahead < horizon))[None] & (y > 0)[:, None, :]  # (B, T, T)
        labels = (fy > 0).float()[:, None, :].expand(-1, T, -1)
        bce = F.binary_cross_entropy_with_logits(pair_logit.float(), labels, reduction="none")  # (B, T, T)
        obs = (bce * pairs).sum(-1) / pairs.sum(-1).clamp_min(1)  # (B, T)
    else:
        obs = F.binary_cross_entropy_with_logits(pos_logit.float(), (fy > 0).float(), reduction="none")  # (B, T)
    loss = (obs * mask).sum() / n
    if negatives is not None and negatives.shape[-1] > 0 and negative_weight > 0:
        real = mask > 0  # (B, T): scored at real next events only (padding would add 0 × its cost)
        neg_idx = negatives[real]  # (M, S)
        neg_logit = model.score(h[real], neg_idx).float()  # (M, S)
        if neg_logq is not None:  # popularity-sampled: logQ correction
            neg_logit = neg_logit - neg_logq[neg_idx]
        neg = F.binary_cross_entropy_with_logits(neg_logit, torch.zeros_like(neg_logit), reduction="none")
        loss = loss + negative_weight * neg.mean(-1).sum() / n
    return loss, int(mask.sum())


@dataclass(frozen=True)
class NegativeSampler:
    """Catalogue negatives for the extra loss term: uniform over the N tracks, or with
    ``[train] negative_popularity`` = a > 0 drawn with q_j ∝ (training plays_j + 1)^a, and then
    ``logq`` (N+1,) = log(N · q_j) is subtracted from each sampled negative's logit (the logQ
    correction: popular tracks are not pushed down just for being drawn more often). a = 0 is
    uniform, where the correction is 0."""

    n_tracks: int
    cum: torch.Tensor | None = None  # (N,) cumulative q over tracks 1..N; None = uniform
    logq: torch.Tensor | None = None  # (N+1,) float32, row 0 (padding) = 0

    @classmethod
    def of(cls, cfg: TrainConfig, splits: Splits) -> NegativeSampler:
        n = splits.vocab.n_tracks
        a = float(cfg.negative_popularity)
        if a == 0.0:
            return cls(n_tracks=n)
        w = (torch.as_tensor(np.asarray(splits.train_track_counts[1:n + 1], dtype=np.float64)) + 1.0) ** a
        q = w / w.sum()
        logq = torch.zeros(n + 1, dtype=torch.float32)
        logq[1:] = torch.log(q * n).float()
        return cls(n_tracks=n, cum=torch.cumsum(q, 0), logq=logq)

    def draw(self, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
        """(...) long track indices in 1..N."""
        if self.cum is None:
            return torch.randint(1, self.n_tracks + 1, shape, generator=gen)
        u = torch.rand(shape, generator=gen, dtype=torch.float64) * float(self.cum[-1])
        return (torch.searchsorted(self.cum, u) + 1).clamp_max(self.n_tracks)


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
