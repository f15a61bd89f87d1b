"""[train] listener_memory: the listener's earlier feedback on a track / its artist by hand, the
weights chosen on validation, a trained model that adds exactly the term it stores (training never
sees it), and the synthetic world's knob that gives listeners a lasting opinion of a track."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import random_id_table, reloaded, user_feedback
from semid_pipeline.config import SplitConfig, TrainConfig, train_identity
from semid_pipeline.listener_memory import evidence, history_matches
from semid_pipeline.schemes import IdScheme
from semid_pipeline.score_terms import choose_weights
from semid_pipeline.scoring import score_eval_set, without_prior
from semid_pipeline.splits import build_splits
from semid_pipeline.synthetic import preset, write_world
from semid_pipeline.synthetic.feedback import pair_opinion
from semid_pipeline.track_prior import PRIOR_WEIGHTS, stored_numbers
from semid_pipeline.train import train_recommender

pytestmark = pytest.mark.usefixtures("one_torch_thread")
QUIET = lambda _msg: None  # noqa: E731

CFG = TrainConfig(content_init=False, content_affinity=False, listener_memory=True, layers=1, heads=2, dropout=0.1,
                  max_len=16, batch_size=32, lr=3e-3, epochs=2, patience=5, sampled_negatives=2, seed=0,
                  final_fit_epochs=0)


def test_evidence_by_hand():
    # two strata: (tracks, feedback) oldest first; artist map: tracks 1-2 → artist 1, 3-4 → 2, 5 → unknown (0)
    inputs = [(np.array([3, 1, 3, 4, 5]), np.array([1, 0, 1, 0, 1])), (np.array([2]), np.array([1]))]
    artist = np.array([0, 1, 1, 2, 2, 0])
    rows, tracks = np.array([0, 0, 0, 0, 1, 1]), np.array([3, 4, 2, 5, 2, 1])
    n, s = history_matches(inputs, rows, tracks)
    assert n.tolist() == [2, 1, 0, 1, 1, 0] and s.tolist() == [2, 0, 0, 1, 1, 0]
    n, s = history_matches(inputs, rows, artist[tracks], key_of=artist)
    assert n.tolist() == [3, 3, 1, 0, 1, 1] and s.tolist() == [2, 2, 0, 0, 1, 1]  # artist 0 never matches
    m = evidence(inputs, rows, tracks, artist)
    np.testing.assert_allclose(m[:, 0], [2 / 3, -1 / 2, 0, 1 / 2, 1 / 2, 0])  # (likes − dislikes) / (plays + 1)
    np.testing.assert_allclose(m[:, 1], [1 / 4, 1 / 4, -1 / 2, 0, 1 / 2, 1 / 2])
    assert not evidence(inputs, rows, tracks, None)[:, 1].any()


def test_weights_chosen_where_memory_tells_and_zero_where_it_cannot():
    rng = np.random.default_rng(0)
    strata = np.repeat(np.arange(60), 12)
    y = rng.integers(0, 2, len(strata))
    scores = rng.normal(size=len(y)) + 0.3 * y  # a weak model
    told = np.column_stack([np.where(rng.random(len(y)) < 0.5, 0.6 * (2 * y - 1), 0.0), rng.normal(0, 0.01, len(y))])
    best = choose_weights(strata, y, scores, z=None, sims=None, mem=told, prior_weights=PRIOR_WEIGHTS)
    assert best["memory"][0] > 0 and best["auc"] > best["auc_without"] + 0.05
    # evidence constant within each stratum cannot reorder it; no memory at all: both stay 0
    flat = np.repeat(rng.normal(size=(60, 2)), 12, axis=0)
    assert choose_weights(strata, y, scores, z=None, sims=None, mem=flat, prior_weights=PRIOR_WEIGHTS)["memory"] == [0.0, 0.0]
    assert choose_weights(strata, y, scores, z=None, sims=None, prior_weights=PRIOR_WEIGHTS)["memory"] == [0.0, 0.0]


@pytest.fixture(scope="module")
def splits():
    """Each listener has a lasting opinion of each track (a hash of the pair), nothing else: the
    same pair is liked or disliked at every play; listeners replay a small catalogue."""
    events = user_feedback(n_users=50, n_tracks=30, days=90, seed=5, min_events=30, max_events=50,
                           feedback=lambda rng, u, k: (u * 7 + k * 3) % 5 < 2, artists=6)
    return build_splits(events, None, SplitConfig(test_days=14, val_days=14))


def _train(splits, cfg, out_dir, scheme="id", table=None):
    return train_recommender(scheme=IdScheme.parse(scheme), hidden=16, splits=splits, id_table=table,
                             id_table_hash=None, cfg=cfg, out_dir=out_dir, log=QUIET)


def test_training_never_sees_the_memory_and_the_model_adds_exactly_what_it_stores(splits, tmp_path):
    off = _train(splits, replace(CFG, listener_memory=False), tmp_path / "off")
    on = _train(splits, CFG, tmp_path / "on")
    s_off, s_on = off.model.state_dict(), on.model.state_dict()
    assert set(s_on) - set(s_off) == {"memory_artist", "memory_weight"}
    assert all(torch.equal(v, s_on[k]) for k, v in s_off.items() if k != "prior_weight")  # trained without the term
    assert torch.equal(s_on["memory_artist"], torch.as_tensor(splits.track_artist))  # the data's artists
    r = on.prior["memory"]
    assert r[0] > 0 and on.prior["val_auc"] > on.prior["val_auc_without"] + 0.05  # the opinion repeats: used
    # the test scores: the model's own score with the prior + r_t · m_track + r_a · m_artist, by hand
    on.model.set_memory(weights=(0.0, 0.0))
    base = score_eval_set(on.model, splits.test)
    on.model.set_memory(weights=r)
    sc = score_eval_set(on.model, splits.test)
    expect = []
    for row, t in zip(splits.test.events["row"], sc["track_idx"]):
        x, fb = (np.asarray(q) for q in splits.test.inputs[row])  # the whole input, not only max_len
        a = splits.track_artist
        mt = (2 * fb[x == t].sum() - (x == t).sum()) / ((x == t).sum() + 1)
        ma = (2 * fb[a[x] == a[t]].sum() - (a[x] == a[t]).sum()) / ((a[x] == a[t]).sum() + 1)
        expect.append(r[0] * mt + r[1] * ma)
    np.testing.assert_allclose(sc["score"], base["score"] + np.array(expect), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(without_prior(on.model, sc)["score"], without_prior(on.model, base)["score"],
                               rtol=1e-5, atol=1e-5)  # the model's own score: the memory is a term, taken out
    assert "memory_track" in sc and "memory_track" not in base  # computed only in use (or asked for)
    # saved as it scores: the model the evaluation loads from model.pt gives the same scores
    loaded = reloaded(on, splits)
    assert loaded.has_memory and not reloaded(off, splits).has_memory
    np.testing.assert_allclose(score_eval_set(loaded, splits.test)["score"], sc["score"], rtol=1e-5, atol=1e-5)
    assert train_identity(CFG)["listener_memory"] is True
    assert "listener_memory" not in train_identity(replace(CFG, listener_memory=False))


def test_random_codes_read_no_artist_unless_decomposed(splits, tmp_path):
    table = random_id_table(splits.vocab.track_ids, k=8, levels=2, seed=0)
    v0 = _train(splits, replace(CFG, epochs=1), tmp_path / "v0", scheme="v0-k8", table=table)
    assert v0.model.has_memory and not v0.model.memory_artist.any() and v0.prior["memory"][1] == 0.0
    assert v0.prior["memory_values"] == 0
    ag = _train(splits, replace(CFG, epochs=1), tmp_path / "v0ag", scheme="v0-k8+ag", table=table)
    assert torch.equal(ag.model.memory_artist, torch.as_tensor(splits.track_artist))


def test_stored_numbers_count_the_artist_map_only_where_it_is_used():
    rec = {"params_total": 1000, "prior": {"weight": 0.0, "values": 50, "memory": [2.0, 0.0], "memory_values": 51}}
    assert stored_numbers(rec) == 1000  # the track part stores nothing
    assert stored_numbers({**rec, "prior": {**rec["prior"], "memory": [0.0, 1.0]}}) == 1051


def test_pair_opinion_is_a_lasting_per_pair_draw_and_off_by_default(tmp_path):
    u, t = np.arange(20000) % 200, np.arange(20000) // 200
    e = pair_opinion(0, u, t)
    assert abs(e.mean()) < 0.05 and abs(e.std() - 1) < 0.05  # standard normal
    np.testing.assert_array_equal(e, pair_opinion(0, u, t))  # the same pair, the same opinion
    assert np.corrcoef(e, pair_opinion(1, u, t))[0, 1] < 0.05  # another world seed, other opinions
    assert preset("tiny").pair_opinion_weight == 0.0
    # on: replays of one (listener, track) agree more often than off
    def agreement(weight):
        m = write_world(replace(preset("tiny"), name=f"tiny-op{weight:g}", pair_opinion_weight=weight),
                        tmp_path / f"w{weight:g}", formats=("users",))
        ev = pd.read_parquet(m.users_events)
        g = ev.groupby(["user_id", "track_id"])["feedback"]
        same = g.transform(lambda f: f.nunique() == 1)[g.transform("size") > 1]
        return same.mean()
    assert agreement(3.0) > agreement(0.0) + 0.1
