"""Compute settings for training: threads, device, seed."""

from __future__ import annotations

import dagster as dg

from .runs import register_run_process


class ComputeResource(dg.ConfigurableResource):
    """``device``: ``auto`` (CUDA with mixed precision when present, else CPU), ``cpu`` or ``cuda``.
    ``threads``: torch intra-op threads (0 = torch's default)."""

    device: str = "auto"
    threads: int = 2

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        register_run_process(context)

    def device_name(self) -> str:
        """``cpu`` or ``cuda`` (``auto``: CUDA when this host has it), without touching torch's threads."""
        if self.device == "auto":
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device

    def configure_torch(self) -> str:
        import torch

        if self.threads > 0:
            torch.set_num_threads(self.threads)
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device
