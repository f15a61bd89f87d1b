"""Benchmark: Spotify streaming-history ingestion vs DuckDB's own ``read_json`` of the same files.

    python bench/bench_spotify_ingest.py [FOLDER] [--listeners L] [--plays N] [--keep]

FOLDER holds export files (one sub-folder per listener); without it, ``--listeners`` ×
``--plays`` plays (default 20 × 50,000 = 1M) are generated in the export format by
``semid_pipeline.spotify_export.write_exports`` (25,000 plays per file, ~0.5 GB of JSON).

Every measurement runs in a fresh child process on a fresh warehouse file, so the peak RSS
(VmHWM) printed for it is its own. Measured, in the same run:

* plain         ``CREATE TABLE t AS SELECT * FROM read_json([...], format='array')`` (all fields, auto types)
* ours/user     ``ingest_spotify_history`` (labels, validation, duplicates, catalogue, one stratum per listener)
* ours/session  the same with ``stratum = "session"``

and the ratio ours rows/s ÷ plain rows/s (rows = plays read). Aim: ratio >= 0.5, peak < 2 GB.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from peak_memory import peak_rss_mb  # noqa: E402 (bench/, the script's own folder)


def _files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("Streaming_History_Audio_*.json")) + sorted(folder.rglob("endsong_*.json"))


def _child(mode: str, folder: str, wh_path: str) -> None:
    """One measurement (in its own process): prints a JSON line."""
    import duckdb

    from semid_pipeline.config import IngestConfig
    from semid_pipeline.ingest import ingest_spotify_history

    files = _files(Path(folder))
    t0 = time.perf_counter()
    if mode == "plain":
        con = duckdb.connect(wh_path)
        lst = "[" + ", ".join(f"'{p}'" for p in files) + "]"
        con.execute(f"CREATE TABLE t AS SELECT * FROM read_json({lst}, format='array')")
        rows = con.execute("SELECT count(*) FROM t").fetchone()[0]
        kept = rows
        con.close()
    else:
        stratum = mode.split("/")[1]
        con = duckdb.connect(wh_path)
        res = ingest_spotify_history(con, [folder], dataset_key=f"spotify-history:{folder}",
                                     cfg=IngestConfig(stratum=stratum, on_duplicate="drop"))
        rows, kept = sum(f.rows_read for f in res.files), res.n_events
        con.close()
    dt = time.perf_counter() - t0
    print(json.dumps({"mode": mode, "rows": int(rows), "kept": int(kept), "seconds": dt, "peak_mb": peak_rss_mb()}))


def _measure(mode: str, folder: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="semid-bench-sp-") as tmp:
        out = subprocess.run([sys.executable, __file__, "--child", mode, str(folder), str(Path(tmp) / "wh.duckdb")],
                             capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", nargs="?")
    ap.add_argument("--listeners", type=int, default=20)
    ap.add_argument("--plays", type=int, default=50_000, help="plays per listener")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return
    tmp = None
    if args.folder:
        folder = Path(args.folder)
    else:
        from semid_pipeline.spotify_export import ExportConfig, write_exports

        tmp = Path(tempfile.mkdtemp(prefix="semid-bench-spotify-"))
        folder = tmp / "exports"
        t0 = time.perf_counter()
        m = write_exports(folder, cfg=ExportConfig(listeners=args.listeners, plays_per_listener=args.plays,
                                                   n_tracks=5000, plays_per_file=25_000, start="2015-01-01",
                                                   days=3650, seed=0))
        print(f"generated {m.n_plays:,} plays in {len(m.files)} files in {time.perf_counter() - t0:.1f}s")
    size = sum(p.stat().st_size for p in _files(folder))
    print(f"{len(_files(folder))} files, {size / 1e6:.0f} MB of JSON")
    try:
        res = {mode: _measure(mode, folder) for mode in ("plain", "ours/user", "ours/session")}
    finally:
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    plain_rate = res["plain"]["rows"] / res["plain"]["seconds"]
    print(f"{'mode':<14}{'rows':>12}{'kept':>12}{'seconds':>10}{'rows/s':>12}{'ratio':>8}{'peak MB':>10}")
    for mode, r in res.items():
        rate = r["rows"] / r["seconds"]
        print(f"{mode:<14}{r['rows']:>12,}{r['kept']:>12,}{r['seconds']:>10.2f}{rate:>12,.0f}"
              f"{rate / plain_rate:>8.2f}{r['peak_mb']:>10.0f}")


if __name__ == "__main__":
    main()
