"""Stage policy: what each asset does, as plain functions of (warehouse file, artifact layout, config).

The Dagster assets translate their context into one call here and the result into metadata; the
decisions live here so that they are tested without Dagster and stated once:

- content features: one transform per data set, fitted on its first ingestion and reused when
  files are appended (unless ``refit``);
- semantic IDs: a scheme that already holds a table for the current data set is *extended*
  (cold start through the frozen artifact), otherwise fitted; provenance records what it came from;
- recommender: the model folder is named by a fingerprint of data, ID table and settings, so a
  re-run resumes its checkpoint and the evaluation finds exactly that model;
- evaluation: model-free baselines are computed once per data set, and one record per grid cell.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import checkpoints, experiment, features, id_gates, no_content, semantic_ids as sid, splits as splits_mod
from . import content_init
from . import train as train_mod
from .artifacts import ArtifactLayout, run_fingerprint
from .baselines import BASELINES_VERSION
from .config import FeaturesConfig, SemanticIdConfig, SemidConfig
from .errors import SemidError
from .fileutil import atomic_write_json, read_json
from .report import load_records
from .schemes import GridCell, IdScheme
from .schema import TRACK_CATALOG
from .warehouse import connect, get_meta, table_exists

Log = Callable[[str], None]


# ----------------------------------------------------------------------------------------------
# content features


@dataclass(frozen=True)
class FeatureBuild:
    result: features.FeatureResult
    X: np.ndarray  # (N, D) the stored vectors
    dataset: str
    reused: bool  # the data set's transform was reused (not fitted)


def build_content_features(*, warehouse: str, layout: ArtifactLayout, refit: bool,
                           cfg: FeaturesConfig | None = None) -> FeatureBuild:
    """``cfg`` (``[features]``) picks the content encoders; None = the hashed-token metadata path.
    Text embeddings are cached by content hash under ``layout.text_embeddings_dir()``."""
    with connect(warehouse) as con:
        dataset = str(get_meta(con, "dataset"))
        # the transform belongs to the data set (its base fingerprint: appends keep it), not to the spec
        # string: a fixed file re-ingested under the same spec is fitted afresh
        key = get_meta(con, "dataset_base_fingerprint") or dataset
        reuse = layout.has_feature_transform(key) and not refit
        result = features.build_content_features(con, layout.feature_transform_dir(key), reuse_transform=reuse,
                                                 cfg=cfg, cache_dir=layout.text_embeddings_dir())
        _, X = features.read_content_features(con)
    return FeatureBuild(result=result, X=X, dataset=dataset, reused=reuse)


# ----------------------------------------------------------------------------------------------
# semantic IDs


@dataclass(frozen=True)
class IdBuild:
    table: pd.DataFrame  # track_id, c1..cL, tie (sorted by track_id)
    content_hash: str
    metrics: dict
    mode: str  # "fit in …s" | "cold-start: n new tracks" | "unchanged"


def _extend(scheme: IdScheme, layout: ArtifactLayout, existing: pd.DataFrame, track_ids, X) -> tuple[pd.DataFrame, str]:
    known = set(existing["track_id"])
    new_ids = [t for t in track_ids if t not in known]
    if not new_ids:
        return existing, "unchanged"
    pos = {t: i for i, t in enumerate(track_ids)}
    added = sid.assign_new_tracks(
        scheme=scheme, artifact_dir=layout.semantic_ids_dir(scheme), existing=existing,
        new_track_ids=new_ids, X_new=X[[pos[t] for t in new_ids]],
    )
    table = pd.concat([existing, added[~added["track_id"].isin(known)]], ignore_index=True)
    return table, f"cold-start: {len(new_ids)} new tracks"


def _without_content(table: pd.DataFrame, event_ids, scheme: IdScheme, cfg: SemidConfig) -> tuple[pd.DataFrame, int]:
    """The table (sorted by track_id) with IDs for event tracks that have no content, per
    ``[semantic_ids] without_content`` (``no_content``), and how many there are."""
    table = table.sort_values("track_id").reset_index(drop=True)
    missing = no_content.tracks_without_content(event_ids, table)
    if not missing or cfg.semantic_ids.without_content == "error":
        return table, len(missing)
    table = no_content.add_tracks_without_content(
        table, missing, scheme=scheme, seed=cfg.semantic_ids.seed, n_event_tracks=len(set(map(str, event_ids))),
        min_feature_coverage=cfg.ingest.min_feature_coverage)
    return table, len(missing)


def build_semantic_ids(*, warehouse: str, layout: ArtifactLayout, scheme: IdScheme, cfg: SemidConfig,
                       refit: bool, log: Log = print) -> IdBuild:
    """Extend the scheme's table when it was built on the current data set (and ``refit`` is off), else fit it.

    "The current data set" is decided by ``dataset_base_fingerprint`` (the full ingestion it
    started from; appends keep it), not the spec string: re-ingesting a fixed file under the same
    spec is a new data set and refits, so a table never mixes tracks of two data sets.

    A grid variant (``hybrid-k<k>``, ``…+ag``) builds (or finds unchanged) its ``codes_scheme``'s
    table: the same seeds give the same table whichever partition builds it first."""
    variant, scheme = scheme, scheme.codes_scheme
    with connect(warehouse, read_only=True) as con:
        dataset = get_meta(con, "dataset")
        base = get_meta(con, "dataset_base_fingerprint")
        track_ids, X = features.read_content_features(con)
        existing = sid.read_semantic_ids(con, scheme)[0] if sid.has_semantic_ids(con, scheme) else None
        event_ids = sid.event_track_ids(con)
    reuse = (existing is not None and not refit and base is not None
             and layout.read_provenance(scheme).get("dataset_base_fingerprint") == base)
    recon = None
    if reuse:
        table, mode = _extend(scheme, layout, existing, track_ids, X)
    else:
        res = sid.fit_semantic_ids(scheme=scheme, track_ids=track_ids, X=X, cfg=cfg.semantic_ids,
                                   artifact_dir=layout.semantic_ids_dir(scheme))
        table, mode, recon = res.table, f"fit in {res.fit_seconds:.1f}s", res.metrics.get("reconstruction_error")
    table, without = _without_content(table, event_ids, scheme, cfg)
    metrics = sid.codebook_quality(table, sid.codebook_size(scheme, table), X=None if scheme.is_id else X,
                                   recon_error=recon, max_tie_embeddings=cfg.semantic_ids.max_tie_embeddings)
    metrics["tracks_without_content"] = without
    if not scheme.is_id:
        fitted = read_json(layout.semantic_ids_dir(scheme) / "config.json", default={})  # the artifact's own record
        metrics["balanced_last_level"] = bool(fitted.get("balanced_last_level", False))
    with connect(warehouse) as con:
        content_hash = sid.write_semantic_ids(con, scheme, table)
    layout.write_provenance(scheme, dataset=str(dataset), base_fingerprint=base, content_hash=content_hash)
    if variant != scheme:
        mode = f"{mode} (variant {variant.key}: the table of {scheme.key})"
    log(f"semantic_ids[{variant.key}]: {mode}; {len(table)} tracks"
        + (f" ({without} without content: random tuples)" if without else "") + f"; hash {content_hash[:12]}")
    return IdBuild(table=table, content_hash=content_hash, metrics=metrics, mode=mode)


def read_ids(warehouse: str, scheme: IdScheme) -> pd.DataFrame:
    with connect(warehouse, read_only=True) as con:
        return sid.read_semantic_ids(con, scheme)[0]


def check_ids_cover_events(warehouse: str, scheme: IdScheme) -> tuple[bool, dict]:
    with connect(warehouse, read_only=True) as con:
        table = sid.read_semantic_ids(con, scheme)[0]
        events = sid.event_track_ids(con)
    return sid.check_coverage(table, events)


def check_ids_no_collapse(warehouse: str, scheme: IdScheme, min_util: float) -> tuple[bool, dict]:
    table = read_ids(warehouse, scheme)
    return sid.check_collapse(table, sid.codebook_size(scheme, table), len(table), min_util)


def check_ids_distinct(warehouse: str, scheme: IdScheme, cfg: SemanticIdConfig) -> tuple[bool, dict]:
    """The distinct-tuple gate (``id_gates.check_distinct``) with the catalogue's titles and artists."""
    with connect(warehouse, read_only=True) as con:
        table = sid.read_semantic_ids(con, scheme)[0]
        catalog = con.execute(f"SELECT * FROM {TRACK_CATALOG}").df() if table_exists(con, TRACK_CATALOG) else None
    return id_gates.check_distinct(table, sid.codebook_size(scheme, table), min_unique_share=cfg.min_unique_tuple_share,
                                   max_tie_limit=cfg.max_tie_limit, catalog=catalog)


# ----------------------------------------------------------------------------------------------
# recommender


@dataclass(frozen=True)
class TrainingInputs:
    dataset: str
    dataset_fingerprint: str
    splits: splits_mod.Splits
    id_table: pd.DataFrame | None  # None for ``id`` (the model needs no codes)
    id_table_hash: str
    content: np.ndarray | None = None  # (N+1, D) aligned to the vocabulary, with [train] content_init
    content_fingerprint: str | None = None  # features.content_fingerprint, with [train] content_init

    def fingerprint(self, cell: GridCell, cfg: SemidConfig) -> str:
        return run_fingerprint(dataset_fingerprint=self.dataset_fingerprint, id_table_hash=self.id_table_hash,
                               cell=cell, train=cfg.train, split=cfg.split,
                               max_tie_embeddings=cfg.semantic_ids.max_tie_embeddings,
                               content_hash=self.content_fingerprint)

    def model_dir(self, layout: ArtifactLayout, cell: GridCell, cfg: SemidConfig) -> Path:
        return layout.model_dir(cell, self.fingerprint(cell, cfg))


def load_training_inputs(warehouse: str, scheme: IdScheme, cfg: SemidConfig) -> TrainingInputs:
    with connect(warehouse, read_only=True) as con:
        dataset, dataset_fp = str(get_meta(con, "dataset")), get_meta(con, "dataset_fingerprint")
        splits = splits_mod.load_splits(con, cfg.split)
        id_table, id_hash = sid.read_semantic_ids(con, scheme.codes_scheme)
        content, content_fp = None, None
        if content_init.uses_content(scheme, cfg.train):
            ids, X = features.read_content_features(con)  # one read: aligned rows and their fingerprint
            content, content_fp = features.align_to_vocab(ids, X, splits.vocab.track_ids), features.fingerprint_of(ids, X)
    return TrainingInputs(dataset=dataset, dataset_fingerprint=dataset_fp, splits=splits,
                          id_table=None if scheme.is_id else id_table, id_table_hash=id_hash, content=content,
                          content_fingerprint=content_fp)


@dataclass(frozen=True)
class TrainedCell:
    result: train_mod.TrainResult
    model_dir: Path
    fingerprint: str  # of data + ID table + settings: names the model folder
    id_table_hash: str


def train_cell(*, warehouse: str, layout: ArtifactLayout, cell: GridCell, cfg: SemidConfig, device: str,
               log: Log = print) -> TrainedCell:
    """Train (or resume) one grid cell in the folder its fingerprint names."""
    inputs = load_training_inputs(warehouse, cell.scheme, cfg)
    fp = inputs.fingerprint(cell, cfg)
    out_dir = layout.model_dir(cell, fp)
    log(f"training {cell.scheme.key} h={cell.h} on {device}; checkpoints in {out_dir}")
    result = train_mod.train_recommender(
        scheme=cell.scheme, hidden=cell.h, splits=inputs.splits, id_table=inputs.id_table,
        id_table_hash=inputs.id_table_hash, cfg=cfg.train, out_dir=out_dir, log=log, device=device,
        max_tie_embeddings=cfg.semantic_ids.max_tie_embeddings, content=inputs.content,
    )
    return TrainedCell(result=result, model_dir=out_dir, fingerprint=fp, id_table_hash=inputs.id_table_hash)


# ----------------------------------------------------------------------------------------------
# evaluation


@dataclass(frozen=True)
class CellEvaluation:
    record: dict
    record_path: Path
    result: dict  # experiment.evaluate_model output
    baselines: dict


def _data_key(inputs: TrainingInputs, cfg: SemidConfig) -> str:
    """What the model-free figures depend on: the data, its split, the evaluation settings, the
    baselines' code (``baselines.BASELINES_VERSION``) and ``[train] prior_by_plays`` where on (the
    adjusted effects follow it)."""
    parts = [inputs.dataset_fingerprint, asdict(cfg.split), asdict(cfg.eval), BASELINES_VERSION] + (
        ["prior_by_plays"] if cfg.train.prior_by_plays else [])
    payload = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def _baselines(layout: ArtifactLayout, inputs: TrainingInputs, view, cfg: SemidConfig) -> dict:
    """Model-free baselines depend only on the data (and its split): computed once, then cached."""
    path = layout.baselines_file(_data_key(inputs, cfg))
    cached = read_json(path)
    if cached is not None:
        return cached
    out = experiment.baseline_records(inputs.splits, view, cfg.eval, by_plays=cfg.train.prior_by_plays)
    atomic_write_json(path, out)
    return out


def evaluate_cell(*, warehouse: str, layout: ArtifactLayout, cell: GridCell, cfg: SemidConfig) -> CellEvaluation:
    """Evaluate the model the recommender trained for this cell on the current data and ID table."""
    inputs = load_training_inputs(warehouse, cell.scheme, cfg)
    with connect(warehouse, read_only=True) as con:
        view = experiment.catalog_view(con, inputs.splits)
    mdir = inputs.model_dir(layout, cell, cfg)
    if not (mdir / checkpoints.MODEL).exists():
        raise SemidError(
            f"no trained model for {cell.partition_key} on the current data and ID table "
            f"(expected {mdir}); materialize `recommender` for this partition first"
        )
    model = checkpoints.load_recommender(mdir, splits_vocab=inputs.splits.vocab, id_table=inputs.id_table,
                                       id_table_hash=inputs.id_table_hash)
    result = experiment.evaluate_model(model, inputs.splits, view, cfg.eval, max_len=cfg.train.max_len)
    _held_out_validation(result, mdir)
    baselines = _baselines(layout, inputs, view, cfg)
    record = experiment.partition_record(cell, result, baselines=baselines, dataset=inputs.dataset,
                                         dataset_fingerprint=inputs.dataset_fingerprint,
                                         id_table_hash=inputs.id_table_hash)
    record["oracle"] = oracle_record(warehouse, layout, inputs, cfg)
    path = atomic_write_json(layout.evaluation_record(inputs.dataset_fingerprint, cell), record)
    return CellEvaluation(record=record, record_path=path, result=result, baselines=baselines)


def _held_out_validation(result: dict, mdir: Path) -> None:
    """A model with ``[train] final_fit_epochs`` has trained on the validation period, so its
    re-scored validation AUC is in-sample: the record keeps that as ``in_sample_auc`` and reports
    the held-out AUC that chose its epoch (the checkpoint's ``best_val_auc``; with the popularity
    prior, the one that chose its weight) as the validation AUC. The prior's choice goes in the
    record as ``prior`` ({"weight", "affinity", "memory", "val_auc", "val_auc_without", ...}: with the
    content affinity's and the listener memory's weights)."""
    config = json.loads((mdir / checkpoints.CONFIG).read_text())
    # memory-mapped: only the small fields are read, not the optimizer state (GBs at 1M tracks)
    ckpt = torch.load(mdir / checkpoints.CHECKPOINT, map_location="cpu", weights_only=True, mmap=True)
    prior = ckpt.get("prior")
    if prior:
        result["prior"] = prior
    if not int(config.get("train", {}).get("final_fit_epochs", 0)):
        return
    held = prior["val_auc"] if prior and prior.get("val_auc") is not None else ckpt["best_val_auc"]
    val = result["val"]
    result["val"] = {"auc": float(held), "in_sample_auc": val.get("auc"),
                     "n_strata": val.get("n_strata"), "source": "held-out selection AUC before the final fit"}


def oracle_record(warehouse: str, layout: ArtifactLayout, inputs: TrainingInputs, cfg: SemidConfig) -> dict | None:
    """Test AUC (+ CI) of a synthetic world's own P(positive) on the same test pairs: the ceiling no
    model can be expected to pass; for a one-shot world also ``learnable``, the same pairs scored
    with taste and appeal estimated from the data (``synthetic.ceiling``): about the best a model
    can reach from it. None for a data set without an oracle (every real one). Computed once per
    data set, then cached (like the baselines)."""
    from .datasets import ORACLE_META

    with connect(warehouse, read_only=True) as con:
        path = get_meta(con, ORACLE_META, "") or ""
    if not path or not len(inputs.splits.test.events):
        return None
    cache = layout.ceilings_file(_data_key(inputs, cfg))
    cached = read_json(cache)
    if cached is not None and cached.get("source") == path:
        return cached
    from .diagnostics import oracle_auc
    from .synthetic import load_oracle
    from .synthetic.ceiling import learnable_ceiling

    events = inputs.splits.test.events
    out = oracle_auc(events, load_oracle(path), n_boot=cfg.eval.bootstrap, seed=cfg.eval.seed, source=path)
    out["source"] = path
    out["learnable"] = learnable_ceiling(path, events, n_boot=cfg.eval.bootstrap, seed=cfg.eval.seed)
    atomic_write_json(cache, out)
    return out


#: Bump when what the diagnostics train or report changes (a cached record is then trained again).
DIAGNOSTICS_VERSION = 1


def diagnostics_record(*, warehouse: str, layout: ArtifactLayout, cfg: SemidConfig, device: str = "cpu",
                       log: Log = print) -> dict:
    """Train and score the report's diagnostic models (``diagnostics.diagnostic_runs``: bias-only per
    track and per codeword, ``id`` on shuffled histories) on the current data: {"key", "rows": [{name,
    scheme, h, shuffled, bias_only, compare_to, test: {auc, ci_lo, ci_hi, ...}, own: the same without
    the score terms}]}. Trained once per data, split, settings and ID table, then read back."""
    from .diagnostics import bias_only_config, diagnostic_runs, shuffle_splits
    from .evaluation import evaluate_scored
    from .scoring import score_eval_set, without_prior

    runs = diagnostic_runs(production_scheme=cfg.production.scheme, production_h=cfg.production.hidden,
                           hidden_sizes=cfg.grid.hidden_sizes)
    inputs, skipped = {}, []
    for s in sorted({r.scheme for r in runs}):
        try:
            inputs[s] = load_training_inputs(warehouse, IdScheme.parse(s), cfg)
        except SemidError as e:  # a scheme whose IDs were never built: its rows are left out, and say why
            skipped.append(f"{s}: {e}")
    runs = [r for r in runs if r.scheme in inputs]
    dataset, fp = _dataset_keys(warehouse)
    path = layout.diagnostics_record(fp)
    if not inputs:
        return _write_diagnostics(path, {"key": None, "dataset": dataset, "rows": [], "skipped": skipped})
    first = next(iter(inputs.values()))
    key = hashlib.sha256(json.dumps([_data_key(first, cfg), asdict(cfg.train), [asdict(r) for r in runs],
                                     {s: i.id_table_hash for s, i in inputs.items()},
                                     {s: i.content_fingerprint for s, i in inputs.items()},
                                     cfg.semantic_ids.max_tie_embeddings, DIAGNOSTICS_VERSION],
                                    sort_keys=True, default=str).encode()).hexdigest()
    cached = read_json(path)
    if cached is not None and cached.get("key") == key:
        return cached
    rows = []
    for run in runs:
        inp = inputs[run.scheme]
        sp = shuffle_splits(inp.splits, seed=cfg.train.seed) if run.shuffled else inp.splits
        tc = bias_only_config(cfg.train) if run.bias_only else cfg.train
        log(f"diagnostic: {run.name}")
        res = train_mod.train_recommender(
            scheme=IdScheme.parse(run.scheme), hidden=run.h, splits=sp, id_table=inp.id_table,
            id_table_hash=inp.id_table_hash, cfg=tc, device=device, log=log,
            out_dir=layout.diagnostics_model_dir(key, run.scheme, run.h, shuffled=run.shuffled),
            max_tie_embeddings=cfg.semantic_ids.max_tie_embeddings, content=inp.content)
        scored = score_eval_set(res.model, sp.test, max_len=tc.max_len, train_track_counts=sp.train_track_counts)
        test = evaluate_scored(scored, n_boot=cfg.eval.bootstrap, seed=cfg.eval.seed)
        own = evaluate_scored(without_prior(res.model, scored), n_boot=cfg.eval.bootstrap, seed=cfg.eval.seed) if res.prior else test
        rows.append({**asdict(run), "test": {k: test.get(k) for k in ("auc", "ci_lo", "ci_hi", "n_strata")},
                     "own": {k: own.get(k) for k in ("auc", "ci_lo", "ci_hi")}, "best_epoch": res.best_epoch})
    return _write_diagnostics(path, {"key": key, "dataset": dataset, "rows": rows, "skipped": skipped})


def _write_diagnostics(path: Path, record: dict) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, record)
    return record


def read_diagnostics(warehouse: str, layout: ArtifactLayout) -> dict | None:
    """The current data set's diagnostics record (``diagnostics_record``), None before it ran."""
    return read_json(layout.diagnostics_record(_dataset_keys(warehouse)[1]))


def _dataset_keys(warehouse: str) -> tuple[str, str]:
    with connect(warehouse, read_only=True) as con:
        return str(get_meta(con, "dataset")), get_meta(con, "dataset_fingerprint")


def read_evaluation_record(warehouse: str, layout: ArtifactLayout, cell: GridCell) -> dict:
    _, fp = _dataset_keys(warehouse)
    path = layout.evaluation_record(fp, cell)
    record = read_json(path)
    if record is None:
        raise SemidError(f"no evaluation record for {cell.partition_key} at {path}: materialize `evaluation` first")
    return record


def current_records(warehouse: str, layout: ArtifactLayout) -> tuple[str, list[dict]]:
    """(data set, every evaluation record of the current data set)."""
    dataset, fp = _dataset_keys(warehouse)
    return dataset, load_records(layout.evaluations_dir(fp))
