"""The oracle sidecar: the generator's own probability of each event being positive.

``<format dir>/oracle.parquet`` has one row per event of that format's event files:
``stratum_id`` (user id in ``users/``, session id in ``sessions/``), ``position`` (1-based: in
``users/`` the rank within the listener by timestamp then track_id, exactly as ingestion numbers
events; in ``sessions/`` MSSD's ``session_position``) and ``p_positive`` (float64). Join it to
``feedback_events`` on (stratum_id, position) to score the same test pairs with the oracle:
its stratified AUC is the ceiling any model can reach on that world.

Ingestion never reads it: synthetic worlds are ingested through the manifest's explicit file
lists, and MSSD folders are globbed for ``log_*``/``tf_*`` only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputDataError
from .io import atomic_write

ORACLE_NAME = "oracle.parquet"
ORACLE_COLUMNS = ("stratum_id", "position", "p_positive")


def oracle_table(stratum_id: pa.Array, position: np.ndarray, p_positive: np.ndarray) -> pa.Table:
    return pa.table(
        {
            "stratum_id": stratum_id,
            "position": pa.array(np.asarray(position, dtype=np.int32), pa.int32()),
            "p_positive": pa.array(np.asarray(p_positive, dtype=np.float64), pa.float64()),
        }
    )


def write_oracle(path: Path, stratum_id: pa.Array, position: np.ndarray, p_positive: np.ndarray) -> None:
    table = oracle_table(stratum_id, position, p_positive)
    atomic_write(path, lambda p: pq.write_table(table, p, compression="snappy"))


def load_oracle(path_or_dir: str | Path) -> pd.DataFrame:
    """The oracle of a world as a DataFrame (stratum_id, position, p_positive).

    ``path_or_dir``: an ``oracle.parquet`` file, a format folder holding one (``<world>/users``)
    or a world folder holding exactly one format's oracle.
    """
    p = Path(path_or_dir)
    if p.is_dir():
        found = [p / ORACLE_NAME] if (p / ORACLE_NAME).is_file() else sorted(p.glob(f"*/{ORACLE_NAME}"))
        if len(found) != 1:
            raise InputDataError(
                f"expected exactly one {ORACLE_NAME} in the folder or its format sub-folders, found {len(found)}"
                " (pass users/ or sessions/)",
                file=str(p), column="(file name)",
            )
        p = found[0]
    if not p.is_file():
        raise InputDataError("oracle file does not exist", file=str(p), column="(none)")
    df = pd.read_parquet(p)
    missing = [c for c in ORACLE_COLUMNS if c not in df.columns]
    if missing:
        raise InputDataError(f"oracle file lacks columns {missing}", file=str(p), column=", ".join(missing))
    return df[list(ORACLE_COLUMNS)]
