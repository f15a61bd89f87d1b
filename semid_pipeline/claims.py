"""One ingestion at a time, visibly: a claim file next to the warehouse.

DuckDB admits one writing process per file, but an ingestion is more than one write: it
publishes the new tables, then the checks and the content features of the same run read them.
A second ingestion in between would make the first run's features and checks describe the other
data set, and both runs would report success. So an ingestion run *claims* the warehouse
(``<warehouse>.ingesting``: owner run id, pid, host, since) before it writes and releases the
claim when its last step is done. A claim whose owner is no longer active (finished, failed,
killed — decided by the caller's ``is_active``) is stale and is taken over. The check-and-write
is serialised by an OS file lock, so two ingestions starting at the same instant cannot both win.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import WarehouseBusyError
from .fileutil import atomic_write_json


@dataclass(frozen=True)
class Claim:
    owner: str  # the run id of the ingestion that holds the warehouse
    pid: int
    host: str
    since: str  # ISO time, UTC
    what: str  # what it ingests (the data-set key)


def claim_path(warehouse: str | os.PathLike) -> Path:
    return Path(str(warehouse) + ".ingesting")


def current(warehouse: str | os.PathLike) -> Claim | None:
    p = claim_path(warehouse)
    try:
        return Claim(**json.loads(p.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def acquire(warehouse: str | os.PathLike, *, owner: str, what: str, is_active: Callable[[Claim], bool]) -> Claim:
    """Claim the warehouse for ``owner`` or raise ``WarehouseBusyError`` naming the live holder."""
    p = claim_path(warehouse)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(str(p) + ".lock", "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        held = current(warehouse)
        if held is not None and held.owner != owner and is_active(held):
            raise WarehouseBusyError(
                f"another ingestion is writing {warehouse}: run {held.owner} (pid {held.pid} on {held.host}, "
                f"since {held.since}) ingests {held.what!r}. Wait until it has finished (its content "
                "features included) or cancel it, then start this one again."
            )
        mine = Claim(owner=owner, pid=os.getpid(), host=socket.gethostname(),
                     since=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), what=what)
        atomic_write_json(p, asdict(mine), indent=None)
        return mine


def release(warehouse: str | os.PathLike, *, owner: str) -> bool:
    """Drop the claim if ``owner`` holds it; True when it did."""
    p = claim_path(warehouse)
    with open(str(p) + ".lock", "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        held = current(warehouse)
        if held is None or held.owner != owner:
            return False
        p.unlink(missing_ok=True)
        return True
