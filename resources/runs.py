"""Which process executes a run: host + pid run tags, so a run whose process died can be found
and failed (``assets/recovery.py``). Every resource calls :func:`register_run_process` when a
run starts it, so runs launched from the UI, a schedule or ``make demo`` are all covered."""

import os
import socket

import dagster as dg

PID_TAG = "semid/pid"
HOST_TAG = "semid/host"


def process_tags() -> dict[str, str]:
    """Run tags naming the process that executes a run (this one)."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def register_run_process(context: dg.InitResourceContext) -> None:
    """Tag the current run with this process, once."""
    instance, dagster_run = context.instance, context.run
    if instance is None or dagster_run is None:
        return
    run_id = dagster_run.run_id
    run = instance.get_run_by_id(run_id)
    if run is None or run.tags.get(PID_TAG) == str(os.getpid()):
        return
    instance.add_run_tags(run_id, process_tags())
