"""MSSD's behaviour columns: skips consistent with the feedback, reasons, pauses, seeks.

Apart from ``skip_2`` (= negative) these columns carry no signal; they are filler with
plausible rates so that ingestion sees the real format's shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import Story

REASONS = ("trackdone", "fwdbtn", "backbtn", "endplay", "logout", "clickrow", "playbtn", "appload")
TRACKDONE, FWDBTN, BACKBTN, ENDPLAY, LOGOUT = 0, 1, 2, 3, 4
FWD_SKIP_SHARE = 0.9  # a skip ends by fwdbtn, else backbtn
LAST_ENDPLAY_BELOW, LAST_LOGOUT_ABOVE = 0.15, 0.92  # how a session's last, unskipped track ends
START_REASONS = np.array([5, 6, 7, 0, 1], dtype=np.int8)  # clickrow playbtn appload trackdone fwdbtn
START_REASON_P = (0.35, 0.2, 0.15, 0.2, 0.1)
FIRST_PAUSE_SHARE = 0.6  # first tracks with no pause flag at all
NO_PAUSE_BELOW, SHORT_PAUSE_BELOW = 0.88, 0.95  # pause_u < a: no pause; < b: short; else long
CONTEXT_SWITCH_SHARE = 0.1
SEEKFWD_RATE = (0.15, 0.03)  # Poisson rate on skip_3 tracks, on the others
SEEKBACK_RATE = 0.03


@dataclass
class Behaviour:
    skip_1: np.ndarray
    skip_2: np.ndarray
    skip_3: np.ndarray
    not_skipped: np.ndarray
    r_start: np.ndarray  # codes into REASONS
    r_end: np.ndarray
    no_pause: np.ndarray
    short_pause: np.ndarray
    long_pause: np.ndarray
    context_switch: np.ndarray
    seekfwd: np.ndarray
    seekback: np.ndarray


def draw_behaviour(st: Story, rng: np.random.Generator, positive, pos, length) -> Behaviour:
    """Per event (in session order): ``pos`` its 1-based position, ``length`` its session's length."""
    n = positive.size
    neg = ~positive
    skip_1 = neg & (rng.random(n) < st.skip1_share)
    skip_3 = neg | (rng.random(n) < st.skip3_extra)
    # the end reason follows the skip; the next start reason repeats it
    r_end = np.where(skip_3, np.where(rng.random(n) < FWD_SKIP_SHARE, FWDBTN, BACKBTN), TRACKDONE).astype(np.int8)
    last = pos == length
    end_alt = rng.random(n)
    r_end[last & ~skip_3 & (end_alt < LAST_ENDPLAY_BELOW)] = ENDPLAY
    r_end[last & ~skip_3 & (end_alt > LAST_LOGOUT_ABOVE)] = LOGOUT
    first = pos == 1
    r_start = np.empty(n, dtype=np.int8)
    r_start[~first] = r_end[np.flatnonzero(~first) - 1]
    r_start[first] = START_REASONS[rng.choice(5, size=int(first.sum()), p=list(START_REASON_P))]
    # pauses: mutually exclusive; context switches only at the start of a session
    pause_u = rng.random(n)
    first_pause = np.where(first, pause_u < FIRST_PAUSE_SHARE, False)
    return Behaviour(
        skip_1=skip_1, skip_2=neg, skip_3=skip_3, not_skipped=~skip_3, r_start=r_start, r_end=r_end,
        no_pause=(~first_pause) & (pause_u < NO_PAUSE_BELOW),
        short_pause=(~first_pause) & (pause_u >= NO_PAUSE_BELOW) & (pause_u < SHORT_PAUSE_BELOW),
        long_pause=(~first_pause) & (pause_u >= SHORT_PAUSE_BELOW),
        context_switch=first & (rng.random(n) < CONTEXT_SWITCH_SHARE),
        seekfwd=rng.poisson(np.where(skip_3, SEEKFWD_RATE[0], SEEKFWD_RATE[1])),
        seekback=rng.poisson(SEEKBACK_RATE, n),
    )
