"""The DuckDB warehouse: short-lived connections, all-or-nothing writes, a small key/value meta table.

DuckDB allows one writing process per file, so every stage opens a connection, does its work
inside one transaction and closes it. ``atomic`` rolls back on any exception, so a failed stage
leaves every table exactly as it was.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from .config import duckdb_memory_limit_from_env
from .schema import META


READ_WAIT_S = 900.0  # a reader waits out a writer (an ingestion holds the file for its whole run)
WRITE_WAIT_S = 120.0  # a writer waits for readers (short: open, read, close) and other writers


@contextmanager
def connect(path: str | Path, *, read_only: bool = False,
            wait_s: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse file, waiting (up to ``wait_s``) while another process holds its lock.

    DuckDB admits one writing process per file, and a read-only open fails while another process
    writes (and vice versa). Writers are kept apart by the ``warehouse`` pool; readers of parallel
    grid runs may still overlap a writer (a retraining chain's ingestion), so they wait here."""
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.exists():
        raise FileNotFoundError(f"warehouse {path} does not exist yet: materialize the ingestion assets first")
    deadline = time.monotonic() + (wait_s if wait_s is not None else READ_WAIT_S if read_only else WRITE_WAIT_S)
    delay = 0.1
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only,
                                 config={"memory_limit": duckdb_memory_limit_from_env()})
            break
        except duckdb.IOException as e:  # lock held by another process
            if "lock" not in str(e).lower() or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
    try:
        yield con
    finally:
        con.close()


@contextmanager
def atomic(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """One transaction: commit if the block succeeds, roll back (nothing written) if it raises."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    else:
        con.execute("COMMIT")


def ensure_meta(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE TABLE IF NOT EXISTS {META} (key VARCHAR PRIMARY KEY, value VARCHAR)")


def set_meta(con: duckdb.DuckDBPyConnection, key: str, value) -> None:
    ensure_meta(con)
    con.execute(
        f"INSERT OR REPLACE INTO {META} VALUES (?, ?)",
        [key, value if isinstance(value, str) else json.dumps(value, sort_keys=True)],
    )


def get_meta(con: duckdb.DuckDBPyConnection, key: str, default=None):
    if not table_exists(con, META):
        return default
    row = con.execute(f"SELECT value FROM {META} WHERE key = ?", [key]).fetchone()
    return default if row is None else row[0]


def table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ? AND table_schema = 'main'",
            [name],
        ).fetchone()[0]
    )


def table_columns(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, str]:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = ? AND table_schema = 'main' ORDER BY ordinal_position",
        [name],
    ).fetchall()
    return {c: t for c, t in rows}


def table_hash(con: duckdb.DuckDBPyConnection, name: str, order_by: str) -> str:
    """sha256 of a table's rows in a stable order (used to pin models to their ID table)."""
    h = hashlib.sha256()
    cur = con.execute(f"SELECT * FROM {name} ORDER BY {order_by}")
    while True:
        chunk = cur.fetchmany(50_000)
        if not chunk:
            break
        h.update(repr(chunk).encode())
    return h.hexdigest()


def snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[int, str]]:
    """{table: (rows, content hash)} of every table: tests use it to prove nothing changed."""
    out = {}
    for (name,) in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY 1"
    ).fetchall():
        cols = list(table_columns(con, name))
        n = con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
        out[name] = (n, table_hash(con, name, ", ".join(f'"{c}"' for c in cols)))
    return out
