"""Recommender-quality sweep: TrainConfig switches on the demo world, val/test AUC next to the baselines.

    nice -n 10 .venv/bin/python bench/sweep_recommender.py --format users \
        --runs base 'bias:item_bias=true' 'bias_nw0:item_bias=true,negative_weight=0' \
        [--schemes id v1-k1024] [--hidden 64] [--shuffle] [--baselines] \
        [--world-set taste_weight=3 story.content_hidden_dims=8 n_tracks=50000]

Each run is ``name:key=value,...`` (TrainConfig overrides on top of the repository's [train]
settings). The world (``synthetic:demo:<format>``) is written, ingested, featurised and its
``v1-k1024`` IDs fitted ONCE into a cache folder (``SEMID_SWEEP_CACHE``, default /tmp/semid_sweep);
trained models are cached by configuration and by the core's source (``code_version``: a rerun of
the same run on the same code resumes / reuses its checkpoint; changed code trains anew).
Prints one line per (run, scheme): validation AUC, test AUC [95% CI], best epoch, events/s.
Choose defaults on the VALIDATION column; test is reported for the record.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from semid_pipeline import evaluation as ev  # noqa: E402
from semid_pipeline import experiment, features, semantic_ids as sid  # noqa: E402
from semid_pipeline import warehouse as wh  # noqa: E402
from semid_pipeline.config import IngestConfig, TrainConfig, load_config, parse_dataset_spec  # noqa: E402
from semid_pipeline.diagnostics import shuffle_splits  # noqa: E402
from semid_pipeline.ingest import ingest_dataset  # noqa: E402
from semid_pipeline.splits import load_splits  # noqa: E402
from semid_pipeline.schema import FEEDBACK_EVENTS  # noqa: E402
from semid_pipeline.schemes import IdScheme  # noqa: E402
from semid_pipeline.scoring import score_eval_set, without_prior  # noqa: E402
from semid_pipeline.synthetic import preset, write_world  # noqa: E402
from semid_pipeline.synthetic.config import parse_overrides, with_overrides  # noqa: E402
from semid_pipeline.train import train_recommender  # noqa: E402

CACHE = Path(os.environ.get("SEMID_SWEEP_CACHE", Path(tempfile.gettempdir()) / "semid_sweep"))


def prepare(fmt: str, scheme_keys: list[str], world: str = "demo", world_set: dict | None = None):
    """(warehouse path, {scheme: id table}) for synthetic:<world>:<fmt>, built once.

    ``world_set``: WorldConfig overrides (e.g. {"taste_weight": 3.0}); the world is then written
    with them and ingested from its per-user files (``events:``), in a folder of its own."""
    cfg = load_config()
    name = fmt if world == "demo" else f"{world}_{fmt}"
    if world_set:
        name += "_" + "_".join(f"{k}{v:g}" for k, v in sorted(world_set.items()))
    name += "_" + with_overrides(preset(world), world_set or {}).hash((fmt,))[:8]  # a changed preset: a new folder
    root = CACHE / name
    root.mkdir(parents=True, exist_ok=True)
    db = root / "warehouse.duckdb"
    if not db.exists():
        t0 = time.perf_counter()
        tmp = root / "warehouse.tmp.duckdb"
        tmp.unlink(missing_ok=True)
        world_name, _, content = world.partition("-")  # demo-genreflags → synthetic:demo:users:genreflags
        spec = f"synthetic:{world_name}:{fmt}" + (f":{content}" if content else "")
        if world_set:
            m = write_world(with_overrides(preset(world), world_set), root / "world", formats=(fmt,))
            spec = (f"events:{m.users_events},{m.users_tracks}" if fmt == "users"
                    else "mssd:" + ",".join(str(p) for p in (*m.session_logs, *m.session_tracks)))
        ingest_dataset(parse_dataset_spec(spec), warehouse=tmp, cfg=IngestConfig(), data_dir=root)
        with wh.connect(tmp) as con:
            features.build_content_features(con, root / "features")
        os.replace(tmp, db)
        print(f"# built {db} in {time.perf_counter() - t0:.0f}s", flush=True)
    tables = {}
    for key in scheme_keys:
        if key == "id":
            tables[key] = None
            continue
        pq = root / f"ids_{key}.parquet"
        if not pq.exists():
            with wh.connect(db, read_only=True) as con:
                track_ids, X = features.read_content_features(con)
            res = sid.fit_semantic_ids(scheme=IdScheme.parse(key), track_ids=track_ids, X=X, cfg=cfg.semantic_ids,
                                       artifact_dir=root / f"sid_{key}")
            res.table.sort_values("track_id").reset_index(drop=True).to_parquet(pq)
        tables[key] = pd.read_parquet(pq)
    return db, tables


def load_world(fmt: str, scheme_keys: list[str], world: str = "demo", world_set: dict | None = None, *,
               nested: bool = False):
    """(warehouse path, {scheme: id table}, splits, catalogue view, content) of ``prepare``'s world,
    read as the pipeline reads it; ``nested``: its copy with nested validation (``nested_copy``)."""
    cfg = load_config()
    db, tables = prepare(fmt, sorted({IdScheme.parse(s).codes_scheme.key for s in scheme_keys}), world, world_set)
    if nested:
        db = nested_copy(db, cfg)
    with wh.connect(db, read_only=True) as con:
        splits = load_splits(con, cfg.split)
        view = experiment.catalog_view(con, splits)
        content = features.content_for_vocab(con, splits.vocab.track_ids)
    return db, tables, splits, view, content


def nested_copy(db: Path, cfg) -> Path:
    """A copy of the warehouse without the test period's events (built once)."""
    out = db.with_name("nested.duckdb")
    if not out.exists():
        with wh.connect(db, read_only=True) as con:
            test_start = load_splits(con, cfg.split).cutoffs["test_start"]
        tmp = db.with_name("nested.tmp.duckdb")
        shutil.copyfile(db, tmp)
        with wh.connect(tmp) as con:
            con.execute(f"DELETE FROM {FEEDBACK_EVENTS} WHERE CAST(ts AS TIMESTAMP) >= ?", [test_start.to_pydatetime()])
        os.replace(tmp, out)
    return out


def code_version() -> str:
    """A hash of ``semid_pipeline``'s source, part of each run folder's key: a run cached by older
    code is not reused for the code being measured (it was, until 2026-12-04)."""
    h = hashlib.sha256()
    for path in sorted((ROOT / "semid_pipeline").rglob("*.py")):
        h.update(path.relative_to(ROOT).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def parse_run(spec: str, base: TrainConfig) -> tuple[str, TrainConfig]:
    name, _, rest = spec.partition(":")
    kw = {}
    for item in filter(None, rest.split(",")):
        k, _, v = item.partition("=")
        default = getattr(base, k)
        if isinstance(default, bool):
            kw[k] = v.lower() in ("1", "true", "yes")
        elif isinstance(default, int):
            kw[k] = int(v)
        elif isinstance(default, float) or (default is None and k == "attention_dropout"):
            kw[k] = float(v)
        else:
            kw[k] = v
    return name, replace(base, **kw)


def record(name, key, h, res, splits, cfg_eval, max_len):
    out = {"run": name, "scheme": key, "h": h, "best_epoch": res.best_epoch, "epochs": len(res.history),
           "events_per_s": round(res.events_per_s), "params": res.parameter_counts["total"]}
    for period, es in (("val", splits.val), ("test", splits.test)):
        sc = score_eval_set(res.model, es, max_len=max_len, train_track_counts=splits.train_track_counts)
        r = ev.evaluate_scored(sc, n_boot=cfg_eval.bootstrap, seed=0)
        out[f"{period}_auc"], out[f"{period}_lo"], out[f"{period}_hi"] = r["auc"], r["ci_lo"], r["ci_hi"]
    if res.config["train"].get("final_fit_epochs"):  # trained on the validation period: keep the held-out figure
        out["val_in_sample_auc"], out["val_auc"] = out["val_auc"], res.best_val_auc
        out["val_in_sample_lo"], out["val_in_sample_hi"] = out.pop("val_lo"), out.pop("val_hi")  # no held-out CI
    if res.prior:  # popularity prior / content affinity: their weights, the held-out validation AUC with it, the test AUC without
        out["prior_weight"] = res.prior["weight"]
        out["affinity"] = res.prior.get("affinity")  # [train] content_affinity's (a+, a-)
        out["memory"] = res.prior.get("memory")  # [train] listener_memory's (r_track, r_artist)
        out["taste"] = res.prior.get("taste")  # [train] personal_taste's b
        out["recent"] = res.prior.get("recent")  # [train] recent_prior_days's ρ
        if res.prior.get("val_auc") is not None:
            out["val_auc_without_prior"], out["val_auc"] = res.prior["val_auc_without"], res.prior["val_auc"]
        # the same test scores with w = 0 (the switch off: training never saw it), as evaluate_model does
        r = ev.evaluate_scored(without_prior(res.model, sc), n_boot=cfg_eval.bootstrap, seed=0)
        out["test_auc_without_prior"], out["test_lo_without_prior"], out["test_hi_without_prior"] = (
            r["auc"], r["ci_lo"], r["ci_hi"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--format", default="users", choices=["users", "sessions"])
    ap.add_argument("--world", default="demo", help="preset, e.g. demo-genreflags (weak content)")
    ap.add_argument("--world-set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="WorldConfig overrides (numbers), e.g. taste_weight=3 story.content_hidden_dims=8 (as in "
                         "bench/ceiling_probe.py --set)")
    ap.add_argument("--runs", nargs="+", default=["base:"])
    ap.add_argument("--schemes", nargs="+", default=["id", "v1-k1024"])
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--shuffle", action="store_true", help="also train each run on shuffled histories")
    ap.add_argument("--baselines", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="append JSON lines here")
    ap.add_argument("--nested", action="store_true",
                    help="drop the test period: the validation period becomes the test, the 14 days before it "
                         "the validation (to choose switches that train on validation data, e.g. final_fit_epochs)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config()
    # hybrid-k<k> / <key>+ag read the table of their codes_scheme (v1-k<k> / the plain key)
    world_set = parse_overrides(args.world_set)
    db, tables, splits, view, content = load_world(args.format, args.schemes, args.world, world_set, nested=args.nested)
    if args.baselines:  # as the pipeline's report: the adjusted effects follow each run's [train] prior_by_plays
        for by_plays in sorted({parse_run(spec, cfg.train)[1].prior_by_plays for spec in args.runs}):
            for name, b in experiment.baseline_records(splits, view, cfg.eval, by_plays=by_plays).items():
                print(f"baseline {name + (' (prior_by_plays)' if by_plays else ''):<48} test {b['auc']:.4f} "
                      f"[{b['ci_lo']:.4f}, {b['ci_hi']:.4f}]"
                      + (f"  val {b['val_auc']:.4f}" if b.get("val_auc") is not None else ""), flush=True)
    code = code_version()
    variants = [("", splits)] + ([("+shuffled", shuffle_splits(splits, seed=0))] if args.shuffle else [])
    for spec in args.runs:
        name, tc = parse_run(spec, cfg.train)
        for suffix, sp in variants:
            for key in args.schemes:
                fp = hashlib.sha256(json.dumps([args.world, *([world_set] if world_set else []), args.format + ("-nested" if args.nested else ""), key,
                                                 args.hidden, suffix, asdict(tc), code], sort_keys=True).encode()).hexdigest()[:12]
                scheme = IdScheme.parse(key)
                res = train_recommender(scheme=scheme, hidden=args.hidden, splits=sp,
                                        id_table=tables.get(scheme.codes_scheme.key), id_table_hash=key, cfg=tc,
                                        out_dir=db.parent / "runs" / fp, log=lambda m: None,
                                        content=content)
                r = record(name + suffix, key, args.hidden, res, sp, cfg.eval, tc.max_len)
                print(f"{args.format:<8} {r['run']:<22} {key:<10} val {r['val_auc']:.4f} "
                      f"test {r['test_auc']:.4f} [{r['test_lo']:.4f}, {r['test_hi']:.4f}] "
                      f"epoch {r['best_epoch']}/{r['epochs']} {r['events_per_s']:,} ev/s"
                      + (f" prior w={r['prior_weight']:g} ρ={r.get('recent')} a={r.get('affinity')} b={r.get('taste')} r={r.get('memory')} (without: val {r.get('val_auc_without_prior', float('nan')):.4f}"
                         f" test {r['test_auc_without_prior']:.4f})" if "prior_weight" in r else ""), flush=True)
                if args.out:
                    with open(args.out, "a") as fh:
                        fh.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
