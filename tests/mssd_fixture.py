"""A hand-made MSSD fixture: a few sessions written in the real files' layout and quirks.

The Spotify Music Streaming Sessions Dataset ships ``log_*.csv[.gz]`` with every column of
``schema.MSSD_LOG_COLUMNS``, booleans spelled ``True``/``False`` (some re-exports: ``true``/
``false``), dates as ``DD-MM-YY`` (re-exports: ``YYYY-MM-DD``), and ``tf_*.csv[.gz]`` track
features with every column of ``schema.MSSD_TRACK_COLUMNS``. The sessions here are invented
(no personal data) and deterministic; ``expected`` derives the counts a test checks from the
same session list, independently of the ingestion code.
"""

from __future__ import annotations

import datetime as dt
import gzip
from dataclasses import dataclass
from pathlib import Path

from semid_pipeline.schema import MSSD_LOG_COLUMNS, MSSD_TRACK_COLUMNS

FIRST_SESSION = "0_00006f66-fixture-a"


@dataclass(frozen=True)
class Session:
    session_id: str
    context: str
    date: dt.date
    hour: int
    tracks: tuple[str, ...]

    def skips(self, pos: int) -> tuple[bool, bool, bool]:
        """(skip_1, skip_2, skip_3) of the 1-based position: nested, as in MSSD."""
        seed = sum(map(ord, self.session_id))
        s1 = (pos * 7 + seed) % 5 == 0
        s2 = s1 or (pos * 3 + seed) % 4 == 0
        s3 = s2 or pos % 6 == 0
        return s1, s2, s3


def _tracks(start: int, n: int, pool: int = 30) -> tuple[str, ...]:
    return tuple(f"t_{(start + 7 * i) % pool:04d}-fixture" for i in range(n))


def default_sessions() -> list[Session]:
    """Four sessions (20, 20, 10, 15 plays), two of them radio, over two days."""
    return [
        Session(FIRST_SESSION, "editorial_playlist", dt.date(2018, 7, 15), 16, _tracks(0, 20)),
        Session("0_00011a22-fixture-b", "radio", dt.date(2018, 7, 15), 9, _tracks(3, 20)),
        Session("0_0002bb33-fixture-c", "user_collection", dt.date(2018, 7, 14), 22, _tracks(5, 10)),
        Session("0_0003cc44-fixture-d", "radio", dt.date(2018, 7, 14), 7, _tracks(11, 15)),
    ]


def _b(value: bool, style: str) -> str:
    text = "True" if value else "False"
    return text.lower() if style == "lower" else text


def log_rows(sessions: list[Session], *, dates: str = "dmy", bools: str = "title") -> list[dict[str, str]]:
    """Every log row as text, keyed by ``MSSD_LOG_COLUMNS``."""
    fmt = "%d-%m-%y" if dates == "dmy" else "%Y-%m-%d"
    rows = []
    for s in sessions:
        for pos, track in enumerate(s.tracks, start=1):
            s1, s2, s3 = s.skips(pos)
            rows.append({
                "session_id": s.session_id, "session_position": str(pos), "session_length": str(len(s.tracks)),
                "track_id_clean": track, "skip_1": _b(s1, bools), "skip_2": _b(s2, bools),
                "skip_3": _b(s3, bools), "not_skipped": _b(not s3, bools), "context_switch": str(int(pos == 1)),
                "no_pause_before_play": str(int(pos % 3 != 0)), "short_pause_before_play": str(int(pos % 3 == 0)),
                "long_pause_before_play": "0", "hist_user_behavior_n_seekfwd": str(pos % 2),
                "hist_user_behavior_n_seekback": "0", "hist_user_behavior_is_shuffle": _b(pos % 2 == 0, bools),
                "hour_of_day": str(s.hour), "date": s.date.strftime(fmt), "premium": _b(True, bools),
                "context_type": s.context, "hist_user_behavior_reason_start": "trackdone" if pos > 1 else "clickrow",
                "hist_user_behavior_reason_end": "fwdbtn" if s2 else "trackdone",
            })
    return rows


def _write(path: Path, text: str, gz_members: int) -> Path:
    data = text.encode()
    if path.name.endswith(".gz"):
        # several gzip members back to back (what `cat a.gz b.gz` gives) must read as one stream
        cut = [len(data) * i // gz_members for i in range(gz_members + 1)]
        data = b"".join(gzip.compress(data[a:b], mtime=0) for a, b in zip(cut, cut[1:]))
    path.write_bytes(data)
    return path


def write_log(path: Path, sessions: list[Session] | None = None, *, dates: str = "dmy", bools: str = "title",
              gz_members: int = 1) -> Path:
    """A session log with every MSSD column; gzip-compressed when ``path`` ends in ``.gz``."""
    rows = log_rows(default_sessions() if sessions is None else sessions, dates=dates, bools=bools)
    lines = [",".join(MSSD_LOG_COLUMNS)] + [",".join(r[c] for c in MSSD_LOG_COLUMNS) for r in rows]
    return _write(path, "\n".join(lines) + "\n", gz_members)


def write_tf(path: Path, track_ids: list[str], *, gz_members: int = 1) -> Path:
    """Track features with every MSSD tf column (plausible values inside the documented ranges)."""
    rows = []
    for i, t in enumerate(track_ids):
        vals = {c: f"{0.05 + (i * 37 % 90) / 100:.2f}" for c in MSSD_TRACK_COLUMNS}
        vals.update(track_id=t, release_year=str(1990 + i % 30), mode="major" if i % 2 else "minor",
                    key=str(i % 12), time_signature="4", duration=str(200.0 + i), loudness=f"{-10.0 - i % 7:.1f}",
                    tempo=f"{90.0 + i:.1f}", us_popularity_estimate=f"{50.0 + i % 40:.1f}")
        rows.append(",".join(vals[c] for c in MSSD_TRACK_COLUMNS))
    return _write(path, ",".join(MSSD_TRACK_COLUMNS) + "\n" + "\n".join(rows) + "\n", gz_members)


def expected(sessions: list[Session] | None = None, *, skip: str = "skip_2", context: str = "all") -> dict:
    """What an ingestion of these sessions must give, counted here from the session list."""
    sessions = default_sessions() if sessions is None else sessions
    kept = [s for s in sessions if context == "all" or s.context == context]
    idx = {"skip_1": 0, "skip_2": 1, "skip_3": 2}

    def negative(s: Session, pos: int) -> bool:
        sk = s.skips(pos)
        return sk[2] if skip == "not_skipped" else sk[idx[skip]]  # not_skipped false = skip_3

    n_neg = sum(negative(s, p) for s in kept for p in range(1, len(s.tracks) + 1))
    n = sum(len(s.tracks) for s in kept)
    return {
        "rows": sum(len(s.tracks) for s in sessions),
        "events": n,
        "strata": len(kept),
        "negatives": n_neg,
        "positives": n - n_neg,
        "tracks": len({t for s in kept for t in s.tracks}),
        "min_date": min(s.date for s in kept),
        "max_date": max(s.date for s in kept),
    }
