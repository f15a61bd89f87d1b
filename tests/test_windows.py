"""Training windows: the vectorised / memory-mapped build equals the per-window loop it replaced."""

from __future__ import annotations

import numpy as np
import torch

from semid_pipeline.splits import TrainSequences
from semid_pipeline.windows import TrainingWindows, make_windows


def loop_windows(seqs, max_len):
    """The previous implementation: one Python iteration per window (the reference)."""
    span = max_len + 1
    bounds = []
    for i, (t, _) in enumerate(seqs):
        end = len(t)
        while end >= 2:
            start = max(0, end - span)
            bounds.append((i, start, end))
            end = start + 1
            if start == 0:
                break
    tracks = np.zeros((len(bounds), span), dtype=np.int64)
    fb = np.zeros((len(bounds), span), dtype=np.int64)
    lengths = np.zeros(len(bounds), dtype=np.int64)
    for w, (i, s, e) in enumerate(bounds):
        tracks[w, span - (e - s):] = seqs[i][0][s:e]
        fb[w, span - (e - s):] = seqs[i][1][s:e]
        lengths[w] = e - s
    return tracks, fb, lengths


def random_sequences(seed=0, n=60):
    rng = np.random.default_rng(seed)
    lens = [0, 1, 2, 5, 6, 7, 11, 12, 13] + rng.integers(0, 40, n).tolist()  # edges around max_len 6
    return [(rng.integers(1, 500, k), rng.integers(0, 2, k)) for k in lens]


def test_vectorised_windows_equal_the_loop():
    seqs = random_sequences()
    for max_len in (1, 5, 6, 50):
        want = loop_windows(seqs, max_len)
        got = make_windows(TrainSequences.from_list(seqs), max_len)
        for g, w in zip(got, want):
            assert g.dtype == torch.int64 and g.numpy().tolist() == w.tolist()
    assert make_windows([], 4)[0].shape == (0, 5)


def test_memory_mapped_windows_batch_like_in_memory(tmp_path, monkeypatch):
    monkeypatch.setattr("semid_pipeline.windows.CHUNK_WINDOWS", 7)  # several chunks while writing
    seqs = TrainSequences.from_list(random_sequences(seed=1))
    mem = TrainingWindows.from_sequences(seqs, max_len=6)
    disk = TrainingWindows.from_sequences(seqs, max_len=6, directory=tmp_path)
    assert isinstance(disk.tracks, np.memmap) and disk.path is not None and disk.path.parent == tmp_path
    assert len(disk) == len(mem) and torch.equal(disk.lengths, mem.lengths)
    idx = torch.tensor([3, 0, len(mem) - 1, 10])
    for a, b in zip(disk.batch(idx), mem.batch(idx)):
        assert a.dtype == torch.int64 and torch.equal(a, b)
        assert a.shape == (4, int(mem.lengths[idx].max()))  # cut to the longest window of the batch
    again = TrainingWindows.from_sequences(seqs, max_len=6, directory=tmp_path)  # reused, not rewritten
    assert again.path == disk.path and len(list(tmp_path.iterdir())) == 1
    other = TrainingWindows.from_sequences(seqs, max_len=5, directory=tmp_path)  # another max_len: its own files
    assert other.path != disk.path
