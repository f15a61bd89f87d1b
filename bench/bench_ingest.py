"""Benchmark: MSSD ingestion (semid_pipeline.ingest.ingest_mssd) vs DuckDB's plain read_csv.

    python bench/bench_ingest.py [FOLDER] [--rows N] [--files K] [--repeat R] [--keep]

FOLDER holds MSSD ``log_*.csv[.gz]`` (+ ``tf_*.csv[.gz]``) files; without it, a data set of
``--rows`` session-log rows (default 1.2M) is generated: by ``semid_pipeline.synthetic.write_world
('bench', ..., formats=('sessions',))`` when that module exists, else by a small DuckDB generator
in this script (MSSD format: true/false booleans, YYYY-MM-DD dates, one tf_ file).

Every measurement runs in a fresh child process on a fresh warehouse file, so the peak RSS
(VmHWM / ru_maxrss) printed for it is that measurement's own. Measured, in the same run:

* plain     ``CREATE TABLE t AS SELECT * FROM read_csv([...logs...])`` (+ the same for the tf files)
* ours/all  ``ingest_mssd`` with context_filter='all'
* ours/radio ``ingest_mssd`` with the default config (context 'radio')

and the ratio ours rows/s ÷ plain rows/s (rows = session-log rows read). Aim: ratio >= 0.7,
peak memory < 2 GB.

``--events N`` measures per-user events instead (the time parsing of ``ingest.timestamps``):
three generated CSVs of N events each — naive ISO text, ISO text with zones (``+02:00``/``Z``),
epoch milliseconds — each ingested by ``ingest_events`` beside a plain ``read_csv`` of the same
file, with the parsed time span printed so a wrong conversion shows.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from peak_memory import peak_rss_mb  # noqa: E402 (bench/, the script's own folder)


# ------------------------------------------------------------------------------------------
# data generation
# ------------------------------------------------------------------------------------------


def generate(out: Path, rows: int, files: int) -> None:
    """MSSD-format CSVs: `files` log parts with ~rows rows in total, plus one tf_ file."""
    try:
        from semid_pipeline.synthetic import write_world  # type: ignore

        write_world("bench", out, formats=("sessions",))
        return
    except ImportError:
        pass
    import duckdb

    from semid_pipeline.schema import MSSD_TRACK_RANGES

    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    n_tracks = 50_000
    per_file = rows // files
    sess_len = 20
    ctx = "['editorial_playlist','user_collection','catalog','radio','charts','personalized_playlist']"
    for k in range(files):
        n_sess = per_file // sess_len
        con.execute(
            f"""
            COPY (
              SELECT
                '{k}_' || lpad(CAST(s AS VARCHAR), 8, '0') || '-aaaa-bbbb-cccc' AS session_id,
                CAST(p AS INTEGER) AS session_position,
                {sess_len} AS session_length,
                't_' || lpad(CAST(hash(s * 31 + p) % {n_tracks} AS VARCHAR), 8, '0') || '-dddd' AS track_id_clean,
                hash(s, p, 1) % 10 < 3 AS skip_1,
                hash(s, p, 1) % 10 < 4 AS skip_2,
                hash(s, p, 1) % 10 < 6 AS skip_3,
                hash(s, p, 1) % 10 >= 6 AS not_skipped,
                CAST(hash(s, p, 2) % 2 AS INTEGER) AS context_switch,
                CAST(hash(s, p, 3) % 2 AS INTEGER) AS no_pause_before_play,
                CAST(hash(s, p, 4) % 2 AS INTEGER) AS short_pause_before_play,
                CAST(hash(s, p, 5) % 2 AS INTEGER) AS long_pause_before_play,
                CAST(hash(s, p, 6) % 3 AS INTEGER) AS hist_user_behavior_n_seekfwd,
                CAST(hash(s, p, 7) % 3 AS INTEGER) AS hist_user_behavior_n_seekback,
                hash(s, 8) % 2 = 0 AS hist_user_behavior_is_shuffle,
                CAST(hash(s, 9) % 24 AS INTEGER) AS hour_of_day,
                DATE '2018-07-01' + CAST(hash(s, 10) % 60 AS INTEGER) AS date,
                hash(s, 11) % 3 = 0 AS premium,
                {ctx}[1 + CAST(hash(s, 12) % 6 AS INTEGER)] AS context_type,
                'trackdone' AS hist_user_behavior_reason_start,
                CASE WHEN hash(s, p, 1) % 10 < 4 THEN 'fwdbtn' ELSE 'trackdone' END AS hist_user_behavior_reason_end
              FROM range({n_sess}) r(s), range(1, {sess_len + 1}) q(p)
              ORDER BY s, p
            ) TO '{out / f"log_{k}.csv"}' (HEADER, DELIMITER ',')
            """
        )
    tf_cols = []
    for i, c in enumerate(MSSD_TRACK_RANGES):
        if c == "mode":
            tf_cols.append("CASE WHEN hash(t, 99) % 2 = 0 THEN 'major' ELSE 'minor' END AS mode")
        elif c == "release_year":
            tf_cols.append("CAST(1950 + hash(t, 98) % 70 AS INTEGER) AS release_year")
        elif c in ("key", "time_signature"):
            tf_cols.append(f"CAST(hash(t, {i}) % 7 AS INTEGER) AS {c}")
        else:
            tf_cols.append(f"round(CAST(hash(t, {i}) % 100000 AS DOUBLE) / 100000, 5) AS {c}")
    con.execute(
        f"COPY (SELECT 't_' || lpad(CAST(t AS VARCHAR), 8, '0') || '-dddd' AS track_id, {', '.join(tf_cols)} "
        f"FROM range({n_tracks}) r(t)) TO '{out / 'tf_0.csv'}' (HEADER, DELIMITER ',')"
    )
    con.close()


_EVENT_STAMPS = {
    "naive": "strftime(TIMESTAMP '2023-01-01' + to_seconds(i * 37), '%Y-%m-%d %H:%M:%S')",
    "zoned": "strftime(TIMESTAMP '2023-01-01' + to_seconds(i * 37), '%Y-%m-%dT%H:%M:%S') "
             "|| CASE WHEN i % 2 = 0 THEN '+02:00' ELSE 'Z' END",
    "epoch_ms": "(1672531200 + i * 37) * 1000",
}


def generate_events(out: Path, rows: int) -> list[Path]:
    """Per-user events CSVs (5,000 users, 50,000 tracks) in three timestamp spellings."""
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    paths = []
    for name, stamp in _EVENT_STAMPS.items():
        p = out / f"events_{name}.csv"
        con.execute(
            f"COPY (SELECT 'u' || (i % 5000) AS user_id, 't' || (hash(i) % 50000) AS track_id, {stamp} AS timestamp, "
            f"CAST(i % 3 > 0 AS INTEGER) AS feedback FROM range({rows}) r(i)) TO '{p}' (HEADER)"
        )
        paths.append(p)
    con.close()
    return paths


def events_worker(mode: str, path: Path, work: Path) -> dict:
    import duckdb

    from semid_pipeline.config import IngestConfig
    from semid_pipeline.ingest import ingest_events

    db = work / f"ev_{mode}_{os.getpid()}.duckdb"
    con = duckdb.connect(str(db))
    t0 = time.perf_counter()
    if mode == "plain":
        con.execute(f"CREATE TABLE t AS SELECT * FROM read_csv('{path}')")
        rows, span = con.execute("SELECT count(*) FROM t").fetchone()[0], ""
    else:
        rows = ingest_events(con, [path], [], dataset_key="events:bench", cfg=IngestConfig()).n_events
        span = " .. ".join(str(v) for v in con.execute("SELECT min(ts), max(ts) FROM feedback_events").fetchone())
    secs = time.perf_counter() - t0
    con.close()
    db.unlink(missing_ok=True)
    return {"mode": mode, "seconds": secs, "rows": rows, "rows_per_s": rows / secs, "span": span,
            "peak_rss_mb": peak_rss_mb()}


def run_events(rows: int, tmp: Path) -> dict:
    results = {}
    print(f"{'file':<22}{'mode':<8}{'rows':>11}{'seconds':>9}{'rows/s':>12}{'ratio':>7}{'peak RSS':>10}  time span")
    for path in generate_events(tmp / "events", rows):
        got = {}
        for mode in ("plain", "ours"):
            out = subprocess.run([sys.executable, __file__, str(path), "--worker", f"events/{mode}", "--work", str(tmp)],
                                 check=True, capture_output=True, text=True)
            got[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        for mode, r in got.items():
            r["ratio"] = r["rows_per_s"] / got["plain"]["rows_per_s"]
            print(f"{path.name:<22}{mode:<8}{r['rows']:>11,}{r['seconds']:>9.2f}{r['rows_per_s']:>12,.0f}"
                  f"{r['ratio']:>7.2f}{r['peak_rss_mb']:>7.0f} MB  {r['span']}")
        results[path.name] = got
    return results


# ------------------------------------------------------------------------------------------
# one measurement (child process)
# ------------------------------------------------------------------------------------------


def worker(mode: str, folder: Path, work: Path) -> dict:
    import duckdb

    from semid_pipeline.config import IngestConfig
    from semid_pipeline.ingest import ingest_mssd, resolve_mssd_paths

    logs, tfs = resolve_mssd_paths([str(folder)])
    db = work / f"{mode.replace('/', '_')}_{os.getpid()}.duckdb"
    con = duckdb.connect(str(db))
    t0 = time.perf_counter()
    if mode == "plain":
        lst = "[" + ", ".join(f"'{p}'" for p in logs) + "]"
        con.execute(f"CREATE TABLE t AS SELECT * FROM read_csv({lst})")
        if tfs:
            lst = "[" + ", ".join(f"'{p}'" for p in tfs) + "]"
            con.execute(f"CREATE TABLE t_tf AS SELECT * FROM read_csv({lst})")
        rows = con.execute("SELECT count(*) FROM t").fetchone()[0]
        kept = rows
    else:
        cfg = IngestConfig(context_filter="all") if mode == "ours/all" else IngestConfig()
        res = ingest_mssd(con, logs, tfs, dataset_key=f"mssd:{folder}", cfg=cfg)
        rows = sum(f.rows_read for f in res.files if f.kind == "log")
        kept = res.n_events
    secs = time.perf_counter() - t0
    con.close()
    db.unlink(missing_ok=True)
    Path(str(db) + ".wal").unlink(missing_ok=True)
    return {"mode": mode, "seconds": secs, "rows": rows, "kept": kept, "rows_per_s": rows / secs,
            "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", nargs="?", help="folder with MSSD log_*/tf_* files (default: generate)")
    ap.add_argument("--rows", type=int, default=1_200_000)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=2, help="runs per mode; the best time is reported")
    ap.add_argument("--keep", action="store_true", help="keep the generated data")
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--events", type=int, help="measure per-user events of this many rows instead (see above)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        if args.worker.startswith("events/"):
            print(json.dumps(events_worker(args.worker.split("/")[1], Path(args.folder), Path(args.work))))
        else:
            print(json.dumps(worker(args.worker, Path(args.folder), Path(args.work))))
        return
    if args.events:
        tmp = Path(tempfile.mkdtemp(prefix="semid_bench_events_"))
        try:
            best = run_events(args.events, tmp)
            if args.json:
                Path(args.json).write_text(json.dumps(best, indent=2))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return

    tmp = Path(tempfile.mkdtemp(prefix="semid_bench_ingest_"))
    try:
        if args.folder:
            folder = Path(args.folder)
        else:
            folder = tmp / "mssd"
            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, "-c",
                 f"import sys; sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(Path(__file__).parent)!r});"
                 f"import bench_ingest as b; from pathlib import Path; "
                 f"b.generate(Path({str(folder)!r}), {args.rows}, {args.files})"],
                check=True,
            )
            print(f"generated data in {time.perf_counter() - t0:.1f}s")
            if (folder / "sessions").is_dir():  # write_world puts MSSD files under sessions/
                folder = folder / "sessions"
        files = sorted(folder.glob("*.csv*"))
        size = sum(f.stat().st_size for f in files)
        print(f"data: {folder} ({len(files)} files, {size / 1e6:.0f} MB)  cpus={os.cpu_count()}")
        best: dict[str, dict] = {}
        for _ in range(args.repeat):
            for mode in ("plain", "ours/all", "ours/radio"):
                out = subprocess.run(
                    [sys.executable, __file__, str(folder), "--worker", mode, "--work", str(tmp)],
                    check=True, capture_output=True, text=True,
                )
                r = json.loads(out.stdout.strip().splitlines()[-1])
                if mode not in best or r["seconds"] < best[mode]["seconds"]:
                    peak = max(r["peak_rss_mb"], best.get(mode, {}).get("peak_rss_mb", 0))
                    best[mode] = r | {"peak_rss_mb": peak}
                else:
                    best[mode]["peak_rss_mb"] = max(best[mode]["peak_rss_mb"], r["peak_rss_mb"])
        plain = best["plain"]["rows_per_s"]
        print(f"{'mode':<12}{'rows':>12}{'kept':>12}{'seconds':>10}{'rows/s':>14}{'ratio':>8}{'peak RSS':>12}")
        for mode, r in best.items():
            ratio = r["rows_per_s"] / plain
            r["ratio"] = ratio
            print(f"{mode:<12}{r['rows']:>12,}{r['kept']:>12,}{r['seconds']:>10.2f}{r['rows_per_s']:>14,.0f}"
                  f"{ratio:>8.2f}{r['peak_rss_mb']:>9.0f} MB")
        ok = all(best[m]["ratio"] >= 0.7 and best[m]["peak_rss_mb"] < 2048 for m in ("ours/all", "ours/radio"))
        print("target (ratio >= 0.7, peak < 2 GB):", "MET" if ok else "NOT MET")
        if args.json:
            Path(args.json).write_text(json.dumps(best, indent=2))
    finally:
        if args.keep and not args.folder:
            print(f"kept data in {tmp / 'mssd'}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
