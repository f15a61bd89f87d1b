"""IDs for tracks that have feedback events but no content features.

One limit, one place: ``[ingest] min_feature_coverage`` is the share of event tracks that must have
content. Ingestion blocks below it (``quality.validate_feedback_events``); above it, the remaining
event tracks (at most ``1 - min_feature_coverage`` of them) still need an ID, or no model could
score them. ``[semantic_ids] without_content`` says what they get:

- ``"random"`` (default): a seeded random tuple from sha256(seed, track_id) — the paper's ``v0``
  control for just these tracks (the ``id`` scheme: the next free rows). Their embeddings are then
  learned from listening alone, like ``v0``; the count is in the asset metadata and the log.
- ``"error"``: no ID; the blocking ``ids_cover_events`` check fails and names them.

A track that later gains content keeps its random tuple while the table is extended; a refit
(new data set, or ``refit``) encodes it from content.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import InputDataError
from .schemes import IdScheme, code_columns

POLICIES = ("random", "error")
EXAMPLES = 5


def tracks_without_content(event_track_ids, table: pd.DataFrame) -> list[str]:
    """Event tracks (sorted) that have no row in ``table``."""
    have = set(table["track_id"].astype(str))
    return sorted({str(t) for t in event_track_ids} - have)


def add_tracks_without_content(table: pd.DataFrame, missing: list[str], *, scheme: IdScheme, seed: int,
                               n_event_tracks: int, min_feature_coverage: float) -> pd.DataFrame:
    """``table`` plus a row per ``missing`` track (codes as the module docstring says), sorted by track_id.

    Raises ``InputDataError`` when more than ``1 - min_feature_coverage`` of the event tracks lack
    content (ingestion's gate was bypassed, e.g. by appends): the same limit, checked again.
    """
    from .semantic_ids import v0_codes, continuing_ties, make_table

    if not missing:
        return table
    share = len(missing) / max(n_event_tracks, 1)
    if share > 1.0 - min_feature_coverage + 1e-12:
        raise InputDataError(
            f"{len(missing):,} of {n_event_tracks:,} event tracks ({share:.1%}) have no content features, more "
            f"than [ingest] min_feature_coverage = {min_feature_coverage:g} allows; first: {missing[:EXAMPLES]} "
            "(add them to the tracks file, or lower min_feature_coverage)"
        )
    cols = code_columns(table)
    if scheme.is_id:
        start = int(table["c1"].max()) + 1 if len(table) else 0
        codes = np.arange(start, start + len(missing), dtype=np.int64)[:, None]
        tie = np.zeros(len(missing), dtype=np.int64)
    else:
        codes = v0_codes(missing, k=int(scheme.k), levels=len(cols), seed=seed)
        tie = continuing_ties(table, cols, missing, codes)
    added = make_table(missing, codes, tie)
    return pd.concat([table, added], ignore_index=True).sort_values("track_id").reset_index(drop=True)
