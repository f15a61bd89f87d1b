"""The paper's finding at scale: ``id`` vs semantic IDs on the ``bench`` preset (100k tracks, 1.2M events).

    nice -n 10 .venv/bin/python bench/bench_paper_scale.py [--epochs 3] [--hidden 64] [--threads 2]
    make bench-paper-scale

On ``synthetic:bench`` (users format) trains ``id``, ``v0-k1024``, ``v1-k1024`` and ``v1-k4096`` at
h=64 through the pipeline's own stages (ingest → content features → semantic IDs → splits → train
with early stopping, epochs capped by ``--epochs``) and prints one table: test AUC with its bootstrap
CI, track-representation parameters, reduction vs ``id``, whether the AUC lies inside ``id``'s CI,
best epoch and wall time. ID quality gates (level-1 collapse, distinct tuples) are run and reported;
a scheme that fails one is still trained and flagged.

Throughput, side by side in this run: first-epoch training events/s of ``id`` and ``v1-k1024`` on
the ``demo`` preset (6k tracks) and on ``bench`` (100k tracks) at the same h — the aim is bench ≥
0.9× demo (no slowdown from the catalogue size) — and semantic vs ``id`` events/s on bench.

Scratch data lives in ``$SEMID_BENCH_CACHE`` (default ``<tmp>/semid_paper_scale``); a re-run reuses
the ingested warehouse, the features and the ID tables, and retrains (``--fresh`` starts over).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from semid_pipeline import content_init, evaluation, features, stages, train as train_mod  # noqa: E402
from semid_pipeline.artifacts import ArtifactLayout  # noqa: E402
from semid_pipeline.config import IngestConfig, SemidConfig, parse_dataset_spec  # noqa: E402
from semid_pipeline.datasets import ingest_dataset  # noqa: E402
from semid_pipeline.schemes import GridCell, IdScheme  # noqa: E402
from semid_pipeline.splits import EvalSet, TrainSequences  # noqa: E402
from semid_pipeline.scoring import score_eval_set  # noqa: E402
from semid_pipeline.warehouse import connect, get_meta  # noqa: E402

from peak_memory import peak_rss_mb  # noqa: E402

CACHE = Path(os.environ.get("SEMID_BENCH_CACHE", Path(tempfile.gettempdir()) / "semid_paper_scale"))
SCHEMES = ("id", "v0-k1024", "v1-k1024", "v1-k4096")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def prepare_world(preset: str, cfg: SemidConfig, seed_from: Path | None = None) -> tuple[str, ArtifactLayout]:
    """Ingest + content features of one preset (reused when present). ``seed_from``: a folder with
    ``warehouse.duckdb`` (or ``data/warehouse.duckdb``) and ``artifacts/`` of a pipeline run on the
    same preset (e.g. the repository after `make demo`), copied instead of ingesting again."""
    wdir = CACHE / preset
    wdir.mkdir(parents=True, exist_ok=True)
    warehouse = str(wdir / "warehouse.duckdb")
    layout = ArtifactLayout(wdir / "artifacts")
    t0 = time.perf_counter()
    if not (wdir / "ingested").exists() and seed_from is not None:
        src = seed_from / "warehouse.duckdb"
        shutil.copy2(src if src.exists() else seed_from / "data" / "warehouse.duckdb", warehouse)
        shutil.copytree(seed_from / "artifacts" / "features", wdir / "artifacts" / "features", dirs_exist_ok=True)
        shutil.copytree(seed_from / "artifacts" / "semantic_ids", wdir / "artifacts" / "semantic_ids",
                        dirs_exist_ok=True)
        (wdir / "ingested").touch()
        log(f"{preset}: warehouse, features and ID tables copied from {seed_from}")
    if not (wdir / "ingested").exists():
        ingest_dataset(parse_dataset_spec(f"synthetic:{preset}:users"), warehouse=warehouse, cfg=IngestConfig(),
                       data_dir=wdir / "data")
        (wdir / "ingested").touch()
        log(f"{preset}: ingested in {time.perf_counter() - t0:.0f}s")
    t0 = time.perf_counter()
    stages.build_content_features(warehouse=warehouse, layout=layout, refit=False, cfg=cfg.features)
    log(f"{preset}: content features in {time.perf_counter() - t0:.0f}s")
    return warehouse, layout


def build_ids(preset: str, warehouse: str, layout: ArtifactLayout, key: str, cfg: SemidConfig) -> dict | None:
    """The scheme's ID table (fitted, or reused when it is there) and its quality gates (None for ``id``)."""
    scheme = IdScheme.parse(key)
    t0 = time.perf_counter()
    b = stages.build_semantic_ids(warehouse=warehouse, layout=layout, scheme=scheme, cfg=cfg, refit=False,
                                  log=lambda m: None)  # ``id`` too: the pipeline's table of per-track rows
    if scheme.is_id:
        return None
    ok_c, det_c = stages.check_ids_no_collapse(warehouse, scheme, cfg.semantic_ids.min_level1_utilization)
    ok_d, det_d = stages.check_ids_distinct(warehouse, scheme, cfg.semantic_ids)
    failed = [name for name, ok in (("collapse", ok_c), ("distinct", ok_d)) if not ok]
    gate = {"passed": not failed, "failed": failed, "mode": b.mode,
            "level1_utilization": det_c.get("level1_utilization"),
            "unique_tuple_share": det_d.get("unique_tuple_share"), "max_tie": det_d.get("max_tie")}
    log(f"{preset}: IDs {key} in {time.perf_counter() - t0:.0f}s; gates "
        + ("passed" if not failed else f"FAILED: {', '.join(failed)}") + f" {json.dumps(gate, default=str)}")
    return gate


def every_kth(splits, k_train: int, k_val: int):
    """The splits with every k-th training sequence and validation stratum (test kept whole): a
    CPU-sized training set on the full catalogue (the parameter counts do not change)."""
    if k_train > 1:
        keep = [splits.train[i] for i in range(0, len(splits.train), k_train)]
        splits = replace(splits, train=TrainSequences.from_list(keep), train_ts=None)
    if k_val > 1:
        es = splits.val
        ev = es.events[es.events["row"] % k_val == 0].copy()
        ev["row"] //= k_val
        pick = range(0, len(es), k_val)
        splits = replace(splits, val=EvalSet([es.stratum_ids[i] for i in pick], [es.inputs[i] for i in pick],
                                             ev.reset_index(drop=True), [es.input_ts[i] for i in pick],
                                             [es.input_positions[i] for i in pick]))
    return splits


def train_and_test(warehouse: str, layout: ArtifactLayout, key: str, hidden: int, cfg: SemidConfig,
                   splits, *, evaluate: bool) -> dict:
    """Train one cell (fresh), then its test AUC + CI; returns the row of the table."""
    scheme = IdScheme.parse(key)
    with connect(warehouse, read_only=True) as con:
        dataset_fp = get_meta(con, "dataset_fingerprint")
    from semid_pipeline import semantic_ids as sid

    with connect(warehouse, read_only=True) as con:
        table, id_hash = sid.read_semantic_ids(con, scheme.codes_scheme)
        content = (features.content_for_vocab(con, splits.vocab.track_ids)
                   if content_init.uses_content(scheme, cfg.train) else None)
    inputs = stages.TrainingInputs(dataset="bench", dataset_fingerprint=dataset_fp, splits=splits,
                                   id_table=None if scheme.is_id else table, id_table_hash=id_hash,
                                   content=content)
    cell = GridCell(scheme=scheme, h=hidden)
    out_dir = inputs.model_dir(layout, cell, cfg)
    shutil.rmtree(out_dir, ignore_errors=True)  # always a timed, fresh run
    res = train_mod.train_recommender(scheme=scheme, hidden=hidden, splits=splits, id_table=inputs.id_table,
                                      id_table_hash=id_hash, cfg=cfg.train, out_dir=out_dir,
                                      log=lambda m: log("   " + m), device="cpu",
                                      max_tie_embeddings=cfg.semantic_ids.max_tie_embeddings,
                                      content=inputs.content)
    row = {"scheme": key, "track_params": int(res.parameter_counts["track_representation"]),
           "total_params": int(res.parameter_counts["total"]), "best_epoch": res.best_epoch,
           "epochs": len(res.history), "wall_s": res.wall_seconds,
           "events_per_s_epoch1": res.history[0]["events_per_s"], "events_per_s": res.events_per_s}
    if evaluate:
        t0 = time.perf_counter()
        scored = score_eval_set(res.model, splits.test, max_len=cfg.train.max_len)
        auc, per = evaluation.stratified_auc(scored["stratum_id"], scored["feedback"], scored["score"])
        lo, hi = evaluation.bootstrap_ci(per["auc"].to_numpy(), n_boot=cfg.eval.bootstrap, seed=cfg.eval.seed)
        row.update(test_auc=auc, ci_lo=lo, ci_hi=hi, n_strata=int(len(per)), eval_s=time.perf_counter() - t0)
    return row


def print_table(rows: list[dict], gates: dict) -> None:
    ref = next((r for r in rows if r["scheme"] == "id"), None)
    print("\n| scheme | test AUC [95% CI] | track params | reduction vs id | AUC in id's CI | best/ran epochs "
          "| wall s | events/s | ID gates |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        red = 1 - r["track_params"] / ref["track_params"] if ref else float("nan")
        inside = "—" if r["scheme"] == "id" or ref is None else (
            "yes" if ref["ci_lo"] <= r["test_auc"] <= ref["ci_hi"] else "no")
        g = gates.get(r["scheme"])
        gate = "—" if g is None else ("pass" if g["passed"] else "FAIL " + "+".join(g["failed"]))
        print(f"| {r['scheme']} | {r['test_auc']:.4f} [{r['ci_lo']:.4f}, {r['ci_hi']:.4f}] | {r['track_params']:,} "
              f"| {red:.1%} | {inside} | {r['best_epoch']}/{r['epochs']} | {r['wall_s']:.0f} "
              f"| {r['events_per_s']:,.0f} | {gate} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=3, help="cap; early stopping (patience 1) may stop sooner")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--schemes", default=",".join(SCHEMES))
    ap.add_argument("--no-demo", action="store_true", help="skip the demo-vs-bench throughput comparison")
    ap.add_argument("--fresh", action="store_true", help="delete the scratch folder first")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--content-init", choices=["on", "off"], default="on",
                    help="[train] content_init (on: the repository default)")
    ap.add_argument("--final-fit", type=int, default=None,
                    help="[train] final_fit_epochs (default: the configured value)")
    ap.add_argument("--preset", default="bench", help="the world of the table (tiny: a smoke test)")
    ap.add_argument("--seed-from", type=Path, help="folder with warehouse.duckdb + artifacts/ of the preset")
    ap.add_argument("--train-every", type=int, default=1, help="train on every k-th training sequence")
    ap.add_argument("--val-every", type=int, default=1, help="validate on every k-th validation stratum")
    ap.add_argument("--include-json", type=Path, help="rows of an earlier run (same settings) to put in the table")
    ap.add_argument("--merge", type=Path, nargs="+", help="only print the table of these runs' --json files")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.fresh:
        shutil.rmtree(CACHE, ignore_errors=True)
    schemes = args.schemes.split(",")
    base = SemidConfig()
    cfg = replace(base, semantic_ids=replace(base.semantic_ids, schemes={"v0": (1024,), "v1": (1024, 4096)}),
                  train=replace(base.train, epochs=args.epochs, patience=1, content_init=args.content_init == "on",
                                final_fit_epochs=base.train.final_fit_epochs if args.final_fit is None else args.final_fit),
                  eval=replace(base.eval, bootstrap=300))
    t_all = time.perf_counter()
    out: dict = {"demo": [], "bench": []}
    gates: dict = {}
    if args.merge:  # runs of the same settings (e.g. two in parallel): one table
        for f in args.merge:
            prev = json.loads(f.read_text())
            out["demo"] += prev["rows"]["demo"]
            out["bench"] += prev["rows"]["bench"]
            gates.update(prev["gates"])
        order = {k: i for i, k in enumerate(SCHEMES)}
        out["bench"].sort(key=lambda r: order.get(r["scheme"], len(order)))
        return report(args, out, gates, [r["scheme"] for r in out["bench"]], t_all)
    if args.include_json:  # e.g. id + v0 trained in one run, the v1 schemes in another
        prev = json.loads(args.include_json.read_text())
        out = {"demo": prev["rows"]["demo"], "bench": prev["rows"]["bench"]}
        gates = prev["gates"]
        schemes = [r["scheme"] for r in out["bench"]] + schemes
    if not args.no_demo and not out["demo"]:  # throughput reference: one epoch of the same models on the 6k-track world
        wh_d, lay_d = prepare_world("demo", cfg)
        with connect(wh_d, read_only=True) as con:
            sp_d = stages.splits_mod.load_splits(con, cfg.split)
        one = replace(cfg, train=replace(cfg.train, epochs=1))
        for key in ("id", "v1-k1024"):
            build_ids("demo", wh_d, lay_d, key, cfg)
            out["demo"].append(train_and_test(wh_d, lay_d, key, args.hidden, one, sp_d, evaluate=False))
        del sp_d
    warehouse, layout = prepare_world(args.preset, cfg, args.seed_from)
    t0 = time.perf_counter()
    with connect(warehouse, read_only=True) as con:
        splits = stages.splits_mod.load_splits(con, cfg.split)
    log(f"{args.preset}: splits in {time.perf_counter() - t0:.0f}s: {len(splits.train):,} training users, "
        f"{splits.n_train_events:,} training events, {len(splits.test):,} test strata, "
        f"{splits.vocab.n_tracks:,} tracks; peak RSS so far {peak_rss_mb():.0f} MB")
    splits = every_kth(splits, args.train_every, args.val_every)
    log(f"{args.preset}: training on {len(splits.train):,} sequences ({splits.n_train_events:,} events), "
        f"validating on {len(splits.val):,} strata")
    for key in schemes[len(out["bench"]):]:
        g = build_ids(args.preset, warehouse, layout, key, cfg)
        if g is not None:
            gates[key] = g
        out["bench"].append(train_and_test(warehouse, layout, key, args.hidden, cfg, splits, evaluate=True))
        log(f"{args.preset} {key}: {json.dumps(out['bench'][-1], default=str)}")
        report(args, out, gates, schemes, t_all)


def report(args, out: dict, gates: dict, schemes: list[str], t_all: float) -> None:
    """The table so far (printed after every model, so a run cut short still leaves one)."""
    print(f"\n{args.preset} preset, h={args.hidden}, epochs <= {args.epochs} (patience 1), {args.threads} threads, "
          f"every {args.train_every}. training sequence, test strata {out['bench'][0]['n_strata']:,}")
    print_table(out["bench"], gates)
    by = {r["scheme"]: r for r in out["bench"]}
    if "id" in by:
        for key in schemes[1:]:
            if key in by:
                print(f"semantic/id events/s ({key}): {by[key]['events_per_s'] / by['id']['events_per_s']:.2f}x")
    for d in out["demo"]:
        if d["scheme"] in by:
            b = by[d["scheme"]]
            print(f"{d['scheme']}: epoch-1 events/s demo {d['events_per_s_epoch1']:,.0f} vs {args.preset} "
                  f"{b['events_per_s_epoch1']:,.0f} -> {args.preset}/demo "
                  f"{b['events_per_s_epoch1'] / d['events_per_s_epoch1']:.2f}x")
    print(f"wall so far {time.perf_counter() - t_all:.0f}s; peak RSS {peak_rss_mb():.0f} MB", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"rows": out, "gates": gates}, indent=2, default=str))


if __name__ == "__main__":
    main()
