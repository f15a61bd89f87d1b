"""[train] content_affinity: the content rows a track's ID fields say, the liked / disliked profiles
by hand, the weights chosen on validation, and a trained model that adds exactly the term it
stores (training never sees it)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import random_id_table, reloaded, user_feedback
from semid_pipeline.config import SplitConfig, TrainConfig, train_identity
from semid_pipeline.content_affinity import AFFINITY_DIMS, cosines, field_table, profiles
from semid_pipeline.content_init import content_targets
from semid_pipeline.model import TrackEncoder
from semid_pipeline.schemes import IdScheme
from semid_pipeline.score_terms import choose_weights
from semid_pipeline.scoring import score_eval_set, without_prior
from semid_pipeline.splits import build_splits
from semid_pipeline.track_prior import PRIOR_WEIGHTS, choose_weight, prior_logits, stored_numbers
from semid_pipeline.train import model_from_splits, train_recommender

pytestmark = pytest.mark.usefixtures("one_torch_thread")
QUIET = lambda _msg: None  # noqa: E731

CFG = TrainConfig(content_init=False, content_affinity=True, listener_memory=False, layers=1, heads=2, dropout=0.1, max_len=16,
                  batch_size=32, lr=3e-3, epochs=2, patience=5, sampled_negatives=2, seed=0, final_fit_epochs=0)


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
    assert all(torch.equal(v, s_on[k]) for k, v in s_off.items())  # the same weights: trained without the term
    # two short epochs barely move the rows; the content says the cluster: chosen, and it helps
    a = on.prior["affinity"]
    assert max(a) > 0 and on.prior["val_auc"] > on.prior["val_auc_without"] + 0.02
    assert on.prior["affinity_values"] == s_on["affinity_table"].numel()
    # the test scores: the model's own + w · z + a₊ · cos(v, liked) − a₋ · cos(v, disliked), by hand
    sc_on, sc_off = score_eval_set(on.model, splits.test), score_eval_set(off.model, splits.test)
    t, f = splits.train_arrays()
    z = prior_logits(t, f, splits.vocab.n_tokens)[sc_on["track_idx"]]
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
    np.testing.assert_allclose(sc_on["score"], sc_off["score"] + on.prior["weight"] * z + np.array(expect),
                               rtol=1e-4, atol=1e-4)
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
