"""Peak resident memory of a stage: the highest RSS of this process while a call ran.

``with stage_peak_rss() as mem: ...`` then ``mem.peak_rss_mb``. On Linux the kernel's high-water
mark (``VmHWM``) is reset at the start (``/proc/self/clear_refs`` ← ``5``) and read at the end:
exact, no sampling. Where the reset is refused, a thread samples ``/proc/self/statm`` every
``interval_s`` (peaks shorter than that can be missed) and the result is the larger of the samples
and the high-water mark when that mark rose during the call. Elsewhere (no /proc) the
process-lifetime ``ru_maxrss`` is the only figure (``exact`` False, ``method`` says which).
"""

from __future__ import annotations

import os
import resource
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20 if hasattr(os, "sysconf") else 4096 / 2**20


@dataclass
class PeakMemory:
    peak_rss_mb: float = float("nan")
    method: str = ""  # "hwm-reset" (exact) | "sampled" | "ru_maxrss" (process lifetime)

    @property
    def exact(self) -> bool:
        return self.method == "hwm-reset"


def _status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def current_rss_mb() -> float | None:
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * _PAGE_MB
    except (OSError, IndexError, ValueError):
        return None


def peak_rss_mb() -> float:
    """The process's peak RSS so far (VmHWM, else ru_maxrss), in MB."""
    hwm = _status_mb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_high_water_mark() -> bool:
    """Reset VmHWM (Linux >= 4.0: write 5 to clear_refs); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@contextmanager
def stage_peak_rss(interval_s: float = 0.02) -> Iterator[PeakMemory]:
    """Measure the peak RSS of the ``with`` body (see the module docstring); the figure is set on exit."""
    mem = PeakMemory()
    if reset_high_water_mark():
        try:
            yield mem
        finally:
            mem.peak_rss_mb, mem.method = peak_rss_mb(), "hwm-reset"
        return
    if current_rss_mb() is None:
        try:
            yield mem
        finally:
            mem.peak_rss_mb, mem.method = peak_rss_mb(), "ru_maxrss"
        return
    hwm0, samples, stop = peak_rss_mb(), [current_rss_mb() or 0.0], threading.Event()

    def sample() -> None:
        while not stop.wait(interval_s):
            samples.append(max(samples[-1], current_rss_mb() or 0.0))

    thread = threading.Thread(target=sample, name="peak-rss", daemon=True)
    thread.start()
    try:
        yield mem
    finally:
        stop.set()
        thread.join()
        hwm1 = peak_rss_mb()
        mem.peak_rss_mb = max(max(samples), current_rss_mb() or 0.0, hwm1 if hwm1 > hwm0 else 0.0)
        mem.method = "sampled"
