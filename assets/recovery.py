"""Recovering from crashed runs.

A run whose process dies (``kill -9``, the OOM killer, a power cut) stays STARTED in Dagster's
run storage and keeps the pool slots its steps claimed, so the next run that needs the
``training`` (or ``warehouse``) pool waits forever. Every run of this code location records the
process that executes it (host + pid run tags, set when its resources start, or by
``make demo`` / ``make backfill`` when they launch it); :func:`reap_dead_runs` marks a run whose
process is gone as failed and frees its slots. It runs before every run that ``make demo``
starts, and every 30 s as the ``dead_run_reaper`` sensor under ``dagster dev`` (which executes
UI, schedule and ``make backfill`` runs).
``dagster.yaml`` also enables Dagster's own run monitoring, which frees the slots of runs that
ended without releasing them.
"""

import _thread
import os
import signal
import socket
import threading
import time

import dagster as dg

from resources.runs import HOST_TAG, PID_TAG, process_tags

__all__ = ["dead_run_reaper", "process_tags", "reap_dead_runs", "run_is_active", "stop_on_sigterm"]

ACTIVE_STATUSES = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def process_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a killed child not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def run_is_active(instance: dg.DagsterInstance, run_id: str) -> bool:
    """The run exists, has not ended, and (when its process is known on this host) that process lives."""
    run = instance.get_run_by_id(run_id)
    if run is None or run.status not in (*ACTIVE_STATUSES, dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED):
        return False
    pid = run.tags.get(PID_TAG)
    if run.tags.get(HOST_TAG) == socket.gethostname() and pid and pid.isdigit():
        return process_alive(int(pid))
    return True


def reap_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark active runs of this host whose process is gone as failed; free their pool slots."""
    host = socket.gethostname()
    reaped = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=ACTIVE_STATUSES)):
        pid = run.tags.get(PID_TAG)
        if run.tags.get(HOST_TAG) != host or not pid or not pid.isdigit():
            continue
        if int(pid) == os.getpid() or process_alive(int(pid)):
            continue
        instance.report_run_failed(
            run, message=f"the run's process {pid} on {host} is gone (killed or crashed): "
            "marked failed by semid's dead-run reaper; its pool slots are freed"
        )
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        reaped.append(run.run_id)
    return reaped


def stop_on_sigterm() -> None:
    """Let SIGTERM / Ctrl-C stop this process also while a run waits for a pool slot.

    During a run Dagster's in-process executor captures SIGINT and SIGTERM into a flag and acts
    on it only inside a step's compute; a step that waits for a pool slot sleeps in a loop that
    never looks at the flag, so ``kill <pid>`` of a waiting run did nothing. A watcher thread
    turns a captured interrupt into KeyboardInterrupt in the main thread (via SIGUSR1): the run
    ends as failed and its slots are released. (``dagster._utils.interrupts`` is private API of
    the pinned Dagster version.)
    """
    from dagster._utils import interrupts

    def _raise(signum, frame):
        raise KeyboardInterrupt(f"stopped by signal {signum}")

    def _watch():
        while True:
            time.sleep(0.5)
            if interrupts.check_captured_interrupt():
                _thread.interrupt_main(signal.SIGUSR1)
                time.sleep(5)

    signal.signal(signal.SIGUSR1, _raise)
    threading.Thread(target=_watch, daemon=True, name="semid-interrupt-watcher").start()


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Marks runs whose process died (kill -9, OOM) as failed and frees their pool slots, "
    "so the next run can train.",
)
def dead_run_reaper(context: dg.SensorEvaluationContext):
    reaped = reap_dead_runs(context.instance)
    return dg.SkipReason(f"marked failed: {', '.join(reaped)}" if reaped else "no dead runs")
