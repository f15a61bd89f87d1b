"""Runs recover from crashes: a training run killed with SIGKILL leaves its `training` pool slot
claimed (reproduced below); the next `make demo` marks it failed, frees the slot, and resumes
training from the checkpoint. A run waiting for a slot stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
CONFIG = """
[semantic_ids.schemes]
v1 = [16]
[grid]
hidden_sizes = [16]
include_id_baseline = false
[train]
epochs = 6
patience = 6
[production]
scheme = "v1-k16"
hidden = 16
[eval]
min_strata = 5
bootstrap = 50
"""
WAIT_FOR_SLOT = """
import dagster as dg
from assets.definitions import defs
from assets.recovery import process_tags, stop_on_sigterm
stop_on_sigterm()
defs.resolve_job_def("grid_job").execute_in_process(
    instance=dg.DagsterInstance.get(), partition_key="16|v1-k16", raise_on_error=False, tags=process_tags())
"""


def _env(root: Path) -> dict:
    home = root / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(textwrap.dedent(f"""
        telemetry: {{enabled: false}}
        storage: {{sqlite: {{base_dir: {home / 'storage'}}}}}
        concurrency:
          pools: {{default_limit: 1, granularity: op}}
        """))
    (root / "semid.toml").write_text(CONFIG)
    return {
        **os.environ, "DAGSTER_HOME": str(home), "SEMID_CONFIG": str(root / "semid.toml"),
        "SEMID_DATASET": "synthetic:tiny", "SEMID_WAREHOUSE": str(root / "wh.duckdb"),
        "SEMID_ARTIFACTS": str(root / "artifacts"), "SEMID_DATA_DIR": str(root / "data"),
    }


def _wait_for(pred, timeout: float, what: str):
    t0 = time.time()
    while time.time() - t0 < timeout:
        value = pred()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _instance(env: dict) -> dg.DagsterInstance:
    os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
    return dg.DagsterInstance.get()


def test_killed_training_run_frees_its_slot_resumes_and_a_waiting_run_stops_on_sigterm(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    env = _env(tmp_path)
    demo = [sys.executable, "-m", "assets.demo", "--only", "grid"]
    first = subprocess.Popen(demo, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ckpt = _wait_for(lambda: next((tmp_path / "artifacts").glob("models/*/*/checkpoint.pt"), None), 300,
                     "the first epoch's checkpoint")
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert ckpt.exists()

    instance = _instance(env)
    dead = [r for r in instance.get_runs() if r.job_name == "grid_job"]
    assert [r.status for r in dead] == [dg.DagsterRunStatus.STARTED]  # the crash left it "running"
    claimed = instance.event_log_storage.get_concurrency_info("training").claimed_slots
    assert [c.run_id for c in claimed] == [dead[0].run_id]  # ... holding the training slot

    waiting = subprocess.Popen([sys.executable, "-c", WAIT_FOR_SLOT], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(lambda: any(p.run_id != dead[0].run_id
                          for p in instance.event_log_storage.get_concurrency_info("training").pending_steps),
              120, "the second run to queue for the training slot")
    waiting.send_signal(signal.SIGTERM)
    waiting.wait(timeout=60)  # stopped, instead of waiting forever (TimeoutExpired otherwise)
    statuses = {r.run_id: r.status for r in instance.get_runs() if r.job_name == "grid_job"}
    assert sorted(s.value for s in statuses.values()) == ["FAILURE", "STARTED"]

    rerun = subprocess.run(demo, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"run {dead[0].run_id[:8]} had died" in rerun.stdout
    assert instance.get_run_by_id(dead[0].run_id).status == dg.DagsterRunStatus.FAILURE
    last = instance.get_runs(filters=dg.RunsFilter(job_name="grid_job"), limit=1)[0]
    assert last.status == dg.DagsterRunStatus.SUCCESS
    logs = [e.message for e in instance.all_logs(last.run_id) if e.message]
    assert any("resuming after epoch" in m for m in logs), "the rerun did not resume from the checkpoint"
