"""The learnable ceiling of a synthetic world: the best a model can do from THIS data.

The report's oracle (``oracle.parquet``) ranks the test pairs with the generator's own probability:
every listener's TRUE taste and every track's TRUE appeal. No model has those; it has the plays.
``learnable_ceiling`` scores the same test pairs with both estimated from the data before the test
period, everything else taken from the truth (so it is still generous):

* **taste**: per listener (per session for MSSD), a Bayesian logistic regression (MAP, Newton) on
  the listener's last ``max_history`` events before the test period (the session's input), on
  the TRUE track latents, with the world's population of tastes as the prior and the true appeal
  as an offset;
* **appeal**: per track, a MAP from ALL listeners' plays before the test period, with every other
  term of each play's logit true (recovered from ``oracle.parquet``) and, as the prior, the true
  appeal's regression on the track's popularity percentile (the ``us_popularity_estimate``
  content column: good songs get played more).

The appeal is independent of content by construction: a track played ~10 times reveals it only
roughly, and that, not the model, is what keeps any learner far from the oracle on the default
world. It is one estimator's result, not a bound: with the content affinity (``content_affinity``)
the demo's best model passed it (``128|id`` 0.700 against 0.693, 2026-12-03), and the report says
so where that happens.

Tastes that drift (``taste_drift_weight``, the ``demo`` preset's since 2026-12-05) are estimated as
one static taste from the history: the oracle knows each day's taste, this estimator does not, and
models that read the recent events pass it there.

Per-user format: a listener's taste from their history. Sessions (MSSD) format: the logs carry no
listener, so a session's taste comes from its own input (the events before its evaluated ones),
as the model sees it; the sessions are regenerated from the world (one-shot worlds only).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..evaluation import bootstrap_ci, stratified_auc
from .files import load_manifest
from .oracle import load_oracle
from .sessions_format import generate_sessions, part_bounds, session_ids
from .world import World, build_world


def map_taste(lat: np.ndarray, off: np.ndarray, y: np.ndarray, scale: float, mu: np.ndarray,
              prec: np.ndarray, iters: int = 25) -> np.ndarray:
    """MAP of [taste, intercept] for logit = scale·(lat @ taste) + off + c under N(mu, prec⁻¹) × N(0, 4)."""
    D = lat.shape[1]
    X = np.c_[scale * lat, np.ones(len(y))]
    P = np.zeros((D + 1, D + 1))
    P[:D, :D] = prec
    P[D, D] = 0.25
    m = np.r_[mu, 0.0]
    w = m.copy()
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(X @ w + off, -30, 30)))
        g = X.T @ (p - y) + P @ (w - m)
        H = (X * (p * (1 - p))[:, None]).T @ X + P
        step = np.linalg.solve(H, g)
        w -= step
        if np.abs(step).max() < 1e-6:
            break
    return w[:D]


def map_appeal(t: np.ndarray, off: np.ndarray, y: np.ndarray, weight: float, prior_mean: np.ndarray,
               prior_var: float, iters: int = 30) -> np.ndarray:
    """Per-track MAP of a for logit = off + weight·a[t] under a ~ N(prior_mean, prior_var) (Newton, all at once)."""
    n = len(prior_mean)
    a = np.asarray(prior_mean, dtype=np.float64).copy()
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(off + weight * a[t], -30, 30)))
        g = weight * np.bincount(t, weights=p - y, minlength=n) + (a - prior_mean) / prior_var
        H = weight ** 2 * np.bincount(t, weights=p * (1 - p), minlength=n) + 1.0 / prior_var
        step = g / H
        a -= step
        if np.abs(step).max() < 1e-8:
            break
    return a


def appeal_prior(world: World) -> tuple[np.ndarray, float]:
    """(prior mean per track, prior variance): the true appeal regressed on the popularity percentile."""
    from scipy.stats import norm

    pct = world.cat.pop_percentile
    x = norm.ppf((pct - 50.0 / len(pct)) / 100.0)  # back to the popularity score's normal scale
    beta, c = np.polyfit(x, world.cat.appeal, 1)
    mean = beta * x + c
    return mean, float(np.var(world.cat.appeal - mean))


def world_events(world_dir: Path) -> pd.DataFrame:
    """The world's per-user events (``<world>/users/``) with their ingestion position and p_positive."""
    ev = pd.read_parquet(world_dir / "users" / "events.parquet", columns=["user_id", "track_id", "timestamp", "feedback"])
    ev = ev.rename(columns={"user_id": "stratum_id", "timestamp": "ts"})
    ev["ts"] = pd.to_datetime(ev["ts"])
    ev = ev.sort_values(["stratum_id", "ts", "track_id"], kind="stable").reset_index(drop=True)
    ev["position"] = ev.groupby("stratum_id").cumcount() + 1  # as ingestion numbers them
    ev = ev.merge(load_oracle(world_dir / "users"), on=["stratum_id", "position"], how="left", validate="one_to_one")
    return ev


def estimated_scores(world: World, test: pd.DataFrame, plays: pd.DataFrame, inputs: pd.DataFrame, *,
                     key: str = "u", max_history: int = 400) -> dict[str, np.ndarray]:
    """Logit parts per ``test`` row (columns t, u, ``key``): true ``taste`` / ``appeal``;
    ``taste_est`` from each stratum's ``inputs`` rows (same ``key``; its last ``max_history``);
    ``appeal_est`` from ``plays`` (every play before the test period); ``appeal_prior``, the
    appeal's prior mean (from the popularity percentile). ``plays`` and ``inputs`` have columns t,
    feedback (+ p_positive for ``plays``)."""
    cfg, cat, lis = world.cfg, world.cat, world.lis
    tu, tt = test["u"].to_numpy(), test["t"].to_numpy()
    scale = cfg.taste_weight / world.affinity_std
    out = {"taste": scale * (world.affinity(tu, tt) - world.affinity_mean), "appeal": cfg.appeal_weight * cat.appeal[tt]}

    mu, cov = lis.taste.mean(0), np.cov(lis.taste.T)
    prec = np.linalg.inv(cov + 1e-9 * np.eye(cov.shape[0]))
    est = np.zeros(len(test))
    groups = dict(tuple(inputs.groupby(key, sort=False)))
    for k, rows in test.groupby(key, sort=False).indices.items():
        h = groups.get(k)
        taste = mu
        if h is not None and len(h):
            h = h.tail(max_history)
            ht = h["t"].to_numpy()
            off = cfg.appeal_weight * cat.appeal[ht] - scale * world.affinity_mean
            taste = map_taste(cat.latent[ht], off, h["feedback"].to_numpy(dtype=float), scale, mu, prec)
        est[rows] = scale * (cat.latent[tt[rows]] @ taste)
    out["taste_est"] = est

    ht = plays["t"].to_numpy()
    p = plays["p_positive"].to_numpy(dtype=np.float64).clip(1e-12, 1 - 1e-12)
    off = np.log(p / (1 - p)) - cfg.appeal_weight * cat.appeal[ht]  # every other term of the play's logit
    mean, var = appeal_prior(world)
    a_hat = map_appeal(ht, off, plays["feedback"].to_numpy(dtype=float), cfg.appeal_weight, mean, var)
    out["appeal_est"] = cfg.appeal_weight * a_hat[tt]
    out["appeal_prior"] = cfg.appeal_weight * mean[tt]  # no per-track parameter: the content's guess only
    return out


def session_events(world: World) -> pd.DataFrame:
    """Every radio session event of a one-shot world, regenerated (MSSD logs carry no listener):
    stratum_id (session_id), position, t, u, day, feedback, p_positive."""
    s = generate_sessions(world)
    bounds = part_bounds(world.cfg, s)
    sid = np.empty(s.n_sessions, dtype=object)
    for part in range(len(bounds) - 1):
        a, b = int(bounds[part]), int(bounds[part + 1])
        sid[a:b] = session_ids(s, part, a, b)
    ev = pd.DataFrame({"stratum_id": sid[s.ev_s], "position": s.pos, "t": s.track, "u": s.s_user[s.ev_s],
                       "day": s.s_day[s.ev_s], "feedback": (~s.behaviour.skip_2).astype(np.int64),
                       "p_positive": s.p_positive})
    return ev[s.s_ctx[s.ev_s] == 0].reset_index(drop=True)  # ingestion keeps radio sessions


def with_numbers(world: World, ev: pd.DataFrame) -> pd.DataFrame:
    """``ev`` plus t (track number) and u (listener number) in ``world``."""
    t = pd.Index(world.cat.track_ids).get_indexer(ev["track_id"])
    u = pd.Index(world.lis.user_ids).get_indexer(ev["stratum_id"])
    if (t < 0).any() or (u < 0).any():
        raise ValueError("the events file does not belong to this world")
    return ev.assign(t=t, u=u)


#: Worlds with more events (of the format) than this get no learnable ceiling (it holds them all in
#: memory: the ``bench`` preset's 1.2M per-user events take ~13 s and ~1 GB; ``large`` would take
#: minutes and several GB).
MAX_EVENTS = 3_000_000


def learnable_ceiling(oracle_path: str | Path, eval_events: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0,
                      max_history: int = 400) -> dict | None:
    """{auc, ci_lo, ci_hi, n_strata, appeal_auc, ...} of estimated taste + estimated appeal on the
    evaluated events (stratum_id, position, feedback, ts of an ``EvalSet.events`` frame).

    Per-user worlds: a listener's taste from their history before the test period. Sessions
    worlds: a session's taste from its input (the events before its evaluated ones), as the model
    sees it (MSSD sessions carry no listener id). None for a world folder without manifest, a
    chunked sessions world, or more than :data:`MAX_EVENTS` events."""
    oracle_path = Path(oracle_path).resolve()
    world_dir = oracle_path.parent.parent  # <world>/<format>/oracle.parquet
    manifest = load_manifest(world_dir)
    if manifest is None or not len(eval_events):
        return None
    fmt = {manifest.users_oracle: "users", manifest.sessions_oracle: "sessions"}.get(oracle_path)
    if fmt is None:
        return None
    cfg = manifest.config
    n_events = manifest.counts.get("users_events" if fmt == "users" else "sessions_rows")
    if n_events is None or n_events > MAX_EVENTS or (fmt == "sessions" and cfg.listener_block > 0):
        return None
    world = build_world(cfg)
    e = eval_events[["stratum_id", "position", "feedback", "ts"]].astype({"stratum_id": str})
    start = pd.to_datetime(e["ts"]).min()
    if fmt == "users":
        ev = with_numbers(world, world_events(world_dir))
        plays = inputs = ev[ev["ts"] < start]
        key = "u"
    else:
        ev = session_events(world)
        start_day = (start.normalize() - pd.Timestamp(cfg.start_date)).days
        plays = ev[ev["day"] < start_day]
        first = e.groupby("stratum_id")["position"].min()  # a session's input: the positions before
        ev = ev.assign(first=ev["stratum_id"].map(first))
        inputs = ev[ev["position"] < ev["first"]]
        key = "stratum_id"
    test = e.merge(ev[["stratum_id", "position", "t", "u"]], on=["stratum_id", "position"], how="left")
    if test["t"].isna().any():
        return None
    test = test.astype({"t": np.int64, "u": np.int64})
    parts = estimated_scores(world, test, plays, inputs, key=key, max_history=max_history)

    def auc_ci(score):
        auc, per = stratified_auc(test["stratum_id"], test["feedback"], score)
        lo, hi = bootstrap_ci(per["auc"].to_numpy(), n_boot=n_boot, seed=seed)
        return auc, lo, hi, len(per)

    auc, lo, hi, n = auc_ci(parts["taste_est"] + parts["appeal_est"])
    return {"auc": float(auc), "ci_lo": float(lo), "ci_hi": float(hi), "n_strata": int(n),
            "appeal_auc": float(auc_ci(parts["appeal_est"])[0]),
            "true_appeal_auc": float(auc_ci(parts["appeal"])[0]),
            "max_history": int(max_history)}
