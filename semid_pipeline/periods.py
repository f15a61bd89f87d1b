"""The time split's periods: test = the last ``[split] test_days`` of event time, validation = the
``val_days`` before, training = everything earlier (the paper: 14 and 14 days of two months).

Days may be fractions of a day (``0.25`` = the last 6 hours): a public sample of session logs can
span two days (MSSD's ``log_mini.csv``: 2018-07-14 and -15, with ``hour_of_day``), where whole days
leave nothing to train on. The checks here say what to change, naming the data's span and
periods that fit it (from the quantiles of its event times), instead of a NaN AUC or a bare
failure later.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .config import SemidConfig, SplitConfig, parse_dataset_spec
from .errors import ConfigError, SplitError

NS_PER_DAY = 86_400 * 10**9
SUGGESTED_SHARES = (0.6, 0.8)  # a suggestion keeps the earliest 60% of events for training, 20% each after


def length(days: float) -> np.timedelta64:
    """A period of ``days`` (a fraction allowed) as nanoseconds; whole days equal ``timedelta64(days, "D")``."""
    return np.timedelta64(int(round(float(days) * NS_PER_DAY)), "ns")


def starts(max_ts: np.datetime64, cfg: SplitConfig) -> tuple[np.datetime64, np.datetime64]:
    """(validation start, test start) for data whose last event is at ``max_ts``."""
    test_start = np.datetime64(max_ts, "ns") - length(cfg.test_days)
    return test_start - length(cfg.val_days), test_start


def _day(t) -> str:
    t = pd.Timestamp(t)
    return str(t.date()) if t == t.normalize() else str(t.floor("min"))


def require_strata(test, *, events_span, starts, cfg: SplitConfig, kind: str) -> None:
    """Stop with what to change when the test period has no qualifying stratum (instead of a NaN
    AUC later and a crash in the evaluation). An empty validation period is allowed: training then
    keeps its last epoch (no early stopping), as the training log says."""
    first, last = events_span
    if len(test.stratum_ids) == 0:
        raise SplitError(
            f"the test period {_day(starts[1])} .. {_day(last)} ([split] test_days = {cfg.test_days}) holds no {kind} "
            f"that can be evaluated (one needs earlier input events and both a positive and a negative event in the "
            f"period); the data spans {_day(first)} .. {_day(last)}. Change [split] test_days / val_days, or check "
            "the timestamps (epoch milliseconds read as seconds, or a single stray far-future event, push the "
            "periods past the data)."
        )


def suggestion(last, quantiles) -> tuple[float, float]:
    """(test_days, val_days) that put the last 20% of the events in the test period and the 20% before
    in validation (``quantiles``: the event times at ``SUGGESTED_SHARES``), each rounded up to a
    whole hour."""
    q_val, q_test = (np.datetime64(pd.Timestamp(q), "ns") for q in quantiles)
    last = np.datetime64(pd.Timestamp(last), "ns")

    def days(a, b) -> float:  # whole hours, written with 4 decimals rounded up (an event on the hour stays inside)
        hours = max(1, math.ceil((b - a) / np.timedelta64(1, "h")))
        return math.ceil(hours / 24 * 10_000) / 10_000

    return days(q_test, last), days(q_val, q_test)


def training_problem(n_trainable: int, *, events_span, val_start, cfg: SplitConfig,
                     suggested: tuple[float, float] | None = None,
                     suggested_strata: tuple[int, int] | None = None) -> str | None:
    """None when some training sequence holds two or more events (what training needs); else the
    message training stops with (``Splits.training_problem``): which periods took the data and the
    ``suggested`` (test_days, val_days) that would leave a training period (``suggestion``), with
    ``suggested_strata``, the (test, validation) strata those hold.
    The split itself still serves evaluation (the baselines, a trained model)."""
    if n_trainable > 0:
        return None
    first, last = events_span
    span_days = (np.datetime64(pd.Timestamp(last), "ns") - np.datetime64(pd.Timestamp(first), "ns")) / np.timedelta64(1, "D")
    hint = ""
    if suggested is not None:
        t, v = suggested
        held = (f"; they hold {suggested_strata[0]:,} test and {suggested_strata[1]:,} validation strata"
                if suggested_strata is not None else "")
        hint = (f" Periods that fit this data: test_days = {t:g}, val_days = {v:g} (the last fifth of the events each; "
                f"fractions of a day count hours{held}), in the [split] table of semid.toml or of the file SEMID_CONFIG "
                "names.")
    return (f"the training period (events before {_day(val_start)}) holds no sequence of two or more events: [split] "
            f"test_days = {cfg.test_days} and val_days = {cfg.val_days} cover the data, which spans {_day(first)} .. "
            f"{_day(last)} ({span_days:.2f} days).{hint}")


def strata_problem(n_test: int, *, min_strata: int, cfg: SplitConfig, context_filter: str | None = None) -> str | None:
    """None when the test period holds at least ``[eval] min_strata`` evaluable strata; else what to
    change, said before any training (the evaluation's blocking check would stop every cell after it).
    ``context_filter``: the MSSD sessions' ``[ingest] context_filter`` where one context was kept."""
    if n_test >= min_strata:
        return None
    more = f", {hint}" if (hint := _every_context(context_filter)) else ""
    return (f"the test period holds {n_test} strata that can be evaluated and [eval] min_strata = {min_strata} asks for at "
            f"least that many (the evaluation's check would fail after each cell's training): lengthen [split] test_days "
            f"(now {cfg.test_days}){more} or lower [eval] min_strata (a CI over few strata is wide).")


def _every_context(context_filter: str | None) -> str:
    """What to change where MSSD ingestion kept one context (``context_filter``), else ""."""
    if not context_filter or context_filter == "all":
        return ""
    return f'keep every context ([ingest] context_filter = "all" instead of {context_filter!r})'


def thin_validation(n_val: int, *, min_strata: int, cfg: SplitConfig) -> str | None:
    """A warning when the validation period holds fewer than ``[eval] min_strata`` strata: early
    stopping and every chosen weight of the score terms rest on them (none at all: the last epoch, no terms)."""
    if n_val >= min_strata:
        return None
    none = " (none: the last epoch is kept, no terms)" if not n_val else ""
    return (f"the validation period holds {n_val} strata that can be evaluated ([eval] min_strata = {min_strata}): early "
            f"stopping and the weights of the score terms are chosen on them{none}; "
            f"lengthen [split] val_days (now {cfg.val_days}) where the data allows.")


def verdict(splits, *, cfg: SemidConfig, dataset: str) -> tuple[str | None, str | None]:
    """(what blocks the pipeline, what only warns) about a split of the data set ``dataset`` (its spec):
    no training sequence or too few test strata block; a thin validation period warns."""
    try:
        mssd = parse_dataset_spec(dataset).mssd_format  # MSSD ingestion keeps one context by default
    except ConfigError:  # not a spec ingestion wrote: say nothing about MSSD's contexts
        mssd = False
    context = cfg.ingest.context_filter if mssd else None
    problem = splits.training_problem
    held = splits.suggested_strata[0] if problem and splits.suggested_strata is not None else None
    if held == 0:  # lowering min_strata cannot help
        problem += " With them no test stratum can be evaluated either: check the timestamps (many events at one time?)."
    elif held is not None and held < cfg.eval.min_strata:
        more = f", or {hint}" if (hint := _every_context(context)) else ""
        problem += (f" Those {held:,} test strata are fewer than [eval] min_strata = {cfg.eval.min_strata}: "
                    f"also lower it{more}.")
    problem = problem or strata_problem(len(splits.test), min_strata=cfg.eval.min_strata, cfg=cfg.split,
                                        context_filter=context)
    return problem, None if problem else thin_validation(len(splits.val), min_strata=cfg.eval.min_strata, cfg=cfg.split)


def describe(splits) -> dict:
    """What the time split holds, for the asset check's metadata: cutoffs and, per period, its size."""
    c = {k: str(pd.Timestamp(v)) for k, v in splits.cutoffs.items()}
    return {"validation_start": c.get("val_start"), "test_start": c.get("test_start"), "last_event": c.get("max_ts"),
            "training_sequences": len(splits.train), "training_events": splits.n_train_events,
            "validation_strata": len(splits.val), "validation_events": len(splits.val.events),
            "test_strata": len(splits.test), "test_events": len(splits.test.events)}
