"""Training windows: left-padded chunks of the training sequences, and their batching.

A window holds ``max_len + 1`` events (``max_len`` inputs and the shifted next-event targets).
``TrainingWindows`` is what the training loop sees: ``lengths`` (W,) and ``batch(idx)`` returning
the (B, T+1) track and feedback tensors of the windows ``idx`` cut to their longest one. How the
windows are stored (in memory here) is this module's business, not the loop's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

Sequence_ = tuple[np.ndarray, np.ndarray]  # (track indices, feedback), oldest first


def make_windows(seqs: list[Sequence_], max_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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


@dataclass(frozen=True, eq=False)
class TrainingWindows:
    """W windows of ``span = max_len + 1`` events. ``tracks`` / ``feedback`` (W, span) left-padded."""

    tracks: torch.Tensor  # (W, span) int64, 0 = padding
    feedback: torch.Tensor  # (W, span) int64
    lengths: torch.Tensor  # (W,) real events per window

    @classmethod
    def from_sequences(cls, seqs: list[Sequence_], *, max_len: int) -> TrainingWindows:
        tracks, fb, lengths = make_windows(seqs, max_len)
        return cls(tracks=tracks, feedback=fb, lengths=lengths)

    def __len__(self) -> int:
        return len(self.lengths)

    def to(self, device: torch.device) -> TrainingWindows:
        return TrainingWindows(tracks=self.tracks.to(device), feedback=self.feedback.to(device), lengths=self.lengths)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows ``idx`` cut to the longest of them: tracks, feedback (B, T+1) on the windows' device."""
        T1 = int(self.lengths[idx].max())
        rows = idx.to(self.tracks.device)
        return self.tracks[rows][:, -T1:], self.feedback[rows][:, -T1:]


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
