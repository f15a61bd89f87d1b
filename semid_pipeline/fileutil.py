"""File helpers every stage shares: atomic writes, file hashes and JSON-safe values.

Atomic: a file is written next to its destination and moved over it with ``os.replace``, so a
crash mid-write never leaves a half-written checkpoint, record or config for a later run to read.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import hashlib
import json
import math
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` then move the temporary file over ``path`` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A temporary name of its own per process and call: two concurrent grid runs writing the same
    # shared file (e.g. a data set's baselines) never write into each other's temporary file.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 1, sort_keys: bool = False) -> Path:
    """``obj`` made JSON-safe (``jsonable``) and written atomically."""
    return atomic_write_text(path, json.dumps(jsonable(obj), indent=indent, sort_keys=sort_keys))


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    """The parsed file, or ``default`` when it does not exist."""
    p = Path(path)
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else default


def sha256_file(path: str | os.PathLike, *, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(block), b""):
            h.update(chunk)
    return h.hexdigest()


def jsonable(v: Any) -> Any:
    """A JSON-able Python value: NaN/inf/NaT → None, numpy → Python, timestamps → ISO strings,
    DataFrames → lists of records, bytes → hex, anything else → ``str``."""
    if v is None or isinstance(v, (str, bool, int)) and not isinstance(v, np.bool_):
        return v
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, decimal.Decimal):
        return float(v)
    if v is pd.NaT or v is pd.NA:
        return None
    if isinstance(v, (pd.Timestamp, _dt.datetime, _dt.date, _dt.time)):
        return v.isoformat()
    if isinstance(v, (np.datetime64, np.timedelta64)):
        return None if np.isnat(v) else str(v)
    if isinstance(v, pd.Timedelta):
        return str(v)
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, pd.DataFrame):
        return [jsonable(r) for r in v.to_dict(orient="records")]
    if isinstance(v, (list, tuple, np.ndarray)):
        return [jsonable(x) for x in v]
    if isinstance(v, bytes):
        return v.hex()
    return str(v)
