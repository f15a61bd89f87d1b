"""Ingestion: MSSD and per-user parsing, labels, catalogs, bad input (atomic failure), no mixing."""

from __future__ import annotations

import gzip
import os
import json
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from semid_pipeline import warehouse as wh
from semid_pipeline.config import DatasetSpec, IngestConfig
from semid_pipeline.errors import ConfigError, InputDataError
from semid_pipeline.ingest import (
    FileRecord,
    IngestionResult,
    ingest_dataset,
    ingest_events,
    ingest_mssd,
    resolve_mssd_paths,
)
from semid_pipeline.schema import FEEDBACK_EVENTS_COLUMNS, MSSD_TRACK_COLUMNS, TRACK_KEY_COLUMNS

SHARED = Path(os.environ.get("SEMID_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")
FRAGMENT = SHARED / "data" / "mssd_fragment" / "very_small.csv"
ALL = IngestConfig(context_filter="all")
RADIO = IngestConfig()

needs_fragment = pytest.mark.skipif(not FRAGMENT.exists(), reason="shared MSSD fragment not available")


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


@pytest.fixture
def log0(tmp_path: Path) -> Path:
    if not FRAGMENT.exists():
        pytest.skip("shared MSSD fragment not available")
    d = tmp_path / "mssd"
    d.mkdir()
    p = d / "log_0.csv"
    shutil.copy(FRAGMENT, p)
    return p


@pytest.fixture
def con(tmp_path: Path):
    c = duckdb.connect(str(tmp_path / "wh.duckdb"))
    yield c
    c.close()


def events_frame(con) -> pd.DataFrame:
    return con.execute(
        "SELECT * EXCLUDE (source_file) FROM feedback_events ORDER BY stratum_id, position"
    ).df()


def lines(p: Path) -> list[str]:
    return p.read_text().splitlines(keepends=True)


def rewrite(p: Path, out: Path, fn) -> Path:
    """Apply fn(list of row dicts keyed by header) and write the CSV back."""
    df = pd.read_csv(p, dtype=str, keep_default_na=False)
    df = fn(df)
    df.to_csv(out, index=False)
    return out


def to_lower_iso(df: pd.DataFrame) -> pd.DataFrame:
    for c in df.columns:
        if set(df[c].unique()) <= {"True", "False"}:
            df[c] = df[c].str.lower()
    df["date"] = pd.to_datetime(df["date"], format="%d-%m-%y").dt.strftime("%Y-%m-%d")
    return df


# ------------------------------------------------------------------------------------------
# MSSD: the real fragment
# ------------------------------------------------------------------------------------------


def test_fragment_all_contexts(con, log0):
    res = ingest_mssd(con, [log0], [], dataset_key="mssd:frag", cfg=ALL)
    assert isinstance(res, IngestionResult) and res.stratum_kind == "session"
    (rec,) = res.files
    assert isinstance(rec, FileRecord)
    assert (rec.rows_read, rec.rows_kept, rec.rows_rejected) == (201, 201, 0)
    assert rec.sha256 == "c24170c7e78e8859cecfea53556778b9d2f94bc25f13a6841004a519dac57ca9"
    assert res.n_events == 201 and res.n_strata == 11 and res.n_tracks == 175
    assert res.n_positive == 201 - 82
    share, tracks = con.execute("SELECT avg(1 - feedback), count(DISTINCT track_id) FROM feedback_events").fetchone()
    assert round(share * 100, 1) == 40.8 and tracks == 175
    assert wh.table_columns(con, "feedback_events") == {
        k: v for k, v in FEEDBACK_EVENTS_COLUMNS.items()
    }
    cat = wh.table_columns(con, "track_catalog")
    assert list(cat)[:5] == list(TRACK_KEY_COLUMNS)
    assert set(MSSD_TRACK_COLUMNS) <= set(cat)  # content columns exist (NULL: no tf file)
    row = con.execute(
        "SELECT ts, source_file, context_type, artist_id FROM feedback_events "
        "WHERE stratum_id LIKE '0_00006f66%' AND position = 1"
    ).fetchone()
    assert str(row[0]) == "2018-07-15 16:00:00" and row[1] == "log_0.csv" and row[2] == "editorial_playlist"
    assert row[3] is None
    assert con.execute("SELECT min(ts)::DATE, max(ts)::DATE FROM feedback_events").fetchone() == (
        pd.Timestamp("2018-07-14").date(), pd.Timestamp("2018-07-15").date())
    assert wh.get_meta(con, "dataset") == "mssd:frag"
    assert wh.get_meta(con, "dataset_fingerprint") == res.fingerprint
    ir = con.execute("SELECT * FROM ingestion_record").df()
    assert ir.loc[0, "kind"] == "log" and ir.loc[0, "rows_read"] == 201 and json.loads(ir.loc[0, "reject_reasons"]) == {}
    assert list(res.to_frame().columns)[:2] == ["path", "kind"]
    # no temp/staging tables left behind
    assert set(wh.snapshot(con)) == {"feedback_events", "track_catalog", "ingestion_record", "semid_meta"}


def test_fragment_radio_default(con, log0):
    res = ingest_mssd(con, [log0], [], dataset_key="mssd:frag", cfg=RADIO)
    (rec,) = res.files
    assert (rec.rows_read, rec.rows_kept, rec.rows_rejected) == (201, 57, 144)
    assert rec.reject_reasons == {"context_type != 'radio'": 144}
    assert res.n_events == 57 and res.n_strata == 3
    assert con.execute("SELECT DISTINCT context_type FROM feedback_events").fetchall() == [("radio",)]
    # every session has positives and negatives
    assert con.execute(
        "SELECT min(s), max(s) FROM (SELECT stratum_id, avg(feedback) s FROM feedback_events GROUP BY 1)"
    ).fetchone()[0] > 0


def test_fingerprint_depends_on_config(con, log0):
    a = ingest_mssd(con, [log0], [], dataset_key="k", cfg=ALL).fingerprint
    b = ingest_mssd(con, [log0], [], dataset_key="k", cfg=RADIO).fingerprint
    c = ingest_mssd(con, [log0], [], dataset_key="k", cfg=ALL).fingerprint
    assert a != b and a == c


@pytest.mark.parametrize("skip,negatives", [("skip_1", None), ("skip_3", None), ("not_skipped", None)])
def test_skip_definitions(con, log0, skip, negatives):
    ingest_mssd(con, [log0], [], dataset_key="k", cfg=IngestConfig(context_filter="all", skip_definition=skip))
    n_neg = con.execute("SELECT count(*) FROM feedback_events WHERE feedback = 0").fetchone()[0]
    raw = pd.read_csv(log0)
    expected = int((~raw["not_skipped"]).sum()) if skip == "not_skipped" else int(raw[skip].sum())
    assert n_neg == expected


def test_bad_config(con, log0):
    with pytest.raises(ConfigError):
        ingest_mssd(con, [log0], [], dataset_key="k", cfg=IngestConfig(skip_definition="skip_9"))
    with pytest.raises(ConfigError):
        ingest_mssd(con, [log0], [], dataset_key="k", cfg=IngestConfig(context_filter="podcast"))


def test_gzip_and_spellings_identical(con, log0, tmp_path):
    ingest_mssd(con, [log0], [], dataset_key="k", cfg=ALL)
    base = events_frame(con)
    gz = tmp_path / "gz"
    gz.mkdir()
    gzp = gz / "log_0.csv.gz"
    gzp.write_bytes(gzip.compress(log0.read_bytes()))
    ingest_mssd(con, [gzp], [], dataset_key="k2", cfg=ALL)
    pd.testing.assert_frame_equal(events_frame(con), base)
    assert con.execute("SELECT DISTINCT source_file FROM feedback_events").fetchall() == [("log_0.csv.gz",)]
    alt = tmp_path / "alt"
    alt.mkdir()
    p = rewrite(log0, alt / "log_0.csv", to_lower_iso)
    assert "true" in p.read_text() and "2018-07-15" in p.read_text()
    ingest_mssd(con, [p], [], dataset_key="k3", cfg=ALL)
    pd.testing.assert_frame_equal(events_frame(con), base)


def test_two_files_and_folder(con, log0, tmp_path):
    d = tmp_path / "two"
    d.mkdir()
    ls = lines(log0)
    # split between sessions (row 41 starts the 3rd session); second file in the other spelling
    (d / "log_a.csv").write_text("".join(ls[:41]))
    (d / "log_b.csv").write_text("".join([ls[0]] + ls[41:]))
    rewrite(d / "log_b.csv", d / "log_b.csv", to_lower_iso)
    (d / "notes.txt").write_text("ignored")
    logs, tfs = resolve_mssd_paths([str(d)])
    assert [p.name for p in logs] == ["log_a.csv", "log_b.csv"] and tfs == []
    res = ingest_mssd(con, logs, tfs, dataset_key="k", cfg=ALL)
    assert [f.rows_read for f in res.files] == [40, 161]
    assert res.n_events == 201 and res.n_strata == 11 and res.n_tracks == 175
    assert dict(con.execute("SELECT source_file, count(*) FROM feedback_events GROUP BY 1").fetchall()) == {
        "log_a.csv": 40, "log_b.csv": 161}


def _write_tf(path: Path, track_ids: list[str]) -> Path:
    cols = MSSD_TRACK_COLUMNS
    rows = []
    for i, t in enumerate(track_ids):
        vals = {c: str(0.5) for c in cols}
        vals.update(track_id=t, release_year=str(1990 + i % 30), mode="major" if i % 2 else "minor",
                    key=str(i % 12), time_signature="4", duration=str(200.0 + i))
        rows.append(",".join(vals[c] for c in cols))
    path.write_text(",".join(cols) + "\n" + "\n".join(rows) + "\n")
    return path


def test_track_features_file(con, log0, tmp_path):
    tracks = pd.read_csv(log0)["track_id_clean"].unique().tolist()
    tf = _write_tf(log0.parent / "tf_0.csv", tracks + ["t_extra"])
    logs, tfs = resolve_mssd_paths([str(log0.parent)])
    assert tfs == [tf]
    res = ingest_mssd(con, logs, tfs, dataset_key="k", cfg=RADIO)
    assert res.n_tracks == 176  # every tf row is kept, not only the radio tracks
    cat = wh.table_columns(con, "track_catalog")
    assert list(cat)[:5] == list(TRACK_KEY_COLUMNS) and cat["release_year"] == "INTEGER"
    assert cat["mode"] == "VARCHAR" and "acoustic_vector_7" in cat and list(cat).count("release_year") == 1
    assert con.execute("SELECT release_year, duration FROM track_catalog WHERE track_id = ?", [tracks[1]]).fetchone() == (
        1991, 201.0)
    assert [f.kind for f in res.files] == ["log", "tracks"]
    # explicit files are classified by name
    assert resolve_mssd_paths([str(tf), str(log0)]) == ([log0], [tf])


# ------------------------------------------------------------------------------------------
# per-user events
# ------------------------------------------------------------------------------------------


def _events_df(feedback: list) -> pd.DataFrame:
    n = len(feedback)
    return pd.DataFrame(
        {
            "user_id": ["u1" if i % 2 == 0 else "u2" for i in range(n)],
            "track_id": [f"t{i % 5}" for i in range(n)],
            "timestamp": [f"2024-01-{1 + i:02d} 10:00:00" for i in range(n)],
            "feedback": feedback,
            "artist_id": [f"a{i % 3}" for i in range(n)],
        }
    )


@pytest.mark.parametrize(
    "pos,neg",
    [("1", "0"), ("true", "false"), ("True", "FALSE"), ("up", "down"), ("Like", "DISLIKE"), (" like ", "dislike")],
)
def test_feedback_spellings(con, tmp_path, pos, neg):
    p = tmp_path / "events.csv"
    _events_df([pos, neg, pos, pos, neg, neg]).to_csv(p, index=False)
    res = ingest_events(con, [p], [], dataset_key="events:x", cfg=ALL)
    assert res.stratum_kind == "user" and res.n_events == 6 and res.n_positive == 3 and res.n_strata == 2
    got = con.execute("SELECT feedback FROM feedback_events ORDER BY ts").fetchall()
    assert [g[0] for g in got] == [1, 0, 1, 1, 0, 0]


def test_per_user_positions_and_catalog(con, tmp_path):
    df = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u2"],
            "track_id": ["tb", "ta", "tc", "ta"],
            "timestamp": ["2024-01-02 00:00:00", "2024-01-02 00:00:00", "2024-01-01 00:00:00", "2024-01-05"],
            "feedback": ["up", "down", "up", "up"],
            "artist_id": ["ab", "aa", "ac", "aa"],
            "genre_id": ["g1", "g1", "g2", "g1"],
        }
    )
    p = tmp_path / "ev.csv"
    df.to_csv(p, index=False)
    ingest_events(con, [p], [], dataset_key="events:x", cfg=ALL)
    rows = con.execute(
        "SELECT stratum_id, position, stratum_length, track_id, context_type, artist_id, source_file "
        "FROM feedback_events ORDER BY stratum_id, position"
    ).fetchall()
    assert rows == [
        ("u1", 1, 3, "tc", None, "ac", "ev.csv"),
        ("u1", 2, 3, "ta", None, "aa", "ev.csv"),  # same timestamp → ordered by track_id
        ("u1", 3, 3, "tb", None, "ab", "ev.csv"),
        ("u2", 1, 1, "ta", None, "aa", "ev.csv"),
    ]
    assert wh.table_columns(con, "feedback_events") == FEEDBACK_EVENTS_COLUMNS
    cat = con.execute("SELECT * FROM track_catalog ORDER BY track_id").df()
    assert list(cat.columns) == list(TRACK_KEY_COLUMNS)
    assert cat["track_id"].tolist() == ["ta", "tb", "tc"] and cat["genre_id"].tolist() == ["g1", "g1", "g2"]


def test_rating_threshold_neutral_band(con, tmp_path):
    p = tmp_path / "ratings.csv"
    _events_df(["5", "1", "3", "3.4", "2.6", "4", "2"]).to_csv(p, index=False)
    cfg = IngestConfig(rating_threshold=3.0, neutral_band=0.5)
    res = ingest_events(con, [p], [], dataset_key="events:r", cfg=cfg)
    (rec,) = res.files
    assert (rec.rows_read, rec.rows_kept, rec.rows_rejected) == (7, 4, 3)
    assert rec.reject_reasons == {"neutral rating": 3}
    assert [r[0] for r in con.execute("SELECT feedback FROM feedback_events ORDER BY ts").fetchall()] == [1, 0, 1, 0]
    # stratum_length counts kept events only
    assert con.execute(
        "SELECT stratum_id, any_value(stratum_length), count(*) FROM feedback_events GROUP BY 1 ORDER BY 1"
    ).fetchall() == [("u1", 2, 2), ("u2", 2, 2)]
    # without a band, the threshold itself is positive
    res = ingest_events(con, [p], [], dataset_key="events:r", cfg=IngestConfig(rating_threshold=3.0))
    assert res.n_events == 7 and res.n_positive == 4


def test_parquet_events_and_tracks_with_embedding(con, tmp_path):
    ev = _events_df([True, False, True, False])
    ev["timestamp"] = pd.to_datetime(ev["timestamp"])
    evp = tmp_path / "events.parquet"
    ev.to_parquet(evp)
    tracks = pd.DataFrame(
        {
            "track_id": [f"t{i}" for i in range(5)],
            "genre_id": ["g0", "g1", "g0", "g1", "g0"],
            "release_year": [2000, 2001, 2002, 2003, 2004],
            "tempo": [100.0, 110.0, 120.0, 130.0, 140.0],
            "embedding": [[float(i), 0.5, -1.0] for i in range(5)],
        }
    )
    trp = tmp_path / "tracks.parquet"
    tracks.to_parquet(trp)
    res = ingest_events(con, [evp], [trp], dataset_key="events:pq", cfg=ALL)
    assert res.n_events == 4 and res.n_tracks == 5 and [f.kind for f in res.files] == ["events", "tracks"]
    cat = wh.table_columns(con, "track_catalog")
    assert list(cat)[:5] == list(TRACK_KEY_COLUMNS)
    assert cat["embedding"] == "FLOAT[]" and cat["tempo"] == "DOUBLE"
    got = con.execute("SELECT artist_id, genre_id, embedding FROM track_catalog WHERE track_id = 't2'").fetchone()
    assert got[0] == "a2" and got[1] == "g0" and got[2] == [2.0, 0.5, -1.0]  # artist taken from the events
    assert con.execute("SELECT genre_id FROM feedback_events WHERE track_id = 't1' LIMIT 1").fetchone()[0] == "g1"


def test_csv_tracks_with_embedding(con, tmp_path):
    evp = tmp_path / "events.csv"
    _events_df(["1", "0", "1"]).to_csv(evp, index=False)
    trp = tmp_path / "tracks.csv"
    trp.write_text(
        "track_id,artist_id,title,energy,embedding\n"
        't0,a0,Song A,0.1,"[0.1, 0.2]"\n'
        't1,a1,Song B,0.2,"[0.3, 0.4]"\n'
        't2,a2,"Song, C",0.3,"[0.5, 0.6]"\n'
    )
    res = ingest_events(con, [evp], [trp], dataset_key="events:csv", cfg=ALL)
    assert res.n_tracks == 3
    cat = wh.table_columns(con, "track_catalog")
    assert cat["embedding"] == "FLOAT[]" and cat["energy"] == "DOUBLE" and cat["title"] == "VARCHAR"
    emb = con.execute("SELECT title, embedding FROM track_catalog WHERE track_id = 't2'").fetchone()
    assert emb[0] == "Song, C" and emb[1] == pytest.approx([0.5, 0.6])


# ------------------------------------------------------------------------------------------
# bad input: InputDataError naming file + column, warehouse unchanged
# ------------------------------------------------------------------------------------------


def _replace_line(src: Path, dst: Path, lineno: int, old: str, new: str) -> Path:
    ls = lines(src)
    assert old in ls[lineno - 1]
    ls[lineno - 1] = ls[lineno - 1].replace(old, new, 1)
    dst.write_text("".join(ls))
    return dst


def _bad_mssd_cases(log0: Path, d: Path) -> dict[str, tuple[list[Path], list[str]]]:
    """name → (log files, substrings the message must contain)."""
    ls = lines(log0)
    cases: dict[str, tuple[list[Path], list[str]]] = {}
    cases["missing file"] = ([d / "log_nope.csv"], ["log_nope.csv", "does not exist"])
    p = d / "log_misspelt.csv"
    p.write_text(ls[0].replace("session_position", "session_positon") + "".join(ls[1:]))
    cases["misspelt column"] = ([p], ["log_misspelt.csv", "session_position", "session_positon", "misspelling"])
    p = d / "log_missingcol.csv"
    df = pd.read_csv(log0, dtype=str).drop(columns=["context_type"])
    df.to_csv(p, index=False)
    cases["missing column"] = ([p], ["log_missingcol.csv", "context_type"])
    p = _replace_line(log0, d / "log_abc.csv", 3, ",2,20,", ",abc,20,")
    cases["wrong type"] = ([p], ["log_abc.csv", "session_position", "line 3", "abc"])
    p = _replace_line(log0, d / "log_baddate.csv", 5, "15-07-18", "15-07-XX")
    cases["bad date"] = ([p], ["log_baddate.csv", "date", "line 5"])
    p = _replace_line(log0, d / "log_badbool.csv", 7, ",False,False,True,False,", ",False,maybe,True,False,")
    cases["bad boolean"] = ([p], ["log_badbool.csv", "skip_2", "line 7", "maybe"])
    p = d / "log_empty.csv"
    p.write_bytes(b"")
    cases["empty file"] = ([p], ["log_empty.csv", "empty"])
    p = d / "log_header.csv"
    p.write_text(ls[0])
    cases["header only"] = ([p], ["log_header.csv", "no data rows"])
    p = d / "log_header2.csv.gz"
    p.write_bytes(gzip.compress(ls[0].encode()))
    cases["header only gz"] = ([p], ["log_header2.csv.gz", "no data rows"])
    p = d / "log_trunc.csv.gz"
    blob = gzip.compress(log0.read_bytes())
    p.write_bytes(blob[: len(blob) // 2])
    cases["truncated gzip"] = ([p], ["log_trunc.csv.gz", "gzip"])
    p = d / "log_latin1.csv"
    raw = log0.read_bytes().split(b"\n")
    raw[9] = raw[9].replace(b"editorial_playlist", b"editorial_playl\xefst")
    p.write_bytes(b"\n".join(raw))
    cases["non utf8"] = ([p], ["log_latin1.csv", "UTF-8", "context_type", "line 10"])
    p = d / "log_dup.csv"
    p.write_text("".join(ls[:10] + [ls[4]] + ls[10:]))
    cases["duplicate rows"] = ([p], ["log_dup.csv", "duplicate", "session_position=4", "0_00006f66"])
    a, b = d / "log_dupa.csv", d / "log_dupb.csv"
    a.write_text("".join(ls[:30]))
    b.write_text("".join([ls[0]] + ls[21:]))
    cases["duplicate across files"] = ([a, b], ["log_dupa.csv", "duplicate", "session_position"])
    p = _replace_line(log0, d / "log_ctx.csv", 12, "editorial_playlist", "podcast")
    cases["unknown context"] = ([p], ["log_ctx.csv", "context_type", "line 12", "podcast"])
    p = _replace_line(log0, d / "log_hour.csv", 2, ",16,15-07-18", ",25,15-07-18")
    cases["hour out of range"] = ([p], ["log_hour.csv", "hour_of_day", "line 2"])
    p = _replace_line(log0, d / "log_nullid.csv", 8, ls[7].split(",")[3], "")
    cases["missing value"] = ([p], ["log_nullid.csv", "track_id_clean", "line 8"])
    p = d / "log_ragged.csv"
    p.write_text("".join(ls[:6] + ["x,1,2\n"] + ls[6:]))
    cases["ragged row"] = ([p], ["log_ragged.csv"])
    return cases


MSSD_BAD = [
    "missing file", "misspelt column", "missing column", "wrong type", "bad date", "bad boolean", "empty file",
    "header only", "header only gz", "truncated gzip", "non utf8", "duplicate rows", "duplicate across files",
    "unknown context", "hour out of range", "missing value", "ragged row",
]


@pytest.mark.parametrize("case", MSSD_BAD)
def test_bad_mssd_input_leaves_warehouse_unchanged(con, log0, tmp_path, case):
    ingest_mssd(con, [log0], [], dataset_key="mssd:good", cfg=RADIO)
    before = wh.snapshot(con)
    bad = tmp_path / "bad"
    bad.mkdir()
    files, needles = _bad_mssd_cases(log0, bad)[case]
    # the good file goes first, so the bad one must not leak in half-way either
    with pytest.raises(InputDataError) as ei:
        ingest_mssd(con, [log0, *files], [], dataset_key="mssd:bad", cfg=ALL)
    msg = str(ei.value)
    for n in needles:
        assert n in msg, f"{n!r} not in message:\n{msg}"
    assert ei.value.file and ei.value.column
    assert wh.snapshot(con) == before
    assert wh.get_meta(con, "dataset") == "mssd:good"


def test_bad_tf_file(con, log0, tmp_path):
    ingest_mssd(con, [log0], [], dataset_key="mssd:good", cfg=RADIO)
    before = wh.snapshot(con)
    tf = _write_tf(tmp_path / "tf_0.csv", ["t1", "t2", "t1"])
    with pytest.raises(InputDataError, match="(?s)tf_0.csv.*track_id"):
        ingest_mssd(con, [log0], [tf], dataset_key="x", cfg=ALL)
    tf = _write_tf(tmp_path / "tf_1.csv", ["t1", "t2"])
    tf.write_text(tf.read_text().replace(",200.0,", ",long,", 1))
    with pytest.raises(InputDataError, match="(?s)tf_1.csv.*duration.*line 2"):
        ingest_mssd(con, [log0], [tf], dataset_key="x", cfg=ALL)
    tf.write_text(tf.read_text().replace("acousticness", "acustioness", 1))
    with pytest.raises(InputDataError, match="(?s)acousticness.*tf_1.csv"):
        ingest_mssd(con, [log0], [tf], dataset_key="x", cfg=ALL)
    assert wh.snapshot(con) == before


def _bad_event_cases(d: Path) -> dict[str, tuple[Path, Path | None, IngestConfig, list[str]]]:
    good = _events_df(["1", "0", "1", "0", "1"])
    cases = {}
    cases["missing file"] = (d / "nope.csv", None, ALL, ["nope.csv", "does not exist"])
    p = d / "ev_misspelt.csv"
    good.rename(columns={"feedback": "feedbak"}).to_csv(p, index=False)
    cases["misspelt column"] = (p, None, ALL, ["ev_misspelt.csv", "feedback", "feedbak"])
    p = d / "ev_badts.csv"
    df = good.copy()
    df.loc[2, "timestamp"] = "yesterday"
    df.to_csv(p, index=False)
    cases["bad timestamp"] = (p, None, ALL, ["ev_badts.csv", "timestamp", "line 4", "yesterday"])
    p = d / "ev_meh.csv"
    df = good.copy()
    df.loc[3, "feedback"] = "meh"
    df.to_csv(p, index=False)
    cases["unknown feedback"] = (p, None, ALL, ["ev_meh.csv", "feedback", "line 5", "meh"])
    p = d / "ev_rating.csv"
    df = good.copy()
    df.loc[0, "feedback"] = "4"
    df.to_csv(p, index=False)
    cases["rating without threshold"] = (p, None, ALL, ["ev_rating.csv", "feedback", "line 2", "rating_threshold"])
    p = d / "ev_dup.csv"
    pd.concat([good, good.iloc[[1]]]).to_csv(p, index=False)
    cases["duplicate events"] = (p, None, ALL, ["ev_dup.csv", "duplicate", "user_id='u2'", "lines 3, 7"])
    p = d / "ev_empty.csv"
    p.write_bytes(b"")
    cases["empty file"] = (p, None, ALL, ["ev_empty.csv", "empty"])
    p = d / "ev_header.csv"
    p.write_text("user_id,track_id,timestamp,feedback\n")
    cases["header only"] = (p, None, ALL, ["ev_header.csv", "no data rows"])
    p = d / "ev_bin.csv"
    good.to_csv(p, index=False)
    p.write_bytes(p.read_bytes().replace(b"t3", b"t\xff3"))
    cases["non utf8"] = (p, None, ALL, ["ev_bin.csv", "UTF-8", "track_id"])
    p = d / "ev_trunc.csv.gz"
    blob = gzip.compress(pd.concat([good] * 400).assign(
        timestamp=lambda x: pd.date_range("2020-01-01", periods=len(x), freq="h").astype(str)).to_csv(
        index=False).encode())
    p.write_bytes(blob[: len(blob) // 2])
    cases["truncated gzip"] = (p, None, ALL, ["ev_trunc.csv.gz", "gzip"])
    p = d / "ev_pq.parquet"
    p.write_bytes(b"PAR1 this is not parquet")
    cases["corrupt parquet"] = (p, None, ALL, ["ev_pq.parquet", "Parquet"])
    ok = d / "ev_ok.csv"
    good.to_csv(ok, index=False)
    t = d / "tr_dup.csv"
    t.write_text("track_id,energy\nt0,0.1\nt1,0.2\nt0,0.3\n")
    cases["duplicate tracks"] = (ok, t, ALL, ["tr_dup.csv", "track_id", "t0", "lines 2, 4"])
    t = d / "tr_emb.csv"
    t.write_text('track_id,embedding\nt0,"[0.1, 0.2]"\nt1,"[0.1, oops]"\n')
    cases["bad embedding"] = (ok, t, ALL, ["tr_emb.csv", "embedding", "line 3"])
    t = d / "tr_emblen.csv"
    t.write_text('track_id,embedding\nt0,"[0.1, 0.2]"\nt1,"[0.1]"\nt2,"[0.3, 0.2]"\n')
    cases["ragged embedding"] = (ok, t, ALL, ["tr_emblen.csv", "embedding", "line 3"])
    t = d / "tr_year.csv"
    t.write_text("track_id,release_year\nt0,1999\nt1,nineteen\n")
    cases["bad release_year"] = (ok, t, ALL, ["tr_year.csv", "release_year", "line 3", "nineteen"])
    return cases


EVENT_BAD = [
    "missing file", "misspelt column", "bad timestamp", "unknown feedback", "rating without threshold",
    "duplicate events", "empty file", "header only", "non utf8", "truncated gzip", "corrupt parquet",
    "duplicate tracks", "bad embedding", "ragged embedding", "bad release_year",
]


@pytest.mark.parametrize("case", EVENT_BAD)
def test_bad_events_input_leaves_warehouse_unchanged(con, tmp_path, case):
    good = tmp_path / "good.csv"
    _events_df(["up", "down", "up"]).to_csv(good, index=False)
    ingest_events(con, [good], [], dataset_key="events:good", cfg=ALL)
    before = wh.snapshot(con)
    d = tmp_path / "bad"
    d.mkdir()
    ev, tr, cfg, needles = _bad_event_cases(d)[case]
    with pytest.raises(InputDataError) as ei:
        ingest_events(con, [ev], [tr] if tr else [], dataset_key="events:bad", cfg=cfg)
    msg = str(ei.value)
    for n in needles:
        assert n in msg, f"{n!r} not in message:\n{msg}"
    assert ei.value.file and ei.value.column
    assert wh.snapshot(con) == before
    # the connection is still usable afterwards
    assert con.execute("SELECT count(*) FROM feedback_events").fetchone()[0] == 3


def test_filter_leaving_nothing_is_an_error(con, log0, tmp_path):
    ingest_mssd(con, [log0], [], dataset_key="good", cfg=ALL)
    before = wh.snapshot(con)
    with pytest.raises(InputDataError, match="no feedback events"):
        ingest_mssd(con, [log0], [], dataset_key="x", cfg=IngestConfig(context_filter="charts"))
    assert wh.snapshot(con) == before


# ------------------------------------------------------------------------------------------
# switching data sets, routing
# ------------------------------------------------------------------------------------------


def test_switching_dataset_replaces_everything(log0, tmp_path):
    whp = tmp_path / "w" / "wh.duckdb"
    ev = tmp_path / "ev.csv"
    _events_df(["like", "dislike", "like", "like"]).to_csv(ev, index=False)
    r1 = ingest_dataset(DatasetSpec(kind="mssd", paths=(str(log0.parent),)), warehouse=whp, cfg=ALL,
                        data_dir=tmp_path)
    assert r1.n_events == 201
    r2 = ingest_dataset(DatasetSpec(kind="events", paths=(str(ev),)), warehouse=whp, cfg=ALL, data_dir=tmp_path)
    with wh.connect(whp, read_only=True) as c:
        assert c.execute("SELECT count(*), count(DISTINCT source_file) FROM feedback_events").fetchone() == (4, 1)
        assert c.execute("SELECT count(*) FROM track_catalog").fetchone()[0] == 4
        assert c.execute("SELECT kind FROM ingestion_record").fetchall() == [("events",)]
        assert wh.get_meta(c, "dataset") == f"events:{ev}" == r2.dataset
        assert wh.get_meta(c, "dataset_fingerprint") == r2.fingerprint != r1.fingerprint
        assert c.execute("SELECT count(*) FROM feedback_events WHERE context_type IS NOT NULL").fetchone()[0] == 0
    r3 = ingest_dataset(DatasetSpec(kind="mssd", paths=("mssd/log_0.csv",)), warehouse=whp, cfg=RADIO,
                        data_dir=tmp_path)  # relative to data_dir
    with wh.connect(whp, read_only=True) as c:
        assert c.execute("SELECT count(*), count(DISTINCT stratum_id) FROM feedback_events").fetchone() == (57, 3)
        assert c.execute("SELECT count(*) FROM track_catalog").fetchone()[0] == r3.n_tracks
        assert wh.get_meta(c, "dataset") == "mssd:mssd/log_0.csv"


def test_resolve_mssd_paths_errors(tmp_path):
    with pytest.raises(InputDataError, match="does not exist"):
        resolve_mssd_paths([str(tmp_path / "nope")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputDataError, match="no session log files"):
        resolve_mssd_paths([str(tmp_path / "empty")])
    with pytest.raises(InputDataError):
        ingest_mssd(duckdb.connect(), [], [], dataset_key="x", cfg=ALL)


def test_synthetic_route(tmp_path):
    synthetic = pytest.importorskip("semid_pipeline.synthetic")
    if not hasattr(synthetic, "write_world"):
        pytest.skip("synthetic.write_world not available")
    res = ingest_dataset(DatasetSpec(kind="synthetic", preset="tiny", format="users"),
                         warehouse=tmp_path / "wh.duckdb", cfg=ALL, data_dir=tmp_path)
    assert res.n_events > 0 and res.stratum_kind == "user" and res.dataset == "synthetic:tiny:users"
    res = ingest_dataset(DatasetSpec(kind="synthetic", preset="tiny", format="sessions"),
                         warehouse=tmp_path / "wh.duckdb", cfg=ALL, data_dir=tmp_path)
    assert res.n_events > 0 and res.stratum_kind == "session"


def test_append_files(con, log0, tmp_path):
    ls = lines(log0)
    a, b = tmp_path / "log_a.csv", tmp_path / "land" / "log_b.csv"
    b.parent.mkdir()
    a.write_text("".join(ls[:41]))
    b.write_text("".join([ls[0]] + ls[41:]))
    from semid_pipeline.ingest import append_files

    ingest_mssd(con, [a], [], dataset_key=f"mssd:{a}", cfg=ALL)
    res = append_files(con, [b], cfg=ALL)
    assert res.n_events == 201 and res.dataset == f"mssd:{a}" and len(res.files) == 2
    before = wh.snapshot(con)
    bad = tmp_path / "land" / "log_c.csv"
    bad.write_text(ls[0] + ls[5])  # duplicates a key already in log_a
    with pytest.raises(InputDataError, match="duplicate"):
        append_files(con, [bad], cfg=ALL)
    assert wh.snapshot(con) == before
