"""[train] content_affinity: the content rows a track's ID fields say, the liked / disliked profiles
by hand, the weights chosen on validation, and a trained model that adds exactly the term it
stores (training never sees it); [train] personal_taste: the per-listener logistic taste against
a direct minimisation of its objective, its weight, and the model that adds it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import random_id_table, reloaded, user_feedback
from semid_pipeline import content_affinity
from semid_pipeline.config import SplitConfig, TrainConfig, train_identity
from semid_pipeline.content_affinity import (AFFINITY_DIMS, TASTE_PRECISION, cosines, field_table, personal_tastes,
                                             profiles)
from semid_pipeline.content_init import content_targets
from semid_pipeline.model import TrackEncoder
from semid_pipeline.schemes import IdScheme
from semid_pipeline.score_terms import choose_weights
from semid_pipeline.scoring import length_chunks, score_eval_set, taste_scores, without_prior
from semid_pipeline.splits import as_train_sequences, build_splits
from semid_pipeline.track_prior import PRIOR_WEIGHTS, choose_weight, prior_z, stored_numbers
from semid_pipeline.train import model_from_splits, train_recommender

pytestmark = pytest.mark.usefixtures("one_torch_thread")
QUIET = lambda _msg: None  # noqa: E731

CFG = TrainConfig(content_init=False, content_affinity=True, listener_memory=False, personal_taste=False, layers=1, heads=2, dropout=0.1, max_len=16,
                  batch_size=32, lr=3e-3, epochs=2, patience=5, sampled_negatives=2, seed=0, final_fit_epochs=0,
                  recent_prior_days=0)  # the prior's z stays the whole-period one (test_track_prior covers the recent share)


@pytest.fixture(scope="module")
def splits():
    """Taste by cluster: listener u likes the tracks k with k % 2 == u % 2, nothing else."""
    events = user_feedback(n_users=50, n_tracks=80, days=90, seed=4, min_events=25, max_events=45,
                           feedback=lambda rng, u, k: k % 2 == u % 2)
    return build_splits(events, None, SplitConfig(test_days=14, val_days=14))


@pytest.fixture(scope="module")
def content(splits):
    """5 dims: the first says the track's cluster (k % 2), the rest are noise; row 0 = padding."""
    rng = np.random.default_rng(0)
    k = np.array([int(t[1:]) for t in splits.vocab.track_ids])
    X = np.full((splits.vocab.n_tokens, 5), np.nan, dtype=np.float32)
    X[1:] = rng.normal(size=(len(k), 5))
    X[1:, 0] += np.where(k % 2 == 1, 3.0, -3.0)
    return X


def _pad(c):
    return np.concatenate([[0], c])


def test_field_table_is_the_content_the_fields_say(content):
    n = len(content) - 1
    pcs = content_targets(content, hidden=5)
    # id: each track's own row, along its principal-component scores
    ident = TrackEncoder(fields={"id": (_pad(np.arange(1, n + 1)), n)}, hidden=8)
    tab = field_table(ident, content)
    assert tab.shape == (n + 1, min(AFFINITY_DIMS, 5))
    vec = tab[ident.codes[:, 0]]
    cos = torch.nn.functional.cosine_similarity(vec[1:], pcs[1:], dim=1)
    assert float(cos.min()) > 0.999
    # one code level shared by the tracks of a cluster + a tie counter: each code's row is the
    # (ridge-shrunk) mean of its tracks' scores; the tie rows and the pad row stay zero
    cluster = (np.arange(n) % 3) + 1
    enc = TrackEncoder(fields={"c1": (_pad(cluster), 3), "tie": (_pad(np.arange(n) % 2 + 1), 2)}, hidden=8)
    tab = field_table(enc, content, dims=2)
    assert tab.shape == (1 + 3 + 2, 2)
    assert not tab[0].any() and not tab[4:].any()
    p = content_targets(content, hidden=2).numpy()[1:]
    for c in (1, 2, 3):
        members = p[cluster == c]
        np.testing.assert_allclose(tab[c].numpy(), members.sum(0) / (len(members) + 1.0), rtol=1e-4, atol=1e-5)


def test_profiles_and_cosines_by_hand():
    vecs = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [0.0, 2.0]],
                         [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [5.0, 5.0]]])  # (2, 4, 2), left-padded
    fb = torch.tensor([[0, 1, 1, 0], [0, 0, 0, 1]])
    valid = torch.tensor([[False, True, True, True], [False, False, False, True]])
    liked, disliked = profiles(vecs, fb, valid)
    np.testing.assert_allclose(liked.numpy(), [[2.0, 0.0], [5.0, 5.0]])
    np.testing.assert_allclose(disliked.numpy(), [[0.0, 2.0], [0.0, 0.0]])  # the pad row is not a dislike
    c = cosines(torch.tensor([[1.0, 1.0], [1.0, 0.0]]), liked, disliked)
    np.testing.assert_allclose(c.numpy(), [[2 ** -0.5, 2 ** -0.5], [2 ** -0.5, 0.0]], atol=1e-6)


def test_the_weights_are_chosen_where_the_term_ranks():
    rng = np.random.default_rng(0)
    strata = np.repeat(np.arange(40), 10)
    y = rng.integers(0, 2, len(strata))
    scores = rng.normal(size=len(strata))
    z = rng.normal(size=len(strata)) + 0.8 * y
    # without the affinity the search is the prior's own
    alone = choose_weights(strata, y, scores, z=z, sims=None, prior_weights=PRIOR_WEIGHTS)
    w, table = choose_weight(strata, y, scores, z)
    assert alone["weight"] == w > 0 and alone["affinity"] == [0.0, 0.0]
    assert alone["auc"] == pytest.approx(max(r["auc"] for r in table))
    # a liked-cosine that carries the label, a disliked-cosine that carries it reversed: both used
    sims = np.column_stack([0.3 * y + rng.normal(0, 0.3, len(y)), -0.3 * y + rng.normal(0, 0.3, len(y))])
    both = choose_weights(strata, y, scores, z=z, sims=sims, prior_weights=PRIOR_WEIGHTS)
    assert both["affinity"][0] > 0 and both["affinity"][1] > 0 and both["auc"] > alone["auc"]
    assert both["auc_without"] == pytest.approx(choose_weights(strata, y, scores, z=None, sims=None,
                                                               prior_weights=PRIOR_WEIGHTS)["auc"])
    # cosines constant within each stratum cannot reorder it: the term stays off
    flat = np.repeat(rng.normal(size=(40, 2)), 10, axis=0)
    assert choose_weights(strata, y, scores, z=z, sims=flat, prior_weights=PRIOR_WEIGHTS)["affinity"] == [0.0, 0.0]


def _train(splits, content, cfg, out_dir, scheme="id", table=None):
    return train_recommender(scheme=IdScheme.parse(scheme), hidden=16, splits=splits, id_table=table,
                             id_table_hash=None, cfg=cfg, out_dir=out_dir, log=QUIET, content=content)


def test_training_never_sees_the_affinity_and_the_model_adds_exactly_what_it_stores(splits, content, tmp_path):
    off = _train(splits, content, replace(CFG, content_affinity=False), tmp_path / "off")
    on = _train(splits, content, CFG, tmp_path / "on")
    s_off, s_on = off.model.state_dict(), on.model.state_dict()
    assert set(s_on) - set(s_off) == {"affinity_table", "affinity_weight"}
    # the same trained weights (the term is not in training); w is chosen with (a₊, a₋), so it may differ
    assert all(torch.equal(v, s_on[k]) for k, v in s_off.items() if k != "prior_weight")
    # two short epochs barely move the rows; the content says the cluster: chosen, and it helps
    a = on.prior["affinity"]
    assert max(a) > 0 and on.prior["val_auc"] > on.prior["val_auc_without"] + 0.02
    assert on.prior["affinity_values"] == s_on["affinity_table"].numel()
    # the test scores: the model's own + w · z + a₊ · cos(v, liked) − a₋ · cos(v, disliked), by hand
    sc_on, sc_off = score_eval_set(on.model, splits.test), score_eval_set(off.model, splits.test)
    z = prior_z(as_train_sequences(splits.train), splits.vocab.n_tokens, adjusted=True,
                by_plays=on.prior["by_plays"])[0][sc_on["track_idx"]]
    v = s_on["affinity_table"].numpy()[on.model.encoder.codes.numpy()].sum(1)  # (N+1, d) per-track rows
    def unit(x):
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)
    expect = []
    for row, tr in zip(splits.test.events["row"], sc_on["track_idx"]):
        x, fb = (np.asarray(q)[-CFG.max_len:] for q in splits.test.inputs[row])
        liked = v[x[fb == 1]].mean(0) if (fb == 1).any() else np.zeros(v.shape[1])
        disliked = v[x[fb == 0]].mean(0) if (fb == 0).any() else np.zeros(v.shape[1])
        c = unit(v[tr])
        expect.append(a[0] * (c * unit(liked)).sum() - a[1] * (c * unit(disliked)).sum())
    own = sc_off["score"] - sc_off["terms"]  # the model's own score (off's w · z out), the same in both
    np.testing.assert_allclose(sc_on["score"], own + on.prior["weight"] * z + np.array(expect), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(without_prior(on.model, sc_on)["score"], sc_off["score"] - sc_off["terms"],
                               rtol=1e-5, atol=1e-5)  # the model's own score: every validation-chosen term out
    # with its weights at 0 (the per-epoch validation) the cosines are skipped unless asked for
    on.model.set_affinity(weights=(0.0, 0.0))
    assert "affinity_liked" not in score_eval_set(on.model, splits.test)
    asked = score_eval_set(on.model, splits.test, term_columns=True)
    np.testing.assert_allclose(asked[["affinity_liked", "affinity_disliked"]], sc_on[["affinity_liked", "affinity_disliked"]],
                               rtol=1e-6, atol=1e-6)
    on.model.set_affinity(weights=a)
    # saved as it scores: the model the evaluation loads from model.pt gives the same scores
    loaded = reloaded(on, splits)
    assert loaded.has_affinity and not reloaded(off, splits).has_affinity
    np.testing.assert_allclose(score_eval_set(loaded, splits.test)["score"], sc_on["score"], rtol=1e-5, atol=1e-5)
    # part of the run's identity; off keeps the identity runs had before the switch
    assert train_identity(CFG)["content_affinity"] is True
    assert "content_affinity" not in train_identity(replace(CFG, content_affinity=False))


def test_random_codes_never_read_content_and_content_is_required(splits, content, tmp_path):
    table = random_id_table(splits.vocab.track_ids, k=8, levels=2, seed=0)
    v0 = _train(splits, content, CFG, tmp_path / "v0", scheme="v0-k8", table=table)
    assert not v0.model.has_affinity and v0.prior["affinity"] == [0.0, 0.0]
    with pytest.raises(ValueError, match="content_affinity"):
        model_from_splits(scheme=IdScheme.parse("id"), hidden=16, splits=splits, id_table=None, cfg=CFG)


def test_stored_numbers_count_the_affinity_rows_only_where_they_are_used():
    rec = {"params_total": 1000, "prior": {"weight": 0.0, "values": 50, "affinity": [0.0, 0.0],
                                           "affinity_values": 300}}
    assert stored_numbers(rec) == 1000
    assert stored_numbers({**rec, "prior": {**rec["prior"], "affinity": [0.0, 2.0]}}) == 1300
    assert stored_numbers({**rec, "prior": {**rec["prior"], "weight": 1.0, "affinity": [1.0, 0.0]}}) == 1350


# --------------------------------------------------------------------------------------------
# [train] personal_taste


def _taste_by_minimising(x: np.ndarray, y: np.ndarray, precision: float) -> np.ndarray:
    """β of the MAP objective minimised directly (scipy), an independent check of the Newton steps."""
    from scipy.optimize import minimize

    u = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)
    X = np.c_[u, np.ones(len(u))]
    P = np.r_[np.full(u.shape[1], precision), 0.25]

    def f(w):
        s = X @ w
        return np.sum(np.logaddexp(0, s) - y * s) + 0.5 * np.sum(P * w * w)

    def g(w):
        return X.T @ (1 / (1 + np.exp(-(X @ w))) - y) + P * w

    return minimize(f, np.zeros(X.shape[1]), jac=g, method="BFGS", options={"gtol": 1e-10}).x[:-1]


def test_personal_taste_is_the_map_of_its_objective(monkeypatch):
    rng = np.random.default_rng(3)
    B, T, d = 6, 30, 4
    vecs = torch.from_numpy(rng.normal(size=(B, T, d)))
    fb = torch.from_numpy((vecs[..., 0].numpy() + 0.5 * rng.normal(size=(B, T)) > 0.3).astype(np.int64))
    lengths = [30, 12, 3, 1, 0, 20]
    valid = torch.arange(T)[None, :] >= T - torch.tensor(lengths)[:, None]  # left-padded
    beta = personal_tastes(vecs.float(), fb, valid).double().numpy()
    for i, n in enumerate(lengths):
        x, y = vecs[i, T - n:].numpy(), fb[i, T - n:].numpy().astype(float)
        expect = _taste_by_minimising(x, y, TASTE_PRECISION) if n else np.zeros(d)
        np.testing.assert_allclose(beta[i], expect, atol=1e-4)
    assert beta[0, 0] > 1.0 and not beta[4].any()  # likes follow dimension 0; no history: no preference
    # the prior shrinks a short history toward no preference: fewer events, a smaller |β| on the same data
    short = personal_tastes(vecs[:1].float(), fb[:1], valid[:1] & (torch.arange(T) >= T - 5))
    assert torch.linalg.norm(short) < torch.linalg.norm(torch.from_numpy(beta[0]))
    # Newton stops at TASTE_TOLERANCE: the same β as all the steps run (tolerance 0), fewer steps not
    monkeypatch.setattr(content_affinity, "TASTE_TOLERANCE", 0.0)
    full = personal_tastes(vecs.float(), fb, valid).double().numpy()
    np.testing.assert_allclose(beta, full, rtol=0, atol=1e-6)
    assert not np.allclose(personal_tastes(vecs.float(), fb, valid, iters=1).double().numpy(), full, atol=1e-3)


def test_taste_weight_chosen_where_the_taste_ranks_and_zero_where_it_cannot():
    rng = np.random.default_rng(0)
    strata = np.repeat(np.arange(40), 10)
    y = rng.integers(0, 2, len(strata))
    scores = rng.normal(size=len(y))
    taste = 0.5 * y + rng.normal(0, 0.5, len(y))
    best = choose_weights(strata, y, scores, z=None, sims=None, taste=taste, prior_weights=PRIOR_WEIGHTS)
    assert best["taste"] > 0 and best["auc"] > best["auc_without"] + 0.05
    flat = np.repeat(rng.normal(size=40), 10)  # constant within a stratum: cannot reorder it
    assert choose_weights(strata, y, scores, z=None, sims=None, taste=flat, prior_weights=PRIOR_WEIGHTS)["taste"] == 0.0
    assert choose_weights(strata, y, scores, z=None, sims=None, prior_weights=PRIOR_WEIGHTS)["taste"] == 0.0
    # it joins at the optimum of the search without it: never below that search, whatever the columns
    taken = []
    for seed in range(4):
        r = np.random.default_rng(seed)
        y = r.integers(0, 2, len(strata))
        z, sims = 0.3 * y + r.normal(size=len(y)), np.column_stack([0.2 * y, -0.2 * y]) + r.normal(size=(len(y), 2))
        taste = 0.3 * y + 0.5 * sims[:, 0] + r.normal(size=len(y))
        args = dict(z=z, sims=sims, prior_weights=PRIOR_WEIGHTS)
        base = choose_weights(strata, y, scores, **args)
        both = choose_weights(strata, y, scores, taste=taste, **args)
        assert both["auc"] >= base["auc"] and both["auc_without"] == base["auc_without"]
        taken.append(both["taste"] > 0)
    assert any(taken)


def test_trained_model_adds_b_times_the_taste_of_the_whole_input(splits, content, tmp_path):
    cfg = replace(CFG, personal_taste=True)
    off = _train(splits, content, CFG, tmp_path / "off")
    on = _train(splits, content, cfg, tmp_path / "on")
    s_off, s_on = off.model.state_dict(), on.model.state_dict()
    assert set(s_on) - set(s_off) == {"taste_weight"}
    assert all(torch.equal(v, s_on[k]) for k, v in s_off.items())  # training never sees the term
    # here the cosines already say the cluster, so validation may keep b at 0 (the choice itself:
    # the test above); whatever it chose is what the model stores
    assert float(s_on["taste_weight"]) == on.prior["taste"] and on.prior["val_auc"] >= on.prior["val_auc_without"]
    # the test scores: the same model with b = 0, plus b · û(track) · β, β from the WHOLE input, by hand
    b = 1.5
    on.model.set_affinity(taste=b)
    sc_on = score_eval_set(on.model, splits.test)
    on.model.set_affinity(taste=0.0)
    sc_zero = score_eval_set(on.model, splits.test)
    assert "affinity_taste" not in sc_zero  # weight 0 (the per-epoch validation): not computed
    on.model.set_affinity(taste=b)
    v = s_on["affinity_table"].numpy()[on.model.encoder.codes.numpy()].sum(1).astype(np.float64)  # (N+1, d)
    inputs = splits.test.inputs
    assert max(len(x) for x, _ in inputs) > cfg.max_len  # the taste reads more than the model's window
    betas = [_taste_by_minimising(v[np.asarray(x)], np.asarray(f, dtype=float), TASTE_PRECISION) for x, f in inputs]
    unit = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)
    expect = np.array([unit[t] @ betas[r] for r, t in zip(splits.test.events["row"], sc_on["track_idx"])])
    np.testing.assert_allclose(sc_on["affinity_taste"], expect, atol=1e-3)
    np.testing.assert_allclose(sc_on["score"], sc_zero["score"] + b * expect, atol=1e-3)
    # fitted in small chunks of similar length (each its own width): the same tastes, in event order
    lengths = [len(x) for x, _ in inputs]
    assert len(set(lengths)) > 5 and lengths != sorted(lengths)  # chunks reorder the strata
    chunked = taste_scores(on.model, splits.test, batch_size=3).numpy()
    np.testing.assert_allclose(chunked, sc_on["affinity_taste"], atol=1e-6)
    # saved as it scores; off has no such buffer; part of the identity only when on
    loaded = reloaded(on, splits)
    assert float(loaded.taste_weight) == on.prior["taste"] and reloaded(off, splits).taste_weight is None
    loaded.set_affinity(taste=b)
    np.testing.assert_allclose(score_eval_set(loaded, splits.test)["score"], sc_on["score"], rtol=1e-5, atol=1e-5)
    assert train_identity(cfg)["personal_taste"] is True and "personal_taste" not in train_identity(CFG)
    # only with the content affinity's rows: random codes (v0) read no content, so no taste either
    v0 = _train(splits, content, cfg, tmp_path / "v0", scheme="v0-k8",
                table=random_id_table(splits.vocab.track_ids, k=8, levels=2, seed=0))
    assert v0.model.taste_weight is None and v0.prior["taste"] == 0.0
    # its stored numbers are the affinity's content rows, counted where b > 0 alone too
    rec = {"params_total": 1000, "prior": {"weight": 0.0, "values": 50, "affinity": [0.0, 0.0],
                                           "affinity_values": 300, "taste": 1.0}}
    assert stored_numbers(rec) == 1300


def test_length_chunks_take_every_row_once_in_length_order_within_both_bounds():
    lengths = np.random.default_rng(0).integers(0, 400, size=1000)
    lengths[::97] = 400
    chunks = length_chunks(lengths, batch_size=64, max_cells=5_000)
    rows = np.concatenate(chunks)
    assert sorted(rows.tolist()) == list(range(1000))
    assert all(lengths[c].max() <= lengths[d].min() for c, d in zip(chunks, chunks[1:]))  # sorted by length
    assert all(len(c) <= 64 and len(c) * max(int(lengths[c].max()), 1) <= 5_000 for c in chunks)
    assert len(chunks[0]) == 64 and len(chunks[-1]) <= 12  # short rows go 64 at a time, 400-event ones 12
    rows_only = length_chunks(lengths, batch_size=64, max_cells=None)  # final_hidden's: batch_size rows each
    assert [len(c) for c in rows_only] == [64] * 15 + [40]
    assert np.array_equal(np.concatenate(rows_only), np.argsort(lengths, kind="stable"))
    # padded cells: far fewer than input order with chunks sized by the longest input (the old way)
    old = [np.arange(b, min(b + 12, 1000)) for b in range(0, 1000, 12)]
    assert sum(len(c) * lengths[c].max() for c in chunks) < 0.7 * sum(len(c) * lengths[c].max() for c in old)

