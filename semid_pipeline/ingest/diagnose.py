"""Diagnosis: from "something in these files is wrong" to the file, the column and the first
offending rows (with their line numbers).

The fast path never computes line numbers; when a check counts offending rows, or DuckDB's typed
read fails, the offending file is re-read as text (``Diagnoser``, a private in-memory DuckDB) and
:func:`raise_first_rows` — the one place that turns offending rows into an
:class:`~semid_pipeline.errors.InputDataError` — names them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import duckdb

from ..errors import InputDataError
from ..sql import ident, literal, struct
from .files import check_gzip, find_bad_utf8, raise_utf8

EXAMPLES = 5  # offending rows shown in an error or a record


@dataclass(frozen=True)
class Check:
    """One validity rule: ``predicate`` is TRUE for an offending row."""

    column: str
    reason: str
    predicate: str


def duck_msg(e: BaseException) -> str:
    """DuckDB's error text without its hints and indented context (one line)."""
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    keep = [ln for ln in lines if not ln.startswith("  ") and not ln.startswith("Possible")]
    return " | ".join(keep[:4]) if keep else str(e)


def raise_first_rows(
    con: duckdb.DuckDBPyConnection,
    *,
    table: str,
    predicate: str,
    line: str,
    label: str,
    column: str,
    reason: str,
    path: Path | str,
    show: str | None = None,
) -> None:
    """Raise ``InputDataError(reason)`` naming the first offending rows of ``table``, if any.

    ``line`` is the SQL expression of a row's line (CSV) or row (Parquet) number, ``label`` the
    word for it, ``show`` the expression displayed as the offending value (default: the column)."""
    shown = con.execute(
        f"SELECT {line} AS __ln, {show or ident(column)} FROM {table} t WHERE {predicate} "
        f"ORDER BY __ln LIMIT {EXAMPLES}"
    ).fetchall()
    if shown:
        raise InputDataError(
            reason, file=str(path), column=column, rows=[f"{label} {ln}: {column}={v!r}" for ln, v in shown]
        )


def row_offset(con: duckdb.DuckDBPyConnection, table: str, label: str) -> int:
    """What to add to ``rowid`` to get the 1-based row (Parquet) or line (CSV, header = line 1).

    Tables created inside an open transaction number their rows from a large transaction-local
    base, so the base is measured rather than assumed."""
    base = con.execute(f"SELECT coalesce(min(rowid), 0) FROM {table}").fetchone()[0]
    return (2 if label == "line" else 1) - int(base)


def csv_text_source(paths: list[Path], header: list[str], types: dict[str, str] | None = None,
                    date_format: str | None = None, filename: bool = False) -> str:
    """A ``read_csv`` call with explicit column types (every name and path quoted as a literal)."""
    cols = {h: (types or {}).get(h, "VARCHAR") for h in header}
    files = "[" + ", ".join(literal(str(p)) for p in paths) + "]"
    opts = f"columns={struct(cols)}, header=true, auto_detect=false, delim=',', quote='\"', escape='\"'"
    if filename:
        opts += ", filename=true"
    if date_format:
        opts += f", dateformat={literal(date_format)}"
    return f"read_csv({files}, {opts})"


def _parse_error(path: Path, what: str, e: duckdb.Error) -> InputDataError:
    line = re.search(r"Line:\s*(\d+)", str(e))
    orig = re.search(r"Original Line:\s*(.*)", str(e))
    rows = [f"line {line.group(1)}: {orig.group(1)[:200] if orig else ''}"] if line else None
    return InputDataError(
        f"{what} file cannot be parsed as CSV: {duck_msg(e)}", file=str(path), column="(row structure)", rows=rows
    )


class Diagnoser:
    """Re-reads ONE CSV file as text on a private in-memory DuckDB to find offending lines."""

    def __init__(self, *, path: Path, header: list[str], what: str):
        self.path, self.header, self.what = path, header, what
        self.con = duckdb.connect(":memory:")
        self.con.execute("SET preserve_insertion_order = true")
        try:
            self.con.execute(f"CREATE TABLE raw AS SELECT * FROM {csv_text_source([path], header)}")
        except duckdb.Error as e:
            self.close()
            raise _parse_error(path, what, e) from e
        self.off = row_offset(self.con, "raw", "line")

    def __enter__(self) -> "Diagnoser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _typed(self, h: str, t: str | None, date_format: str | None) -> str | None:
        """The TRY-conversion of text column ``h`` to type ``t`` (None: kept as text)."""
        if t is None or t == "VARCHAR":
            return None
        if t == "DATE":
            return f"TRY_STRPTIME({ident(h)}, {literal(date_format or '%Y-%m-%d')})::DATE"
        return f"TRY_CAST({ident(h)} AS {t})"

    def typed_view(self, types: dict[str, str], date_format: str | None = None) -> None:
        sel = [f"rowid + {self.off} AS __line"]
        for h in self.header:
            conv = self._typed(h, types.get(h), date_format)
            sel.append(ident(h) if conv is None else f"{conv} AS {ident(h)}")
        self.con.execute(f"CREATE OR REPLACE VIEW typed AS SELECT {', '.join(sel)} FROM raw")

    def conversion_errors(self, types: dict[str, str], date_format: str | None = None) -> None:
        for h in self.header:
            t = types.get(h)
            conv = self._typed(h, t, date_format)
            if conv is None:
                continue
            expect = f"a date in format {date_format or '%Y-%m-%d'}" if t == "DATE" else f"a valid {t}"
            raise_first_rows(
                self.con, table="raw", predicate=f"{ident(h)} IS NOT NULL AND {conv} IS NULL",
                line=f"rowid + {self.off}", label="line", column=h,
                reason=f"{self.what} file: wrong type in column {h!r} (expected {expect})", path=self.path,
            )

    def check(self, chk: Check) -> None:
        raise_first_rows(self.con, table="typed", predicate=chk.predicate, line="__line", label="line",
                         column=chk.column, reason=f"{self.what} file: {chk.reason}", path=self.path)

    def close(self) -> None:
        self.con.close()


def diagnose_check(path: Path, header: list[str], what: str, chk: Check, n: int,
                   types: dict[str, str], date_format: str | None = None) -> InputDataError:
    """A check counted ``n`` offending rows in ``path``: raise naming them (or return a count-only error)."""
    with Diagnoser(path=path, header=header, what=what) as d:
        d.typed_view(types, date_format)
        d.check(chk)
    return InputDataError(f"{what} file: {chk.reason} ({n} rows)", file=str(path), column=chk.column)


def diagnose_read_failure(
    err: duckdb.Error, files: list[tuple[Path, list[str], str | None]], types: dict[str, str], what: str
) -> InputDataError:
    """The fast typed read failed: find which file/column/lines, and build the error."""
    for path, header, date_format in files:
        check_gzip(path, what)
        if find_bad_utf8(path):
            raise_utf8(path, what)
        with Diagnoser(path=path, header=header, what=what) as d:
            d.conversion_errors(types, date_format)
    names = ", ".join(str(p) for p, _, _ in files)
    return InputDataError(f"{what} file(s) could not be read: {duck_msg(err)}", file=names, column="(unknown)")
