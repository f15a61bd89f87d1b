"""Benchmark: scaling curves — time and peak RSS of each stage at several data sizes.

    .venv/bin/python bench/bench_scaling.py [--sizes tiny,demo,bench] [--large] [--data DIR] [--work DIR]
        [--stages generate,ingest,features,ids,splits,train,eval] [--scheme v1-k1024] [--h 64]
    .venv/bin/python bench/bench_scaling.py --assign 1000000   # v1-k1024 assignment alone, tracks/s

Per size (a synthetic preset, per-user format), the stages run in order through the core
functions the assets call (``datasets.ingest_dataset``, ``stages.build_content_features``,
``stages.build_semantic_ids``, ``splits.load_splits``, ``stages.train_cell`` with one epoch,
``stages.evaluate_cell``), each in its OWN child process, so its peak RSS
(``semid_pipeline.resources_usage.stage_peak_rss`` around the call) is its own. ``ids`` also
times the assignment alone: every track's codes through the frozen ``v1`` artifact
(``encode_with_artifact``, batched, balanced last level), printed as tracks/s. ``--large`` adds the
``large`` preset for generate + ingest + features + ids (the issue's memory aim: peak < 8 GB;
assignment ≥ 200k tracks/s); the world is generated once under ``--data`` and reused
(``generate`` then reads "reused").

Printed: one row per (size, stage): seconds, peak RSS, rows; then per stage the growth exponent
between consecutive sizes, ``log(t2/t1) / log(n2/n1)`` in events (1 = linear). Tiny sizes are
dominated by fixed costs (imports excluded, model set-up not), so read the exponents of the larger
steps. Figures depend on the machine's load: the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ALL_STAGES = ("generate", "ingest", "features", "ids", "splits", "train", "eval")
LARGE_STAGES = ("generate", "ingest", "features", "ids")


# ------------------------------------------------------------------------------------------
# one stage, in a child process


def _paths(work: Path, size: str) -> dict[str, Path]:
    return {"warehouse": work / size / "warehouse.duckdb", "artifacts": work / size / "artifacts"}


def _config(scheme_key: str, h: int):
    from dataclasses import replace

    from semid_pipeline.config import load_config

    cfg = load_config(ROOT / "semid.toml")
    return replace(cfg, train=replace(cfg.train, epochs=1, final_fit_epochs=0))  # one epoch, no final fit


def _stage(stage: str, size: str, data: Path, work: Path, scheme_key: str, h: int) -> dict:
    """Run ``stage`` on ``size``; return its figures (seconds, rows, extras)."""
    from semid_pipeline import datasets, stages
    from semid_pipeline import splits as splits_mod
    from semid_pipeline.artifacts import ArtifactLayout
    from semid_pipeline.config import parse_dataset_spec
    from semid_pipeline.resources_usage import stage_peak_rss
    from semid_pipeline.schemes import GridCell
    from semid_pipeline.synthetic import load_manifest, write_world
    from semid_pipeline.warehouse import connect

    cfg = _config(scheme_key, h)
    p = _paths(work, size)
    p["warehouse"].parent.mkdir(parents=True, exist_ok=True)
    wh, layout = str(p["warehouse"]), ArtifactLayout(root=p["artifacts"])
    spec = parse_dataset_spec(f"synthetic:{size}:users")
    cell = GridCell.parse(f"{h}|{scheme_key}")
    out: dict = {}
    world_dir = data / "synthetic" / size
    cached = stage == "generate" and load_manifest(world_dir) is not None
    if stage == "ingest" and p["artifacts"].exists():  # a fresh run: no transform/ID tables of another one
        import shutil

        shutil.rmtree(p["artifacts"])
    t = time.perf_counter()
    with stage_peak_rss() as mem:
        if stage == "generate":
            m = write_world(size, world_dir, formats=("users",))
            out["rows"] = m.counts["users_events"]
            out["note"] = "reused (generated earlier)" if cached else ""
        elif stage == "ingest":
            out["rows"] = datasets.ingest_dataset(spec, warehouse=wh, cfg=cfg.ingest, data_dir=data).n_events
        elif stage == "features":
            out["rows"] = stages.build_content_features(warehouse=wh, layout=layout, refit=True,
                                                        cfg=cfg.features).result.n_tracks
        elif stage == "ids":
            built = stages.build_semantic_ids(warehouse=wh, layout=layout, scheme=cell.scheme, cfg=cfg, refit=True,
                                              log=lambda s: None)
            out["rows"] = len(built.table)
        elif stage == "splits":
            with connect(wh, read_only=True) as con:
                sp = splits_mod.load_splits(con, cfg.split)
            out["rows"] = int(len(sp.test.events))
        elif stage == "train":
            tr = stages.train_cell(warehouse=wh, layout=layout, cell=cell, cfg=cfg, device="cpu", log=lambda s: None)
            out["rows"] = None
            out["note"] = f"{tr.result.events_per_s:,.0f} events/s"
        elif stage == "eval":
            stages.evaluate_cell(warehouse=wh, layout=layout, cell=cell, cfg=cfg)
            out["rows"] = None
        else:
            raise SystemExit(f"unknown stage {stage!r}")
    out.update(seconds=time.perf_counter() - t, peak_rss_mb=mem.peak_rss_mb, method=mem.method)
    if stage == "ids" and not cell.scheme.is_id:
        out.update(_assignment_rate(wh, layout, cell))
    return out


def _assignment_rate(wh: str, layout, cell) -> dict:
    """Codes for every track through the frozen artifact (what a cold-start batch costs), tracks/s."""
    from semid_pipeline import features
    from semid_pipeline import semantic_ids as sid
    from semid_pipeline.resources_usage import stage_peak_rss
    from semid_pipeline.warehouse import connect

    with connect(wh, read_only=True) as con:
        ids, X = features.read_content_features(con)
    with stage_peak_rss() as mem:
        t = time.perf_counter()
        codes = sid.encode_with_artifact(layout.semantic_ids_dir(cell.scheme), X, ids)
        dt = time.perf_counter() - t
    assert codes.shape[0] == len(ids)
    return {"assign_tracks_per_s": len(ids) / dt, "assign_seconds": dt, "assign_peak_rss_mb": mem.peak_rss_mb}


def assignment_only(n: int, dim: int = 30, k: int = 1024) -> dict:
    """``v1-k{k}`` on ``n`` synthetic tracks (bench_semantic_ids' features): a short fit (2 epochs on
    the seeded sample; the fit's length does not change what assignment costs), then every
    track's codes through the frozen artifact, timed alone."""
    import tempfile
    from dataclasses import replace

    from bench_semantic_ids import synthetic_features
    from semid_pipeline import semantic_ids as sid
    from semid_pipeline.config import SemanticIdConfig
    from semid_pipeline.resources_usage import stage_peak_rss
    from semid_pipeline.schemes import IdScheme

    X = synthetic_features(n, dim)  # (N, F)
    ids = [f"t{i:07d}" for i in range(n)]
    base = SemanticIdConfig()
    cfg = replace(base, rqvae=replace(base.rqvae, epochs=2))
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        sid.fit_semantic_ids(scheme=IdScheme(family="v1", k=k), track_ids=ids, X=X, cfg=cfg, artifact_dir=Path(d))
        fit_s = time.perf_counter() - t
        with stage_peak_rss() as mem:
            t = time.perf_counter()
            codes = sid.encode_with_artifact(Path(d), X, ids)
            dt = time.perf_counter() - t
    assert codes.shape == (n, base.levels)
    return {"tracks": n, "fit_seconds_2_epochs": fit_s, "assign_seconds": dt, "assign_tracks_per_s": n / dt,
            "assign_peak_rss_mb": mem.peak_rss_mb}


# ------------------------------------------------------------------------------------------
# the driver


def _run_child(args, stage: str, size: str) -> dict:
    cmd = [sys.executable, __file__, "--child", stage, "--child-size", size, "--data", str(args.data),
           "--work", str(args.work), "--scheme", args.scheme, "--h", str(args.h)]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if res.returncode != 0:
        return {"error": (res.stderr or res.stdout).strip().splitlines()[-1:]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def _exponents(rows: list[dict], events: dict[str, int]) -> list[str]:
    lines = []
    for stage in ALL_STAGES:
        pts = [(events[r["size"]], r["seconds"]) for r in rows if r["stage"] == stage and "seconds" in r
               and not r.get("note") and r["size"] in events]  # sizes whose generate stage ran this time
        pts.sort()
        parts = [f"{math.log(t2 / t1) / math.log(n2 / n1):.2f}" for (n1, t1), (n2, t2) in zip(pts, pts[1:])
                 if n2 > n1 and t1 > 0 and t2 > 0]
        if parts:
            lines.append(f"  {stage:<9} growth exponent in events between consecutive sizes: {', '.join(parts)}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="tiny,demo,bench")
    ap.add_argument("--large", action="store_true", help="add `large` (generate, ingest, features, ids)")
    ap.add_argument("--stages", default=",".join(ALL_STAGES))
    ap.add_argument("--data", type=Path, default=ROOT / "data", help="world folder root (<data>/synthetic/<size>)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/semid_scaling"), help="warehouses and artifacts")
    ap.add_argument("--scheme", default="v1-k1024")
    ap.add_argument("--h", type=int, default=64)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    ap.add_argument("--assign", type=int, default=0,
                    help="only time v1-k1024 assignment of this many synthetic tracks (short fit), then exit")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-size", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(2)
        print(json.dumps(_stage(args.child, args.child_size, args.data, args.work, args.scheme, args.h)))
        return
    if args.assign:
        import torch

        torch.set_num_threads(2)
        sys.path.insert(0, str(ROOT / "bench"))
        r = assignment_only(args.assign)
        print(f"v1-k1024 assignment of {r['tracks']:,} tracks: {r['assign_tracks_per_s']:,.0f} tracks/s "
              f"({r['assign_seconds']:.1f}s, peak {r['assign_peak_rss_mb']:.0f} MB; fit with 2 epochs "
              f"{r['fit_seconds_2_epochs']:.0f}s); load average {os.getloadavg()[0]:.1f}")
        return
    sizes = [s for s in args.sizes.split(",") if s] + (["large"] if args.large else [])
    wanted = [s for s in args.stages.split(",") if s]
    rows, events = [], {}
    print(f"{'size':<6} {'stage':<9} {'seconds':>9} {'peak MB':>9} {'rows':>11}  notes", flush=True)
    for size in sizes:
        for stage in [s for s in ALL_STAGES if s in wanted and (size != "large" or s in LARGE_STAGES)]:
            r = {"size": size, "stage": stage, **_run_child(args, stage, size)}
            rows.append(r)
            if stage == "generate" and "rows" in r:
                events[size] = r["rows"]
            if "error" in r:
                print(f"{size:<6} {stage:<9} FAILED: {r['error']}", flush=True)
                break
            note = r.get("note", "")
            if "assign_tracks_per_s" in r:
                note += (f" assignment: {r['assign_tracks_per_s']:,.0f} tracks/s ({r['assign_seconds']:.1f}s, "
                         f"peak {r['assign_peak_rss_mb']:.0f} MB)")
            rows_s = "" if r.get("rows") is None else f"{r['rows']:,}"
            print(f"{size:<6} {stage:<9} {r['seconds']:>9.1f} {r['peak_rss_mb']:>9.0f} {rows_s:>11}  {note}",
                  flush=True)
    print("\n".join(_exponents(rows, events)))
    print(f"(load average at end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; torch threads 2)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
