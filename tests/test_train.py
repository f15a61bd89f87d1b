"""Training: loss, determinism, resume after a crash, ID-table pinning, scoring and stratified AUC."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import random_id_table, user_feedback
from semid_pipeline.config import SplitConfig, TrainConfig
from semid_pipeline.errors import IdTableMismatchError
from semid_pipeline.splits import EvalSet, Splits, TrackVocab, build_splits
from semid_pipeline.evaluation import stratified_auc
from semid_pipeline.schemes import IdScheme
from semid_pipeline.scoring import final_hidden, score_eval_set
from semid_pipeline.checkpoints import load_recommender
from semid_pipeline.train import train_recommender
from semid_pipeline.windows import make_windows

QUIET = lambda _msg: None  # noqa: E731
CFG = TrainConfig(content_init=False, content_affinity=False, final_fit_epochs=0, layers=1, heads=2, dropout=0.1, max_len=16, batch_size=32, lr=3e-3, epochs=3, patience=5,
                  sampled_negatives=2, seed=0)


def world(n_users=40, n_tracks=60, seed=0) -> pd.DataFrame:
    """Users who like even or odd tracks: learnable from the feedback history."""
    return user_feedback(n_users=n_users, n_tracks=n_tracks, days=90, seed=seed, min_events=25, max_events=45,
                         feedback=lambda rng, u, k: k % 2 == u % 2, artists=6)


def semantic_table(vocab: TrackVocab, k=8, seed=0) -> pd.DataFrame:
    return random_id_table(vocab.track_ids, k, levels=2, seed=seed)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def splits() -> Splits:
    return build_splits(world(), None, SplitConfig(test_days=14, val_days=14))


# ------------------------------------------------------------------------------------------------


def test_stratified_auc_matches_brute_force():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 30, 600)
    y = rng.integers(0, 2, 600)
    x = rng.integers(0, 5, 600).astype(float)  # many ties
    aucs = []
    for k in np.unique(s):
        m = s == k
        pos, neg = x[m & (y == 1)], x[m & (y == 0)]
        if len(pos) and len(neg):
            d = pos[:, None] - neg[None, :]
            aucs.append(((d > 0) + 0.5 * (d == 0)).mean())
    auc, per = stratified_auc(s, y, x)
    assert auc == pytest.approx(np.mean(aucs), abs=1e-12)
    assert len(per) == len(aucs)
    assert stratified_auc([1, 1, 2], [1, 0, 1], [0.9, 0.1, 0.5])[0] == 1.0  # stratum 2 (no negative) ignored
    assert np.isnan(stratified_auc([], [], [])[0])


def test_windows_cover_every_transition_once():
    seqs = [(np.arange(1, 41), np.ones(40, dtype=np.int64)), (np.array([5]), np.array([1])), (np.array([3, 4]), np.array([0, 1]))]
    tracks, fb, lengths = make_windows(seqs, max_len=16)
    assert tracks.shape[1] == 17
    pairs = set()
    for row in tracks.tolist():
        real = [t for t in row if t > 0]
        pairs |= {(a, b) for a, b in zip(real, real[1:])}
        assert row[: 17 - len(real)] == [0] * (17 - len(real))  # left-padded
    assert pairs == {(i, i + 1) for i in range(1, 40)} | {(3, 4)}
    assert int((lengths - 1).sum()) == 39 + 1  # 39 + 1 transitions, none twice


def test_tiny_model_overfits_ten_sequences(tmp_path):
    rng = np.random.default_rng(0)
    vocab = TrackVocab.from_ids([f"t{i:03d}" for i in range(200)])
    seqs = [(rng.integers(1, 201, 12), rng.integers(0, 2, 12)) for _ in range(10)]
    sp = Splits(kind="session", vocab=vocab, train=seqs, val=EvalSet.empty(), test=EvalSet.empty(),
                train_track_counts=np.bincount(np.concatenate([t for t, _ in seqs]), minlength=201))
    cfg = TrainConfig(content_init=False, content_affinity=False, layers=1, heads=2, dropout=0.0, max_len=16, batch_size=10, lr=1e-2, weight_decay=0.0,
                      epochs=60, patience=1000, sampled_negatives=1, seed=0)
    res = train_recommender(scheme=IdScheme.parse("id"), hidden=32, splits=sp, id_table=None, id_table_hash=None,
                            cfg=cfg, out_dir=tmp_path, log=QUIET)
    # loss = observed-event BCE + sampled-negative BCE (two terms, each ~0 when memorised)
    assert res.history[-1]["loss"] < 0.2 < res.history[0]["loss"]
    # AUC on the training sequences themselves: every next event, stratified per sequence
    tracks, fb, _ = make_windows(seqs, cfg.max_len)
    with torch.no_grad():
        h = res.model(tracks[:, :-1], fb[:, :-1])  # (10, T, h)
        s = res.model.score(h, tracks[:, 1:, None])[..., 0]  # (10, T)
    mask = (tracks[:, :-1] > 0) & (tracks[:, 1:] > 0)
    strata = torch.arange(10)[:, None].expand_as(mask)
    assert stratified_auc(strata[mask].numpy(), fb[:, 1:][mask].numpy(), s[mask].numpy())[0] == pytest.approx(1.0)


def _comparable(history):
    return [{k: r[k] for k in ("epoch", "loss", "val_auc", "events")} for r in history]


def _state(path):
    return torch.load(path, weights_only=True)


def test_training_is_deterministic_and_learns(splits, tmp_path):
    kw = dict(scheme=IdScheme.parse("id"), hidden=16, splits=splits, id_table=None, id_table_hash=None, log=QUIET)
    a = train_recommender(cfg=CFG, out_dir=tmp_path / "a", **kw)
    b = train_recommender(cfg=CFG, out_dir=tmp_path / "b", **kw)
    c = train_recommender(cfg=replace(CFG, seed=1), out_dir=tmp_path / "c", **kw)
    # [train] deterministic = false lets CUDA use its faster kernels; CPU kernels are deterministic anyway
    d = train_recommender(cfg=replace(CFG, deterministic=False), out_dir=tmp_path / "d", **kw)
    sa, sb, sc, sd = _state(a.checkpoint), _state(b.checkpoint), _state(c.checkpoint), _state(d.checkpoint)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert all(torch.equal(sa[k], sd[k]) for k in sa)
    assert _comparable(a.history) == _comparable(b.history)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert len(a.history) == 3
    assert a.best_val_auc == max(r["val_auc"] for r in a.history)
    assert a.best_epoch == next(r["epoch"] for r in a.history if r["val_auc"] == a.best_val_auc)  # first best
    assert a.history[-1]["loss"] < a.history[0]["loss"]
    events = sum(r["events"] for r in a.history)
    assert events == 3 * sum(len(t) - 1 for t, _ in splits.train if len(t) > 1)  # every transition, each epoch
    assert a.events_per_s == pytest.approx(events / sum(r["train_seconds"] for r in a.history))
    assert a.wall_seconds == pytest.approx(sum(r["seconds"] for r in a.history))
    cfg_json = json.loads((tmp_path / "a" / "config.json").read_text())
    assert cfg_json["scheme"] == "id" and cfg_json["hidden"] == 16
    assert cfg_json["train"]["max_len"] == CFG.max_len and cfg_json["vocab_size"] == splits.vocab.n_tracks
    assert "id_table_hash" in cfg_json
    assert "deterministic" not in cfg_json["train"]  # how kernels run, not what is trained: the same run folder
    assert json.loads((tmp_path / "d" / "config.json").read_text()) == cfg_json
    json.dumps(a.to_dict())  # JSON-able (no model inside)


def test_resume_after_kill_matches_uninterrupted_run(splits, tmp_path):
    tbl = semantic_table(splits.vocab)
    kw = dict(scheme=IdScheme.parse("v1-k8"), hidden=16, splits=splits, id_table=tbl, id_table_hash="abc",
              cfg=replace(CFG, song_decomposition=True), log=QUIET)
    full = train_recommender(out_dir=tmp_path / "full", **kw)

    class Killed(Exception):
        pass

    def kill_after_first(record):
        if record["epoch"] == 1:
            raise Killed

    with pytest.raises(Killed):
        train_recommender(out_dir=tmp_path / "cut", on_epoch_end=kill_after_first, **kw)
    assert (tmp_path / "cut" / "checkpoint.pt").exists()
    logs = []
    resumed = train_recommender(out_dir=tmp_path / "cut", log=logs.append,
                                **{k: v for k, v in kw.items() if k != "log"})
    assert resumed.resumed_from_epoch == 1 and any("resuming" in m for m in logs)
    assert _comparable(resumed.history) == _comparable(full.history)
    s_full, s_cut = _state(full.checkpoint), _state(resumed.checkpoint)
    assert all(torch.equal(s_full[k], s_cut[k]) for k in s_full)
    last_full = _state(tmp_path / "full" / "checkpoint.pt")["model"]
    last_cut = _state(tmp_path / "cut" / "checkpoint.pt")["model"]
    assert all(torch.equal(last_full[k], last_cut[k]) for k in last_full)
    # a finished run is not retrained
    again = train_recommender(out_dir=tmp_path / "cut", **kw)
    assert _comparable(again.history) == _comparable(full.history)
    assert {"artist", "genre", "c1", "c2", "tie"} == set(resumed.model.encoder.field_names)


def test_mismatched_id_table_is_refused(splits, tmp_path):
    tbl = semantic_table(splits.vocab)
    res = train_recommender(scheme=IdScheme.parse("v0-k8"), hidden=16, splits=splits, id_table=tbl, id_table_hash="hash-A",
                            cfg=replace(CFG, epochs=1), out_dir=tmp_path, log=QUIET)
    with pytest.raises(IdTableMismatchError) as e:
        load_recommender(tmp_path, splits_vocab=splits.vocab, id_table=tbl, id_table_hash="hash-B")
    assert "hash-A" in str(e.value) and "hash-B" in str(e.value)
    other = semantic_table(splits.vocab, seed=1)  # same claimed hash, different codes
    with pytest.raises(IdTableMismatchError):
        load_recommender(tmp_path, splits_vocab=splits.vocab, id_table=other, id_table_hash="hash-A")
    model = load_recommender(tmp_path, splits_vocab=splits.vocab, id_table=tbl, id_table_hash="hash-A")
    a = score_eval_set(model, splits.test, max_len=CFG.max_len)
    b = score_eval_set(res.model, splits.test, max_len=CFG.max_len)
    np.testing.assert_allclose(a["score"], b["score"], rtol=0, atol=1e-6)


def test_score_eval_set_columns_and_final_hidden(splits, tmp_path):
    res = train_recommender(scheme=IdScheme.parse("id"), hidden=16, splits=splits, id_table=None, id_table_hash=None,
                            cfg=replace(CFG, epochs=1, listener_memory=False), out_dir=tmp_path, log=QUIET)
    scored = score_eval_set(res.model, splits.test, max_len=CFG.max_len, batch_size=7)
    assert list(scored.columns) == ["stratum_id", "track_id", "track_idx", "feedback", "score", "history_len",
                                    "is_cold", "terms"]  # terms: w · z of the prior (on by default)
    # the memory's evidences are columns when asked for (tests/test_listener_memory.py: when in use)
    asked = score_eval_set(res.model, splits.test, max_len=CFG.max_len, term_columns=True)
    assert "memory_track" not in asked  # the switch is off: no memory
    assert len(scored) == len(splits.test.events)
    assert (scored["history_len"].to_numpy() == splits.test.history_len[splits.test.events["row"]]).all()
    assert scored["history_len"].min() >= 1 and scored["history_len"].max() > CFG.max_len  # not truncated
    assert (scored["is_cold"] == (splits.train_track_counts[scored["track_idx"]] == 0)).all()
    hid = final_hidden(res.model, splits.test, max_len=CFG.max_len, batch_size=5)  # (S, h)
    assert hid.shape == (len(splits.test), 16)
    with torch.no_grad():
        emb = res.model.encoder.all_embeddings()
        idx = torch.as_tensor(np.array(scored["track_idx"]))
        bias = res.model.encoder.track_bias(idx)
        assert res.model.has_prior  # the default: + w · z, the popularity prior
        prior = res.model.prior_weight * res.model.prior_logit[idx]
    rows = np.array(splits.test.events["row"])
    manual = ((hid[rows] * emb[np.array(scored["track_idx"])]).sum(-1) + bias + prior).numpy()  # <h, vec> + b + w·z
    np.testing.assert_allclose(scored["score"], manual, rtol=1e-5, atol=1e-5)
    # batch size (and so padding) does not change scores
    other = score_eval_set(res.model, splits.test, max_len=CFG.max_len, batch_size=1000)
    np.testing.assert_allclose(scored["score"], other["score"], rtol=0, atol=1e-5)


def test_capped_tie_table_trains_records_the_cap_and_reloads(splits, tmp_path):
    tbl = semantic_table(splits.vocab)
    tbl[["c1", "c2"]] = 0  # a collapsed tokenizer: one tuple, the tie counter runs to n - 1
    tbl["tie"] = np.arange(len(tbl))
    res = train_recommender(scheme=IdScheme.parse("v0-k8"), hidden=16, splits=splits, id_table=tbl, id_table_hash="h",
                            cfg=replace(CFG, epochs=1), out_dir=tmp_path, log=QUIET, max_tie_embeddings=4)
    assert res.model.encoder.field_sizes["tie"] == 4  # not len(tbl) rows
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["max_tie_embeddings"] == 4 and ["tie", 4] in config["fields"]
    model = load_recommender(tmp_path, splits_vocab=splits.vocab, id_table=tbl, id_table_hash="h")  # same capped codes
    assert torch.equal(model.encoder.field_codes()["tie"], res.model.encoder.field_codes()["tie"])


# ------------------------------------------------------------------------------------------------
# issue 10: objective, bias-only model, shuffle test, oracle AUC


def popularity_world(n_users=40, n_tracks=60, seed=1) -> pd.DataFrame:
    """Feedback depends on the track only: track k is liked with probability 0.85 (k < 30) or 0.15."""
    return user_feedback(n_users=n_users, n_tracks=n_tracks, days=90, seed=seed, min_events=25, max_events=45,
                         feedback=lambda rng, u, k: rng.random() < (0.85 if k < n_tracks // 2 else 0.15))


def _tiny_model(cfg, splits):
    from semid_pipeline.train import model_from_splits

    torch.manual_seed(0)
    return model_from_splits(scheme=IdScheme(family="id"), hidden=16, splits=splits, id_table=None, cfg=cfg)


def test_negative_weight_scales_only_the_sampled_negative_term(splits):
    from torch.nn.functional import binary_cross_entropy_with_logits as bce

    from semid_pipeline.objective import next_event_loss

    cfg = replace(CFG, item_bias=True, dropout=0.0)
    model = _tiny_model(cfg, splits).eval()
    tracks, fbs, _ = make_windows(splits.train[:8], 8)
    negs = torch.randint(1, splits.vocab.n_tracks + 1, (len(tracks), 8, 3), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        l0, n = next_event_loss(model, tracks, fbs, negs, negative_weight=0.0)
        l_none, _ = next_event_loss(model, tracks, fbs, None, negative_weight=1.0)
        l1, _ = next_event_loss(model, tracks, fbs, negs, negative_weight=1.0)
        l3, _ = next_event_loss(model, tracks, fbs, negs, negative_weight=3.0)
        # the main term by hand: BCE of each observed next event's feedback
        x, y = tracks[:, :-1], tracks[:, 1:]
        m = (x > 0) & (y > 0)
        h = model(x, fbs[:, :-1])
        logit = (h * model.encoder(y)).sum(-1) + model.encoder.track_bias(y)
        main = bce(logit[m], (fbs[:, 1:][m] > 0).float())
        # the negative term by hand: the mean over real next events of the mean BCE of their negatives
        negative = bce(model.score(h, negs)[m], torch.zeros(int(m.sum()), 3), reduction="none").mean(-1).mean()
        # negatives drawn at padded positions are never scored
        assert (~m).any()
        l1_other_pad, _ = next_event_loss(model, tracks, fbs, torch.where(m[..., None], negs, 1), negative_weight=1.0)
    assert n == int(m.sum()) > 0
    torch.testing.assert_close(l0, main)
    torch.testing.assert_close(l_none, l0)
    assert float(l1) > float(l0)
    torch.testing.assert_close(l1 - l0, negative, rtol=1e-5, atol=1e-6)
    assert torch.equal(l1_other_pad, l1)
    torch.testing.assert_close(l3 - l0, 3 * (l1 - l0), rtol=1e-4, atol=1e-6)


def test_bias_only_model_learns_planted_popularity_but_not_taste(tmp_path):
    pop = build_splits(popularity_world(), None, SplitConfig(test_days=14, val_days=14))
    taste = build_splits(world(), None, SplitConfig(test_days=14, val_days=14))
    cfg = replace(CFG, item_bias=True, use_sequence=False, negative_weight=0.0, epochs=25, lr=0.05, patience=25)
    r_pop = train_recommender(scheme=IdScheme(family="id"), hidden=16, splits=pop, id_table=None, id_table_hash=None,
                              cfg=cfg, out_dir=tmp_path / "pop", log=QUIET)
    r_taste = train_recommender(scheme=IdScheme(family="id"), hidden=16, splits=taste, id_table=None, id_table_hash=None,
                                cfg=cfg, out_dir=tmp_path / "taste", log=QUIET)
    assert r_pop.best_val_auc > 0.8  # popularity is all there is to learn here, and biases learn it
    assert r_taste.best_val_auc < 0.65  # per-user taste: no per-track score can rank it
    with torch.no_grad():
        bias = r_pop.model.encoder.track_bias(torch.arange(1, pop.vocab.n_tracks + 1))
    liked = torch.as_tensor([int(t[1:]) < 30 for t in pop.vocab.track_ids])
    assert float(bias[liked].mean()) > float(bias[~liked].mean()) + 1.0


def test_biases_survive_save_and_load(splits, tmp_path):
    cfg = replace(CFG, item_bias=True, epochs=1)
    res = train_recommender(scheme=IdScheme(family="id"), hidden=16, splits=splits, id_table=None, id_table_hash=None,
                            cfg=cfg, out_dir=tmp_path, log=QUIET)
    loaded = load_recommender(tmp_path, splits_vocab=splits.vocab, id_table=None, id_table_hash=None)
    assert loaded.encoder.has_bias and float(loaded.encoder.bias.detach().abs().sum()) > 0
    a = score_eval_set(res.model, splits.val)["score"].to_numpy()
    b = score_eval_set(loaded, splits.val)["score"].to_numpy()
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_shuffle_splits_permutes_within_strata_only(splits):
    from semid_pipeline.diagnostics import shuffle_splits

    sh = shuffle_splits(splits, seed=0)
    changed = 0
    for (t0, f0), (t1, f1) in zip(splits.train + splits.val.inputs, sh.train + sh.val.inputs):
        pairs0 = sorted(zip(t0.tolist(), f0.tolist()))
        assert pairs0 == sorted(zip(t1.tolist(), f1.tolist()))  # same (track, feedback) multiset
        changed += not np.array_equal(t0, t1)
    assert changed > len(splits.train) // 2
    pd.testing.assert_frame_equal(sh.test.events, splits.test.events)  # the evaluated pairs are untouched
    assert [len(t) for t, _ in sh.test.inputs] == [len(t) for t, _ in splits.test.inputs]


def test_oracle_auc_on_a_hand_built_frame():
    from semid_pipeline.diagnostics import oracle_auc
    from semid_pipeline.errors import InputDataError

    events = pd.DataFrame({"stratum_id": ["a", "a", "a", "b", "b"], "position": [1, 2, 3, 1, 2],
                           "feedback": [1, 0, 0, 0, 1]})
    oracle = pd.DataFrame({"stratum_id": ["a", "a", "a", "b", "b", "c"], "position": [1, 2, 3, 1, 2, 1],
                           "p_positive": [0.9, 0.95, 0.1, 0.2, 0.7, 0.5]})
    rec = oracle_auc(events, oracle, n_boot=50)
    # stratum a: positive 0.9 beats 0.1, loses to 0.95 → 0.5; stratum b: 0.7 > 0.2 → 1.0
    assert rec["auc"] == pytest.approx(0.75) and rec["n_strata"] == 2 and rec["n_matched"] == 5
    with pytest.raises(InputDataError, match="no p_positive"):
        oracle_auc(events, oracle[oracle["stratum_id"] != "b"])
    with pytest.raises(InputDataError, match="p_positive"):
        oracle_auc(events, oracle.assign(p_positive=[0.9, 1.5, 0.1, 0.2, 0.7, 0.5]))


def test_length_bucketed_batches_cover_every_window_once_with_little_padding():
    from semid_pipeline.windows import length_bucketed_batches

    rng = np.random.default_rng(0)
    lengths = torch.as_tensor(np.where(rng.random(5000) < 0.05, 401, rng.integers(2, 30, 5000)))
    batches = length_bucketed_batches(lengths, 64, torch.Generator().manual_seed(0))
    again = length_bucketed_batches(lengths, 64, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(batches, again))
    assert sorted(torch.cat(batches).tolist()) == list(range(5000))
    padded = sum(len(b) * int(lengths[b].max()) for b in batches)
    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(5000, generator=gen)
    random_padded = sum(len(perm[i: i + 64]) * int(lengths[perm[i: i + 64]].max()) for i in range(0, 5000, 64))
    assert padded < 0.3 * random_padded


def test_item_biases_get_their_own_learning_rate_and_no_decay(splits):
    from semid_pipeline.objective import make_optimizer

    cfg = replace(CFG, item_bias=True, lr=2e-3, bias_lr_scale=10.0, weight_decay=0.1)
    model = _tiny_model(cfg, splits)
    opt = make_optimizer(model, cfg)
    group = next(g for g in opt.param_groups if any(p is model.encoder.bias for p in g["params"]))
    assert group["lr"] == pytest.approx(2e-2) and group["weight_decay"] == 0.0 and len(group["params"]) == 1
    others = [g for g in opt.param_groups if g is not group]
    assert all(g["lr"] == pytest.approx(2e-3) for g in others)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def test_scheme_variants_switch_the_encoder(splits):
    """``+ag`` adds the artist (and genre) fields without the config switch; ``hybrid-k<k>`` adds a
    per-track row to the codewords of the v1 table it is given."""
    from semid_pipeline.train import model_from_splits

    plain = model_from_splits(scheme=IdScheme.parse("id"), hidden=16, splits=splits, id_table=None, cfg=CFG)
    ag = model_from_splits(scheme=IdScheme.parse("id+ag"), hidden=16, splits=splits, id_table=None, cfg=CFG)
    assert "artist" not in plain.encoder.field_names and "artist" in ag.encoder.field_names
    table = semantic_table(splits.vocab)
    v1 = model_from_splits(scheme=IdScheme.parse("v1-k8"), hidden=16, splits=splits, id_table=table, cfg=CFG)
    hyb = model_from_splits(scheme=IdScheme.parse("hybrid-k8"), hidden=16, splits=splits, id_table=table, cfg=CFG)
    assert "track" not in v1.encoder.field_names
    assert hyb.encoder.field_names == [*v1.encoder.field_names, "track"]


def test_a_model_saved_without_item_biases_still_loads(splits, tmp_path):
    """config.json of an older model has no item_bias key (the default is now on): the weights decide."""
    cfg = replace(CFG, item_bias=False, epochs=1)
    res = train_recommender(scheme=IdScheme(family="id"), hidden=16, splits=splits, id_table=None, id_table_hash=None,
                            cfg=cfg, out_dir=tmp_path, log=QUIET)
    conf = json.loads((tmp_path / "config.json").read_text())
    del conf["train"]["item_bias"]
    (tmp_path / "config.json").write_text(json.dumps(conf))
    loaded = load_recommender(tmp_path, splits_vocab=splits.vocab, id_table=None, id_table_hash=None)
    assert not loaded.encoder.has_bias
    np.testing.assert_allclose(score_eval_set(res.model, splits.val)["score"].to_numpy(),
                               score_eval_set(loaded, splits.val)["score"].to_numpy(), rtol=1e-5, atol=1e-6)


def test_final_fit_continues_from_the_best_weights_on_data_through_validation(splits, tmp_path):
    """[train] final_fit_epochs: model.pt ends as the best weights plus that many epochs over the
    data through the validation period; deterministic; a rerun (or a crash after the checkpoint
    recorded the fit) never fits twice; 0 leaves the run identity as it was."""
    from semid_pipeline.config import train_identity

    kw = dict(scheme=IdScheme.parse("id"), hidden=16, splits=splits, id_table=None, id_table_hash=None, log=QUIET)
    off = CFG
    assert off.final_fit_epochs == 0
    base = train_recommender(out_dir=tmp_path / "base", cfg=off, **kw)
    ff = replace(CFG, final_fit_epochs=1)
    fitted = train_recommender(out_dir=tmp_path / "ff", cfg=ff, **kw)
    assert fitted.best_epoch == base.best_epoch, "selection is the same run"
    assert _comparable(fitted.history) == _comparable(base.history)
    s_base, s_fit = _state(base.checkpoint), _state(fitted.checkpoint)
    assert not torch.equal(s_base["encoder.table"], s_fit["encoder.table"]), "the final fit trained on"
    assert fitted.wall_seconds > sum(r["seconds"] for r in fitted.history), "its time is in the wall time"
    # the validation period's tracks moved from the best weights
    moved = (s_fit["encoder.table"] - s_base["encoder.table"]).norm(dim=1)
    val_tracks = np.unique(splits.val.events["track_idx"].to_numpy())
    assert float(moved[val_tracks].mean()) > 0
    again = train_recommender(out_dir=tmp_path / "ff2", cfg=ff, **kw)
    assert all(torch.equal(v, _state(again.checkpoint)[k]) for k, v in s_fit.items()), "deterministic"
    # a rerun of the finished folder does not fit again, even when model.pt was lost after the checkpoint
    (tmp_path / "ff" / "model.pt").unlink()
    rerun = train_recommender(out_dir=tmp_path / "ff", cfg=ff, **kw)
    assert all(torch.equal(v, _state(rerun.checkpoint)[k]) for k, v in s_fit.items())
    # cut after the first epoch and resumed: the same final-fit weights as the uninterrupted run
    def cut(record):
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_recommender(out_dir=tmp_path / "cut", cfg=ff, on_epoch_end=cut, **kw)
    resumed = train_recommender(out_dir=tmp_path / "cut", cfg=ff, **kw)
    assert resumed.resumed_from_epoch == 1
    assert all(torch.equal(v, _state(resumed.checkpoint)[k]) for k, v in s_fit.items())
    assert "final_fit_epochs" not in train_identity(off) and train_identity(ff)["final_fit_epochs"] == 1


def test_attention_dropout_reaches_the_trained_and_the_reloaded_model(splits, tmp_path):
    """[train] attention_dropout: the trained model's attention drops with it, the rest with
    ``dropout``; config.json records it and a reload builds the same modules; None (= ``dropout``,
    the behaviour before the key) leaves the run identity as it was."""
    from semid_pipeline.config import train_identity

    assert "attention_dropout" not in train_identity(replace(CFG, attention_dropout=None))
    cfg = replace(CFG, attention_dropout=0.0, epochs=1)
    assert train_identity(cfg)["attention_dropout"] == 0.0
    res = train_recommender(scheme=IdScheme.parse("id"), hidden=16, splits=splits, id_table=None, id_table_hash=None,
                            cfg=cfg, out_dir=tmp_path / "m", log=QUIET)
    back = load_recommender(tmp_path / "m", splits_vocab=splits.vocab, id_table=None, id_table_hash=None)
    for model in (res.model, back):
        assert [b.attn.dropout for b in model.blocks] == [0.0] * CFG.layers
        assert all(b.attn.resid_drop.p == CFG.dropout == 0.1 for b in model.blocks)
    assert json.loads((tmp_path / "m" / "config.json").read_text())["train"]["attention_dropout"] == 0.0
