"""RQ-VAE tokenizer: MLP encoder → L residual codebooks → MLP decoder (Zeghidour et al. 2021,
as used for semantic IDs by Rajput et al. 2023), plus the torch k-means it is initialised with.

Read top to bottom (the k-means helpers live in ``kmeans.py``): modules (MLP, ResidualQuantizer, RQVAE),
training (`fit_rqvae`), I/O (`RQVAE.save` / `RQVAE.load`: a state_dict of tensors + JSON, never a
pickled module).

Guards against codebook collapse (the most reported failure of public RQ-VAE code):
  * a short autoencoder warm-up, then k-means initialisation of EVERY level on a large sample
    (level l on the residuals left after level l-1);
  * dead-code reset: a code unused for ``dead_code_patience`` steps is re-seeded from residuals
    of the current batch;
  * reconstruction error SUMMED over features (mean over the batch), commitment weight β=0.25,
    straight-through gradients.
After training, the codebooks are refined by a few Lloyd steps on the latents of the whole data
set (encoder frozen) and the decoder is fine-tuned on the final codes; both are deterministic.

Everything is seeded; on CPU a rerun with the same seed, data and thread count is bit-identical.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from .config import RQVAEConfig
from .determinism import deterministic
from .kmeans import ENCODE_BATCH, as_tensor, kmeans, nearest_code, residual_assign

FORMAT = "semid-rqvae/1"


# ----------------------------------------------------------------------------------------------
# modules


class MLP(nn.Module):
    """Linear → ReLU → … → Linear."""

    def __init__(self, *, dims: Sequence[int]):
        super().__init__()
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SkipMLP(nn.Module):
    """y = W x + b + MLP(x): a linear path (PCA-initialised in ``fit_rqvae``) plus a nonlinear
    correction whose last layer starts at zero, so training starts from the best linear map."""

    def __init__(self, *, dims: Sequence[int]):
        super().__init__()
        self.linear = nn.Linear(dims[0], dims[-1])
        self.mlp = MLP(dims=dims)
        last = self.mlp.net[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.mlp(x)


class ResidualQuantizer(nn.Module):
    """L codebooks of K codewords; level l quantizes what levels < l left over."""

    def __init__(self, *, dim: int, levels: int, codebook_size: int, beta: float = 0.25):
        super().__init__()
        self.dim, self.levels, self.codebook_size, self.beta = dim, levels, codebook_size, beta
        self.codebooks = nn.Parameter(torch.randn(levels, codebook_size, dim) * 0.01)  # (L, K, D)
        self.register_buffer("unused_steps", torch.zeros(levels, codebook_size, dtype=torch.long))  # (L, K)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        # z (B, D) -> z_q straight-through (B, D), codes (B, L), quantization loss (), residuals (L, B, D)
        residual = z
        z_q = torch.zeros_like(z)
        codes, residuals = [], []
        loss = z.new_zeros(())
        for level in range(self.levels):
            book = self.codebooks[level]  # (K, D)
            idx = nearest_code(residual.detach(), book.detach())  # (B,)
            q = book[idx]  # (B, D)
            codebook_loss = ((residual.detach() - q) ** 2).sum(-1).mean()
            commit_loss = ((residual - q.detach()) ** 2).sum(-1).mean()
            loss = loss + codebook_loss + self.beta * commit_loss
            residuals.append(residual.detach())
            codes.append(idx)
            z_q = z_q + q
            residual = residual - q.detach()
        z_q = z + (z_q - z).detach()  # straight-through: decoder gradient flows to the encoder unchanged
        return z_q, torch.stack(codes, 1), loss, torch.stack(residuals)

    @torch.no_grad()
    def reset_dead_codes(self, codes: torch.Tensor, residuals: torch.Tensor, patience: int, g: torch.Generator) -> int:
        """Count steps each code went unused; re-seed codes unused for ``patience`` steps from batch residuals."""
        # codes (B, L), residuals (L, B, D)
        n_reset = 0
        for level in range(self.levels):
            used = torch.bincount(codes[:, level], minlength=self.codebook_size) > 0  # (K,)
            self.unused_steps[level] = torch.where(used, 0, self.unused_steps[level] + 1)
            dead = (self.unused_steps[level] >= patience).nonzero().squeeze(1)  # (n_dead,)
            if dead.numel():
                pick = torch.randint(residuals.shape[1], (dead.numel(),), generator=g)
                self.codebooks.data[level, dead] = residuals[level, pick]
                self.unused_steps[level, dead] = 0
                n_reset += dead.numel()
        return n_reset

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, L) -> sum of codewords (B, D)."""
        out = torch.zeros(codes.shape[0], self.dim)
        for level in range(self.levels):
            out += self.codebooks[level][codes[:, level]]
        return out


class RQVAE(nn.Module):
    """x (B, input_dim) → encoder → z (B, latent_dim) → residual quantizer → decoder → x̂ (B, input_dim)."""

    def __init__(
        self,
        *,
        input_dim: int,
        latent_dim: int = 32,
        hidden: Sequence[int] = (128, 64),
        levels: int = 4,
        codebook_size: int = 256,
        beta: float = 0.25,
    ):
        super().__init__()
        self.hparams = dict(
            input_dim=int(input_dim), latent_dim=int(latent_dim), hidden=[int(h) for h in hidden],
            levels=int(levels), codebook_size=int(codebook_size), beta=float(beta),
        )
        self.encoder = SkipMLP(dims=[input_dim, *hidden, latent_dim])
        self.quantizer = ResidualQuantizer(dim=latent_dim, levels=levels, codebook_size=codebook_size, beta=beta)
        self.decoder = SkipMLP(dims=[latent_dim, *reversed(list(hidden)), input_dim])

    @torch.no_grad()
    def init_linear_paths(self, x: torch.Tensor) -> None:
        """PCA-initialise the linear paths: encoder = projection on the top principal directions,
        decoder = its transpose (lossless when latent_dim >= input_dim)."""
        mu = x.mean(0)  # (F,)
        _, _, vt = torch.linalg.svd(x - mu, full_matrices=False)  # vt (min(S, F), F)
        d = min(self.hparams["latent_dim"], vt.shape[0])
        w = torch.zeros(self.hparams["latent_dim"], x.shape[1])  # (D, F)
        w[:d] = vt[:d]
        self.encoder.linear.weight.copy_(w)
        self.encoder.linear.bias.copy_(-(w @ mu))
        self.decoder.linear.weight.copy_(w.t())
        self.decoder.linear.bias.copy_(mu)

    @property
    def levels(self) -> int:
        return self.quantizer.levels

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        # x (B, F) -> x_hat (B, F), codes (B, L), reconstruction loss (), quantization loss ()
        z = self.encoder(x)  # (B, D)
        z_q, codes, q_loss, _ = self.quantizer(z)
        x_hat = self.decoder(z_q)  # (B, F)
        recon = ((x_hat - x) ** 2).sum(-1).mean()  # summed over features, mean over batch
        return x_hat, codes, recon, q_loss

    @torch.no_grad()
    def encode_codes(self, X: np.ndarray | torch.Tensor, batch_size: int = ENCODE_BATCH) -> torch.Tensor:
        """Codes for every row, in blocks: X (N, F) -> LongTensor (N, L)."""
        x = as_tensor(X)
        books = self.quantizer.codebooks.detach()  # (L, K, D)
        c_sq = (books * books).sum(-1)  # (L, K)
        out = torch.empty(x.shape[0], self.levels, dtype=torch.long)
        was_training = self.training
        self.eval()
        for s in range(0, x.shape[0], batch_size):
            r = self.encoder(x[s : s + batch_size])  # (B, D)
            for level in range(self.levels):
                idx = nearest_code(r, books[level], c_sq[level])  # (B,)
                out[s : s + batch_size, level] = idx
                r -= books[level][idx]
        self.train(was_training)
        return out

    @torch.no_grad()
    def latent(self, X: np.ndarray | torch.Tensor, batch_size: int = ENCODE_BATCH) -> torch.Tensor:
        """Encoder output z (N, D) in blocks: the input of the (balanced) assignment in ``balanced.py``."""
        x = as_tensor(X)
        was_training = self.training
        self.eval()
        z = torch.cat([self.encoder(x[s : s + batch_size]) for s in range(0, x.shape[0], batch_size)]) if len(x) else torch.zeros(0, self.quantizer.dim)
        self.train(was_training)
        return z

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor | np.ndarray, batch_size: int = ENCODE_BATCH) -> torch.Tensor:
        """codes (N, L) -> x̂ (N, F)."""
        codes = torch.as_tensor(codes, dtype=torch.long)
        parts = [self.decoder(self.quantizer.lookup(codes[s : s + batch_size])) for s in range(0, codes.shape[0], batch_size)]
        return torch.cat(parts) if parts else torch.empty(0, self.hparams["input_dim"])

    @torch.no_grad()
    def reconstruct(self, X: np.ndarray | torch.Tensor, batch_size: int = ENCODE_BATCH) -> torch.Tensor:
        """X (N, F) -> decoder(quantized latent) (N, F)."""
        return self.decode_codes(self.encode_codes(X, batch_size), batch_size)

    @torch.no_grad()
    def reconstruction_error(self, X: np.ndarray | torch.Tensor) -> float:
        """Mean over tracks of the squared error summed over features."""
        x = as_tensor(X)
        return float(((self.reconstruct(x) - x) ** 2).sum(1).mean())

    # -- I/O: tensors + JSON, never a pickled module --------------------------------------------

    def save(self, directory: str | Path, extra: dict | None = None) -> Path:
        """Write ``model.pt`` (state_dict), ``config.json`` (hyper-parameters + ``extra``) and ``codebooks.npz``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.detach().clone() for k, v in self.state_dict().items()}, d / "model.pt")
        cfg = {"format": FORMAT, "model": self.hparams, **(extra or {})}
        (d / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
        np.savez(d / "codebooks.npz", codebooks=self.quantizer.codebooks.detach().numpy())
        return d

    @classmethod
    def load(cls, directory: str | Path) -> "RQVAE":
        d = Path(directory)
        cfg = json.loads((d / "config.json").read_text())
        if cfg.get("format") != FORMAT:
            raise ValueError(f"{d / 'config.json'}: not an RQ-VAE artifact (format {cfg.get('format')!r})")
        model = cls(**cfg["model"])
        model.load_state_dict(torch.load(d / "model.pt", map_location="cpu", weights_only=True))
        model.eval()
        return model


# ----------------------------------------------------------------------------------------------
# training


def config_record(cfg: RQVAEConfig) -> dict:
    """The training settings as stored with a fitted artifact (JSON-able)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}


def _lr_at(step: int, total: int, lr: float, warmup: int = 50) -> float:
    """Linear warm-up then cosine decay to 10% of ``lr``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def _batches(x: torch.Tensor, bs: int, g: torch.Generator):
    """One shuffled epoch of (B, F) batches (draws a permutation from ``g``)."""
    n = len(x)
    perm = torch.randperm(n, generator=g)
    for s in range(0, n, bs):
        yield x[perm[s : s + bs]]


def _warm_up(model: RQVAE, x: torch.Tensor, *, epochs: int, bs: int, lr: float, g: torch.Generator, log) -> None:
    """Phase 1: a plain autoencoder (no quantization)."""
    opt = torch.optim.Adam(list(model.encoder.parameters()) + list(model.decoder.parameters()), lr=lr)
    loss = None
    for _ in range(epochs):
        for xb in _batches(x, bs, g):
            loss = ((model.decoder(model.encoder(xb)) - xb) ** 2).sum(-1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    if loss is not None:
        log(f"rqvae: warm-up done, recon {float(loss.detach()):.3f}")


@torch.no_grad()
def _kmeans_init(model: RQVAE, x: torch.Tensor, *, cfg: RQVAEConfig, levels: int, k: int, seed: int,
                 g: torch.Generator) -> None:
    """Phase 2: residual k-means of every level on a large sample of latents."""
    sample = torch.randperm(len(x), generator=g)[: min(len(x), cfg.kmeans_sample)]
    r = model.encoder(x[sample])  # (S, D)
    for level in range(levels):
        c, lab = kmeans(r, k, cfg.kmeans_iters, seed + 1009 * level)
        model.quantizer.codebooks.data[level] = c
        r = r - c[lab]


def _train_quantized(model: RQVAE, x: torch.Tensor, *, cfg: RQVAEConfig, bs: int, g: torch.Generator,
                     history: dict, log) -> None:
    """Phase 3: RQ-VAE training (reconstruction + commitment) with dead-code reset, cosine lr."""
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    steps_per_epoch = math.ceil(len(x) / bs)
    total, step = cfg.epochs * steps_per_epoch, 0
    model.train()
    for epoch in range(cfg.epochs):
        ep_loss = ep_recon = 0.0
        for xb in _batches(x, bs, g):
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, total, cfg.lr)
            z = model.encoder(xb)  # (B, D)
            z_q, codes, q_loss, residuals = model.quantizer(z)
            recon = ((model.decoder(z_q) - xb) ** 2).sum(-1).mean()
            loss = recon + q_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history["dead_code_resets"] += model.quantizer.reset_dead_codes(codes, residuals, cfg.dead_code_patience, g)
            ep_loss += float(loss.detach())
            ep_recon += float(recon.detach())
            step += 1
        history["loss"].append(ep_loss / steps_per_epoch)
        history["recon"].append(ep_recon / steps_per_epoch)
        log(f"rqvae: epoch {epoch + 1}/{cfg.epochs} loss {history['loss'][-1]:.3f} recon {history['recon'][-1]:.3f}")


@torch.no_grad()
def _refine(model: RQVAE, x: torch.Tensor, *, levels: int, k: int, iters: int, seed: int) -> torch.Tensor:
    """Phase 4a: Lloyd steps of residual k-means on ALL latents (encoder frozen). → (N, D) quantized latents."""
    model.eval()
    z_all = torch.cat([model.encoder(x[s : s + ENCODE_BATCH]) for s in range(0, len(x), ENCODE_BATCH)])  # (N, D)
    if iters > 0:
        r = z_all
        for level in range(levels):
            c, lab = kmeans(r, k, iters, seed, init=model.quantizer.codebooks.data[level])
            model.quantizer.codebooks.data[level] = c
            r = r - c[lab]
    return model.quantizer.lookup(residual_assign(z_all, model.quantizer.codebooks.detach()))


def _finetune_decoder(model: RQVAE, x: torch.Tensor, z_q: torch.Tensor, *, epochs: int, bs: int, lr: float,
                      g: torch.Generator) -> None:
    """Phase 4b: decoder-only training on the final codes."""
    opt = torch.optim.Adam(model.decoder.parameters(), lr=lr)
    n = len(x)
    total, step = epochs * math.ceil(n / bs), 0
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for s in range(0, n, bs):
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, total, lr, warmup=0)
            i = perm[s : s + bs]
            loss = ((model.decoder(z_q[i]) - x[i]) ** 2).sum(-1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1


def fit_rqvae(
    X: np.ndarray | torch.Tensor,
    *,
    cfg: RQVAEConfig,
    codebook_size: int,
    levels: int,
    seed: int,
    warmup_epochs: int | None = None,
    refine_iters: int = 5,
    finetune_epochs: int | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[RQVAE, dict]:
    """Train an RQ-VAE on X (N, F) (standardized features). Returns (model in eval mode, history).

    Phases: (0) PCA initialisation of the encoder/decoder linear paths; (1) ``warmup_epochs`` of a
    plain autoencoder (default 1); (2) k-means init of every level on ``cfg.kmeans_sample`` latents; (3)
    ``cfg.epochs`` of RQ-VAE training with dead-code reset; (4) ``refine_iters`` Lloyd steps of
    residual k-means on all latents (encoder frozen) and ``finetune_epochs`` (default epochs // 6)
    of decoder-only training on the final codes. One seeded generator drives every phase, in order.
    """
    t0 = time.perf_counter()
    log = log or (lambda s: None)
    x = as_tensor(X)  # (N, F)
    n, f = x.shape
    warmup_epochs = 1 if warmup_epochs is None else warmup_epochs
    finetune_epochs = max(1, cfg.epochs // 6) if finetune_epochs is None else finetune_epochs
    history: dict = {"loss": [], "recon": [], "dead_code_resets": 0}
    with deterministic():
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed)
        model = RQVAE(
            input_dim=f, latent_dim=cfg.latent_dim, hidden=cfg.hidden, levels=levels,
            codebook_size=codebook_size, beta=cfg.beta,
        )
        model.init_linear_paths(x[torch.randperm(n, generator=g)[: min(n, 50_000)]])
        bs = max(1, min(cfg.batch_size, n))
        _warm_up(model, x, epochs=warmup_epochs, bs=bs, lr=cfg.lr, g=g, log=log)
        _kmeans_init(model, x, cfg=cfg, levels=levels, k=codebook_size, seed=seed, g=g)
        _train_quantized(model, x, cfg=cfg, bs=bs, g=g, history=history, log=log)
        z_q = _refine(model, x, levels=levels, k=codebook_size, iters=refine_iters, seed=seed)
        if finetune_epochs > 0:
            _finetune_decoder(model, x, z_q, epochs=finetune_epochs, bs=bs, lr=cfg.lr * 0.3, g=g)
        model.eval()
    history["fit_seconds"] = time.perf_counter() - t0
    history["config"] = asdict(cfg)
    return model, history
