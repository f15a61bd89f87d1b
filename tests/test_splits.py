"""Time-separated splits: no leakage from evaluated (or later) events into model inputs."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from conftest import EVENT_COLUMNS, T0, create_feedback_events, user_feedback
from semid_pipeline.config import SplitConfig
from semid_pipeline.errors import SplitError
from semid_pipeline.splits import as_train_sequences, build_splits, detect_kind, load_splits
from semid_pipeline.windows import through_validation

COLS = EVENT_COLUMNS


def user_events(n_users=60, n_tracks=80, days=100, seed=0) -> pd.DataFrame:
    return user_feedback(n_users=n_users, n_tracks=n_tracks, days=days, seed=seed, min_events=3, max_events=60,
                         time_grid=0.5)  # half-day grid: many equal times


def session_events(n_sessions=300, n_tracks=80, days=60, seed=1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_sessions):
        n = int(rng.integers(1, 21))
        day = T0 + pd.Timedelta(days=int(rng.integers(0, days)), hours=int(rng.integers(0, 24)))
        for p in range(n):
            k = int(rng.integers(0, n_tracks))
            rows.append((f"s{s:04d}", p + 1, n, day, f"t{k:03d}", int(rng.integers(0, 2)), "radio", None, None))
    return pd.DataFrame(rows, columns=COLS)


def test_vocab_is_sorted_union_with_padding():
    ev = user_events()
    catalog = pd.DataFrame({"track_id": ["zzz_catalog_only", "t000"], "artist_id": ["a9", "a0"]})
    sp = build_splits(ev, catalog, SplitConfig())
    ids = sp.vocab.track_ids.tolist()
    assert ids == sorted(set(ev["track_id"]) | {"zzz_catalog_only"})
    assert sp.vocab.encode(["zzz_catalog_only", "nope"]).tolist() == [len(ids), 0]
    assert sp.vocab.decode(sp.vocab.encode(ids)).tolist() == ids
    assert sp.train_track_counts.shape == (len(ids) + 1,) and sp.train_track_counts[0] == 0
    assert sp.track_artist is not None and sp.track_artist[0] == 0
    assert sp.track_artist[sp.vocab.encode(["zzz_catalog_only"])[0]] > 0
    assert sp.n_genres == 3


def test_kind_detection():
    assert detect_kind(user_events()) == "user"
    assert detect_kind(session_events()) == "session"
    short = session_events().assign(context_type=None)  # no context, but every stratum <= 20 events
    assert detect_kind(short) == "session"


def test_user_splits_never_leak():
    cfg = SplitConfig(test_days=14, val_days=14, max_user_history=25, max_lookback_days=30)
    ev = user_events()
    sp = build_splits(ev, None, cfg)
    assert sp.kind == "user"
    val_start, test_start = sp.cutoffs["val_start"], sp.cutoffs["test_start"]
    assert test_start == pd.Timestamp(ev["ts"].max()) - pd.Timedelta(days=14)
    assert val_start == test_start - pd.Timedelta(days=14)
    assert len(sp.val) > 0 and len(sp.test) > 0
    for es, (p0, p1) in ((sp.val, (val_start, test_start)), (sp.test, (test_start, pd.Timestamp.max))):
        g = es.events.groupby("row")
        for i, sid in enumerate(es.stratum_ids):
            ev_i = g.get_group(i)
            assert (ev_i["stratum_id"] == sid).all()
            in_ts = pd.to_datetime(es.input_ts[i])
            assert 0 < len(in_ts) <= cfg.max_user_history
            assert in_ts.max() < ev_i["ts"].min(), "an input event is not strictly before every evaluated event"
            assert in_ts.max() < p0 and in_ts.min() >= p0 - pd.Timedelta(days=cfg.max_lookback_days)
            assert ev_i["ts"].min() >= p0 and ev_i["ts"].max() < p1
            assert ev_i["feedback"].nunique() == 2
            # the input is exactly the user's last events before the period (nothing skipped)
            user = ev[(ev.stratum_id == sid) & (ev.ts < p0) & (ev.ts >= p0 - pd.Timedelta(days=cfg.max_lookback_days))]
            assert len(in_ts) == min(len(user), cfg.max_user_history)
            tracks = sp.vocab.decode(es.inputs[i][0])
            assert tracks.tolist() == user.sort_values(["ts", "position"])["track_id"].tolist()[-len(in_ts):]
    # training sequences hold only pre-validation events
    n_train = sum(len(t) for t, _ in sp.train)
    assert n_train == int((ev["ts"] < val_start).sum())


def test_session_splits_never_leak():
    cfg = SplitConfig(test_days=10, val_days=10, max_session_len=20)
    ev = session_events()
    sp = build_splits(ev, None, cfg)
    assert sp.kind == "session"
    assert len(sp.val) > 0 and len(sp.test) > 0
    first_ts = ev.groupby("stratum_id")["ts"].min()
    for es, (p0, p1) in ((sp.val, (sp.cutoffs["val_start"], sp.cutoffs["test_start"])),
                         (sp.test, (sp.cutoffs["test_start"], pd.Timestamp.max))):
        g = es.events.groupby("row")
        for i, sid in enumerate(es.stratum_ids):
            ev_i = g.get_group(i)
            in_pos = es.input_positions[i]
            assert len(in_pos) > 0
            assert in_pos.max() < ev_i["position"].min(), "an input position is not before every evaluated one"
            n = len(in_pos) + len(ev_i)
            assert len(in_pos) == n // 2  # first half is the input, second half evaluated
            assert p0 <= first_ts[sid] < p1
            assert ev_i["feedback"].nunique() == 2
    train_ids = set(sp.train_stratum_ids)
    assert train_ids.isdisjoint(sp.val.stratum_ids) and train_ids.isdisjoint(sp.test.stratum_ids)
    assert all(first_ts[s] < sp.cutoffs["val_start"] for s in train_ids)


def test_session_truncated_to_max_len():
    ev = session_events()
    sp = build_splits(ev, None, SplitConfig(max_session_len=6, test_days=10, val_days=10))
    assert max(len(t) for t, _ in sp.train) <= 6
    for es in (sp.val, sp.test):
        assert es.events["position"].max() <= 6


def test_strata_without_both_labels_or_input_are_dropped():
    rows = []

    def add(sid, days, fbs):
        for p, (d, f) in enumerate(zip(days, fbs)):
            rows.append((sid, p + 1, len(days), T0 + pd.Timedelta(days=d), f"t{p}", f, None, None, None))

    add("ok", [50, 60, 95, 96], [1, 0, 1, 0])  # input + pos + neg in the test period
    add("only_pos", [50, 95, 96], [0, 1, 1])  # no negative in the test period
    add("only_neg", [50, 95, 96], [1, 0, 0])
    add("no_input", [95, 96, 97], [1, 0, 1])  # nothing before the test period
    add("too_old", [1, 95, 96], [1, 1, 0])  # input beyond the lookback window (test starts day 86)
    add("anchor", [0, 100], [1, 1])
    ev = pd.DataFrame(rows, columns=COLS)
    sp = build_splits(ev, None, SplitConfig(test_days=14, val_days=14, max_lookback_days=60), kind="user")
    assert sp.kind == "user"
    assert sp.test.stratum_ids == ["ok"]
    assert set(sp.test.events["stratum_id"]) == {"ok"}
    assert sp.test.history_len.tolist() == [2]

    # sessions: a 1-event session has an empty input; a one-label second half is dropped
    srows = [("s_ok", 1, 4, T0 + pd.Timedelta(days=50), "a", 1, "radio", None, None),
             ("s_ok", 2, 4, T0 + pd.Timedelta(days=50), "b", 1, "radio", None, None),
             ("s_ok", 3, 4, T0 + pd.Timedelta(days=50), "c", 1, "radio", None, None),
             ("s_ok", 4, 4, T0 + pd.Timedelta(days=50), "d", 0, "radio", None, None),
             ("s_one", 1, 1, T0 + pd.Timedelta(days=50), "a", 1, "radio", None, None),
             ("s_same", 1, 4, T0 + pd.Timedelta(days=50), "a", 1, "radio", None, None),
             ("s_same", 2, 4, T0 + pd.Timedelta(days=50), "b", 0, "radio", None, None),
             ("s_same", 3, 4, T0 + pd.Timedelta(days=50), "c", 1, "radio", None, None),
             ("s_same", 4, 4, T0 + pd.Timedelta(days=50), "d", 1, "radio", None, None),
             ("s_old", 1, 1, T0, "a", 1, "radio", None, None)]
    sp = build_splits(pd.DataFrame(srows, columns=COLS), None, SplitConfig(test_days=14, val_days=14))
    assert sp.kind == "session"
    assert sp.test.stratum_ids == ["s_ok"]
    assert sp.test.events["track_id"].tolist() == ["c", "d"]


def test_is_cold_and_train_counts():
    ev = user_events()
    sp = build_splits(ev, None, SplitConfig())
    train_tracks = ev[ev["ts"] < sp.cutoffs["val_start"]]["track_id"].value_counts()
    for tid, n in train_tracks.items():
        assert sp.train_track_counts[sp.vocab.encode([tid])[0]] == n
    for es in (sp.val, sp.test):
        expect = ~es.events["track_id"].isin(train_tracks.index)
        assert (es.events["is_cold"].to_numpy() == expect.to_numpy()).all()


def test_load_splits_from_duckdb():
    ev = user_events(n_users=20)
    con = duckdb.connect()
    create_feedback_events(con, ev)
    con.execute("CREATE TABLE track_catalog AS SELECT DISTINCT track_id, artist_id, genre_id FROM ev")
    con.execute("INSERT INTO track_catalog VALUES ('t_extra', NULL, NULL)")
    sp = load_splits(con, SplitConfig())
    ref = build_splits(ev, pd.DataFrame({"track_id": list(ev["track_id"].unique()) + ["t_extra"]}), SplitConfig())
    assert sp.vocab.track_ids.tolist() == ref.vocab.track_ids.tolist()
    assert sp.val.stratum_ids == ref.val.stratum_ids and sp.test.stratum_ids == ref.test.stratum_ids
    assert len(sp.train) == len(ref.train)
    con.close()


def test_load_splits_uses_the_kind_ingestion_recorded():
    """Short per-user histories look like sessions to the heuristic; the data-set key says users."""
    from semid_pipeline.splits import recorded_kind
    from semid_pipeline.warehouse import set_meta

    ev = session_events().assign(context_type=None)  # every stratum <= 20 events: the guess is "session"
    con = duckdb.connect()
    create_feedback_events(con, ev)
    assert recorded_kind(con) is None and load_splits(con, SplitConfig()).kind == "session"
    set_meta(con, "dataset", "events:/data/events.csv")
    assert recorded_kind(con) == "user"
    with pytest.raises(SplitError, match="holds no user that can be evaluated"):  # split as users: no test input
        load_splits(con, SplitConfig())
    set_meta(con, "dataset", "synthetic:tiny:sessions")
    assert recorded_kind(con) == "session"
    con.close()


def test_test_period_without_strata_says_which_window_and_what_to_change():
    rows = [("u1", p + 1, 4, T0 + pd.Timedelta(hours=p), f"t{p}", p % 2, None, None, None) for p in range(4)]
    with pytest.raises(SplitError) as err:  # all events inside the test period: no user has an input
        build_splits(pd.DataFrame(rows, columns=COLS), None, SplitConfig(test_days=14), kind="user")
    msg = str(err.value)
    assert "test period" in msg and "test_days = 14" in msg and "data spans" in msg


def test_empty_events_rejected():
    with pytest.raises(ValueError):
        build_splits(pd.DataFrame(columns=COLS), None, SplitConfig())


def _assert_same_splits(sp, ref) -> None:
    """Every field of two Splits equal (the SQL path vs the pandas reference)."""
    assert sp.kind == ref.kind
    assert sp.vocab.track_ids.tolist() == ref.vocab.track_ids.tolist()
    assert len(sp.train) == len(ref.train) and sp.train_stratum_ids == ref.train_stratum_ids
    for (t, f), (rt, rf) in zip(sp.train, ref.train):
        assert t.tolist() == rt.tolist() and f.tolist() == rf.tolist()
    assert (sp.train_track_counts == ref.train_track_counts).all()
    for a, b in ((sp.track_artist, ref.track_artist), (sp.track_genre, ref.track_genre)):
        assert (a is None and b is None) or (a == b).all()
    assert (sp.n_artists, sp.n_genres) == (ref.n_artists, ref.n_genres) and sp.cutoffs == ref.cutoffs
    for es, res in ((sp.val, ref.val), (sp.test, ref.test)):
        assert es.stratum_ids == res.stratum_ids
        for (t, f), (rt, rf) in zip(es.inputs, res.inputs):
            assert t.tolist() == rt.tolist() and f.tolist() == rf.tolist()
        for x, y in zip(es.input_ts + es.input_positions, res.input_ts + res.input_positions):
            assert (np.asarray(x) == np.asarray(y)).all()
        pd.testing.assert_frame_equal(es.events.reset_index(drop=True), res.events.reset_index(drop=True),
                                      check_dtype=False)


@pytest.mark.parametrize("make", [user_events, session_events])
def test_duckdb_split_equals_the_pandas_reference(make):
    from splits_reference import reference_build_splits

    ev = make()
    catalog = pd.DataFrame({"track_id": ["zzz_catalog_only", "t000", "t001"], "artist_id": ["a9", "a0", None]})
    cfg = SplitConfig(test_days=10, val_days=10, max_user_history=20, max_lookback_days=40, max_session_len=12)
    _assert_same_splits(build_splits(ev, catalog, cfg), reference_build_splits(ev, catalog, cfg))


def test_load_splits_equals_the_pandas_reference_on_the_tiny_world(tmp_path):
    """The warehouse path (ordering, positions and cutoffs in DuckDB) on the ingested tiny world."""
    from splits_reference import reference_build_splits
    from semid_pipeline.config import IngestConfig, parse_dataset_spec
    from semid_pipeline.datasets import ingest_dataset
    from semid_pipeline.splits import EVENT_COLUMNS as COLS_, recorded_kind
    from semid_pipeline.warehouse import connect

    db = tmp_path / "w.duckdb"
    ingest_dataset(parse_dataset_spec("synthetic:tiny"), warehouse=db, cfg=IngestConfig(), data_dir=tmp_path)
    with connect(db, read_only=True) as con:
        sp = load_splits(con, SplitConfig())
        ev = con.execute(f"SELECT {', '.join(COLS_)} FROM feedback_events ORDER BY stratum_id, position").df()
        cat = con.execute("SELECT track_id, artist_id, genre_id FROM track_catalog ORDER BY track_id").df()
        kind = recorded_kind(con)
    assert len(sp.train) > 50 and len(sp.test) > 20
    _assert_same_splits(sp, reference_build_splits(ev, cat, SplitConfig(), kind=kind))


def test_through_validation_extends_each_user_by_its_validation_events_only():
    """[train] final_fit data: every training sequence, followed by its user's validation-period
    events in order; nothing of the test period; users without validation strata unchanged."""
    ev = user_events()
    sp = build_splits(ev, None, SplitConfig(test_days=14, val_days=14))
    train, tv = as_train_sequences(sp.train), through_validation(sp)
    assert len(sp.val) > 0 and len(tv) == len(train)  # every validated user has a training sequence here
    assert tv.offsets[-1] == train.offsets[-1] + len(sp.val.events)
    row_of = {sid: i for i, sid in enumerate(sp.val.stratum_ids)}
    by_row = sp.val.events.sort_values(["row", "position"]).groupby("row")
    for j, sid in enumerate(sp.train_stratum_ids):
        t, f = tv[j]
        head_t, head_f = train[j]
        assert np.array_equal(t[:len(head_t)], head_t) and np.array_equal(f[:len(head_f)], head_f)
        tail = by_row.get_group(row_of[sid]) if sid in row_of else sp.val.events.iloc[:0]
        assert np.array_equal(t[len(head_t):], tail["track_idx"].to_numpy())
        assert np.array_equal(f[len(head_f):], tail["feedback"].to_numpy())
    # the added events are exactly the raw events of the validation period of those users
    vocab = {tid: i for i, tid in enumerate(sp.vocab.track_ids, start=1)}
    raw = ev[(ev["ts"] >= sp.cutoffs["val_start"]) & (ev["ts"] < sp.cutoffs["test_start"])
             & ev["stratum_id"].isin(sp.val.stratum_ids)]
    added = np.concatenate([tv[j][0][len(train[j][0]):] for j in range(len(train))])
    assert sorted(added.tolist()) == sorted(raw["track_id"].map(vocab).tolist())


def test_through_validation_appends_the_validation_sessions_whole():
    cfg = SplitConfig(test_days=10, val_days=10, max_session_len=20)
    ev = session_events()
    sp = build_splits(ev, None, cfg)
    train, tv = as_train_sequences(sp.train), through_validation(sp)
    assert len(tv) == len(train) + len(sp.val)
    assert all(np.array_equal(tv[j][0], train[j][0]) for j in range(len(train)))
    vocab = {tid: i for i, tid in enumerate(sp.vocab.track_ids, start=1)}
    for i, sid in enumerate(sp.val.stratum_ids):
        raw = ev[ev["stratum_id"] == sid].sort_values("position").head(cfg.max_session_len)
        t, f = tv[len(train) + i]
        assert t.tolist() == raw["track_id"].map(vocab).tolist()
        assert f.tolist() == raw["feedback"].tolist()


def _two_day_sessions(n_sessions=200, n_tracks=60, seed=3) -> pd.DataFrame:
    """Sessions over two days at whole hours, as a public MSSD sample (date + hour_of_day) is."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_sessions):
        n = int(rng.integers(4, 21))
        ts = T0 + pd.Timedelta(hours=int(rng.integers(0, 48)))
        for p in range(n):
            rows.append((f"s{s:04d}", p + 1, n, ts, f"t{int(rng.integers(0, n_tracks)):03d}", int(rng.integers(0, 2)),
                         "radio", None, None))
    return pd.DataFrame(rows, columns=COLS)


def test_short_data_says_which_periods_fit_and_fractional_days_split_it():
    from semid_pipeline.config import TrainConfig
    from semid_pipeline.schemes import IdScheme
    from semid_pipeline.train import train_recommender

    ev = _two_day_sessions()
    sp = build_splits(ev, None, SplitConfig())  # 14 + 14 days over a two-day sample: every session is a test session
    assert len(sp.test) > 0 and len(sp.train) == 0
    msg = sp.training_problem
    assert msg is not None and "test_days = 14" in msg and "spans" in msg and "1.96 days" in msg
    with pytest.raises(SplitError, match="Periods that fit this data"):  # training stops with the same words
        train_recommender(scheme=IdScheme.parse("id"), hidden=16, splits=sp, id_table=None, id_table_hash="id",
                          cfg=TrainConfig(epochs=1, content_init=False, content_affinity=False, personal_taste=False),
                          out_dir=Path(tempfile.mkdtemp()), log=lambda m: None)
    t, v = (float(x) for x in re.search(r"test_days = ([0-9.]+), val_days = ([0-9.]+)", msg).groups())
    assert 0 < t < 1 and 0 < v < 1  # hours, written as fractions of a day
    fit = build_splits(ev, None, SplitConfig(test_days=t, val_days=v))
    assert fit.training_problem is None and len(fit.val) > 0 and len(fit.test) > 0
    # the message says how many strata those periods hold: exactly what splitting with them gives
    assert sp.suggested_strata == (len(fit.test), len(fit.val)) and fit.suggested_strata is None
    assert f"they hold {len(fit.test)} test and {len(fit.val)} validation strata" in msg
    # the periods are exactly that long: the test period starts t days before the last event, to the nanosecond
    last = pd.Timestamp(ev["ts"].max())
    assert fit.cutoffs["test_start"] == last - pd.Timedelta(days=t)
    assert fit.cutoffs["val_start"] == last - pd.Timedelta(days=t) - pd.Timedelta(days=v)
    first_ts = ev.groupby("stratum_id")["ts"].min()
    n_train_sessions = int((first_ts < fit.cutoffs["val_start"]).sum())
    assert len(fit.train) == n_train_sessions  # a session belongs to the period of its first event
    # whole days still mean what they meant: 1 day = the last 24 hours
    one = build_splits(ev, None, SplitConfig(test_days=1, val_days=0.5))
    assert one.cutoffs["test_start"] == last - pd.Timedelta(days=1)
    assert one.cutoffs["val_start"] == last - pd.Timedelta(hours=36)


@pytest.mark.parametrize("section,field,value", [
    ("split", "test_days", 0), ("split", "test_days", -1), ("split", "val_days", -0.5), ("split", "test_days", "14"),
    ("split", "val_days", True), ("split", "test_days", float("nan")), ("split", "test_days", float("inf")),
    ("eval", "bootstrap", 0), ("eval", "bootstrap", 2.5)])  # bootstrap = 0 crashed the evaluation before
def test_split_days_and_bootstrap_must_be_valid(section, field, value):
    from semid_pipeline.config import EvalConfig
    from semid_pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"\[{section}\] {field} = "):
        {"split": SplitConfig, "eval": EvalConfig}[section](**{field: value})
    assert SplitConfig(test_days=0.25, val_days=0).val_days == 0 and EvalConfig(bootstrap=1).bootstrap == 1


def test_too_few_test_strata_say_what_to_change():
    from semid_pipeline import periods

    cfg = SplitConfig(test_days=0.5)
    assert periods.strata_problem(50, min_strata=50, cfg=cfg) is None
    msg = periods.strata_problem(19, min_strata=50, cfg=cfg)
    assert "holds 19 strata" in msg and "min_strata = 50" in msg and "test_days (now 0.5)" in msg and "context" not in msg
    mssd = periods.strata_problem(19, min_strata=50, cfg=cfg, context_filter="radio")
    assert 'context_filter = "all" instead of \'radio\'' in mssd
    assert "context" not in periods.strata_problem(19, min_strata=50, cfg=cfg, context_filter="all")
    assert periods.thin_validation(60, min_strata=50, cfg=cfg) is None
    assert "none: the last epoch is kept" in periods.thin_validation(0, min_strata=50, cfg=cfg)
    assert "holds 7 strata" in periods.thin_validation(7, min_strata=50, cfg=cfg)


def test_the_verdict_suggests_every_context_only_for_mssd_sessions():
    from dataclasses import replace

    from semid_pipeline import periods
    from semid_pipeline.config import EvalConfig, SemidConfig

    sp = build_splits(session_events(), None, SplitConfig(test_days=10, val_days=10))
    cfg = replace(SemidConfig(), eval=EvalConfig(min_strata=len(sp.test) + 1))
    for dataset, hint in (("mssd:/data/mssd", True), ("synthetic:demo:sessions", True), ("events:/d/e.csv", False),
                          ("synthetic", False), ("not a spec", False)):
        problem, warning = periods.verdict(sp, cfg=cfg, dataset=dataset)
        assert f"holds {len(sp.test)} strata" in problem and warning is None
        assert ("context_filter" in problem) == hint, dataset
    problem, warning = periods.verdict(sp, cfg=replace(cfg, eval=EvalConfig(min_strata=1)), dataset="mssd:/x")
    assert problem is None and warning is None


def test_the_verdict_says_when_the_suggested_periods_hold_too_few_strata():
    from dataclasses import replace

    from semid_pipeline import periods
    from semid_pipeline.config import EvalConfig, SemidConfig

    sp = build_splits(_two_day_sessions(), None, SplitConfig())  # nothing to train on: periods are suggested
    n_test = sp.suggested_strata[0]
    assert n_test > 0
    for min_strata, dataset, words, context in ((n_test + 1, "mssd:/x", True, True),
                                                (n_test + 1, "events:/d/e.csv", True, False),
                                                (n_test, "mssd:/x", False, False)):
        cfg = replace(SemidConfig(), eval=EvalConfig(min_strata=min_strata))
        problem, warning = periods.verdict(sp, cfg=cfg, dataset=dataset)
        assert problem.startswith(sp.training_problem) and warning is None
        assert (f"Those {n_test} test strata are fewer than [eval] min_strata = {min_strata}: also lower it" in problem) == words
        assert ("context_filter" in problem) == context, (min_strata, dataset)
    # suggested periods that hold no test stratum at all: lowering min_strata would not help
    problem, _ = periods.verdict(replace(sp, suggested_strata=(0, 0)), cfg=SemidConfig(), dataset="mssd:/x")
    assert "no test stratum can be evaluated either" in problem and "also lower it" not in problem
