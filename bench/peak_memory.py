"""Peak resident memory of this process, for the benchmarks' side-by-side figures."""

import resource
from pathlib import Path


def peak_rss_mb() -> float:
    """VmHWM from /proc (Linux), else ru_maxrss, in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
