"""Quality gate against collapsed semantic-ID tuples (issue 11), with the evidence a person needs.

Why a separate gate from ``check_one_to_one``: the tie level always makes IDs unique, so a
tokenizer that puts thousands of tracks into one tuple passes every structural check while the
recommender sees a counter instead of content. This gate looks at the tuples themselves and, on
failure, names the largest collision groups with their titles and artists (from track_catalog),
so the cause — empty metadata, "X (Live)" vs "X - Remaster", one artist's sound-alikes — is seen.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .semantic_ids import code_columns, codebook_quality


def collision_groups(table: pd.DataFrame, catalog: pd.DataFrame | None = None, *, top: int = 5, per_group: int = 3) -> list[dict]:
    """The ``top`` largest L-tuple collision groups (size ≥ 2), each with up to ``per_group`` member
    tracks and — when ``catalog`` (track_catalog rows) is given — their titles and artists, so a
    person sees *why* they collide (same artist, "X (Live)" vs "X - Remaster", empty metadata …)."""
    cols = code_columns(table)
    if not len(table):
        return []
    sizes = table.groupby(cols, sort=True).size()
    sizes = sizes[sizes > 1].sort_values(ascending=False, kind="stable").head(top)
    info = None
    if catalog is not None and len(catalog):
        keep = [c for c in ("track_id", "title", "artist_id", "genre_id", "album") if c in catalog.columns]
        info = catalog[keep].assign(track_id=catalog["track_id"].astype(str)).drop_duplicates("track_id").set_index("track_id")
    out = []
    for key, size in sizes.items():
        key = key if isinstance(key, tuple) else (key,)
        mask = np.logical_and.reduce([table[c].to_numpy() == v for c, v in zip(cols, key)])
        members = table.loc[mask].sort_values("tie").head(per_group)
        rows = []
        for t, tie in zip(members["track_id"].astype(str), members["tie"]):
            row = {"track_id": t, "tie": int(tie)}
            if info is not None and t in info.index:
                row.update({c: (None if pd.isna(v) else str(v)) for c, v in info.loc[t].items()})
            rows.append(row)
        out.append({"codes": [int(v) for v in key], "size": int(size), "tracks": rows})
    return out


def check_distinct(
    table: pd.DataFrame, k: int, *, min_unique_share: float = 0.9, max_tie_limit: int = 15,
    catalog: pd.DataFrame | None = None,
) -> tuple[bool, dict]:
    """Quality gate against collapsed tuples.

    * unique-tuple share ≥ ``min_unique_share`` — applied only when the code space is roomy
      (k^L ≥ 10 × tracks); with fewer possible tuples collisions are expected, not a defect;
    * max tie ≤ ``max_tie_limit`` — always: a huge tie means many tracks are told apart only by a
      counter that carries no content (and whose embedding rows are shared beyond the cap).
    Failing details carry the largest collision groups with titles/artists (``collision_groups``).
    """
    q = codebook_quality(table, k)
    n, levels = q["n_tracks"], q["levels"]
    roomy = float(k) ** levels >= 10 * n
    share_ok = (not roomy) or q["unique_tuple_share"] >= min_unique_share
    tie_ok = q["max_tie"] <= max_tie_limit
    details = {
        "tracks": n, "k": int(k), "levels": levels, "unique_tuple_share": q["unique_tuple_share"],
        "min_unique_tuple_share": float(min_unique_share), "share_gate_applied": bool(roomy),
        "max_tie": q["max_tie"], "max_tie_limit": int(max_tie_limit),
        "share_in_groups_over_2": q["share_in_groups_over_2"], "distinct_tuples": q["distinct_tuples"],
        "largest_collision_groups": collision_groups(table, catalog),
    }
    if not roomy:
        details["note"] = f"share gate not applied: k^L={float(k) ** levels:g} < 10 x {n} tracks"
    return bool(share_ok and tie_ok), details
