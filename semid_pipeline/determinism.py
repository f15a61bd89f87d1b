"""Deterministic torch kernels for a block of code (RQ-VAE fitting, residual k-means, training)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def deterministic(enabled: bool = True) -> Iterator[None]:
    """Ask torch for deterministic kernels inside the block (warn-only where none exists), restoring
    the previous setting after. ``enabled=False`` leaves the setting alone (training on CUDA with
    ``[train] deterministic = false``: CUDA's faster non-deterministic kernels)."""
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)
