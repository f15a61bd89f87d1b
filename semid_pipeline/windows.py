"""Training windows: left-padded chunks of the training sequences, and their batching (and
``through_validation``: the sequences extended through the validation period, for the final fit).

A window holds ``max_len + 1`` events (``max_len`` inputs and the shifted next-event targets).
``TrainingWindows`` is what the training loop sees: ``lengths`` (W,) and ``batch(idx)`` returning
the (B, T+1) track and feedback tensors of the windows ``idx`` cut to their longest one.

Storage: two (W, span) numpy arrays (tracks int32, feedback int8) cut straight from the flat
(CSR) training sequences with vectorised numpy, a bounded chunk of windows at a time. Given a
``directory`` they are written there once per (training data fingerprint, max_len) as ``.npy``
files and memory-mapped, so a batch reads only its rows from disk and the windows never live in
the process as Python lists or whole in-memory tensors; without one they are built in memory.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .splits import Splits, TrainSequences, _ranges, as_train_sequences

Sequence_ = tuple[np.ndarray, np.ndarray]  # (track indices, feedback), oldest first
CHUNK_WINDOWS = 65_536  # windows materialised at a time while writing (bounds the build's memory)


def through_validation(splits: Splits) -> TrainSequences:
    """The training sequences as they stand at the start of the test period (``[train]
    final_fit_epochs``), built with vectorised numpy on the flat arrays.

    Each training sequence followed by its stratum's validation-period events; a validation
    stratum without a training sequence (a session of the validation period, or splits that do
    not record ``train_stratum_ids``) is added whole: its input part, then its evaluated part.
    Only evaluable validation strata carry their events (those the ``EvalSet`` keeps); the others'
    validation events are not added.
    """
    train, val = as_train_sequences(splits.train), splits.val
    ev = val.events.sort_values(["row", "position"], kind="stable")
    t_val, f_val = ev["track_idx"].to_numpy(np.int64), ev["feedback"].to_numpy(np.int64)
    bounds = np.searchsorted(ev["row"].to_numpy(np.int64), np.arange(len(val) + 1))  # (S_val+1,)
    known = len(splits.train_stratum_ids) == len(train)
    j = (pd.Index(splits.train_stratum_ids).get_indexer(pd.Index(val.stratum_ids)) if known
         else np.full(len(val), -1))  # (S_val,) training sequence of each validation stratum, -1 = none
    hit = j >= 0
    E = int(train.offsets[-1])
    v_lo, v_hi = np.full(len(train), E), np.full(len(train), E)  # (S,) each sequence's validation rows
    v_lo[j[hit]], v_hi[j[hit]] = E + bounds[:-1][hit], E + bounds[1:][hit]
    lo = np.stack([train.offsets[:-1], v_lo], axis=1).ravel()  # a sequence's own rows, then its validation rows
    hi = np.stack([train.offsets[1:], v_hi], axis=1).ravel()
    take = _ranges(lo, hi)
    lengths = (train.lengths + v_hi - v_lo).astype(np.int64)
    tracks, feedback = np.r_[train.tracks, t_val][take], np.r_[train.feedback, f_val][take]
    extra = TrainSequences.from_list([  # validation strata without a training sequence: whole
        (np.r_[val.inputs[i][0], t_val[bounds[i]:bounds[i + 1]]], np.r_[val.inputs[i][1], f_val[bounds[i]:bounds[i + 1]]])
        for i in np.flatnonzero(~hit)])
    return TrainSequences(tracks=np.r_[tracks, extra.tracks].astype(np.int64),
                          feedback=np.r_[feedback, extra.feedback].astype(np.int64),
                          offsets=np.r_[0, np.cumsum(np.r_[lengths, extra.lengths])].astype(np.int64))


def window_bounds(seqs: TrainSequences, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(W,) start and (W,) end offsets into the flat arrays of every window, in training order.

    Windows are cut from the most recent event backwards and overlap by one event, so every
    transition (t → t+1) is trained exactly once: a sequence of n ≥ 2 events gives
    ceil((n-1)/max_len) windows; sequences of a single event carry no transition and are skipped.
    """
    span = max_len + 1
    n = seqs.lengths
    count = np.where(n >= 2, -(-(n - 1) // max_len), 0)  # ceil((n-1) / max_len)
    seq = np.repeat(np.arange(len(n), dtype=np.int64), count)  # (W,)
    first = np.cumsum(count) - count  # (S,) index of each sequence's first window
    j = np.arange(len(seq), dtype=np.int64) - np.repeat(first, count)  # rank from the most recent window
    end = n[seq] - j * max_len
    start = np.maximum(0, end - span)
    base = seqs.offsets[:-1][seq]
    return base + start, base + end


def _fill(flat: np.ndarray, lo: np.ndarray, hi: np.ndarray, span: int, dtype) -> np.ndarray:
    """(w, span) left-padded rows: row i holds flat[lo[i]:hi[i]] right-aligned, 0 before it."""
    col = np.arange(span, dtype=np.int64)
    src = hi[:, None] - span + col[None, :]  # (w, span) flat position of each cell
    ok = src >= lo[:, None]
    return np.where(ok, flat[np.clip(src, 0, max(len(flat) - 1, 0))], 0).astype(dtype)


def make_windows(seqs, max_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All windows in memory: tracks (W, max_len+1), feedback (W, max_len+1) int64 and lengths (W,)."""
    s = as_train_sequences(seqs)
    lo, hi = window_bounds(s, max_len)
    span = max_len + 1
    return (torch.from_numpy(_fill(s.tracks, lo, hi, span, np.int64)),
            torch.from_numpy(_fill(s.feedback, lo, hi, span, np.int64)), torch.from_numpy(hi - lo))


def data_fingerprint(seqs: TrainSequences, max_len: int) -> str:
    """sha256 of the flat training arrays and the window length: names a stored window set."""
    h = hashlib.sha256(f"windows-v1 max_len={max_len}".encode())
    for a in (seqs.offsets, seqs.tracks, seqs.feedback):
        h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
    return h.hexdigest()


def _write(seqs: TrainSequences, lo: np.ndarray, hi: np.ndarray, span: int, folder: Path) -> None:
    """tracks.npy / feedback.npy / lengths.npy written chunk by chunk into a temp folder, then renamed."""
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    W = len(lo)
    tr = np.lib.format.open_memmap(tmp / "tracks.npy", mode="w+", dtype=np.int32, shape=(W, span))
    fb = np.lib.format.open_memmap(tmp / "feedback.npy", mode="w+", dtype=np.int8, shape=(W, span))
    for a in range(0, W, CHUNK_WINDOWS):
        b = min(W, a + CHUNK_WINDOWS)
        tr[a:b] = _fill(seqs.tracks, lo[a:b], hi[a:b], span, np.int32)
        fb[a:b] = _fill(seqs.feedback, lo[a:b], hi[a:b], span, np.int8)
    tr.flush()
    fb.flush()
    del tr, fb
    np.save(tmp / "lengths.npy", (hi - lo).astype(np.int64))
    try:
        os.replace(tmp, folder)
    except OSError:  # another process wrote the same windows first: keep its copy
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()


@dataclass(frozen=True, eq=False)
class TrainingWindows:
    """W windows of ``span = max_len + 1`` events. ``tracks`` / ``feedback`` (W, span) left-padded
    numpy arrays (memory-mapped when built with a directory); ``batch`` returns torch int64."""

    tracks: np.ndarray  # (W, span) int32, 0 = padding
    feedback: np.ndarray  # (W, span) int8
    lengths: torch.Tensor  # (W,) int64 real events per window
    device: torch.device = torch.device("cpu")
    path: Path | None = None  # the folder of the memory-mapped files, None = in memory

    @classmethod
    def from_sequences(cls, seqs, *, max_len: int, directory: str | os.PathLike | None = None) -> TrainingWindows:
        """Windows of ``seqs`` (``TrainSequences`` or a list of pairs); stored under
        ``directory/windows-<fingerprint[:16]>/`` (written once, reused) when given."""
        s = as_train_sequences(seqs)
        lo, hi = window_bounds(s, max_len)
        span = max_len + 1
        if directory is None:
            return cls(tracks=_fill(s.tracks, lo, hi, span, np.int32),
                       feedback=_fill(s.feedback, lo, hi, span, np.int8), lengths=torch.from_numpy(hi - lo))
        folder = Path(directory) / f"windows-{data_fingerprint(s, max_len)[:16]}"
        if not (folder / "lengths.npy").exists():
            _write(s, lo, hi, span, folder)
        return cls(tracks=np.load(folder / "tracks.npy", mmap_mode="r"),
                   feedback=np.load(folder / "feedback.npy", mmap_mode="r"),
                   lengths=torch.from_numpy(np.load(folder / "lengths.npy")), path=folder)

    def __len__(self) -> int:
        return len(self.lengths)

    def to(self, device: torch.device | str) -> TrainingWindows:
        """The same windows, with batches delivered on ``device`` (storage stays on the host)."""
        return TrainingWindows(tracks=self.tracks, feedback=self.feedback, lengths=self.lengths,
                               device=torch.device(device), path=self.path)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows ``idx`` cut to the longest of them: tracks, feedback (B, T+1) int64 on ``device``."""
        T1 = int(self.lengths[idx].max())
        rows = np.asarray(idx.cpu().numpy(), dtype=np.int64)
        x = torch.from_numpy(np.asarray(self.tracks[rows, -T1:], dtype=np.int64))  # (B, T+1)
        f = torch.from_numpy(np.asarray(self.feedback[rows, -T1:], dtype=np.int64))  # (B, T+1)
        if self.device.type == "cpu":
            return x, f
        return x.pin_memory().to(self.device, non_blocking=True), f.pin_memory().to(self.device, non_blocking=True)


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
