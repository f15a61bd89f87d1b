"""SASRec + TrackEncoder: causality, padding, parameter formula, decomposed scoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import random_id_table
from semid_pipeline.errors import ConfigError
from semid_pipeline.model import Dropout, SASRec, build_track_encoder, expected_parameter_count, semantic_field_sizes
from semid_pipeline.schemes import IdScheme

H, LAYERS, HEADS, MAX_LEN = 32, 2, 2, 12


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def id_table(n_tracks: int, k: int, levels: int = 4, seed: int = 0) -> pd.DataFrame:
    return random_id_table([f"t{i:05d}" for i in range(n_tracks)], k, levels, seed)


def make_model(scheme="id", *, n=50, k=8, decomposition=False, hidden=H, seed=0, dropout=0.0):
    torch.manual_seed(seed)
    tbl = id_table(n, k) if scheme != "id" else None
    artist = np.r_[0, np.arange(n) % 5 + 1]
    genre = np.r_[0, np.arange(n) % 3 + 1]
    enc = build_track_encoder(scheme=scheme, hidden=hidden, n_tracks=n,
                              track_ids=[f"t{i:05d}" for i in range(n)], id_table=tbl,
                              artist=artist, n_artists=5, genre=genre, n_genres=3,
                              song_decomposition=decomposition)
    return SASRec(encoder=enc, hidden=hidden, layers=LAYERS, heads=HEADS, max_len=MAX_LEN, dropout=dropout).eval()


@pytest.mark.parametrize("scheme", ["id", "v1-k8"])
def test_causal_future_tokens_never_change_earlier_outputs(scheme):
    model = make_model(scheme)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, 51, (3, MAX_LEN), generator=g)
    f = torch.randint(0, 2, (3, MAX_LEN), generator=g)
    x[1, :4] = 0  # left padding in one row (exercises the explicit mask path)
    with torch.no_grad():
        h = model(x, f)
        for t in range(MAX_LEN - 1):
            x2, f2 = x.clone(), f.clone()
            x2[:, t + 1:] = torch.randint(1, 51, x2[:, t + 1:].shape, generator=g)
            f2[:, t + 1:] = 1 - f2[:, t + 1:]
            x2[1, :4] = 0
            h2 = model(x2, f2)
            torch.testing.assert_close(h2[:, : t + 1], h[:, : t + 1], rtol=0, atol=1e-5)
            assert not torch.allclose(h2[:, t + 1:], h[:, t + 1:])


def test_left_padding_does_not_change_outputs():
    model = make_model()
    x = torch.randint(1, 51, (2, 7))
    f = torch.randint(0, 2, (2, 7))
    with torch.no_grad():
        h = model(x, f)  # no padding: is_causal fast path
        xp = torch.cat([torch.zeros(2, 5, dtype=torch.long), x], dim=1)
        fp = torch.cat([torch.zeros(2, 5, dtype=torch.long), f], dim=1)
        hp = model(xp, fp)
    assert torch.isfinite(hp).all()
    torch.testing.assert_close(hp[:, 5:], h, rtol=0, atol=1e-5)


@pytest.mark.parametrize("scheme", ["id", "v1-k8"])
def test_last_only_is_the_last_position_of_the_full_forward(scheme):
    """Scoring reads the state after the last token alone; the shortcut (the last block computes one
    query) gives that state, with and without left padding, and stays causal-safe at the last row."""
    model = make_model(scheme, dropout=0.2)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(1, 51, (4, MAX_LEN), generator=g)
    f = torch.randint(0, 2, (4, MAX_LEN), generator=g)
    with torch.no_grad():
        for padded in (False, True):
            if padded:
                x[1, :5], x[3, :MAX_LEN - 1] = 0, 0  # the explicit-mask path; a row with one real token
            full = model(x, f)
            last = model(x, f, last_only=True)
            assert last.shape == (4, 1, H)
            torch.testing.assert_close(last[:, 0], full[:, -1], rtol=0, atol=1e-5)
    assert not torch.allclose(last[0, 0], last[2, 0])  # rows differ: not one row broadcast


@pytest.mark.parametrize("scheme,decomposition", [("id", False), ("id", True), ("v1-k8", False),
                                                          ("v0-k16", True), ("rqkmeans-k8", False)])
def test_parameter_counts_match_formula(scheme, decomposition):
    n = 50
    model = make_model(scheme, n=n, k=IdScheme.parse(scheme).k or 8,
                       decomposition=decomposition)
    enc = model.encoder
    if scheme == "id":
        sizes = {"track": n}
    else:
        k = IdScheme.parse(scheme).k
        max_tie = int(id_table(n, k)["tie"].max())
        sizes = {f"c{i}": k for i in range(1, 5)} | {"tie": max_tie + 1}
    if decomposition:
        sizes |= {"artist": 5, "genre": 3}
    assert enc.field_sizes == sizes
    expect = expected_parameter_count(field_sizes=sizes, hidden=H, layers=LAYERS, max_len=MAX_LEN)
    assert model.parameter_counts() == expect
    assert expect["total"] == sum(p.numel() for p in model.parameters())


def test_semantic_ids_need_far_fewer_parameters_than_id():
    n, k, h = 5000, 64, 64
    ids = make_model("id", n=n, hidden=h).parameter_counts()
    sem = make_model("v1-k64", n=n, k=k, hidden=h).parameter_counts()
    assert sem["other"] == ids["other"]
    assert sem["track_representation"] < 0.10 * ids["track_representation"]
    assert sem["total"] < ids["total"]


@pytest.mark.parametrize("scheme,decomposition", [("id", True), ("v1-k8", True)])
def test_field_tables_reconstruct_all_embeddings(scheme, decomposition):
    model = make_model(scheme, decomposition=decomposition)
    enc = model.encoder
    with torch.no_grad():
        full = enc.all_embeddings()  # (N+1, h)
        tables, codes = enc.field_tables(), enc.field_codes()
        summed = sum(tables[f][codes[f]] for f in enc.field_names)
    assert full.shape == (51, H)
    assert torch.all(full[0] == 0)
    torch.testing.assert_close(summed, full, rtol=0, atol=1e-6)
    assert set(tables) == set(codes) == set(enc.field_names)
    for f in enc.field_names:
        assert tables[f].shape == (enc.field_sizes[f] + 1, H) and codes[f].shape == (51,)


def test_score_is_dot_product_with_shared_encoder():
    model = make_model("v1-k8")
    x = torch.randint(1, 51, (4, 6))
    f = torch.randint(0, 2, (4, 6))
    with torch.no_grad():
        h = model(x, f)  # (B, T, h)
        cand = torch.randint(1, 51, (4, 6, 3))
        s3 = model.score(h, cand)  # (B, T, C)
        s2 = model.score(h[:, -1], cand[:, -1])  # (B, C)
        table = model.encoder.all_embeddings()
    assert s3.shape == (4, 6, 3) and s2.shape == (4, 3)
    torch.testing.assert_close(s3, torch.einsum("bth,btch->btc", h, table[cand]))
    torch.testing.assert_close(s2, s3[:, -1])


def test_same_seed_same_weights():
    a, b, c = make_model("v1-k8", seed=3), make_model("v1-k8", seed=3), make_model("v1-k8", seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_dropout_has_nn_dropouts_distribution_and_gradient():
    """``model.Dropout`` (its CPU mask from torch.rand): each element zeroed with probability p, the
    rest scaled by 1/(1 − p), the gradient through the same mask; seeded: the same mask again;
    eval mode passes x through; p = 1 zeroes everything, as nn.Dropout does."""
    d = Dropout(0.3).train()
    x = torch.ones(200_000, requires_grad=True)
    torch.manual_seed(0)
    y = d(x)
    assert abs(float((y == 0).float().mean()) - 0.3) < 0.005  # sd 0.001
    torch.testing.assert_close(y[y != 0], torch.full_like(y[y != 0], 1 / 0.7))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())
    torch.manual_seed(0)
    assert torch.equal(d(x), y)
    assert torch.equal(d.eval()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))


@pytest.mark.parametrize("attention_dropout", [0.0, 0.5])
def test_attention_dropout_drops_the_attention_probabilities_alone(attention_dropout):
    """``attention_dropout`` = p on the attention probabilities, ``dropout`` on the rest. With p = 0
    a training-mode attention is the eval-mode one followed by the residual dropout (the same mask:
    no random draw for the attention); with p > 0 the attention itself is dropped too."""
    torch.manual_seed(0)
    enc = build_track_encoder(scheme="id", hidden=H, n_tracks=20, track_ids=[f"t{i}" for i in range(20)], id_table=None)
    model = SASRec(encoder=enc, hidden=H, layers=1, heads=HEADS, max_len=MAX_LEN, dropout=0.5,
                   attention_dropout=attention_dropout)
    attn = model.blocks[0].attn
    assert attn.dropout == attention_dropout and attn.resid_drop.p == 0.5
    x = torch.randn(2, MAX_LEN, H)
    with torch.no_grad():
        torch.manual_seed(1)
        trained = attn.train()(x, None)
        y = attn.eval()(x, None)
        torch.manual_seed(1)
        expected = attn.resid_drop.train()(y)  # the residual dropout alone, with the same draw
    assert torch.equal(trained, expected) == (attention_dropout == 0.0)
    legacy = SASRec(encoder=enc, hidden=H, layers=1, heads=HEADS, max_len=MAX_LEN, dropout=0.3)
    assert legacy.blocks[0].attn.dropout == 0.3, "None: the attention uses ``dropout``, as before the key"


def test_missing_tracks_get_pad_codes_and_bad_codes_are_rejected():
    tbl = id_table(10, 4).iloc[:8]  # two vocabulary tracks have no semantic ID
    enc = build_track_encoder(scheme="v1-k4", hidden=8, n_tracks=10,
                              track_ids=[f"t{i:05d}" for i in range(10)], id_table=tbl)
    codes = enc.field_codes()
    assert all(int(codes[f][9]) == 0 and int(codes[f][10]) == 0 for f in enc.field_names)
    with pytest.raises(ValueError):
        build_track_encoder(scheme="v1-k2", hidden=8, n_tracks=10,
                            track_ids=[f"t{i:05d}" for i in range(10)], id_table=id_table(10, 4))
    with pytest.raises(ConfigError):
        build_track_encoder(scheme="weird", hidden=8, n_tracks=10)


@pytest.mark.parametrize("cap", [None, 16, 4])
def test_capped_tie_table_is_what_the_encoder_holds_and_the_formula_counts(cap):
    n, k = 60, 8
    track_ids = [f"t{i:05d}" for i in range(n)]
    collapsed = pd.DataFrame({"track_id": track_ids, "c1": 0, "c2": 1, "c3": 2, "c4": 3, "tie": range(n)})
    torch.manual_seed(0)
    enc = build_track_encoder(scheme="v1-k8", hidden=H, n_tracks=n, track_ids=track_ids, id_table=collapsed,
                              max_tie_embeddings=cap)
    model = SASRec(encoder=enc, hidden=H, layers=LAYERS, heads=HEADS, max_len=MAX_LEN, dropout=0.0)
    sizes = semantic_field_sizes(k=k, levels=4, max_tie=n - 1, max_tie_embeddings=cap)
    assert enc.field_sizes == sizes and sizes["tie"] == (n if cap is None else cap)
    expect = expected_parameter_count(field_sizes=sizes, hidden=H, layers=LAYERS, max_len=MAX_LEN)
    assert model.parameter_counts() == expect == {**expect, "total": sum(p.numel() for p in model.parameters())}
    tie = enc.field_codes()["tie"][1:]  # 1-based rows per track (0 = pad)
    if cap is not None:  # ties ≥ cap − 1 share the last row; the smaller ones keep their own
        assert int(tie.max()) == cap and (tie[cap - 1:] == cap).all() and len(set(tie[: cap - 1].tolist())) == cap - 1


# ------------------------------------------------------------------------------------------------
# bias terms, hybrid encoder, bias-only model (issue 10)


def make_biased(representation="v1-k8", *, n=50, k=8, decomposition=False, track_field=False, use_sequence=True):
    torch.manual_seed(0)
    tbl = id_table(n, k) if representation != "id" else None
    enc = build_track_encoder(scheme=representation, hidden=H, n_tracks=n,
                              track_ids=[f"t{i:05d}" for i in range(n)], id_table=tbl,
                              artist=np.r_[0, np.arange(n) % 5 + 1], n_artists=5,
                              genre=np.r_[0, np.arange(n) % 3 + 1], n_genres=3,
                              song_decomposition=decomposition, with_track_field=track_field, with_bias=True)
    with torch.no_grad():
        enc.bias.normal_()  # trained biases are not zero: make every check see them
        enc.bias[0] = 0
    return SASRec(encoder=enc, hidden=H, layers=LAYERS, heads=HEADS, max_len=MAX_LEN, dropout=0.0,
                  use_sequence=use_sequence).eval()


@pytest.mark.parametrize("representation,decomposition,track_field",
                         [("id", False, False), ("v1-k8", False, False), ("v1-k8", True, False), ("v1-k8", False, True),
                          ("hybrid-k8", False, False)])
def test_parameter_formula_includes_biases_and_hybrid_track_field(representation, decomposition, track_field):
    model = make_biased(representation, decomposition=decomposition, track_field=track_field)
    sizes = model.encoder.field_sizes
    expect = expected_parameter_count(field_sizes=sizes, hidden=H, layers=LAYERS, max_len=MAX_LEN, with_bias=True)
    assert model.parameter_counts() == expect
    without = expected_parameter_count(field_sizes=sizes, hidden=H, layers=LAYERS, max_len=MAX_LEN)
    assert expect["total"] - without["total"] == 1 + sum(sizes.values())
    assert ("track" in sizes) == (representation in ("id", "hybrid-k8") or track_field)


def test_track_bias_is_sum_of_code_biases_and_enters_the_score():
    model = make_biased("v1-k8", decomposition=True)
    enc = model.encoder
    cand = torch.randint(1, 51, (3, 4))
    with torch.no_grad():
        b = enc.track_bias(cand)
        expect = enc.bias[enc.codes[cand]].sum(-1)  # pad rows (0) have bias 0
        h = torch.randn(3, H)
        s = model.score(h, cand)
        dot = torch.einsum("bh,bch->bc", h, enc(cand))
    torch.testing.assert_close(b, expect)
    torch.testing.assert_close(s, dot + expect)
    assert len(enc.field_names) == 7  # 4 levels + tie + artist + genre: each contributes a bias


def test_decomposed_topk_with_biases_equals_naive_scoring():
    from semid_pipeline.scoring import topk_decomposed, topk_naive

    model = make_biased("v1-k8", decomposition=True)
    enc = model.encoder
    hidden = torch.randn(6, H)
    with torch.no_grad():
        tables, codes = enc.scoring_tables(), enc.field_codes()
        names = list(tables)
        vd, idd = topk_decomposed(model.scoring_hidden(hidden), [tables[n] for n in names], [codes[n] for n in names],
                                  k=5, exclude=torch.tensor([0]))
        naive = hidden @ enc.all_embeddings().T + enc.track_bias(torch.arange(51))  # (6, N+1)
        vn, idn = topk_naive(model.scoring_hidden(hidden), torch.cat([enc.all_embeddings(), enc.track_bias(torch.arange(51))[:, None]], 1),
                             k=5, exclude=torch.tensor([0]))
    naive[:, 0] = -torch.inf
    assert torch.equal(idd, idn)
    torch.testing.assert_close(vd, naive.topk(5, dim=1).values, rtol=1e-5, atol=1e-5)


def test_bias_only_model_ignores_the_history():
    model = make_biased("id", use_sequence=False)
    x1, x2 = torch.randint(1, 51, (2, 6)), torch.randint(1, 51, (2, 6))
    f = torch.randint(0, 2, (2, 6))
    cand = torch.randint(1, 51, (2, 3))
    with torch.no_grad():
        s1 = model.score(model(x1, f)[:, -1], cand)
        s2 = model.score(model(x2, 1 - f)[:, -1], cand)
    torch.testing.assert_close(s1, s2)
    torch.testing.assert_close(s1, model.encoder.track_bias(cand))
