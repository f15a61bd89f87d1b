"""Diagnostics of "how much is left": the oracle ceiling and the shuffle test (issue 10).

* ``oracle_auc``: the stratified AUC of the generator's own feedback probability (``p_positive``
  of the synthetic world's ``oracle.parquet`` sidecar: stratum_id, position, p_positive) on the
  same evaluated pairs the models are scored on: the ceiling no model can be expected to pass.
* ``shuffle_splits``: the same splits with every training sequence and every evaluation input
  permuted within its stratum (seeded). A model trained and evaluated on them keeps what it can
  learn from the SET of past events; the drop against the unshuffled model is what order is worth.
* ``bias_only_config`` / ``diagnostic_runs``: the bias-only models (per track, per codeword) and the
  shuffled run the report shows next to the ceilings (``stages.diagnostics_record`` trains them).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from . import evaluation as ev
from .errors import InputDataError
from .fileutil import jsonable
from .splits import EvalSet, Splits

ORACLE_COLUMNS = ("stratum_id", "position", "p_positive")


def oracle_auc(eval_events: pd.DataFrame, oracle: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0,
               source: str = "oracle.parquet") -> dict:
    """{auc, ci_lo, ci_hi, n_strata, n_matched} of ``p_positive`` on the evaluated events.

    ``eval_events`` needs stratum_id, position, feedback (an ``EvalSet.events`` frame). Every
    evaluated event must have an oracle row with the same (stratum_id, position): a missing one
    would silently change which pairs are ranked, so it is an ``InputDataError``.
    """
    missing_cols = [c for c in ORACLE_COLUMNS if c not in oracle.columns]
    if missing_cols:
        raise InputDataError(f"{source}: missing column(s) {missing_cols}; expected {list(ORACLE_COLUMNS)}")
    p = pd.to_numeric(oracle["p_positive"], errors="coerce")
    bad = oracle.index[p.isna() | (p < 0) | (p > 1)]
    if len(bad):
        raise InputDataError(f"{source}: column p_positive must be a probability in [0, 1]; "
                             f"first offending rows {list(bad[:5])}")
    keys = oracle[["stratum_id", "position"]].astype({"stratum_id": str}).assign(position=lambda d: d["position"].astype(np.int64))
    dup = keys.duplicated(keep=False)
    if dup.any():
        raise InputDataError(f"{source}: (stratum_id, position) must be unique; first offending rows "
                             f"{list(oracle.index[dup][:5])}")
    e = eval_events[["stratum_id", "position", "feedback"]].copy()
    e["stratum_id"] = e["stratum_id"].astype(str)
    e["position"] = e["position"].astype(np.int64)
    table = keys.assign(p_positive=p.to_numpy(dtype=np.float64))
    joined = e.merge(table, on=["stratum_id", "position"], how="left", validate="many_to_one")
    lost = joined.index[joined["p_positive"].isna()]
    if len(lost):
        first = joined.loc[lost[:5], ["stratum_id", "position"]].to_dict(orient="records")
        raise InputDataError(f"{source}: no p_positive for {len(lost)} evaluated event(s); first: {first}")
    auc, per = ev.stratified_auc(joined["stratum_id"], joined["feedback"], joined["p_positive"])
    lo, hi = ev.bootstrap_ci(per["auc"].to_numpy(), n_boot=n_boot, seed=seed)
    return jsonable({"auc": auc, "ci_lo": lo, "ci_hi": hi, "n_strata": int(len(per)), "n_matched": int(len(joined))})


def _shuffle_seqs(seqs, rng: np.random.Generator):
    out = []
    for t, f in seqs:
        order = rng.permutation(len(t))
        out.append((t[order], f[order]))
    return out


def _shuffle_eval(es: EvalSet, rng: np.random.Generator) -> EvalSet:
    return replace(es, inputs=_shuffle_seqs(es.inputs, rng))


def shuffle_splits(splits: Splits, *, seed: int = 0) -> Splits:
    """Every training sequence and evaluation input permuted within its stratum (evaluated events kept)."""
    rng = np.random.default_rng(seed)
    return replace(splits, train=_shuffle_seqs(splits.train, rng), train_ts=None,
                   val=_shuffle_eval(splits.val, rng), test=_shuffle_eval(splits.test, rng))


def bias_only_config(cfg):
    """The bias-only diagnostic of a TrainConfig: per-code biases, no sequence (score = Σ biases).

    Trained on ``id`` it is a learned per-track popularity; on a semantic-ID scheme, a per-codeword
    one (Σ over levels + tie): how much each representation gets from popularity alone. Every score
    term is off (prior, content affinity, personal taste, listener memory): the biases alone."""
    return replace(cfg, item_bias=True, use_sequence=False, popularity_prior=False, content_affinity=False,
                   personal_taste=False, listener_memory=False)


@dataclass(frozen=True)
class DiagnosticRun:
    """One diagnostic model of the report: ``name`` (its row), the scheme and h it trains, whether on
    shuffled histories, whether bias-only, and the grid partition it is read against (``compare_to``)."""

    name: str
    scheme: str
    h: int
    shuffled: bool = False
    bias_only: bool = False
    compare_to: str | None = None


def diagnostic_runs(*, production_scheme: str, production_h: int, hidden_sizes) -> list[DiagnosticRun]:
    """The report's diagnostics (issue 10): the per-track and the per-codeword bias-only models (the
    production scheme's codes, at its h) and the ``id`` model of the smallest h on shuffled histories,
    read against that grid cell: the drop is what order is worth."""
    from .schemes import GridCell, IdScheme

    codes = IdScheme.parse(production_scheme).codes_scheme.key
    h = min(int(x) for x in hidden_sizes)
    return [DiagnosticRun(name="bias-only id (per-track biases)", scheme="id", h=production_h, bias_only=True),
            DiagnosticRun(name=f"bias-only {codes} (per-codeword biases, summed)", scheme=codes, h=production_h,
                          bias_only=True),
            DiagnosticRun(name=f"{h}|id on shuffled histories", scheme="id", h=h, shuffled=True,
                          compare_to=GridCell.of("id", h).partition_key)]
