"""Which files a folder or a list of names holds: MSSD ``log_*`` / ``tf_*`` and per-user files."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from ..errors import InputDataError
from .files import is_parquet

LOG_RX = re.compile(r"^log_.*\.csv(\.gz)?$", re.IGNORECASE)
TF_RX = re.compile(r"^tf_.*\.csv(\.gz)?$", re.IGNORECASE)
# A synthetic world's answer keys (the generator's probabilities, near-duplicate origins): written
# next to its data files, never data themselves.
SIDECAR_NAMES = frozenset({"oracle.parquet", "truth.parquet"})


def resolve_mssd_paths(paths: Sequence[str]) -> tuple[list[Path], list[Path]]:
    """Folders → their ``log_*.csv[.gz]`` and ``tf_*.csv[.gz]`` (sorted); explicit files by name
    (``tf_*`` → track features, anything else → session log)."""
    logs: list[Path] = []
    tracks: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            found_logs = sorted(q for q in p.iterdir() if q.is_file() and LOG_RX.match(q.name))
            if not found_logs:
                raise InputDataError(
                    "MSSD folder holds no session log files (log_*.csv or log_*.csv.gz)", file=str(p), column="(none)"
                )
            logs += found_logs
            tracks += sorted(q for q in p.iterdir() if q.is_file() and TF_RX.match(q.name))
        elif p.exists():
            (tracks if p.name.lower().startswith("tf_") else logs).append(p)
        else:
            raise InputDataError("MSSD path does not exist", file=str(p), column="(none)")
    return list(dict.fromkeys(logs)), list(dict.fromkeys(tracks))


def classify_landed(path: Path) -> tuple[str, str]:
    """A landed file's (format, kind) from its name: MSSD ``log_*.csv[.gz]`` → ("mssd", "log"),
    ``tf_*.csv[.gz]`` → ("mssd", "tracks"); any other ``.csv``/``.csv.gz``/Parquet file is per-user:
    ``tracks*`` → ("events", "tracks"), anything else → ("events", "events")."""
    name = path.name
    if name.lower() in SIDECAR_NAMES:
        raise InputDataError("landed file is a synthetic world's answer key (the generator's own "
                             "probabilities / duplicate origins), not feedback data: remove it",
                             file=str(path), column="(file name)")
    if LOG_RX.match(name):
        return "mssd", "log"
    if TF_RX.match(name):
        return "mssd", "tracks"
    low = name.lower()
    if low.endswith((".csv", ".csv.gz")) or is_parquet(path):
        return "events", "tracks" if low.startswith("tracks") else "events"
    raise InputDataError(
        "landed file is neither an MSSD file (log_*.csv[.gz], tf_*.csv[.gz]) nor a per-user events/tracks "
        "file (.csv, .csv.gz, .parquet)",
        file=str(path), column="(file name)",
    )
