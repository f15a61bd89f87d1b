"""Evaluation metrics: stratified AUC, bootstrap CI, cuts, top-k scoring, ranking,
diversity and the model-free baselines (fast; no model training)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from semid_pipeline.baselines import content_baseline_scores, popularity_scores
from semid_pipeline.evaluation import (
    auc_by_history,
    bootstrap_ci,
    cold_start_auc,
    evaluate_scored,
    lift_by_bucket,
    stratified_auc,
    stratified_auc_of,
)
from semid_pipeline.evaluation import _group_score_order
from semid_pipeline.ranking import diversity_metrics, ranking_metrics
from semid_pipeline.scoring import topk_decomposed, topk_naive


def _random_scored(rng, n_strata=400, max_events=12, tie_round=True):
    sizes = rng.integers(1, max_events + 1, n_strata)
    strata = np.repeat([f"u{i}" for i in range(n_strata)], sizes)
    n = len(strata)
    y = rng.integers(0, 2, n)
    s = rng.normal(size=n) + 0.7 * y
    if tie_round:
        s = np.round(s)  # many ties, inside and across labels
    return strata, y, s


def test_stratified_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    strata, y, s = _random_scored(rng)
    # shuffle rows so strata are interleaved
    p = rng.permutation(len(y))
    strata, y, s = strata[p], y[p], s[p]
    auc, per = stratified_auc(strata, y, s)
    df = pd.DataFrame({"g": strata, "y": y, "s": s})
    ref = {}
    for g, d in df.groupby("g"):
        if d["y"].nunique() == 2:
            ref[g] = roc_auc_score(d["y"], d["s"])
    assert len(per) == len(ref) < df["g"].nunique()  # some single-label strata excluded
    assert set(per["stratum_id"]) == set(ref)
    got = dict(zip(per["stratum_id"], per["auc"]))
    assert all(got[g] == pytest.approx(v, abs=1e-12) for g, v in ref.items())
    assert auc == pytest.approx(np.mean(list(ref.values())), abs=1e-12)
    row = per.iloc[0]
    d = df[df["g"] == row["stratum_id"]]
    assert (row["n_pos"], row["n_neg"]) == ((d["y"] == 1).sum(), (d["y"] == 0).sum())


def test_stratified_auc_edge_cases():
    # one stratum: pos scores 2, 1; neg scores 1, 0 -> pairs (2>1)(2>0)(1=1: 1/2)(1>0) = 3.5/4
    auc, per = stratified_auc(["a"] * 4 + ["b"] * 2, [1, 1, 0, 0, 1, 1], [2, 1, 1, 0, 5, 6])
    assert auc == pytest.approx(3.5 / 4) and list(per["stratum_id"]) == ["a"]
    auc, per = stratified_auc(["a", "a"], [1, 1], [0.1, 0.2])
    assert math.isnan(auc) and per.empty
    with pytest.raises(ValueError):
        stratified_auc(["a", "a"], [1, 0], [np.nan, 0.2])


@pytest.mark.parametrize("top", [50, 70_000, 2**40])
def test_group_score_order_sorts_like_lexsort(top):
    """The radix passes over the codes (one below 2**16 groups, more above) order the events exactly
    as np.lexsort((scores, codes)) does, equal scores aside (they may swap: same code, same score)."""
    rng = np.random.default_rng(top % 1000)
    n = 20_000
    codes = rng.integers(0, top, n)
    codes[: n // 4] = codes[n // 2: n // 2 + n // 4]  # repeated groups at any size
    s = np.round(rng.normal(size=n), 1)  # many equal scores
    got, ref = _group_score_order(codes, s), np.lexsort((s, codes))
    assert sorted(got.tolist()) == list(range(n))  # a permutation
    assert np.array_equal(codes[got], codes[ref]) and np.array_equal(s[got], s[ref])


def test_stratified_auc_of_equals_stratified_auc():
    """The reusable scorer of fixed strata and labels gives stratified_auc's number exactly, for
    many score vectors (the weight search's use), and refuses wrong lengths and NaN."""
    rng = np.random.default_rng(3)
    strata, y, s = _random_scored(rng, n_strata=300)
    p = rng.permutation(len(y))
    strata, y, s = strata[p], y[p], s[p]
    of = stratified_auc_of(strata, y)
    for w in (0.0, 0.3, 1.0, 5.0):
        x = s + w * rng.normal(size=len(s))
        assert of(x) == stratified_auc(strata, y, x)[0]
    assert of(s) != of(-s)
    with pytest.raises(ValueError, match="values for"):
        of(s[:-1])
    with pytest.raises(ValueError, match="NaN"):
        of(np.where(np.arange(len(s)) == 3, np.nan, s))
    assert math.isnan(stratified_auc_of(["a", "a"], [1, 1])(np.array([0.1, 0.2])))


def test_bootstrap_ci_coverage():
    """Over 100 simulated data sets with known population AUC Phi(d/sqrt(2)), the 95%
    stratum-bootstrap CI covers it at (close to) the nominal rate."""
    rng = np.random.default_rng(1)
    d = 0.8
    true_auc = norm.cdf(d / math.sqrt(2))
    n_strata, n_pos, n_neg = 150, 4, 4
    covered = 0
    for rep in range(100):
        pos = rng.normal(d, 1, (n_strata, n_pos))
        neg = rng.normal(0, 1, (n_strata, n_neg))
        per_auc = (pos[:, :, None] > neg[:, None, :]).mean(axis=(1, 2))  # unbiased per stratum
        lo, hi = bootstrap_ci(per_auc, n_boot=400, seed=rep)
        covered += lo <= true_auc <= hi
    assert covered >= 85, covered
    # degenerate inputs
    assert all(math.isnan(v) for v in bootstrap_ci(np.array([])))
    assert bootstrap_ci(np.array([0.7])) == (0.7, 0.7)
    # chunking does not change the result
    a = rng.random(1000)
    assert bootstrap_ci(a, n_boot=300, seed=3) == bootstrap_ci(a, n_boot=300, seed=3, max_chunk_elems=10_000)


def _tables(n, h, sizes, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    tables = [torch.randn(k, h, generator=g, dtype=dtype) for k in sizes]
    codes = [torch.randint(0, k, (n,), generator=g) for k in sizes]
    emb = sum(t[c] for t, c in zip(tables, codes))
    hidden = torch.randn(37, h, generator=g, dtype=dtype)
    return hidden, tables, codes, emb


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_topk_decomposed_equals_naive(dtype):
    # 4 levels of k=32 + a tie field of 3 + an "artist" field of 50: 5_003 tracks
    hidden, tables, codes, emb = _tables(5003, 16, (32, 32, 32, 32, 3, 50), dtype, 0)
    excl = torch.tensor([0, 17])  # padding row 0 and one more track
    vd, idd = topk_decomposed(hidden, tables, codes, k=10, exclude=excl, chunk=1500, strata_chunk=8, block=16)
    vn, idn = topk_naive(hidden, emb, k=10, exclude=excl, chunk=999)
    assert idd.shape == idn.shape == (37, 10)
    assert torch.allclose(vd, vn, rtol=1e-5, atol=1e-4)
    assert not torch.isin(idd, excl).any()
    if dtype == torch.float64:
        assert torch.equal(idd, idn)
    else:  # float32: summation order differs; any difference must be a numerical near-tie
        diff = (idd != idn).any(dim=1)
        assert diff.float().mean() <= 0.05
        for s in diff.nonzero().flatten().tolist():
            assert torch.allclose(vd[s], vn[s], atol=1e-4)
    # exact reference: brute force over all tracks
    full = hidden @ emb.T
    full[:, excl] = -math.inf
    ref = full.topk(10, dim=1)
    assert torch.allclose(vd, ref.values, rtol=1e-5, atol=1e-4)
    # default chunking, single id field (the `id` baseline: one field with k = N)
    vd2, id2 = topk_decomposed(hidden, [emb], [torch.arange(5003)], k=10, exclude=excl)
    assert torch.allclose(vd2, ref.values, rtol=1e-5, atol=1e-4)


def test_topk_small_catalogue():
    hidden, tables, codes, emb = _tables(6, 4, (3, 2), torch.float64, 1)
    vd, idd = topk_decomposed(hidden, tables, codes, k=10, exclude=torch.tensor([0]))
    vn, idn = topk_naive(hidden, emb, k=10, exclude=torch.tensor([0]))
    assert idd.shape == (37, 5) and torch.allclose(vd, vn)
    assert (torch.sort(idd, 1).values == torch.arange(1, 6)).all()


def test_ranking_metrics_hand_computed():
    topk = torch.tensor([[5, 3, 9], [1, 2, 4], [7, 8, 6], [0, 1, 2]])
    targets = torch.tensor([5, 4, 3, -1])  # hit at rank 0, hit at rank 2, miss, ignored (-1)
    m = ranking_metrics(topk, targets, k=3)
    # recall@3 = 2 hits / 3 valid strata; ndcg@3 = (1/log2(2) + 1/log2(4) + 0) / 3 = 1.5 / 3
    assert m["recall@3"] == pytest.approx(2 / 3)
    assert m["ndcg@3"] == pytest.approx(0.5)
    assert m["n_strata"] == 3
    m = ranking_metrics(topk, targets, k=1)  # only rank 0 counts: 1 hit of 3
    assert m["recall@1"] == pytest.approx(1 / 3) and m["ndcg@1"] == pytest.approx(1 / 3)


def test_diversity_metrics_hand_computed():
    feats = np.array([[1, 0], [1, 0], [0, 1], [1, 1], [0, 0]], dtype=float)
    artist = np.array([10, 10, 11, 12, -1])
    year = np.array([2020, 2023, 2024, np.nan, 2010])
    topk = np.array([[0, 1, 2], [2, 3, 4]])
    d = diversity_metrics(topk, feats, artist, year, n_catalog=10)
    # list 0: cos(0,1)=1, cos(0,2)=0, cos(1,2)=0 -> 1/3
    # list 1: cos(2,3)=1/sqrt2, cos(2,4)=0 (zero vector), cos(3,4)=0 -> (1/sqrt2)/3
    assert d["ils"] == pytest.approx((1 / 3 + (1 / math.sqrt(2)) / 3) / 2)
    # artists: list 0 {10, 11} = 2; list 1 {11, 12, unknown} = 3 -> mean 2.5, share 2.5/3
    assert d["distinct_artists"] == pytest.approx(2.5)
    assert d["distinct_artist_share"] == pytest.approx(2.5 / 3)
    # coverage: tracks {0,1,2,3,4} of 10
    assert d["coverage"] == pytest.approx(0.5)
    # recent: max year 2024 -> >= 2023; known entries 2020,2023,2024 | 2024,2010 -> 3 of 5
    assert d["recent_share"] == pytest.approx(3 / 5)
    d = diversity_metrics(torch.tensor(topk), None, None, None, n_catalog=5)
    assert d["ils"] is None and d["distinct_artists"] is None and d["coverage"] == 1.0


def test_popularity_smoothing():
    train = pd.DataFrame({"track_id": ["a"] * 4 + ["b"] * 1 + ["c"] * 5,
                          "feedback": [1, 1, 1, 1, 0, 0, 0, 1, 0, 1]})
    ev = pd.DataFrame({"track_id": ["a", "b", "zz", "c"]})
    s = popularity_scores(train, ev, prior_strength=2.0)
    p0 = 6 / 10
    # (pos + a*p0) / (n + a)
    assert s == pytest.approx([(4 + 1.2) / 6, (0 + 1.2) / 3, p0, (2 + 1.2) / 7])
    # without a prior the raw rate; with a huge prior everything shrinks to p0
    assert popularity_scores(train, ev, prior_strength=0.0)[:2] == pytest.approx([1.0, 0.0])
    assert popularity_scores(train, ev, prior_strength=1e9) == pytest.approx([p0] * 4, abs=1e-6)


def test_content_baseline_beats_chance():
    rng = np.random.default_rng(0)
    n, dim = 300, 6
    feats = rng.normal(size=(n, dim))
    taste = rng.normal(size=(400, dim))  # one hidden taste vector per stratum

    def make(strata):
        hist, targ, strata_ids = [], [], []
        for u in strata:
            def draw(m):
                idx = rng.integers(0, n, m)
                fb = (feats[idx] @ taste[u] + 0.3 * rng.normal(size=m) > 0).astype(int)
                return idx, fb
            hist.append(draw(10))
            t = draw(6)
            targ.append(t)
            strata_ids += [u] * 6
        return hist, targ, np.array(strata_ids)

    tr_h, tr_t, _ = make(range(300))
    ev_h, ev_t, ev_s = make(range(300, 400))
    scores = content_baseline_scores(feats, tr_h, tr_t, ev_h, ev_t, seed=0)
    labels = np.concatenate([t[1] for t in ev_t])
    assert scores.shape == labels.shape
    auc, _ = stratified_auc(ev_s, labels, scores)
    assert auc > 0.65, auc


def test_cold_start_and_history_buckets():
    # stratum a: pos scores [3 (cold), 1 (warm)], neg scores [2 (warm), 0 (cold)]
    #   pairs with >=1 cold track: (3c,2w)=1 (3c,0c)=1 (1w,0c)=1 -> 3/3; (1w,2w) excluded
    #   both cold: (3c,0c) = 1/1
    # stratum b: pos 1 (warm), neg 5 (cold) -> 0/1; no both-cold pair
    # stratum c: all warm -> no cold pair
    scored = pd.DataFrame({
        "stratum_id": list("aaaabbcc"),
        "track_id": list("pqrstuvw"),
        "feedback": [1, 1, 0, 0, 1, 0, 1, 0],
        "score": [3, 1, 2, 0, 1, 5, 2, 1],
        "history_len": [1, 2, 2, 2, 4, 4, 30, 31],
        "is_cold": [True, False, False, True, False, True, False, False],
    })
    cs = cold_start_auc(scored)
    assert cs["auc"] == pytest.approx((1.0 + 0.0) / 2)
    assert cs["auc_pooled"] == pytest.approx(3 / 4)
    assert (cs["n_pairs"], cs["n_strata"]) == (4, 2)
    assert cs["both_cold"]["auc"] == 1.0 and cs["both_cold"]["n_pairs"] == 1
    buckets = auc_by_history(scored, buckets=((1, 2), (3, 5), (6, 10), (21, 50)), n_boot=50)
    # stratum history = min history_len: a -> 1 (bucket 1-2), b -> 4 (3-5), c -> 30 (21-50)
    # AUC a: pos 3>2, 3>0, 1<2, 1>0 -> 3/4; b: 1<5 -> 0; bucket 6-10 empty -> NaN
    assert list(buckets["n_strata"]) == [1, 1, 0, 1]
    assert buckets["auc"].iloc[0] == pytest.approx(0.75)
    assert buckets["auc"].iloc[1] == 0.0 and math.isnan(buckets["auc"].iloc[2])
    base = buckets.assign(auc=[0.5, 0.5, 0.5, 0.5])
    lift = lift_by_bucket(buckets, base)
    assert lift["lift"].iloc[0] == pytest.approx(0.25) and lift["lift"].iloc[3] == pytest.approx(0.5)


def test_evaluate_scored_is_jsonable():
    rng = np.random.default_rng(2)
    strata, y, s = _random_scored(rng, n_strata=300)
    n = len(y)
    scored = pd.DataFrame({"stratum_id": strata, "track_id": rng.integers(0, 99, n).astype(str),
                           "feedback": y, "score": s,
                           "history_len": np.repeat(rng.integers(1, 200, 300), np.bincount(pd.factorize(strata)[0])),
                           "is_cold": rng.random(n) < 0.2})
    rec = evaluate_scored(scored, n_boot=200, seed=0)
    back = json.loads(json.dumps(rec, allow_nan=False))
    auc, per = stratified_auc(strata, y, s)
    assert back["auc"] == pytest.approx(auc) and back["n_strata"] == len(per)
    assert back["ci_lo"] <= back["auc"] <= back["ci_hi"]
    assert len(back["by_history"]) == 7 and sum(b["n_strata"] for b in back["by_history"]) == len(per)
    assert back["cold_start"]["n_pairs"] > 0
