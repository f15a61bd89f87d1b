"""The serving core without Dagster: decomposed scores are the model's scores, the policy holds,
batches equal single calls, and the table checks catch planted violations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from semid_pipeline import serving
from semid_pipeline import serving_table as st
from semid_pipeline.serving_load import random_bundle


@pytest.fixture(scope="module")
def rec():
    torch.set_num_threads(1)
    bundle = random_bundle(n_tracks=400, k=16, levels=3, hidden=16, n_artists=40, cold_share=0.2, seed=3)
    return serving.Recommender(bundle=bundle)


def _history(rec, seed, length=12):
    rng = np.random.default_rng(seed)
    ids = rec.vocab.track_ids[rng.choice(rec.n_tracks, size=length, replace=False)]
    return [(str(t), int(f)) for t, f in zip(ids, rng.integers(0, 2, size=length))]


def test_decomposed_scores_equal_the_models_dot_products(rec):
    hist = _history(rec, 0)
    idx, fb, _ = rec.encode_history(hist)
    h = rec.hidden([(idx, fb)])
    decomposed = serving.codeword_scores(h, rec.table, rec.offs)[0, 1:]
    with torch.no_grad():
        naive = h @ rec.model.encoder.all_embeddings()[1:].T
    torch.testing.assert_close(decomposed, naive[0], rtol=1e-5, atol=1e-5)


def test_decomposed_scores_include_the_item_biases():
    bundle = random_bundle(n_tracks=300, k=16, levels=3, hidden=16, seed=5, with_bias=True)
    rec = serving.Recommender(bundle=bundle)
    idx, fb, _ = rec.encode_history(_history(rec, 7))
    h = rec.hidden([(idx, fb)])
    cand = torch.arange(1, rec.n_tracks + 1).unsqueeze(0)
    with torch.no_grad():
        naive = rec.model.score(h, cand)[0]  # dot product + summed code biases
        no_bias = h[0] @ rec.model.encoder.all_embeddings()[1:].T
    decomposed = serving.codeword_scores(h, rec.table, rec.offs)[0, 1:]
    single = serving.codeword_scores(h, rec.table, rec.offs, rec.offs_t)[0, 1:]
    torch.testing.assert_close(decomposed, naive, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(single, naive, rtol=1e-5, atol=1e-5)
    assert (decomposed - no_bias).abs().max() > 0.1


def test_served_lists_rank_by_the_models_own_score_not_the_popularity_prior():
    with_prior = serving.Recommender(bundle=random_bundle(n_tracks=300, k=16, levels=3, hidden=16, seed=5,
                                                          with_bias=True, with_prior=True))
    plain = serving.Recommender(bundle=random_bundle(n_tracks=300, k=16, levels=3, hidden=16, seed=5, with_bias=True))
    hist = _history(plain, 7)
    policy = serving.ServePolicy(exclude_heard=False, exclude_skipped=False, artist_cap=0)  # the raw top 20
    a, b = with_prior.recommend(hist, n=20, policy=policy), plain.recommend(hist, n=20, policy=policy)
    assert a.track_ids == b.track_ids and a.scores == pytest.approx(b.scores)
    idx, fb, _ = with_prior.encode_history(hist)
    cand = torch.arange(1, 301)
    with torch.no_grad():  # the prior is in the model's feedback score, and would reorder the list
        scored = with_prior.model.score(with_prior.hidden([(idx, fb)]), cand.unsqueeze(0))[0]
        own = scored - with_prior.model.prior(cand)
    assert (own.topk(20).indices + 1).tolist() == a.track_idx
    assert (scored.topk(20).indices + 1).tolist() != a.track_idx


def test_list_is_the_top_of_eligible_tracks_and_keeps_the_policy(rec):
    hist = _history(rec, 1)
    out = rec.recommend(hist, n=20, policy=serving.ServePolicy(artist_cap=0))
    assert len(out.track_ids) == 20 and len(set(out.track_ids)) == 20
    assert not set(out.track_ids) & {t for t, _ in hist}
    assert all(a >= b for a, b in zip(out.scores, out.scores[1:]))
    idx, fb, _ = rec.encode_history(hist)
    sc = serving.codeword_scores(rec.hidden([(idx, fb)]), rec.table, rec.offs)[0]
    sc[0] = -np.inf
    sc[torch.from_numpy(idx)] = -np.inf
    assert out.track_idx == sc.topk(20).indices.tolist()


def test_heard_and_skipped_switches_are_independent(rec):
    hist = _history(rec, 2)
    heard = {t for t, f in hist if f == 1}
    skipped = {t for t, f in hist if f == 0}
    n = rec.n_tracks
    only_skipped = rec.recommend(hist, n=n, policy=serving.ServePolicy(exclude_heard=False, artist_cap=0))
    assert heard <= set(only_skipped.track_ids) and not skipped & set(only_skipped.track_ids)
    only_heard = rec.recommend(hist, n=n, policy=serving.ServePolicy(exclude_skipped=False, artist_cap=0))
    assert skipped <= set(only_heard.track_ids) and not heard & set(only_heard.track_ids)


def test_cold_start_tracks_compete_or_are_left_out(rec):
    hist = _history(rec, 3)
    cold = set(rec.vocab.decode(np.flatnonzero(rec.is_cold.numpy())))
    assert cold
    on = rec.recommend(hist, n=rec.n_tracks, policy=serving.ServePolicy(artist_cap=0))
    off = rec.recommend(hist, n=rec.n_tracks, policy=serving.ServePolicy(include_cold_start=False, artist_cap=0))
    assert cold & set(on.track_ids)
    assert not cold & set(off.track_ids)
    assert len(off.track_ids) == len(on.track_ids) - len(cold - {t for t, _ in hist})


def test_artist_cap_and_explicit_exclusions(rec):
    hist = _history(rec, 4)
    banned = rec.recommend(hist, n=5).track_ids[:2]
    out = rec.recommend(hist, n=50, exclude=banned, policy=serving.ServePolicy(artist_cap=1))
    artists = rec.artist[np.asarray(out.track_idx)]
    assert len(out.track_ids) == 40  # 40 artists, one track each
    assert len(set(artists.tolist())) == len(artists)
    assert not set(banned) & set(out.track_ids)


def test_unknown_history_tracks_are_ignored_and_counted(rec):
    hist = _history(rec, 5)
    out = rec.recommend(hist + [("no-such-track", 1), ("nor-this", 0)], n=10)
    assert out.unknown_tracks == 2
    assert out.track_ids == rec.recommend(hist, n=10).track_ids


def test_batch_equals_single_calls(rec):
    hists = [_history(rec, s, length=3 + s) for s in range(6)]
    batch = rec.recommend_batch(hists, n=15)
    for h, b in zip(hists, batch):
        one = rec.recommend(h, n=15)
        assert one.track_ids == b.track_ids
        np.testing.assert_allclose(one.scores, b.scores, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# checks on planted violations


def _table(rec) -> tuple[pd.DataFrame, st.Listeners]:
    hists = [_history(rec, s) for s in range(4)]
    listeners = st.Listeners([f"u{i}" for i in range(4)], hists, "user", pd.Timestamp("2024-01-01"))
    df, timing = st.build_recommendations(rec, listeners, n=10, policy=serving.ServePolicy())
    assert timing["lists_per_s"] > 0
    return df, listeners


def test_checks_pass_on_built_lists_and_fail_on_each_planted_violation(rec):
    df, listeners = _table(rec)
    pol = serving.ServePolicy()
    excl = st.excluded_sets(listeners, pol)
    expected = st.expected_lengths(listeners, excl, n=10, n_catalogue=rec.n_tracks)
    artist_of = dict(zip(rec.vocab.track_ids, rec.artist[1:].astype(str)))
    cat = list(rec.vocab.track_ids)

    def policy_ok(frame, policy=pol):
        return st.check_policy(frame, policy=policy, excluded=excl, cold_ids=set(), artist_of=artist_of)[0]

    assert st.check_list_lengths(df, n=10, expected=expected)[0]
    assert st.check_no_duplicates(df)[0]
    assert st.check_scores_sorted(df)[0]
    assert st.check_in_catalogue(df, cat)[0]
    assert policy_ok(df)

    assert not st.check_list_lengths(df.drop(index=df.index[3]), n=10, expected=expected)[0]
    dup = df.copy()
    dup.loc[1, "track_id"] = dup.loc[0, "track_id"]
    assert not st.check_no_duplicates(dup)[0]
    swapped = df.copy()
    swapped.loc[[0, 1], "score"] = swapped.loc[[1, 0], "score"].to_numpy()
    assert not st.check_scores_sorted(swapped)[0]
    stranger = df.copy()
    stranger.loc[2, "track_id"] = "not-in-the-catalogue"
    ok, meta = st.check_in_catalogue(stranger, cat)
    assert not ok and meta["first_offending"][0]["track_id"] == "not-in-the-catalogue"
    heard = df.copy()
    heard.loc[0, "track_id"] = listeners.histories[0][0][0]
    assert not policy_ok(heard)
    capped = df.copy()
    same_artist = [t for t, a in artist_of.items() if a == "1" and t not in excl["u0"]][:4]
    capped.loc[capped.index[:4], "track_id"] = same_artist  # rows 0..3 are u0's ranks 1..4
    assert len(same_artist) == 4 and not policy_ok(capped)
    assert not st.check_policy(df, policy=serving.ServePolicy(include_cold_start=False), excluded=excl,
                               cold_ids=set(df["track_id"][:1]), artist_of=artist_of)[0]


def test_sample_lists_render_as_markdown_and_html(rec):
    df, _ = _table(rec)
    cat = pd.DataFrame({"track_id": rec.vocab.track_ids, "title": [f"Song {i}" for i in range(rec.n_tracks)],
                        "artist_id": rec.artist[1:].astype(str)})
    md = serving.render_sample_lists(df, cat, listeners=2, top=3)
    first = df[df["listener_id"] == "u0"].iloc[0]["track_id"]
    assert first in md and "Song" in md and "u2" not in md
    html = serving.render_sample_lists(df, cat, listeners=5, top=3, html=True)
    assert html.startswith("<table") and html.count("</tr>") == 1 + 4 * 3


def _events_db(rows):
    import duckdb

    con = duckdb.connect()
    df = pd.DataFrame(rows, columns=["stratum_id", "ts", "position", "track_id", "feedback"])
    df["ts"] = pd.to_datetime(df["ts"])
    con.register("_ev", df)
    con.execute("CREATE TABLE feedback_events AS SELECT * FROM _ev")
    return con


def test_active_listeners_are_users_of_the_last_days_with_their_whole_log():
    con = _events_db([
        ("old", "2024-01-01", 1, "a", 1), ("old", "2024-01-20", 2, "b", 1),
        ("new", "2024-01-02", 1, "c", 0), ("new", "2024-03-01", 2, "d", 1), ("new", "2024-03-05", 3, "e", 1),
    ])
    ls = st.active_listeners(con, kind="user", active_days=28)
    assert ls.ids == ["new"]
    assert ls.histories == [[("c", 0), ("d", 1), ("e", 1)]]


def test_active_sessions_are_the_sessions_of_the_last_day_in_position_order():
    con = _events_db([
        ("s1", "2024-03-04 10:00", 1, "a", 1), ("s1", "2024-03-04 10:00", 2, "b", 0),
        ("s2", "2024-03-05 09:00", 2, "d", 1), ("s2", "2024-03-05 09:00", 1, "c", 0),
        ("s3", "2024-03-05 23:00", 1, "e", 1),
    ])
    ls = st.active_listeners(con, kind="session", active_days=28)
    assert ls.ids == ["s2", "s3"]
    assert ls.histories[0] == [("c", 0), ("d", 1)]


def test_block_topk_equals_topk():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300_001, generator=g)
    x[torch.randint(0, 300_001, (50_000,), generator=g)] = float("-inf")
    for k in (1, 10, 200):
        v, i = serving.topk_1d(x, k, block=256)
        rv, ri = x.topk(k)
        assert torch.equal(v, rv) and torch.equal(i, ri)


def test_one_listener_gather_path_equals_the_batched_path(rec):
    h = rec.hidden([rec.encode_history(_history(rec, 9))[:2]])
    one = serving.codeword_scores(h, rec.table, rec.offs, rec.offs_t)
    batched = serving.codeword_scores(torch.cat([h, h]), rec.table, rec.offs)[:1]
    torch.testing.assert_close(one, batched, rtol=1e-5, atol=1e-6)
