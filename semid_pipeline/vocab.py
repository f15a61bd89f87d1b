"""The track vocabulary: sorted track ids ↔ indices 1..N (0 is padding), shared by the splits,
the models' embedding tables and the serving catalogue."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True, eq=False)
class TrackVocab:
    """Sorted track ids; track ``track_ids[i]`` has index ``i + 1`` (0 is padding)."""

    track_ids: np.ndarray  # (N,) object array of str, sorted, unique

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", pd.Index(self.track_ids))

    @classmethod
    def from_ids(cls, *id_lists) -> TrackVocab:
        ids = set()
        for lst in id_lists:
            ids.update(str(x) for x in pd.unique(pd.Series(lst).dropna()))
        return cls(np.array(sorted(ids), dtype=object))

    def __len__(self) -> int:
        return len(self.track_ids)

    @property
    def n_tracks(self) -> int:
        """N, the number of real tracks."""
        return len(self.track_ids)

    @property
    def n_tokens(self) -> int:
        """N + 1 (row 0 is padding)."""
        return len(self.track_ids) + 1

    def encode(self, ids) -> np.ndarray:
        """track_id values → indices 1..N (0 for unknown ids)."""
        pos = self._index.get_indexer(pd.Index(np.asarray(ids, dtype=object)))
        return (pos + 1).astype(np.int64)  # unknown: -1 + 1 = 0

    def decode(self, idx) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        out = np.empty(idx.shape, dtype=object)
        ok = idx > 0
        out[ok] = self.track_ids[idx[ok] - 1]
        out[~ok] = None
        return out

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update("\n".join(self.track_ids.tolist()).encode())
        return h.hexdigest()
