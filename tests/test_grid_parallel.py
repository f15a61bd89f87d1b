"""A grid backfill through a real Dagster instance: the daemon's run queue admits 2 runs at a time
(``max_concurrent_runs: 2``), the ``training`` pool 2 steps, so 4 partitions train 2 at a time,
each with 1 torch thread on 2 cores; no step of ``grid_job`` opens the DuckDB file for writing."""

from __future__ import annotations

import dagster as dg
import duckdb
import pytest

from resources.pools import parallel_training_steps, threads_per_step

from grid_util import GRID_KEYS, LOCK_ERRORS, make_world, max_overlap, run_backfill, run_messages, use_home

pytestmark = pytest.mark.slow


def test_backfill_of_four_partitions_runs_two_at_a_time_without_lock_errors(tmp_path):
    world = make_world(tmp_path)
    use_home(world, "parallel", max_concurrent_runs=2, training_slots=2)
    assert parallel_training_steps(world.instance()) == 2
    # A read-only connection held for the whole backfill: a step that opened the file for writing
    # would fail on DuckDB's lock (after warehouse.connect's retries) and show a lock error below.
    with duckdb.connect(str(world.warehouse), read_only=True):
        records = run_backfill(world, GRID_KEYS)

    instance = world.instance()
    by_key = {r.dagster_run.tags["dagster/partition"]: r.dagster_run.status for r in records}
    assert by_key == {k: dg.DagsterRunStatus.SUCCESS for k in GRID_KEYS}, by_key
    for asset in ("recommender", "evaluation"):
        assert instance.get_materialized_partitions(dg.AssetKey(asset)) >= set(GRID_KEYS), asset
    messages = run_messages(instance, records)
    locks = [m for m in messages if any(s in m for s in LOCK_ERRORS)]
    assert not locks, locks[:3]
    assert max_overlap(records) == 2, [(r.start_time, r.end_time) for r in records]
    threads = [m for m in messages if m.startswith("torch threads:")]
    assert threads and all(m.startswith("torch threads: 1 ") for m in threads), threads[:4]


def test_threads_are_cores_split_among_parallel_training_steps():
    assert threads_per_step(cores=2, parallel=2) == 1
    assert threads_per_step(cores=2, parallel=1) == 2
    assert threads_per_step(cores=16, parallel=4) == 4
    assert threads_per_step(cores=2, parallel=4) == 1  # never 0


def test_training_steps_at_once_is_the_smaller_of_pool_limit_and_run_queue(tmp_path):
    from grid_util import GridWorld

    world = GridWorld(root=tmp_path, env={})
    use_home(world, "a", max_concurrent_runs=2)
    assert parallel_training_steps(world.instance()) == 1  # default_limit 1: the pool admits one
    use_home(world, "b", max_concurrent_runs=2, training_slots=4)
    assert parallel_training_steps(world.instance()) == 2  # the run queue admits two
    use_home(world, "c", max_concurrent_runs=1, training_slots=2)
    assert parallel_training_steps(world.instance()) == 1


HOLD_WRITER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def test_a_reader_waits_while_another_process_writes_and_says_so_when_it_gives_up(tmp_path):
    import subprocess
    import sys

    from semid_pipeline import warehouse as wh

    path = tmp_path / "wh.duckdb"
    duckdb.connect(str(path)).execute("CREATE TABLE t AS SELECT 1 AS x").close()

    def hold(seconds: float) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLD_WRITER, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "holding"
        return proc

    writer = hold(3.0)
    with pytest.raises(duckdb.IOException, match="lock"):  # a raw read-only open fails while it writes
        duckdb.connect(str(path), read_only=True)
    with pytest.raises(duckdb.IOException, match="lock"):  # ... and connect gives up after wait_s
        with wh.connect(path, read_only=True, wait_s=0.2):
            pass
    with wh.connect(path, read_only=True) as con:  # waits for the writer to finish
        assert con.execute("SELECT x FROM t").fetchone() == (1,)
    writer.wait(timeout=30)


def test_the_training_pool_limit_is_set_once_and_then_kept(tmp_path):
    from grid_util import GridWorld

    from resources.pools import default_training_slots, ensure_training_pool

    world = GridWorld(root=tmp_path, env={})
    use_home(world, "home", max_concurrent_runs=2)
    instance = world.instance()
    assert ensure_training_pool(instance) == default_training_slots()  # unset: one per GPU, else per core
    assert ensure_training_pool(instance, 3) == 3  # asked for: set
    assert ensure_training_pool(instance) == 3  # not asked: the limit set before is kept
    assert instance.event_log_storage.get_concurrency_info("training").limit == 3


def _demo(world, *args: str):
    import subprocess
    import sys

    from grid_util import REPO

    return subprocess.run([sys.executable, "-m", "assets.demo", *args], cwd=REPO, env=world.env,
                          capture_output=True, text=True, timeout=600)


def test_make_demo_trains_grid_cells_two_at_a_time_and_stops_after_a_failure(tmp_path):
    """``make demo``'s grid stage: one worker process per training slot (2 cores → 2), each cell its
    own Dagster run with 1 torch thread; after a failed cell no new one starts. (The tiny demo of
    test_browser.py goes through the same path to the end.) Here every cell fails its blocking
    check (too few strata), so each of the two workers stops after its first cell. The stricter
    [eval] min_strata comes after ingestion and the IDs (``--only ids``, then ``--from grid``): at
    ingestion the time-split check would already stop on it."""
    world = make_world(tmp_path)
    use_home(world, "demo", max_concurrent_runs=2)  # a fresh instance: the demo sets the pool itself
    first = _demo(world, "--only", "ids")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    assert "semantic_ids[" in first.stdout and "recommender+eval[" not in first.stdout
    strict = tmp_path / "strict.toml"
    strict.write_text((tmp_path / "semid.toml").read_text().replace("min_strata = 5", "min_strata = 1000000"))
    world.env["SEMID_CONFIG"] = str(strict)
    out = _demo(world, "--from", "grid", "--only", "grid")
    assert out.returncode != 0, out.stdout[-3000:]
    assert "ingest + content_features" not in out.stdout and "semantic_ids[" not in out.stdout  # started at the grid
    assert "4 cells, 2 at a time" in out.stdout, out.stdout
    assert "check failed: evaluation / evaluation_enough_strata" in out.stdout, out.stdout
    assert "demo stopped: recommender+eval[" in out.stderr, out.stderr[-2000:]
    ran = [line for line in out.stdout.splitlines() if line.startswith("[demo] recommender+eval[")]
    assert len(ran) == 2 and all(line.split()[2] == "FAILED" for line in ran), out.stdout
    instance = world.instance()
    records = instance.get_run_records(filters=dg.RunsFilter(job_name="grid_job"))
    assert len(records) == 2 and all(r.dagster_run.status == dg.DagsterRunStatus.FAILURE for r in records)
    assert max_overlap(records) == 2, [(r.start_time, r.end_time) for r in records]
    threads = [m for m in run_messages(instance, records) if m.startswith("torch threads:")]
    assert len(threads) == 2 and all(m.startswith("torch threads: 1 ") for m in threads), threads
