"""Quoting for SQL text built from data: one place, so nothing from a file, a path or a config
value is ever pasted into a statement as code.

DuckDB cannot bind parameters everywhere (table-function arguments such as ``read_csv``'s
``columns=`` struct, identifiers), so every identifier and literal that comes from outside the
code goes through :func:`ident` or :func:`literal`; values in ``WHERE`` clauses use bound ``?``
parameters where the statement allows it.
"""

from __future__ import annotations

__all__ = ["ident", "literal", "struct"]


def ident(name: str) -> str:
    """A double-quoted SQL identifier; inner double quotes are doubled, so the name stays one token."""
    return '"' + str(name).replace('"', '""') + '"'


def literal(value: object) -> str:
    """A single-quoted SQL string literal; inner single quotes are doubled (``$$`` and ``;`` stay text)."""
    return "'" + str(value).replace("'", "''") + "'"


def struct(mapping: dict[str, str]) -> str:
    """A DuckDB struct literal of string keys and string values, e.g. ``read_csv(columns=...)``."""
    return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in mapping.items()) + "}"
