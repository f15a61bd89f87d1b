"""Content initialisation (``[train] content_init``): track tables that start at the content.

The content features' principal components (``content_targets``) are the target; the encoder's
fields are fitted to them by ridge backfitting (``fit_fields_to``): ``id`` rows become the PC
scores, semantic-ID codewords are fitted so that a track's summed codewords ≈ its PC scores.
``v0`` (random codes by design, the control) is never content-initialised (``uses_content``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch

from .config import TrainConfig
from .model import TrackEncoder
from .schemes import IdScheme


def uses_content(scheme: IdScheme, cfg: TrainConfig) -> bool:
    """Whether training this scheme under ``cfg`` reads the content features (``content_init``,
    ``content_affinity``); never for random codes (``v0``, the control, is content-free by design)."""
    return bool(cfg.content_init or cfg.content_affinity) and not scheme.random_codes


def init_from_content(encoder: TrackEncoder, *, content: np.ndarray, hidden: int, std: float) -> dict[str, float]:
    """Fit every content-bearing field of ``encoder`` to the PCs of ``content`` (N+1, D)."""
    return fit_fields_to(encoder, content_targets(content, hidden=hidden), fields=content_fields(encoder), std=std)


def content_targets(content: np.ndarray, *, hidden: int) -> torch.Tensor:
    """content (N+1, D) rows aligned to the vocabulary (a row of NaN = no content; row 0 = padding)
    → (N+1, h) principal-component scores of the tracks with content (zeros elsewhere).

    The top min(h, D) components of the centred content (eigenvectors of the D × D covariance,
    each signed so that its largest loading is positive: deterministic), variances kept.
    """
    X = np.asarray(content, dtype=np.float64)
    has = np.isfinite(X).all(1)
    has[0] = False
    out = np.zeros((X.shape[0], hidden), dtype=np.float32)
    if has.sum() < 2:
        return torch.from_numpy(out)
    Xc = X[has] - X[has].mean(0)
    vals, vecs = np.linalg.eigh(Xc.T @ Xc)  # ascending
    d = min(hidden, X.shape[1])
    V = vecs[:, ::-1][:, :d]
    V = V * np.sign(V[np.abs(V).argmax(0), np.arange(d)])
    out[has, :d] = Xc @ V
    return torch.from_numpy(out)


def content_fields(encoder: TrackEncoder) -> list[str]:
    """The fields content initialisation fits: every field but the tie counter (it carries no content)."""
    return [f for f in encoder.field_names if f != "tie"]


def fit_fields_to(encoder: TrackEncoder, target: torch.Tensor, *, fields: Sequence[str], std: float,
                  ridge: float = 1.0, sweeps: int = 3) -> dict[str, float]:
    """Content initialisation: set the rows of ``fields`` so that Σ_f E_f[codes_f[i]] ≈ target[i].

    target (N+1, h): a vector per vocabulary track (rows of all zeros = no target, e.g. tracks
    without content; row 0 is padding). Ridge backfitting: each field in turn gets
    E_f[c] = Σ_{i: code c} (target_i − other fields' part_i) / (count_c + ridge), ``sweeps`` times
    over the fields; ``id`` (one row per track) is thus target / (1 + ridge), a codeword the mean
    of its tracks' residuals. The fitted rows are then scaled so that the fitted track vectors
    have RMS ``std`` per coordinate (every scheme starts at the same scale). Only the columns the
    target spans are set (content with D < h dimensions leaves h − D random columns); rows no
    target track uses keep their random init, as do fields not named. Returns {"cosine": of the fitted
    sums to the targets over all fitted tracks (1 = the fields reproduce the target's direction),
    "tracks": tracks fitted}.
    """
    with torch.no_grad():
        target = torch.as_tensor(target, dtype=torch.float32, device=encoder.table.device)
        assert target.shape == (encoder.n_tokens, encoder.hidden), \
            f"target must be (N+1, h) = {(encoder.n_tokens, encoder.hidden)}, got {tuple(target.shape)}"
        fitted, used, Z, pred = backfit(encoder, target, fields=fields, ridge=ridge, sweeps=sweeps)
        if Z is None:
            return {"cosine": 0.0, "tracks": 0}
        cols = Z.abs().sum(0) > 0  # (h,) dimensions the target spans (content may have fewer than h)
        rms = pred[:, cols].pow(2).mean().sqrt().clamp_min(1e-12)
        encoder.table[used.nonzero()[:, :1], cols.nonzero()[:, 0]] = fitted[used][:, cols] * (std / rms)
        cosine = float((Z * pred).sum() / (Z.norm() * pred.norm()).clamp_min(1e-12))
    return {"cosine": cosine, "tracks": int(len(Z))}


@torch.no_grad()
def backfit(encoder: TrackEncoder, target: torch.Tensor, *, fields: Sequence[str], ridge: float = 1.0,
            sweeps: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Ridge backfitting of ``fields`` to target (N+1, d): (fitted (rows of ``encoder.table``, d),
    used (rows,) bool, Z (M, d) the targets of the M fitted tracks, pred (M, d) their fitted sums);
    Z and pred are None when no track has a target. A row's value is
    Σ_{i: code c} (target_i − other fields' part_i) / (count_c + ridge), ``sweeps`` times over the fields;
    rows no target track uses stay 0 (``fit_fields_to``, ``content_affinity.field_table``)."""
    target = torch.as_tensor(target, dtype=torch.float32, device=encoder.codes.device)
    assert target.shape[0] == encoder.n_tokens, f"target must have N+1 = {encoder.n_tokens} rows, got {target.shape[0]}"
    unknown = [f for f in fields if f not in encoder.field_names]
    assert not unknown, f"fields {unknown} not in the encoder ({encoder.field_names})"
    n_rows = encoder.table.shape[0]
    fitted = torch.zeros(n_rows, target.shape[1], device=target.device)  # row 0 (pad) stays 0
    used = torch.zeros(n_rows, dtype=torch.bool, device=target.device)
    idx = torch.nonzero(target.abs().sum(1) > 0).squeeze(1)  # (M,) tracks with a target
    idx = idx[idx > 0]
    if len(idx) == 0 or not fields:
        return fitted, used, None, None
    Z = target[idx]  # (M, d)
    rows = encoder.codes[idx][:, [encoder.field_names.index(f) for f in fields]]  # (M, Fs) rows of table
    pred = torch.zeros_like(Z)  # (M, d) Σ of the fitted fields
    for _ in range(sweeps):
        for j in range(rows.shape[1]):
            r = rows[:, j]  # (M,) 0 = the track has no code in this field
            own = fitted[r]  # (M, d)
            resid = Z - pred + own
            sums = torch.zeros_like(fitted).index_add_(0, r, resid)
            cnt = torch.bincount(r, minlength=n_rows).to(Z.dtype)
            cnt[0] = 0
            hit = cnt > 0
            fitted[hit] = sums[hit] / (cnt[hit] + ridge).unsqueeze(1)
            used |= hit
            pred = pred - own + fitted[r]
    return fitted, used, Z, pred


def content_hash(content: np.ndarray | None) -> str | None:
    """A short hash of the content matrix (NaN rows included): part of a run's identity."""
    if content is None:
        return None
    arr = np.ascontiguousarray(np.asarray(content, dtype=np.float32))
    return hashlib.sha256(repr(arr.shape).encode() + arr.tobytes()).hexdigest()[:16]
