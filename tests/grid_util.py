"""A real Dagster instance running a grid backfill: a tmp DAGSTER_HOME with the repository's
concurrency settings, the tiny synthetic world, ``dagster-daemon run`` (queued run coordinator +
default run launcher: one process per run) and ``dagster job backfill``. Used by
``tests/test_grid_parallel.py`` and ``bench/bench_grid.py``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

REPO = Path(__file__).resolve().parent.parent
# 2 schemes (id, v0-k16: random tuples, no RQ-VAE fit) × h in {8, 16} = 4 grid partitions.
TINY_GRID = """
[features]
text_encoder = "hashed"
[semantic_ids.schemes]
v0 = [16]
[grid]
hidden_sizes = [8, 16]
include_id_baseline = true
[train]
epochs = {epochs}
patience = {epochs}
[production]
scheme = "v0-k16"
hidden = 8
[eval]
min_strata = 5
bootstrap = 50
"""
GRID_KEYS = ["8|id", "8|v0-k16", "16|id", "16|v0-k16"]
LOCK_ERRORS = ("Could not set lock", "Conflicting lock")
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def instance_yaml(home: Path, *, max_concurrent_runs: int) -> str:
    """The repository's dagster.yaml concurrency settings, storage in ``home``; dequeue every second."""
    return textwrap.dedent(f"""
        telemetry: {{enabled: false}}
        storage: {{sqlite: {{base_dir: {home / 'storage'}}}}}
        local_artifact_storage:
          module: dagster._core.storage.root
          class: LocalArtifactStorage
          config: {{base_dir: {home}}}
        run_coordinator:
          module: dagster._core.run_coordinator
          class: QueuedRunCoordinator
          config: {{dequeue_interval_seconds: 1}}
        concurrency:
          pools: {{default_limit: 1, granularity: op}}
          runs: {{max_concurrent_runs: {max_concurrent_runs}}}
        """)


@dataclass
class GridWorld:
    root: Path
    env: dict

    @property
    def home(self) -> Path:
        return Path(self.env["DAGSTER_HOME"])

    @property
    def warehouse(self) -> Path:
        return Path(self.env["SEMID_WAREHOUSE"])

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.home))


def make_world(root: Path, *, epochs: int = 1) -> GridWorld:
    """Ingest + semantic IDs of the tiny world (``python -m assets.demo --only ids``), in ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "semid.toml").write_text(TINY_GRID.format(epochs=epochs))
    env = {**os.environ, "SEMID_CONFIG": str(root / "semid.toml"), "SEMID_DATASET": "synthetic:tiny",
           "SEMID_WAREHOUSE": str(root / "wh.duckdb"), "SEMID_ARTIFACTS": str(root / "artifacts"),
           "SEMID_DATA_DIR": str(root / "data"), "PYTHONUNBUFFERED": "1"}
    world = GridWorld(root=root, env=env)
    use_home(world, "setup", max_concurrent_runs=1)
    out = subprocess.run([sys.executable, "-m", "assets.demo", "--only", "ids"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return world


def use_home(world: GridWorld, name: str, *, max_concurrent_runs: int, training_slots: int | None = None,
             fresh_artifacts: bool = False) -> None:
    """Point the world at a fresh DAGSTER_HOME ``root/name`` (its own run history and pool limits);
    ``fresh_artifacts``: a copy of the artifacts as ``make_world`` left them (no trained models yet)."""
    home = world.root / name
    if fresh_artifacts:
        import shutil

        copy = world.root / f"artifacts-{name}"
        shutil.copytree(world.root / "artifacts", copy)
        world.env["SEMID_ARTIFACTS"] = str(copy)
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(instance_yaml(home, max_concurrent_runs=max_concurrent_runs))
    world.env["DAGSTER_HOME"] = str(home)
    if training_slots is not None:
        from resources.pools import ensure_training_pool

        ensure_training_pool(world.instance(), training_slots)


def run_backfill(world: GridWorld, keys: list[str], *, timeout: float = 300) -> list[dg.RunRecord]:
    """``dagster job backfill`` of ``grid_job`` over ``keys``; ``dagster-daemon run`` works the queue
    until every run finished. Returns the runs' records (start/end times from the instance)."""
    log = open(world.root / f"daemon-{world.home.name}.log", "w")
    daemon = subprocess.Popen([str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
                              cwd=REPO, env=world.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        dagster = str(Path(sys.executable).parent / "dagster")
        sub = subprocess.run([dagster, "job", "backfill", "-j", "grid_job", "--partitions", ",".join(keys),
                              "--noprompt", "-w", "workspace.yaml"], cwd=REPO, env=world.env,
                             capture_output=True, text=True, timeout=120)
        assert sub.returncode == 0, sub.stdout[-3000:] + sub.stderr[-3000:]
        instance = world.instance()
        t0 = time.monotonic()
        while True:
            records = instance.get_run_records(filters=dg.RunsFilter(job_name="grid_job"))
            if len(records) >= len(keys) and all(r.dagster_run.status in FINISHED for r in records):
                return records
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"backfill not finished after {timeout}s: "
                                     f"{[(r.dagster_run.tags.get('dagster/partition'), r.dagster_run.status) for r in records]}")
            time.sleep(0.5)
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
        log.close()


def max_overlap(records: list[dg.RunRecord]) -> int:
    """Most runs in progress at the same moment (from the instance's start/end timestamps)."""
    edges = sorted([(r.start_time, 1) for r in records] + [(r.end_time, -1) for r in records],
                   key=lambda e: (e[0], e[1]))
    now = best = 0
    for _, step in edges:
        now += step
        best = max(best, now)
    return best


def run_messages(instance: dg.DagsterInstance, records: list[dg.RunRecord]) -> list[str]:
    """Every event-log message of the runs (step failures' error text included)."""
    out = []
    for r in records:
        for e in instance.all_logs(r.dagster_run.run_id):
            out.append(e.message or "")
            if e.dagster_event is not None and e.dagster_event.is_failure:
                out.append(str(e.dagster_event.event_specific_data))
    return out
