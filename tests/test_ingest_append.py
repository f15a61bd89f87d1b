"""Appending landed files to the current data set (``ingest.append_files``), both formats."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from conftest import assert_names_the_problem
from semid_pipeline import warehouse as wh
from semid_pipeline.config import IngestConfig
from semid_pipeline.errors import InputDataError
from semid_pipeline.ingest import append_files, ingest_events, ingest_mssd
from semid_pipeline.schema import MSSD_TRACK_COLUMNS

ALL = IngestConfig(context_filter="all")
KEY_USERS = "synthetic:demo:users"
KEY_MSSD = "synthetic:demo:sessions"


@pytest.fixture
def land(tmp_path: Path) -> Path:
    d = tmp_path / "landing"
    d.mkdir()
    return d


# ------------------------------------------------------------------------------------------
# small hand-made files
# ------------------------------------------------------------------------------------------


def write_events(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    df = pd.DataFrame(rows, columns=["user_id", "track_id", "timestamp", "feedback"])
    if path.suffix == ".parquet":
        df.to_parquet(path)
    else:
        df.to_csv(path, index=False)
    return path


def write_tracks(path: Path, rows: list[tuple[str, str, float]]) -> Path:
    df = pd.DataFrame(rows, columns=["track_id", "genre_id", "tempo"])
    if path.suffix == ".parquet":
        df.to_parquet(path)
    else:
        df.to_csv(path, index=False)
    return path


LOG_COLS = ["session_id", "session_position", "session_length", "track_id_clean", "skip_1", "skip_2",
            "skip_3", "not_skipped", "hour_of_day", "date", "context_type"]


def write_log(path: Path, sessions: dict[str, list[str]], skipped: set[tuple[str, int]] = frozenset()) -> Path:
    """sessions: session_id → track ids in play order; skipped: (session, position) that are skips."""
    lines = [",".join(LOG_COLS)]
    for s, tracks in sessions.items():
        for i, t in enumerate(tracks, start=1):
            skip = "true" if (s, i) in skipped else "false"
            lines.append(",".join([s, str(i), str(len(tracks)), t, skip, skip, skip,
                                   "false" if skip == "true" else "true", "12", "2018-07-15", "radio"]))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_tf(path: Path, track_ids: list[str]) -> Path:
    rows = []
    for i, t in enumerate(track_ids):
        vals = {c: "0.5" for c in MSSD_TRACK_COLUMNS}
        vals.update(track_id=t, release_year=str(1990 + i), mode="major", key=str(i % 12), time_signature="4",
                    duration=str(200.0 + i))
        rows.append(",".join(vals[c] for c in MSSD_TRACK_COLUMNS))
    path.write_text(",".join(MSSD_TRACK_COLUMNS) + "\n" + "\n".join(rows) + "\n")
    return path


def record(con) -> list[tuple[str, str, str]]:
    return con.execute("SELECT dataset, file_path, kind FROM ingestion_record ORDER BY rowid").fetchall()


@pytest.fixture
def users(con, tmp_path):
    """A per-user data set: 4 events (u1, u2) and a tracks file for t1..t3."""
    ev = write_events(tmp_path / "events.csv", [
        ("u1", "t1", "2024-01-01 10:00:00", "1"),
        ("u1", "t2", "2024-01-02 10:00:00", "0"),
        ("u2", "t1", "2024-01-01 11:00:00", "1"),
        ("u2", "t3", "2024-01-03 11:00:00", "1"),
    ])
    tr = write_tracks(tmp_path / "tracks.csv", [("t1", "g1", 100.0), ("t2", "g1", 110.0), ("t3", "g2", 120.0)])
    res = ingest_events(con, [ev], [tr], dataset_key=KEY_USERS, cfg=ALL)
    return ev, tr, res


@pytest.fixture
def sessions(con, tmp_path):
    """An MSSD data set: two sessions (s1: t1 t2 t3, s2: t1 t4) + track features for t1..t4."""
    log = write_log(tmp_path / "log_0.csv", {"s1": ["t1", "t2", "t3"], "s2": ["t1", "t4"]}, {("s1", 2)})
    tf = write_tf(tmp_path / "tf_0.csv", ["t1", "t2", "t3", "t4"])
    res = ingest_mssd(con, [log], [tf], dataset_key=KEY_MSSD, cfg=ALL)
    return log, tf, res


# ------------------------------------------------------------------------------------------
# per-user
# ------------------------------------------------------------------------------------------


def test_ingest_events_accepts_lists_and_single_paths(con, tmp_path):
    a = write_events(tmp_path / "events_a.csv", [("u1", "t1", "2024-01-01", "1"), ("u1", "t2", "2024-01-02", "0")])
    b = write_events(tmp_path / "events_b.parquet", [("u1", "t3", "2024-01-03", "up"), ("u2", "t1", "2024-01-01", "1")])
    t1 = write_tracks(tmp_path / "tracks_1.csv", [("t1", "g1", 1.0), ("t2", "g1", 2.0)])
    t2 = write_tracks(tmp_path / "tracks_2.parquet", [("t2", "g9", 20.0), ("t3", "g3", 3.0)])
    res = ingest_events(con, [a, b], [t1, t2], dataset_key="events:multi", cfg=ALL)
    assert res.n_events == 4 and res.n_strata == 2 and res.n_tracks == 3
    assert [(Path(f.path).name, f.kind) for f in res.files] == [
        ("events_a.csv", "events"), ("events_b.parquet", "events"), ("tracks_1.csv", "tracks"),
        ("tracks_2.parquet", "tracks")]
    # the later tracks file wins for t2; the earlier file's record counts the superseded row
    assert con.execute("SELECT genre_id, tempo FROM track_catalog WHERE track_id = 't2'").fetchone() == ("g9", 20.0)
    assert (res.files[2].rows_read, res.files[2].rows_kept, res.files[2].rows_rejected) == (2, 1, 1)
    assert res.files[2].reject_reasons == {"superseded by a later tracks file": 1}
    assert con.execute(
        "SELECT position, track_id, source_file FROM feedback_events WHERE stratum_id = 'u1' ORDER BY position"
    ).fetchall() == [(1, "t1", "events_a.csv"), (2, "t2", "events_a.csv"), (3, "t3", "events_b.parquet")]
    # tracks may be omitted or empty; a bare path (the dropped old call style) is refused
    before = wh.snapshot(con)
    with pytest.raises(TypeError, match="lists of paths"):
        ingest_events(con, a, None, dataset_key="events:one", cfg=ALL)
    assert wh.snapshot(con) == before
    r2 = ingest_events(con, [a], [], dataset_key="events:one", cfg=ALL)
    r3 = ingest_events(con, [a], dataset_key="events:one", cfg=ALL)
    assert r2.fingerprint == r3.fingerprint and r2.n_events == 2


def test_duplicate_events_across_files_name_both_files(con, tmp_path):
    a = write_events(tmp_path / "events_a.csv", [("u1", "t1", "2024-01-01", "1"), ("u1", "t2", "2024-01-02", "0")])
    b = write_events(tmp_path / "events_b.csv", [("u9", "t9", "2024-01-09", "1"), ("u1", "t2", "2024-01-02", "1")])
    with pytest.raises(InputDataError) as ei:
        ingest_events(con, [a, b], None, dataset_key="x", cfg=ALL)
    msg = str(ei.value)
    for needle in ("duplicate", "user_id='u1'", "track_id='t2'", "events_a.csv line 3", "events_b.csv line 3"):
        assert needle in msg, msg
    assert ei.value.column == "user_id, track_id, timestamp"


def test_per_user_append_adds_events_and_tracks(con, users, land):
    ev, tr, before = users
    q = "SELECT * EXCLUDE (position, stratum_length, genre_id) FROM feedback_events"
    old_rows = con.execute(q).fetchall()
    new_ev = write_events(land / "events_2024_02.csv", [
        ("u1", "t4", "2024-02-01 10:00:00", "like"),
        ("u3", "t1", "2024-02-02 10:00:00", "dislike"),
    ])
    new_tr = write_tracks(land / "tracks_new.parquet", [("t4", "g4", 130.0), ("t3", "g3-fixed", 121.0)])
    res = append_files(con, [new_ev, new_tr], cfg=ALL)

    assert res.dataset == KEY_USERS == wh.get_meta(con, "dataset")
    assert res.fingerprint != before.fingerprint and res.fingerprint == wh.get_meta(con, "dataset_fingerprint")
    assert res.n_events == 6 and res.n_strata == 3 and res.n_tracks == 4 and res.stratum_kind == "user"
    assert [(Path(f.path).name, f.kind) for f in res.files] == [
        ("events.csv", "events"), ("events_2024_02.csv", "events"), ("tracks.csv", "tracks"),
        ("tracks_new.parquet", "tracks")]
    # old rows kept, new ones added; u1's new event comes last in its history
    assert set(old_rows) <= set(con.execute(q).fetchall())
    # events take their genre from the catalog, so the updated t3 row shows there too
    assert con.execute("SELECT DISTINCT genre_id FROM feedback_events WHERE track_id = 't3'").fetchall() == [
        ("g3-fixed",)]
    assert con.execute(
        "SELECT position, stratum_length, source_file FROM feedback_events WHERE track_id = 't4'"
    ).fetchone() == (3, 3, "events_2024_02.csv")
    # catalog: the new track is in, and the later tracks file wins for t3
    assert con.execute("SELECT track_id, genre_id, tempo FROM track_catalog ORDER BY track_id").fetchall() == [
        ("t1", "g1", 100.0), ("t2", "g1", 110.0), ("t3", "g3-fixed", 121.0), ("t4", "g4", 130.0)]
    # every file of the data set is recorded, under the original key; the landed ones in appended_files
    assert record(con) == [(KEY_USERS, str(ev), "events"), (KEY_USERS, str(new_ev), "events"),
                           (KEY_USERS, str(tr), "tracks"), (KEY_USERS, str(new_tr), "tracks")]
    assert json.loads(wh.get_meta(con, "appended_files")) == [str(new_ev), str(new_tr)]
    assert set(wh.snapshot(con)) == {"feedback_events", "track_catalog", "ingestion_record", "semid_meta"}

    # a second append extends the list
    ev3 = write_events(land / "events_3.csv", [("u2", "t4", "2024-03-01", "1")])
    res3 = append_files(con, [ev3], cfg=ALL)
    assert res3.n_events == 7 and res3.dataset == KEY_USERS and len(res3.files) == 5
    assert json.loads(wh.get_meta(con, "appended_files")) == [str(new_ev), str(new_tr), str(ev3)]


def test_same_file_twice_is_a_no_op(con, users, land, tmp_path):
    ev, _, _ = users
    new_ev = write_events(land / "events_x.csv", [("u4", "t2", "2024-02-01", "1")])
    res = append_files(con, [new_ev], cfg=ALL)
    snap = wh.snapshot(con)
    again = append_files(con, [new_ev], cfg=ALL)
    assert wh.snapshot(con) == snap
    assert again == res and again.n_events == 5
    # a copy of an already-ingested file under another name (same sha256) is skipped too, also
    # when it is landed together with a genuinely new file (and the same new file twice in a batch)
    copy = land / "events_copy.csv"
    copy.write_bytes(ev.read_bytes())
    fresh = write_events(land / "events_y.csv", [("u5", "t1", "2024-02-05", "0")])
    res2 = append_files(con, [copy, fresh, fresh], cfg=ALL)
    assert res2.n_events == 6 and len(res2.files) == 4
    assert con.execute("SELECT count(*) FROM ingestion_record WHERE file_path = ?", [str(copy)]).fetchone()[0] == 0
    assert json.loads(wh.get_meta(con, "appended_files")) == [str(new_ev), str(fresh)]


def test_duplicate_event_in_landed_file_is_refused(con, users, land):
    ev, _, _ = users
    before = wh.snapshot(con)
    bad = write_events(land / "events_dup.csv", [("u9", "t1", "2024-05-01", "1"),
                                                 ("u1", "t2", "2024-01-02 10:00:00", "1")])
    with pytest.raises(InputDataError) as ei:
        append_files(con, [bad], cfg=ALL)
    msg = str(ei.value)
    assert "duplicate" in msg and "user_id='u1'" in msg and "events.csv line 3" in msg and "events_dup.csv" in msg
    assert wh.snapshot(con) == before


@pytest.mark.parametrize("case", ["missing column", "bad feedback", "bad tracks", "not parquet", "unknown suffix"])
def test_bad_landed_file_leaves_warehouse_unchanged(con, users, land, case):
    before = wh.snapshot(con)
    ok = write_events(land / "events_ok.csv", [("u7", "t1", "2024-06-01", "1")])
    if case == "missing column":
        bad = land / "events_nofb.csv"
        bad.write_text("user_id,track_id,timestamp\nu8,t1,2024-06-02\n")
        needles = ["events_nofb.csv", "feedback"]
    elif case == "bad feedback":
        bad = write_events(land / "events_meh.csv",
                           [("u8", "t1", "2024-06-02", "1"), ("u8", "t2", "2024-06-03", "meh")])
        needles = ["events_meh.csv", "feedback", "line 3", "meh"]
    elif case == "bad tracks":
        bad = land / "tracks_bad.csv"
        bad.write_text("track_id,release_year\nt5,1999\nt6,nineteen\n")
        needles = ["tracks_bad.csv", "release_year", "line 3", "nineteen"]
    elif case == "not parquet":
        bad = land / "events_broken.parquet"
        bad.write_bytes(b"PAR1 not really")
        needles = ["events_broken.parquet", "Parquet"]
    else:
        bad = land / "events.json"
        bad.write_text("{}")
        needles = ["events.json", "neither"]
    with pytest.raises(InputDataError) as ei:
        append_files(con, [ok, bad], cfg=ALL)
    assert_names_the_problem(ei.value, needles)
    assert wh.snapshot(con) == before
    assert wh.get_meta(con, "appended_files") == "[]"


def test_changed_file_of_the_data_set_is_refused(con, users, land):
    ev, _, _ = users
    before = wh.snapshot(con)
    # overwrite the original events file in place, then land something
    df = pd.read_csv(ev, dtype=str)
    df.loc[0, "feedback"] = "0"
    df.to_csv(ev, index=False)
    new = write_events(land / "events_n.csv", [("u7", "t1", "2024-06-01", "1")])
    with pytest.raises(InputDataError, match="(?s)changed on disk.*events.csv"):
        append_files(con, [new], cfg=ALL)
    assert wh.snapshot(con) == before


def test_format_mismatch_refused(con, users, sessions, land, tmp_path):
    # the warehouse now holds the MSSD data set (the fixture order); per-user files are refused
    before = wh.snapshot(con)
    ev = write_events(land / "events_more.csv", [("u1", "t9", "2024-01-09", "1")])
    with pytest.raises(InputDataError) as ei:
        append_files(con, [ev], cfg=ALL)
    assert "events_more.csv" in str(ei.value) and KEY_MSSD in str(ei.value) and "per-user" in str(ei.value)
    tr = write_tracks(land / "tracks_more.csv", [("t9", "g9", 1.0)])
    with pytest.raises(InputDataError, match="same format"):
        append_files(con, [tr], cfg=ALL)
    assert wh.snapshot(con) == before
    # and MSSD files onto a per-user data set
    ingest_events(con, [users[0]], [users[1]], dataset_key=KEY_USERS, cfg=ALL)
    before = wh.snapshot(con)
    log = write_log(land / "log_9.csv", {"s9": ["t1"]})
    with pytest.raises(InputDataError) as ei:
        append_files(con, [log], cfg=ALL)
    assert "log_9.csv" in str(ei.value) and "MSSD" in str(ei.value) and KEY_USERS in str(ei.value)
    with pytest.raises(InputDataError, match="same format"):
        append_files(con, [write_tf(land / "tf_9.csv", ["t1"])], cfg=ALL)
    assert wh.snapshot(con) == before


def test_nothing_to_append_to(tmp_path, land):
    c = duckdb.connect()
    ev = write_events(land / "events.csv", [("u1", "t1", "2024-01-01", "1")])
    with pytest.raises(InputDataError, match="full ingestion first"):
        append_files(c, [ev], cfg=ALL)


# ------------------------------------------------------------------------------------------
# MSSD
# ------------------------------------------------------------------------------------------


def test_mssd_append_adds_logs_and_track_features(con, sessions, land):
    log, tf, before = sessions
    old_rows = con.execute("SELECT * FROM feedback_events").fetchall()
    new_log = write_log(land / "log_1.csv", {"s3": ["t5", "t1"]}, {("s3", 1)})
    new_tf = write_tf(land / "tf_1.csv", ["t5"])
    res = append_files(con, [new_log, new_tf], cfg=ALL)
    assert res.dataset == KEY_MSSD == wh.get_meta(con, "dataset")
    assert res.fingerprint != before.fingerprint and res.fingerprint == wh.get_meta(con, "dataset_fingerprint")
    assert res.n_events == 7 and res.n_strata == 3 and res.n_tracks == 5 and res.stratum_kind == "session"
    assert res.n_positive == before.n_positive + 1
    assert set(old_rows) <= set(con.execute("SELECT * FROM feedback_events").fetchall())
    assert con.execute("SELECT source_file FROM feedback_events WHERE stratum_id = 's3' LIMIT 1").fetchone() == (
        "log_1.csv",)
    assert record(con) == [(KEY_MSSD, str(log), "log"), (KEY_MSSD, str(new_log), "log"),
                           (KEY_MSSD, str(tf), "tracks"), (KEY_MSSD, str(new_tf), "tracks")]
    assert json.loads(wh.get_meta(con, "appended_files")) == [str(new_log), str(new_tf)]
    # the same file again: no-op
    snap = wh.snapshot(con)
    assert append_files(con, [new_log], cfg=ALL) == res
    assert wh.snapshot(con) == snap


def test_mssd_bad_landed_files_leave_warehouse_unchanged(con, sessions, land):
    before = wh.snapshot(con)
    # missing column
    bad = land / "log_nocontext.csv"
    df = pd.read_csv(write_log(land / "log_tmp.csv", {"s7": ["t1"]}), dtype=str).drop(columns=["context_type"])
    df.to_csv(bad, index=False)
    with pytest.raises(InputDataError, match="(?s)log_nocontext.csv.*context_type"):
        append_files(con, [bad], cfg=ALL)
    # a session key already in the data set
    dup = write_log(land / "log_dup.csv", {"s1": ["t1"]})
    with pytest.raises(InputDataError, match="(?s)duplicate.*session_position"):
        append_files(con, [dup], cfg=ALL)
    # a track already in the track features: MSSD tf files may not repeat a track
    tf = write_tf(land / "tf_dup.csv", ["t2", "t6"])
    with pytest.raises(InputDataError, match="(?s)duplicate track_id.*t2"):
        append_files(con, [tf], cfg=ALL)
    assert wh.snapshot(con) == before
