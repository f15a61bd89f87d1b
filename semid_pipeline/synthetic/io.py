"""Deterministic file writing: atomic replace, CSV without quoting, gzip without a timestamp."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv


def atomic_write(path: Path, writer) -> None:
    """``writer(tmp)`` then rename: a reader never sees a half-written file."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        writer(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def csv_bytes(table: pa.Table, header: list[str] | None) -> bytes:
    """The table as CSV without quoting, after the ``header`` line (None: rows only)."""
    sink = io.BytesIO()
    if header is not None:
        sink.write((",".join(header) + "\n").encode())
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    return sink.getvalue()


def write_csv(path: Path, table: pa.Table, header: list[str], compress: bool) -> None:
    data = csv_bytes(table, header)
    if compress:  # mtime=0 and no file name in the header: byte-identical reruns
        data = gzip.compress(data, compresslevel=1, mtime=0)
    atomic_write(path, lambda q: Path(q).write_bytes(data))


def float_lists(x: np.ndarray) -> pa.Array:
    """A (n, d) array as a ``list<float32>`` column."""
    d = x.shape[1]
    return pa.FixedSizeListArray.from_arrays(pa.array(x.astype(np.float32).ravel(), pa.float32()), d).cast(
        pa.list_(pa.float32())
    )
