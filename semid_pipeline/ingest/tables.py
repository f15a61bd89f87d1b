"""Staging one CSV (as text) or Parquet (native types) file into a temp table."""

from __future__ import annotations

from pathlib import Path

import duckdb

from ..errors import InputDataError
from ..sql import literal
from .diagnose import csv_text_source, diagnose_read_failure, duck_msg
from .files import check_exists, dup_header, is_parquet, read_head


def temp_types(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    return {r[0]: r[1] for r in con.execute(f"DESCRIBE {table}").fetchall()}


def stage_any(con: duckdb.DuckDBPyConnection, path: Path, table: str, what: str) -> tuple[list[str], str]:
    """Load ``path`` into temp table ``table``. Returns (columns, row label): the label is 'line'
    (CSV, header = line 1) or 'row' (Parquet, 1-based)."""
    check_exists(path, what)
    if is_parquet(path):
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM read_parquet({literal(str(path))})")
        except duckdb.Error as e:
            raise InputDataError(
                f"{what} file is not a readable Parquet file: {duck_msg(e)}", file=str(path), column="(whole file)"
            ) from e
        if con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0:
            raise InputDataError(f"{what} file has no rows", file=str(path), column="(all columns)")
        return list(temp_types(con, table)), "row"
    header, _ = read_head(path, what)
    dup_header(path, header)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM {csv_text_source([path], header)}")
    except duckdb.Error as e:
        raise diagnose_read_failure(e, [(path, header, None)], {}, what) from e
    return header, "line"
