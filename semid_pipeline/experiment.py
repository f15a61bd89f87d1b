"""Evaluate one trained recommender on the warehouse's splits: the record the report reads.

Glue between ``train`` (model, scoring), ``evaluation`` (metrics) and the catalogue (content
vectors, artists, release years) — no Dagster, no training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from . import baselines as baselines_mod
from . import evaluation as ev
from . import ranking
from .config import EvalConfig
from .fileutil import jsonable
from .model import SASRec
from .popularity import auc_by_popularity
from .schemes import GridCell
from .scoring import score_eval_set, top_k_lists, without_prior
from .splits import EvalSet, Splits


@dataclass(frozen=True)
class CatalogView:
    """Per-vocabulary-index side information (index 0 = padding)."""

    features: np.ndarray | None  # (N+1, D) content vectors, zeros where unknown
    artist: np.ndarray | None  # (N+1,) artist index, 0 = unknown
    release_year: np.ndarray | None  # (N+1,) float, NaN = unknown


def catalog_view(con, splits: Splits) -> CatalogView:
    """Align content features and metadata from the warehouse to the split's vocabulary."""
    from .features import read_content_features
    from .schema import CONTENT_FEATURES, TRACK_CATALOG
    from .warehouse import table_columns, table_exists

    ids = list(splits.vocab.track_ids)
    n_tok = len(ids) + 1
    feats = None
    if table_exists(con, CONTENT_FEATURES):
        fids, X = read_content_features(con)
        pos = pd.Index(fids).get_indexer(pd.Index(ids))
        feats = np.zeros((n_tok, X.shape[1]), dtype=np.float32)
        ok = pos >= 0
        feats[1:][ok] = X[pos[ok]]
    year = None
    if "release_year" in table_columns(con, TRACK_CATALOG):
        cat = con.execute(f"SELECT track_id, release_year FROM {TRACK_CATALOG}").df()
        y = cat.set_index("track_id")["release_year"].reindex(ids).to_numpy(dtype=float)
        year = np.concatenate([[np.nan], y])
        if np.isnan(year[1:]).all():
            year = None
    artist = splits.track_artist if splits.n_artists else None
    return CatalogView(features=feats, artist=artist, release_year=year)


def _first_positive_targets(eval_set: EvalSet) -> torch.Tensor:
    """(S,) track index of each stratum's first positively rated evaluated event (-1: none)."""
    e = eval_set.events
    order = e.sort_values(["row", "ts"] + (["position"] if "position" in e else []), kind="stable")
    first = order[order["feedback"] == 1].drop_duplicates("row")
    t = torch.full((len(eval_set),), -1, dtype=torch.long)
    rows = first["row"].to_numpy(dtype=np.int64, copy=True)
    t[torch.from_numpy(rows)] = torch.from_numpy(first["track_idx"].to_numpy(dtype=np.int64, copy=True))
    return t


def evaluate_model(model: SASRec, splits: Splits, view: CatalogView, cfg: EvalConfig, *, max_len: int) -> dict:
    """Test-period record (AUC + CI, by history, cold start, ranking, diversity) plus validation AUC."""
    model.eval()
    out: dict = {}
    for period, eval_set in (("test", splits.test), ("val", splits.val)):
        scored = score_eval_set(model, eval_set, max_len=max_len, train_track_counts=splits.train_track_counts)
        out[period] = ev.evaluate_scored(scored, n_boot=cfg.bootstrap, seed=cfg.seed, min_strata=cfg.min_strata)
        if period == "test":
            out[period]["by_popularity"] = auc_by_popularity(scored, splits.train_track_counts,
                                                                n_boot=cfg.bootstrap, seed=cfg.seed)
            if (scored.get("terms", pd.Series(dtype=float)) != 0).any():  # the representation alone: w = a = 0
                out["test_without_prior"] = ev.evaluate_scored(without_prior(model, scored), n_boot=cfg.bootstrap,
                                                               seed=cfg.seed, min_strata=cfg.min_strata)
    if len(splits.test):
        _, topk = top_k_lists(model, splits.test, k=cfg.topk, max_len=max_len)
        out["ranking"] = ranking.ranking_metrics(topk, _first_positive_targets(splits.test), k=cfg.topk)
        out["diversity"] = jsonable(ranking.diversity_metrics(
            topk, view.features, view.artist, view.release_year, n_catalog=splits.vocab.n_tracks
        ))
    out["stratum_kind"] = splits.kind  # "session" | "user": which strata (and protocol) the AUC is over
    counts = model.parameter_counts()
    out["params_total"] = int(counts["total"])
    out["params_track"] = int(counts["track_representation"])
    return out


def baseline_records(splits: Splits, view: CatalogView, cfg: EvalConfig, *, by_plays: bool = False) -> dict:
    """Model-free baselines on the test period: track popularity and content-only logistic regression
    (and ``stronger_baseline_records``; ``by_plays``: the model's ``[train] prior_by_plays``)."""
    test = splits.test.events
    out: dict = {}
    if len(test) == 0:
        return out
    train_idx, train_fb = splits.train_arrays()  # (E,) each, every training event
    pop = baselines_mod.popularity_scores(
        pd.DataFrame({"track_id": train_idx, "feedback": train_fb}),
        pd.DataFrame({"track_id": test["track_idx"].to_numpy()}),
    )
    auc, per = ev.stratified_auc(test["stratum_id"], test["feedback"], pop)
    lo, hi = ev.bootstrap_ci(per["auc"].to_numpy(), n_boot=cfg.bootstrap, seed=cfg.seed)
    out["popularity"] = {"auc": auc, "ci_lo": lo, "ci_hi": hi, "n_strata": int(len(per))}
    if view.features is not None and len(splits.val):
        # fitted on the validation period (its inputs and evaluated events), scored on the test period
        def targets(es: EvalSet):
            g = es.events.sort_values("row", kind="stable").groupby("row", sort=True)
            return [(grp["track_idx"].to_numpy(), grp["feedback"].to_numpy()) for _, grp in g]

        scores = baselines_mod.content_baseline_scores(
            view.features, splits.val.inputs, targets(splits.val), splits.test.inputs, targets(splits.test), cfg.seed
        )
        ordered = splits.test.events.sort_values("row", kind="stable")
        auc, per = ev.stratified_auc(ordered["stratum_id"], ordered["feedback"], scores)
        lo, hi = ev.bootstrap_ci(per["auc"].to_numpy(), n_boot=cfg.bootstrap, seed=cfg.seed)
        out["content_logreg"] = {"auc": auc, "ci_lo": lo, "ci_hi": hi, "n_strata": int(len(per))}
    out.update(stronger_baseline_records(splits, view, cfg, by_plays=by_plays))
    return jsonable(out)


def partition_record(cell: GridCell, result: dict, *, baselines: dict, dataset: str, dataset_fingerprint: str,
                     id_table_hash: str) -> dict:
    """The record the report reads (one per evaluated grid cell; see ``report`` for the fields)."""
    return {
        "partition_key": cell.partition_key,
        "scheme": cell.scheme.family,
        "scheme_key": cell.scheme.key,  # with its +ag suffix (findings tell song-only from decomposition)
        "k": cell.scheme.k,
        "h": int(cell.h),
        "dataset": dataset,
        "dataset_fingerprint": dataset_fingerprint,
        "id_table_hash": id_table_hash,
        "stratum_kind": result.get("stratum_kind"),
        "test": result.get("test", {}),
        "val": result.get("val", {}),
        "params_total": result.get("params_total"),
        "params_track": result.get("params_track"),
        "ranking": result.get("ranking", {}),
        "diversity": result.get("diversity", {}),
        # [train] popularity_prior / content_affinity / listener_memory: {"weight", "affinity", "memory",
        # "val_auc", "val_auc_without", "values", "affinity_values", "memory_values"} (``track_prior.validation_weight``)
        "prior": result.get("prior"),
        "test_without_prior": result.get("test_without_prior"),  # the same scores with w = a = r = 0 (when any > 0)
        "baselines": {f"{name}_auc": b.get("auc") for name, b in baselines.items()},
        "baseline_details": baselines,
    }


def stronger_baseline_records(splits: Splits, view: CatalogView, cfg: EvalConfig, *, by_plays: bool = False) -> dict:
    """Trailing-window popularity and the boosted non-sequential model (``baselines``), same record
    shape as the others (test AUC + CI, plus validation AUC where the baseline is not fitted there)
    and the AUC by track-popularity bucket."""
    from .baselines import baseline_scores

    out: dict = {}
    if len(splits.test.events) == 0:
        return out
    scores = baseline_scores(splits, features=view.features, artist=view.artist, by_plays=by_plays)
    for name, per_period in scores.items():
        if name == "positive_rate":  # that is ``popularity`` above
            continue
        rec: dict = {}
        for period, es in (("test", splits.test), ("val", splits.val)):
            if period not in per_period:
                continue
            auc, per = ev.stratified_auc(es.events["stratum_id"], es.events["feedback"], per_period[period])
            if period == "test":
                lo, hi = ev.bootstrap_ci(per["auc"].to_numpy(), n_boot=cfg.bootstrap, seed=cfg.seed)
                rec.update(auc=auc, ci_lo=lo, ci_hi=hi, n_strata=int(len(per)))
                frame = es.events.assign(score=per_period[period])
                rec["by_popularity"] = auc_by_popularity(frame, splits.train_track_counts,
                                                            n_boot=cfg.bootstrap, seed=cfg.seed)
            else:
                rec["val_auc"] = auc
        out[name] = rec
    return out
