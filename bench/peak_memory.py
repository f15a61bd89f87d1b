"""Peak resident memory of this process, for the benchmarks' side-by-side figures.

The measurement lives in the core (``semid_pipeline.resources_usage``); this re-export keeps the
benchmarks' ``from peak_memory import peak_rss_mb``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from semid_pipeline.resources_usage import peak_rss_mb, stage_peak_rss  # noqa: E402,F401
