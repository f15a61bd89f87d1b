"""How much of the oracle ceiling can any model reach from a listener's history? (synthetic worlds)

    .venv/bin/python bench/ceiling_probe.py [--preset demo] [--set taste_weight=3 ...]

(the world's users-format events are generated into SEMID_PROBE_CACHE, default /tmp/semid_probe)

The report's oracle ranks the test pairs with the generator's own probability: the TRUE taste
vector of the listener, the true track latents and appeal, and the position term (the rank of an
event inside its sitting, which no model here sees). A model only sees the history. This probe
scores the same test pairs as the report (the listeners' events in the last ``test_days`` of the
users-format events file, listeners with a history only) with:

  oracle − position           the generator's logit without the within-sitting position term
  taste only / appeal only    the two parts alone
  history-limited taste       taste estimated from the listener's last ≤ 400 history events by a
                              per-listener Bayesian logistic regression (MAP) on the TRUE track
                              latents, with the world's true population prior and the true appeal
                              as offset: near the best any model can do from that history

The history-limited rows are an upper bound for a model that also has to learn the latents from content and
plays; the distance from it to the oracle is the information the history does not hold.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from semid_pipeline.evaluation import bootstrap_ci, stratified_auc  # noqa: E402
from semid_pipeline.synthetic import write_world  # noqa: E402
from semid_pipeline.synthetic.config import preset  # noqa: E402
from semid_pipeline.synthetic.world import build_world  # noqa: E402


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="WorldConfig overrides (numbers), e.g. taste_weight=3 appeal_weight=0.4")
    ap.add_argument("--test-days", type=int, default=14)
    ap.add_argument("--max-history", type=int, default=400)
    args = ap.parse_args()

    cfg = preset(args.preset)
    over = {k: float(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    cfg = replace(cfg, **over)
    cache = Path(os.environ.get("SEMID_PROBE_CACHE", Path(tempfile.gettempdir()) / "semid_probe"))
    out = cache / cfg.hash(("users",))[:16]
    write_world(cfg, out, formats=("users",))
    world = build_world(cfg)
    cat, lis = world.cat, world.lis
    ev = pd.read_parquet(out / "users" / "events.parquet", columns=["user_id", "track_id", "timestamp", "feedback"])
    ev = ev.rename(columns={"user_id": "stratum_id", "timestamp": "ts"})
    ev["ts"] = pd.to_datetime(ev["ts"])
    ev = ev.sort_values(["stratum_id", "ts", "track_id"], kind="stable")
    ev["position"] = ev.groupby("stratum_id").cumcount() + 1
    t_idx = pd.Index(cat.track_ids).get_indexer(ev["track_id"])
    u_idx = pd.Index(lis.user_ids).get_indexer(ev["stratum_id"])
    assert (t_idx >= 0).all() and (u_idx >= 0).all(), "the events file does not belong to this preset's world"
    ev = ev.assign(t=t_idx, u=u_idx).sort_values(["stratum_id", "position"], kind="stable")
    start = ev["ts"].max().normalize() - pd.Timedelta(days=args.test_days - 1)
    test, hist = ev[ev["ts"] >= start], ev[ev["ts"] < start]
    test = test[test["u"].isin(hist["u"].unique())]  # as evaluated: a stratum needs a non-empty input

    z = lambda u, t: (world.affinity(u, t) - world.affinity_mean) / world.affinity_std  # noqa: E731
    tu, tt = test["u"].to_numpy(), test["t"].to_numpy()
    taste_part = cfg.taste_weight * z(tu, tt)
    appeal_part = cfg.appeal_weight * cat.appeal[tt]
    # the position inside a sitting is not in the warehouse; the report's oracle has it (oracle.parquet)
    scores = {"taste only (true)": taste_part, "appeal only (true)": appeal_part,
              "oracle − position": taste_part + appeal_part}

    mu, cov = lis.taste.mean(0), np.cov(lis.taste.T)
    prec = np.linalg.inv(cov + 1e-9 * np.eye(cov.shape[0]))
    scale = cfg.taste_weight / world.affinity_std
    lat = cat.latent
    est = np.zeros(len(test))
    tpos = {u: np.flatnonzero(tu == u) for u in np.unique(tu)}
    hist_groups = dict(tuple(hist.groupby("u", sort=False)))
    for u, rows in tpos.items():
        h = hist_groups.get(u)
        taste_hat = mu
        if h is not None and len(h):
            h = h.tail(args.max_history)
            ht = h["t"].to_numpy()
            off = cfg.appeal_weight * cat.appeal[ht] - scale * world.affinity_mean
            taste_hat = map_taste(lat[ht], off, h["feedback"].to_numpy(dtype=float), scale, mu, prec)
        est[rows] = scale * (lat[tt[rows]] @ taste_hat) + appeal_part[rows]
    scores["history-limited taste + true appeal"] = est
    scores["history-limited taste only"] = est - appeal_part

    y, strata = test["feedback"].to_numpy(), test["stratum_id"].to_numpy()
    print(f"world {cfg.name} {over or ''}: {len(test):,} test events, {test['stratum_id'].nunique():,} listeners, "
          f"{len(hist):,} history events")
    for name, s in scores.items():
        auc, per = stratified_auc(strata, y, s)
        lo, hi = bootstrap_ci(per["auc"].to_numpy(), n_boot=300, seed=0)
        print(f"  {name:<40} {auc:.4f} [{lo:.4f}, {hi:.4f}]  ({len(per)} strata)")


if __name__ == "__main__":
    main()
