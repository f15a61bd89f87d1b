"""SQL text helpers: quote identifiers and literals that come from data (column names, values)."""

from __future__ import annotations


def ident(name: str) -> str:
    """A double-quoted SQL identifier (embedded double quotes doubled)."""
    return '"' + str(name).replace('"', '""') + '"'


def literal(value: str) -> str:
    """A single-quoted SQL string literal (embedded single quotes doubled)."""
    return "'" + str(value).replace("'", "''") + "'"
