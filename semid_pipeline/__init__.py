"""semid core: framework-free data loading, features, semantic IDs, SASRec, evaluation and reports.

Nothing in this package imports dagster (a test enforces it); the Dagster layer lives in
``assets/`` and ``resources/``.
"""

__version__ = "0.1.0"
