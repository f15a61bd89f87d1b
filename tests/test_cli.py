"""Failures say why on the command line, once; Dagster's own CLI works from the repository root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


def _demo_ingest(tmp_path: Path, events: str) -> subprocess.CompletedProcess:
    (tmp_path / "events.csv").write_text(events)
    env = {
        **os.environ, "SEMID_DATASET": f"events:{tmp_path / 'events.csv'}",
        "SEMID_WAREHOUSE": str(tmp_path / "wh.duckdb"), "SEMID_ARTIFACTS": str(tmp_path / "artifacts"),
    }
    env.pop("DAGSTER_HOME", None)  # an ephemeral instance
    return subprocess.run([sys.executable, "-m", "assets.demo", "--only", "ingest"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_failed_blocking_expectation_prints_expectations_and_rows(tmp_path):
    # all positive, and no content for any track: two expectations fail
    out = _demo_ingest(tmp_path, "user_id,track_id,timestamp,feedback\n"
                                 "u1,t1,2024-01-01,1\nu1,t2,2024-01-02,1\nu2,t9,2024-01-03,1\n")
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "NOT published" in text  # the quality suites run before the data set is published
    assert "expect_column_distinct_values_to_contain_set(feedback): missing values: 0" in text
    assert "expect_column_mean_to_be_between(has_features): observed 0" in text
    assert "track_id='t9'" in text  # an offending row
    assert "Traceback" not in text  # the traceback stays in the run's log


def test_input_error_is_printed_once_without_traceback(tmp_path):
    out = _demo_ingest(tmp_path, "user_id,track_id,timestamp,feedback\nu1,t1,2024-01-01,1\nu1,t2,2024-01-02,maybe\n")
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert text.count("unknown feedback spelling") == 1, text
    assert "line 3: feedback='maybe'" in text
    assert "Traceback" not in text


def test_dagster_asset_cli_finds_the_code_location_from_the_repo_root(tmp_path):
    activate = Path(sys.prefix) / "bin" / "activate"
    assert "DAGSTER_CLI_ASSET_MATERIALIZE_MODULE_NAME" in activate.read_text()  # written by `make venv`
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    out = subprocess.run(["bash", "-c", f"source {activate} && dagster asset list && dagster job list"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert {"feedback_events", "semantic_ids", "recommender", "grid_job"} <= set(out.stdout.split())
