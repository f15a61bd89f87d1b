"""Storage of semantic-ID tables in the warehouse: one table per ID scheme plus a registry row
holding its content hash, so a table edited outside ``write_semantic_ids`` is refused on read.

Split out of ``semantic_ids.py`` (which re-exports these names) to keep that module to fitting,
assignment and quality.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import duckdb
import numpy as np
import pandas as pd

from .errors import SemidError
from .schema import FEEDBACK_EVENTS, SEMANTIC_ID_REGISTRY, semantic_id_table
from .schemes import IdScheme, code_columns
from .sql import ident
from .warehouse import atomic, table_exists


def codebook_size(scheme: IdScheme, table: pd.DataFrame) -> int:
    """k of a scheme's table: the configured size, or for ``id`` the number of track rows used."""
    if scheme.k is not None:
        return int(scheme.k)
    return int(table["c1"].max()) + 1 if len(table) else 0



def semantic_id_table_hash(table_df: pd.DataFrame) -> str:
    """sha256 of the rows sorted by track_id (track ids, then the int64 code/tie matrix)."""
    cols = [*code_columns(table_df), "tie"]
    t = table_df.assign(track_id=table_df["track_id"].astype(str)).sort_values("track_id", kind="stable")
    h = hashlib.sha256()
    h.update(("|".join(["track_id", *cols]) + "\n").encode())
    h.update("\n".join(t["track_id"].tolist()).encode())
    h.update(np.ascontiguousarray(t[cols].to_numpy(dtype="<i8")).tobytes())
    return h.hexdigest()


def _ensure_registry(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {SEMANTIC_ID_REGISTRY} (partition_key VARCHAR PRIMARY KEY, table_name VARCHAR, "
        "scheme VARCHAR, k INTEGER, levels INTEGER, n_tracks BIGINT, content_hash VARCHAR, created_at TIMESTAMP)"
    )


def write_semantic_ids(con: duckdb.DuckDBPyConnection, scheme: IdScheme, table: pd.DataFrame) -> str:
    """Replace the scheme's table and its registry row in one transaction; returns the content hash.
    A variant (``hybrid-k<k>``, ``…+ag``) has no table of its own: it is its ``codes_scheme``'s."""
    scheme = scheme.codes_scheme
    cols = code_columns(table)
    partition_key = scheme.key
    name = semantic_id_table(partition_key)
    df = table[["track_id", *cols, "tie"]].copy()
    df["track_id"] = df["track_id"].astype(str)
    df = df.sort_values("track_id", kind="stable").reset_index(drop=True)
    content_hash = semantic_id_table_hash(df)
    import pyarrow as pa

    arrow = pa.table({"track_id": pa.array(df["track_id"].tolist(), pa.string()),
                      **{c: pa.array(df[c].to_numpy(dtype=np.int64)) for c in [*cols, "tie"]}})
    select = ", ".join(["track_id::VARCHAR AS track_id", *[f"{ident(c)}::INTEGER AS {ident(c)}" for c in [*cols, "tie"]]])
    with atomic(con):
        con.register("_semid_ids", arrow)
        try:
            con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT {select} FROM _semid_ids ORDER BY track_id")
        finally:
            con.unregister("_semid_ids")
        _ensure_registry(con)
        con.execute(f"DELETE FROM {SEMANTIC_ID_REGISTRY} WHERE partition_key = ?", [partition_key])
        con.execute(
            f"INSERT INTO {SEMANTIC_ID_REGISTRY} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [partition_key, name, scheme.family, codebook_size(scheme, df), len(cols), len(df), content_hash,
             datetime.now(timezone.utc).replace(tzinfo=None)],
        )
    return content_hash


def has_semantic_ids(con: duckdb.DuckDBPyConnection, scheme: IdScheme) -> bool:
    return table_exists(con, semantic_id_table(scheme.codes_scheme.key))


def event_track_ids(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Distinct tracks with feedback events: the ones every ID table must cover."""
    return [str(r[0]) for r in con.execute(f"SELECT DISTINCT track_id FROM {FEEDBACK_EVENTS}").fetchall()]


def read_semantic_ids(con: duckdb.DuckDBPyConnection, scheme: IdScheme) -> tuple[pd.DataFrame, str]:
    """(table sorted by track_id with int64 codes, content hash); refuses a table that no longer matches its registry hash.
    A variant reads its ``codes_scheme``'s table."""
    partition_key = scheme.codes_scheme.key
    name = semantic_id_table(partition_key)
    if not table_exists(con, name):
        raise SemidError(f"semantic-ID table {name} for partition {partition_key!r} does not exist: materialize it first")
    df = con.execute(f"SELECT * FROM {name} ORDER BY track_id").df()
    cols = [*code_columns(df), "tie"]
    df = df.astype({c: "int64" for c in cols})
    df["track_id"] = df["track_id"].astype(object)
    content_hash = semantic_id_table_hash(df)
    if table_exists(con, SEMANTIC_ID_REGISTRY):
        row = con.execute(f"SELECT content_hash FROM {SEMANTIC_ID_REGISTRY} WHERE partition_key = ?", [partition_key]).fetchone()
        if row is not None and row[0] != content_hash:
            raise SemidError(
                f"semantic-ID table {name} was changed outside write_semantic_ids: registry hash {row[0][:12]}, "
                f"table hash {content_hash[:12]}; re-materialize the partition"
            )
    return df, content_hash
