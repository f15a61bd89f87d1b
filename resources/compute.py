"""Compute settings for training: threads, device, seed."""

from __future__ import annotations

import dagster as dg
from pydantic import PrivateAttr

from .pools import parallel_training_steps, threads_per_step, usable_cores
from .runs import register_run_process


class ComputeResource(dg.ConfigurableResource):
    """``device``: ``auto`` (CUDA with mixed precision when present, else CPU), ``cpu`` or ``cuda``.
    ``threads``: torch intra-op threads; 0 (default) = derived when the run starts: usable cores //
    training steps that can run at once (``resources/pools.py``: min of the ``training`` pool limit
    and ``max_concurrent_runs``), so two concurrent grid runs on 2 cores use 1 thread each."""

    device: str = "auto"
    threads: int = 0
    _derived_threads: int | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        register_run_process(context)
        if self.threads <= 0 and context.instance is not None:
            parallel = parallel_training_steps(context.instance)
            self._derived_threads = threads_per_step(cores=usable_cores(), parallel=parallel)
            context.log.info(f"torch threads: {self._derived_threads} ({usable_cores()} cores, "
                             f"{parallel} training steps at once)")

    @property
    def effective_threads(self) -> int:
        """Threads a training step uses: ``threads`` if set, else derived (all cores without an instance)."""
        if self.threads > 0:
            return self.threads
        return self._derived_threads or usable_cores()

    def device_name(self) -> str:
        """``cpu`` or ``cuda`` (``auto``: CUDA when this host has it), without touching torch's threads."""
        if self.device == "auto":
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device

    def configure_torch(self) -> str:
        import torch

        torch.set_num_threads(self.effective_threads)
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device
