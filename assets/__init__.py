"""Thin Dagster layer over ``semid_pipeline``: one module per stage, plus partitions, operations
(jobs, schedule, sensor) and the single ``Definitions`` object in ``assets.definitions``."""
