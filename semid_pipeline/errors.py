"""Exceptions with enough context for an operator to fix the input."""

from __future__ import annotations

EXAMPLES = 5  # offending rows / values an error or a check shows (one limit for every stage)


class SemidError(Exception):
    """Base class of every error the pipeline raises on purpose."""


class InputDataError(SemidError):
    """Bad input: names the file, the column and the first offending rows.

    The message is the whole story (it is what the Dagster UI shows); the attributes let code
    and tests inspect the details.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        column: str | None = None,
        rows: list | None = None,
    ) -> None:
        parts = [message]
        if file is not None:
            parts.append(f"file: {file}")
        if column is not None:
            parts.append(f"column: {column}")
        if rows:
            shown = "\n".join(f"    {r}" for r in rows[:EXAMPLES])
            parts.append(f"first offending rows:\n{shown}")
        super().__init__("\n  ".join(parts))
        self.file = file
        self.column = column
        self.rows = list(rows or [])


class SplitError(SemidError):
    """A period of the time split holds no stratum that can be evaluated."""


class ConfigError(SemidError):
    """A setting (environment variable, config file, resource config) is invalid."""


class IdTableMismatchError(SemidError):
    """A model checkpoint was trained on a different semantic-ID table than the one given."""


class DataQualityError(SemidError):
    """Staged data failed a blocking expectation; nothing was published (the report says which,
    with observed values and the first offending rows)."""

    def __init__(self, report) -> None:
        super().__init__(
            "the new data set fails blocking quality checks, so it was NOT published (the warehouse "
            f"still holds the previous data set):\n{report}"
        )
        self.report = report


class WarehouseBusyError(SemidError):
    """Another ingestion holds the warehouse (see ``claims``)."""
