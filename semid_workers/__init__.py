"""Programs Dagster launches as external processes (Dagster Pipes); they call the core
(``semid_pipeline``) and talk to Dagster only through ``dagster_pipes``."""
