"""Report pieces for collision-aware IDs (issue 11): distinctness per ID scheme and AUC vs it.

Why: a scheme whose tuples collapse (metadata-only content, hashed tokens) tells tracks apart
only by the tie counter, so its AUC says little about semantic IDs. The report should show each
partition's unique-tuple share and max tie next to its AUC, and a figure of AUC against the
unique-tuple share. ``report.render_report(..., id_quality=id_quality_from_warehouse(con))``
merges them into the partitions table and draws the figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from . import semantic_ids as sid
from .schema import SEMANTIC_ID_REGISTRY
from .schemes import GridCell, IdScheme
from .warehouse import table_exists

QUALITY_COLUMNS = ["scheme_key", "tracks", "unique_tuple_share", "max_tie", "share_in_groups_over_2", "tie_table_rows"]


def id_quality_table(tables: Mapping[str, pd.DataFrame], *, max_tie_embeddings: int | None = 16) -> pd.DataFrame:
    """One row per ID scheme (partition key → table of track_id, c1..cL, tie)."""
    rows = []
    for key, table in sorted(tables.items()):
        q = sid.codebook_quality(table, sid.codebook_size(IdScheme.parse(key), table), max_tie_embeddings=max_tie_embeddings)
        rows.append({"scheme_key": key, "tracks": q["n_tracks"], "unique_tuple_share": q["unique_tuple_share"],
                     "max_tie": q["max_tie"], "share_in_groups_over_2": q["share_in_groups_over_2"],
                     "tie_table_rows": q["tie_table_rows"]})
    return pd.DataFrame(rows, columns=QUALITY_COLUMNS)


def id_quality_from_warehouse(con, *, max_tie_embeddings: int | None = 16) -> pd.DataFrame:
    """``id_quality_table`` over every partition in the semantic-ID registry (empty when none)."""
    if not table_exists(con, SEMANTIC_ID_REGISTRY):
        return pd.DataFrame(columns=QUALITY_COLUMNS)
    keys = [r[0] for r in con.execute(f"SELECT partition_key FROM {SEMANTIC_ID_REGISTRY} ORDER BY 1").fetchall()]
    tables = {k: sid.read_semantic_ids(con, IdScheme.parse(k))[0] for k in keys}
    return id_quality_table(tables, max_tie_embeddings=max_tie_embeddings)


def merge_id_quality(partitions: pd.DataFrame, quality: pd.DataFrame) -> pd.DataFrame:
    """``report.records_frame`` rows + the quality columns of their ID scheme (NaN when unknown)."""
    df = partitions.copy()
    df["scheme_key"] = [GridCell.parse(pk).scheme.codes_scheme.key for pk in df["partition_key"]]  # the table it uses
    return df.merge(quality.drop(columns=["tracks"], errors="ignore"), on="scheme_key", how="left")


def with_quality_columns(summary: pd.DataFrame, partitions: pd.DataFrame) -> pd.DataFrame:
    """``report.summary_table`` rows (aligned with ``partitions``, the ``merge_id_quality`` output)
    with each partition's unique-tuple share and max tie placed after its test AUC and CI."""
    if summary.empty or "unique_tuple_share" not in partitions:
        return summary
    out = summary.copy()
    at = list(out.columns).index("95% CI") + 1 if "95% CI" in out.columns else len(out.columns)
    out.insert(at, "unique tuples", partitions["unique_tuple_share"].to_numpy(dtype=float))
    out.insert(at + 1, "max tie", partitions["max_tie"].to_numpy(dtype=float))
    return out


def plot_auc_vs_unique_share(partitions: pd.DataFrame, path: str | Path, *, dataset: str = "") -> Path:
    """Test AUC (with CI) vs unique-tuple share, one marker per partition, colour per scheme.

    ``partitions`` = ``merge_id_quality`` output. The id baseline sits at share 1 by construction.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    ok = partitions.dropna(subset=["test_auc", "unique_tuple_share"]) if len(partitions) else partitions
    fig, ax = plt.subplots(figsize=(6, 4.2))
    if not len(ok):
        ax.text(0.5, 0.5, "no evaluated partitions with ID quality", ha="center", va="center", transform=ax.transAxes)
    for i, (scheme, g) in enumerate(ok.groupby("scheme", sort=True)):
        lo = (g["test_auc"] - g["test_ci_lo"]).to_numpy(dtype=float)
        hi = (g["test_ci_hi"] - g["test_auc"]).to_numpy(dtype=float)
        yerr = None if np.isnan(lo).all() else np.vstack([np.nan_to_num(lo).clip(0), np.nan_to_num(hi).clip(0)])
        ax.errorbar(g["unique_tuple_share"], g["test_auc"], yerr=yerr, fmt="o", capsize=3, label=scheme, color=f"C{i}")
        for _, r in g.iterrows():
            ax.annotate(f"{r['scheme_key']} h{r['h']}", (r["unique_tuple_share"], r["test_auc"]), fontsize=6,
                        xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("unique-tuple share (tracks whose c1..cL tuple is theirs alone)")
    ax.set_ylabel("test stratified AUC")
    ax.grid(alpha=0.3)
    if len(ok):
        ax.legend(fontsize=8, loc="best")
    ax.set_title(f"AUC vs unique-tuple share{(' — ' + dataset) if dataset else ''}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
