"""[train] content_init: track tables that start at the content's principal components, and the
``horizon`` objective (the hidden state scores the next H events of its window)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import random_id_table, user_feedback
from semid_pipeline.artifacts import run_fingerprint
from semid_pipeline.config import SplitConfig, TrainConfig, train_identity
from semid_pipeline.content_init import content_hash, content_targets, fit_fields_to
from semid_pipeline.model import SASRec, TrackEncoder
from semid_pipeline.objective import NegativeSampler, next_event_loss
from semid_pipeline.schemes import GridCell, IdScheme
from semid_pipeline.splits import build_splits
from semid_pipeline.train import model_from_splits, train_recommender

CFG = TrainConfig(layers=1, heads=2, dropout=0.1, max_len=16, batch_size=32, lr=3e-3, epochs=2, patience=5,
                  sampled_negatives=2, content_init=True)


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum() / (a.norm() * b.norm()))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def splits():
    events = user_feedback(n_users=40, n_tracks=60, days=90, seed=3, min_events=25, max_events=45,
                           feedback=lambda rng, u, k: k % 2 == u % 2, artists=6)
    return build_splits(events, None, SplitConfig(test_days=14, val_days=14))


@pytest.fixture(scope="module")
def content(splits):
    """Hand-built content: 6 dims, two of them large; one track without content (NaN row)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(splits.vocab.n_tokens, 6)).astype(np.float32) * np.array([5, 3, 1, 1, 0.5, 0.5], np.float32)
    X[0] = np.nan  # padding
    X[7] = np.nan  # a track without content
    return X


def test_content_targets_are_principal_components_in_variance_order(content):
    Z = content_targets(content, hidden=8).numpy()
    assert Z.shape == (len(content), 8)
    assert not Z[0].any() and not Z[7].any(), "padding and tracks without content get no target"
    assert not Z[:, 6:].any(), "only min(h, D) = 6 components"
    var = Z[1:].var(0)[:6]
    assert np.all(np.diff(var) <= 1e-6), f"components not in decreasing variance: {var}"
    assert np.array_equal(Z, content_targets(content, hidden=8).numpy()), "deterministic"
    # the scores are the centred content in a rotated basis: pairwise distances are kept (6 of 6 dims)
    has = np.isfinite(content).all(1)
    X = content[has].astype(np.float64)
    d_x = np.linalg.norm(X[:, None] - X[None], axis=-1)
    d_z = np.linalg.norm(Z[has][:, None, :6] - Z[has][None, :, :6], axis=-1)
    assert np.allclose(d_x, d_z, rtol=1e-4, atol=1e-3)


def test_fit_reproduces_an_additive_target_through_shared_codewords():
    """target(i) = A[c1(i)] + B[c2(i)]: backfitting over the two code fields recovers it."""
    rng = np.random.default_rng(1)
    n, k, h = 400, 10, 8
    c1, c2 = rng.integers(1, k + 1, n), rng.integers(1, k + 1, n)
    A, B = rng.normal(size=(k + 1, h)), rng.normal(size=(k + 1, h))
    target = np.zeros((n + 1, h), np.float32)
    target[1:] = A[c1] + B[c2]
    pad = lambda c: np.concatenate([[0], c])  # noqa: E731
    enc = TrackEncoder(fields={"c1": (pad(c1), k), "c2": (pad(c2), k), "tie": (pad(np.ones(n, int)), 1)}, hidden=h)
    tie_before = enc.table[1 + 2 * k:].detach().clone()
    out = fit_fields_to(enc, torch.from_numpy(target), fields=["c1", "c2"], std=0.5, ridge=0.01, sweeps=20)
    vec = enc.all_embeddings().detach()
    assert out["tracks"] == n and out["cosine"] > 0.999
    assert _cos(vec[1:] - enc.table[1 + 2 * k].detach(), torch.from_numpy(target[1:])) > 0.99
    assert torch.equal(enc.table[1 + 2 * k:].detach(), tie_before), "fields not named keep their random init"
    assert torch.equal(enc.table[0].detach(), torch.zeros(h)), "the pad row stays zero"
    fitted = (vec[1:] - enc.table[1 + 2 * k].detach())
    assert abs(float(fitted.pow(2).mean().sqrt()) - 0.5) < 1e-3, "fitted vectors have the asked RMS"
    # codes unrelated to the target can reproduce only part of it
    enc2 = TrackEncoder(fields={"c1": (pad(rng.integers(1, k + 1, n)), k)}, hidden=h)
    assert fit_fields_to(enc2, torch.from_numpy(target), fields=["c1"], std=0.5)["cosine"] < 0.7


def test_id_tables_start_at_the_content_and_v0_stays_random(splits, content):
    """id: each track's row points along its content PCs; v0 (the random control): identical to
    the run without content_init; a scheme that needs content and gets none is an error."""
    torch.manual_seed(0)
    ident = model_from_splits(scheme=IdScheme.parse("id"), hidden=16, splits=splits, id_table=None, cfg=CFG,
                              content=content)
    Z = content_targets(content, hidden=16)
    vec = ident.encoder.all_embeddings().detach()
    has = torch.from_numpy(np.isfinite(content).all(1))
    assert _cos(vec[has, :6], Z[has, :6]) > 0.999, "the 6 content dimensions carry the PCs"
    assert abs(float(vec[has, :6].pow(2).mean().sqrt()) - CFG.content_init_std) < 1e-4
    rest = float(vec[has, 6:].pow(2).mean().sqrt())
    assert 0.005 < rest < 0.05, f"the h − D columns the content does not span keep the random init ({rest})"
    assert float(vec[7].abs().max()) < 0.2, "a track without content keeps its small random row"

    table = random_id_table(splits.vocab.track_ids, k=8, seed=0)
    states = []
    for cfg in (CFG, replace(CFG, content_init=False)):
        torch.manual_seed(0)
        m = model_from_splits(scheme=IdScheme.parse("v0-k8"), hidden=16, splits=splits, id_table=table, cfg=cfg,
                              content=content)
        states.append(m.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])

    torch.manual_seed(0)
    v1 = model_from_splits(scheme=IdScheme.parse("v1-k8"), hidden=16, splits=splits, id_table=table, cfg=CFG,
                           content=content)
    assert _cos(v1.encoder.all_embeddings().detach()[has, :6], Z[has, :6]) > 0.3, "summed codewords point along the content"
    with pytest.raises(ValueError, match="content_init"):
        model_from_splits(scheme=IdScheme.parse("id"), hidden=16, splits=splits, id_table=None, cfg=CFG)


def test_content_init_is_part_of_the_run_identity(splits, content, tmp_path):
    off = replace(CFG, content_init=False)
    assert "content_init" not in train_identity(off), "off: runs keep the identity they had before the switch"
    assert train_identity(CFG)["content_init"] is True
    cell, split = GridCell.of("id", 16), SplitConfig()
    other = content.copy()
    other[3, 0] += 1.0
    fps = {run_fingerprint(dataset_fingerprint="d", id_table_hash="t", cell=cell, train=CFG, split=split,
                           content_hash=content_hash(c)) for c in (content, other, None)}
    assert len(fps) == 3, "other content → another model folder"
    res = train_recommender(scheme=IdScheme.parse("id"), hidden=16, splits=splits, id_table=None,
                            id_table_hash=None, cfg=CFG, out_dir=tmp_path / "m", log=lambda m: None, content=content)
    assert res.config["content_hash"] == content_hash(content)
    again = train_recommender(scheme=IdScheme.parse("id"), hidden=16, splits=splits, id_table=None,
                              id_table_hash=None, cfg=CFG, out_dir=tmp_path / "m2", log=lambda m: None, content=content)
    assert res.best_val_auc == again.best_val_auc, "same inputs and seed → same result"


def test_horizon_loss_matches_a_brute_force_sum_over_future_events():
    torch.manual_seed(0)
    n, h, T = 30, 8, 6
    enc = TrackEncoder(fields={"track": (np.arange(n + 1), n)}, hidden=h, with_bias=True)
    with torch.no_grad():
        enc.bias.normal_()
    model = SASRec(encoder=enc, hidden=h, layers=1, heads=2, max_len=T, dropout=0.0).eval()
    tracks = torch.tensor([[0, 0, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 9]])  # (B, T+1), left-padded
    fb = torch.tensor([[0, 0, 1, 0, 1, 1, 0], [1, 0, 0, 1, 1, 0, 1]])
    with torch.no_grad():
        _check_horizon_losses(model, enc, tracks, fb, T)


def _check_horizon_losses(model, enc, tracks, fb, T):
    for H in (1, 2, 3, 10):
        loss, n_ev = next_event_loss(model, tracks, fb, None, horizon=H)
        hid = model(tracks[:, :-1], fb[:, :-1])  # (B, T, h)
        total, count = 0.0, 0
        for b in range(2):
            for t in range(T):
                if tracks[b, t] == 0 or tracks[b, t + 1] == 0:
                    continue
                terms = []
                for j in range(t + 1, min(t + H, T) + 1):  # events t+1 .. t+H of the window
                    logit = (hid[b, t] * enc(tracks[b, j:j + 1])[0]).sum() + enc.track_bias(tracks[b, j:j + 1])[0]
                    terms.append(F.binary_cross_entropy_with_logits(logit, fb[b, j].float()))
                total += float(torch.stack(terms).mean())
                count += 1
        assert n_ev == count
        assert abs(float(loss) - total / count) < 1e-5, H
    one, _ = next_event_loss(model, tracks, fb, None, horizon=1)
    three, _ = next_event_loss(model, tracks, fb, None, horizon=3)
    assert abs(float(one) - float(three)) > 1e-4, "a longer horizon changes the objective"


def test_popularity_negatives_follow_plays_and_are_logq_corrected(splits):
    """negative_popularity = a: draws ∝ (plays + 1)^a; a = 0 draws exactly what the uniform sampler
    always drew; the logQ term is subtracted from each sampled negative's logit."""
    cfg = replace(CFG, negative_popularity=0.0)
    uni = NegativeSampler.of(cfg, splits)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    n = splits.vocab.n_tracks
    assert torch.equal(uni.draw((4, 7, 3), g1), torch.randint(1, n + 1, (4, 7, 3), generator=g2))
    assert uni.logq is None

    pop = NegativeSampler.of(replace(CFG, negative_popularity=1.0), splits)
    draws = pop.draw((200_000,), torch.Generator().manual_seed(0))
    assert int(draws.min()) >= 1 and int(draws.max()) <= n
    freq = torch.bincount(draws, minlength=n + 1)[1:].double() / len(draws)
    w = torch.as_tensor(splits.train_track_counts[1:n + 1], dtype=torch.float64) + 1
    assert torch.allclose(freq, w / w.sum(), atol=0.004), "draw frequencies follow plays + 1"
    assert torch.allclose(pop.logq[1:].double(), torch.log(w / w.sum() * n), atol=1e-5)
    assert float(pop.logq[0]) == 0.0

    torch.manual_seed(0)
    enc = TrackEncoder(fields={"track": (np.arange(n + 1), n)}, hidden=8, with_bias=True)
    model = SASRec(encoder=enc, hidden=8, layers=1, heads=2, max_len=4, dropout=0.0).eval()
    tracks, fb = torch.tensor([[1, 2, 3, 4, 5]]), torch.tensor([[1, 0, 1, 1, 0]])
    negs = torch.tensor([[[6], [7], [8], [9]]])
    with torch.no_grad():
        base, _ = next_event_loss(model, tracks, fb, negs)
        zero, _ = next_event_loss(model, tracks, fb, negs, neg_logq=torch.zeros(n + 1))
        shifted, _ = next_event_loss(model, tracks, fb, negs, neg_logq=pop.logq)
        hid = model(tracks[:, :-1], fb[:, :-1])
        main = F.binary_cross_entropy_with_logits(model.score(hid[0], tracks[0, 1:, None])[:, 0], fb[0, 1:].float())
        neg_logit = model.score(hid, negs)[0, :, 0] - pop.logq[negs[0, :, 0]]
        manual = main + F.binary_cross_entropy_with_logits(neg_logit, torch.zeros(4))
    assert torch.equal(base, zero)
    assert abs(float(shifted) - float(manual)) < 1e-5


def test_content_anchor_pulls_the_tables_back_to_their_content_start(splits, content, tmp_path):
    """[train] content_anchor (L2-SP): at lr · anchor = 1 every step resets the track table to its
    content-initialised start; a weaker anchor keeps it between the free run and the start; v0
    (no content) ignores it; 0 leaves the run identity as it was."""
    ident = IdScheme.parse("id")

    def train(cfg, scheme=ident, table=None, name="m"):
        torch.manual_seed(0)
        start = model_from_splits(scheme=scheme, hidden=16, splits=splits, id_table=table, cfg=cfg,
                                  content=content).encoder.table.detach().clone()
        res = train_recommender(scheme=scheme, hidden=16, splits=splits, id_table=table, id_table_hash=None,
                                cfg=cfg, out_dir=tmp_path / name, log=lambda m: None, content=content)
        return start, res.model.encoder.table.detach()

    start, free = train(CFG, name="free")
    _, reset = train(replace(CFG, content_anchor=1 / CFG.lr), name="reset")
    _, held = train(replace(CFG, content_anchor=30.0), name="held")
    assert torch.allclose(reset, start, atol=1e-6), "a full pull every step ends where the table started"
    d_free, d_held = (float((t - start).norm()) for t in (free, held))
    assert 0 < d_held < d_free, f"the anchored table moved less from its start ({d_held:.3f} vs {d_free:.3f})"

    table = random_id_table(splits.vocab.track_ids, k=8, seed=0)
    v0 = IdScheme.parse("v0-k8")
    _, a = train(CFG, scheme=v0, table=table, name="v0")
    _, b = train(replace(CFG, content_anchor=30.0), scheme=v0, table=table, name="v0a")
    assert torch.equal(a, b), "the random control has no content start to return to"
    assert "content_anchor" not in train_identity(CFG)
    assert train_identity(replace(CFG, content_anchor=30.0))["content_anchor"] == 30.0
