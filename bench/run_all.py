"""Run every benchmark in turn (``make bench``); each prints its own figures and ratios.

Benchmarks need a quiet machine: other jobs on the 2 cores inflate wall times.
"""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ["bench_ingest.py", "bench_spotify_ingest.py", "bench_semantic_ids.py", "bench_train.py", "bench_evaluation.py",
           "bench_grid.py"]

if __name__ == "__main__":
    only = sys.argv[1:] or BENCHES
    failed = []
    for name in only:
        print(f"\n######## {name}", flush=True)
        if subprocess.call([sys.executable, str(HERE / name)]) != 0:
            failed.append(name)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")
