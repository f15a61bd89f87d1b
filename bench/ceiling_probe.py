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
  appeal estimated from plays each track's appeal estimated (MAP; prior: its regression on the
                              track's popularity percentile, a content column) from ALL
                              listeners' plays before the test period, every other term of each
                              play's logit TRUE (from oracle.parquet): about the best any model can
                              learn about appeal, which content cannot reveal, from those plays
  history-limited taste + appeal prior only   no per-track parameter: the appeal from the
                              popularity percentile alone (what a representation that cannot tell
                              two tracks with the same content apart can know of it)
  history-limited taste + estimated appeal   both estimated: the report's "learnable ceiling"
                              (semid_pipeline.synthetic.ceiling; still generous: it knows every
                              latent and the population of tastes)

The history-limited rows are an upper bound for a model that also has to learn the latents from content and
plays; the distance from it to the oracle is the information the history does not hold.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from semid_pipeline.evaluation import bootstrap_ci, stratified_auc  # noqa: E402
from semid_pipeline.synthetic import write_world  # noqa: E402
from semid_pipeline.synthetic.config import parse_overrides, preset, with_overrides  # noqa: E402
from semid_pipeline.synthetic.ceiling import estimated_scores, with_numbers, world_events  # noqa: E402
from semid_pipeline.synthetic.world import build_world  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="WorldConfig overrides (numbers), e.g. taste_weight=3 appeal_weight=0.4")
    ap.add_argument("--test-days", type=int, default=14)
    ap.add_argument("--max-history", type=int, default=400)
    args = ap.parse_args()

    cfg = preset(args.preset)
    over = parse_overrides(args.set)
    cfg = with_overrides(cfg, over)
    cache = Path(os.environ.get("SEMID_PROBE_CACHE", Path(tempfile.gettempdir()) / "semid_probe"))
    out = cache / cfg.hash(("users",))[:16]
    write_world(cfg, out, formats=("users",))
    world = build_world(cfg)
    ev = with_numbers(world, world_events(out))
    start = ev["ts"].max().normalize() - pd.Timedelta(days=args.test_days - 1)
    test, hist = ev[ev["ts"] >= start], ev[ev["ts"] < start]
    test = test[test["u"].isin(hist["u"].unique())]  # as evaluated: a stratum needs a non-empty input
    parts = estimated_scores(world, test, hist, hist, max_history=args.max_history)
    # the position inside a sitting is not in the warehouse; the report's oracle has it (oracle.parquet)
    scores = {"taste only (true)": parts["taste"], "appeal only (true)": parts["appeal"],
              "oracle − position": parts["taste"] + parts["appeal"],
              "history-limited taste + true appeal": parts["taste_est"] + parts["appeal"],
              "history-limited taste only": parts["taste_est"],
              "appeal estimated from plays": parts["appeal_est"],
              "history-limited taste + estimated appeal": parts["taste_est"] + parts["appeal_est"],
              "history-limited taste + appeal prior only": parts["taste_est"] + parts["appeal_prior"]}

    y, strata = test["feedback"].to_numpy(), test["stratum_id"].to_numpy()
    print(f"world {cfg.name} {over or ''}: {len(test):,} test events, {test['stratum_id'].nunique():,} listeners, "
          f"{len(hist):,} history events")
    for name, s in scores.items():
        auc, per = stratified_auc(strata, y, s)
        lo, hi = bootstrap_ci(per["auc"].to_numpy(), n_boot=300, seed=0)
        print(f"  {name:<40} {auc:.4f} [{lo:.4f}, {hi:.4f}]  ({len(per)} strata)")


if __name__ == "__main__":
    main()
