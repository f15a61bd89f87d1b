"""Data-parallel training with ``torch.distributed``: the process group, the sampler, gradient sums.

A run of N processes is started by ``torchrun`` (``python -m torch.distributed.run``), which sets
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; :func:`from_env` joins that group
(gloo on CPU, nccl on CUDA). Without those variables (or with WORLD_SIZE=1) it returns
:data:`SINGLE` and the training loop is exactly the single-process one.

Exactness. Every rank draws the SAME seeded batch list and the SAME negatives (one generator,
same seed, same draws) and keeps its shard of each batch (:func:`shard`: positions
``rank, rank + N, ...`` of the batch, each window exactly once per epoch across ranks). The
loss of a batch is a mean over its events; each rank divides its partial sum by the GLOBAL
event count of the batch (known to every rank from the window lengths, no collective), and the
ranks' gradients are SUMMED (:meth:`Dist.sum_grads`), so the update equals the single-process
one on the whole batch up to float summation order. What differs: dropout masks are drawn per
rank (seeded by seed, epoch and rank, see :meth:`Dist.seed_dropout`), so with dropout > 0 a
2-process run is an equally valid but not bit-identical sample of the 1-process run.

``torch.nn.parallel.DistributedDataParallel`` is not used: the loss calls the encoder, the
transformer and the scorer separately (``objective.next_event_loss``), outside a wrapped ``forward``;
one coalesced all-reduce per step does what DDP's bucketed reduce does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: ``rank`` of ``world`` processes (``SINGLE`` = 1 process)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def broadcast_float(self, value: float, device: torch.device) -> float:
        """Rank 0's ``value`` on every rank."""
        if not self.active:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.broadcast(t, src=0)
        return float(t.item())

    def sum_floats(self, values: list[float], device: torch.device) -> list[float]:
        if not self.active:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def sum_grads(self, params: list[torch.nn.Parameter]) -> None:
        """Replace every gradient by its sum over the ranks (one coalesced all-reduce).

        A rank whose shard was empty has no gradients: it contributes zeros, and a parameter no
        rank produced a gradient for keeps ``grad = None`` (the optimizer skips it everywhere)."""
        if not self.active:
            return
        dev = params[0].device
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float()
                          for p in params] + [torch.tensor([float(p.grad is not None) for p in params], device=dev)])
        dist.all_reduce(flat)  # (sum of numel + n_params,)
        seen = flat[-len(params):]
        offset = 0
        for i, p in enumerate(params):
            n = p.numel()
            p.grad = flat[offset: offset + n].view_as(p).to(p.dtype) if seen[i] > 0 else None
            offset += n

    def seed_dropout(self, seed: int, epoch: int) -> None:
        """With N > 1: each rank's dropout stream for this epoch, from (seed, epoch, rank) alone —
        so a resumed run redraws exactly the masks of an uninterrupted one. N = 1: untouched (the
        global RNG state is checkpointed and restored, as before)."""
        if self.active:
            torch.manual_seed(seed * 1_000_003 + epoch * 1_009 + self.rank + 1)


SINGLE = Dist()


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def from_env(device: torch.device | None = None, *, timeout_s: float = 1800.0) -> Dist:
    """Join torchrun's process group (once per process) or return ``SINGLE`` outside torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    missing = [v for v in ENV_VARS if v not in os.environ]
    if missing:
        raise RuntimeError(f"WORLD_SIZE={world} but {', '.join(missing)} not set: launch with torchrun")
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    dev = device or torch.device("cpu")
    if not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend_for(dev), timeout=timedelta(seconds=timeout_s))
    return Dist(rank=rank, world=world, local_rank=local_rank)


def device_for(dist_: Dist, device: torch.device) -> torch.device:
    """On CUDA each rank uses its own GPU (LOCAL_RANK); on CPU the device is unchanged."""
    if device.type == "cuda" and dist_.active:
        return torch.device("cuda", dist_.local_rank)
    return device


def shard(idx: torch.Tensor, dist_: Dist) -> torch.Tensor:
    """This rank's part of one batch of window indices ``idx`` (B,): positions rank, rank + N, ...

    Over the ranks the shards partition the batch, so every window of an epoch's batch list is
    trained exactly once across ranks. Striding (not cutting in blocks) keeps the shards' lengths
    alike, as the batch is sorted by length inside its pool."""
    return idx if not dist_.active else idx[dist_.rank:: dist_.world]


def shutdown(dist_: Dist) -> None:
    if dist_.active and dist.is_initialized():
        dist.destroy_process_group()
