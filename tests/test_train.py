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
from semid_pipeline.train import load_recommender, make_windows, train_recommender

QUIET = lambda _msg: None  # noqa: E731
CFG = TrainConfig(layers=1, heads=2, dropout=0.1, max_len=16, batch_size=32, lr=3e-3, epochs=3, patience=5,
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
    cfg = TrainConfig(layers=1, heads=2, dropout=0.0, max_len=16, batch_size=10, lr=1e-2, weight_decay=0.0,
                      epochs=60, patience=1000, sampled_negatives=1, seed=0)
    res = train_recommender(scheme=IdScheme.parse("id"), hidden=32, splits=sp, id_table=None, id_table_hash=None,
                            cfg=cfg, out_dir=tmp_path, log=QUIET)
    assert res.history[-1]["loss"] < 0.1 < res.history[0]["loss"]
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
    sa, sb, sc = _state(a.checkpoint), _state(b.checkpoint), _state(c.checkpoint)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
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
                            cfg=replace(CFG, epochs=1), out_dir=tmp_path, log=QUIET)
    scored = score_eval_set(res.model, splits.test, max_len=CFG.max_len, batch_size=7)
    assert list(scored.columns) == ["stratum_id", "track_id", "track_idx", "feedback", "score", "history_len",
                                    "is_cold"]
    assert len(scored) == len(splits.test.events)
    assert (scored["history_len"].to_numpy() == splits.test.history_len[splits.test.events["row"]]).all()
    assert scored["history_len"].min() >= 1 and scored["history_len"].max() > CFG.max_len  # not truncated
    assert (scored["is_cold"] == (splits.train_track_counts[scored["track_idx"]] == 0)).all()
    hid = final_hidden(res.model, splits.test, max_len=CFG.max_len, batch_size=5)  # (S, h)
    assert hid.shape == (len(splits.test), 16)
    with torch.no_grad():
        emb = res.model.encoder.all_embeddings()
    rows = np.array(splits.test.events["row"])
    manual = (hid[rows] * emb[np.array(scored["track_idx"])]).sum(-1).numpy()
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
