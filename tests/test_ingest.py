"""Per-user events ingestion: parsing, labels, catalogs, bad input (atomic failure), routing.

MSSD ingestion is tested in ``test_ingest_mssd.py`` (on the hand-made fixture)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from conftest import assert_names_the_problem
from semid_pipeline import warehouse as wh
from semid_pipeline.config import DatasetSpec, IngestConfig
from semid_pipeline.datasets import ingest_dataset
from semid_pipeline.errors import InputDataError
from semid_pipeline.ingest import ingest_events
from semid_pipeline.schema import FEEDBACK_EVENTS_COLUMNS, TRACK_KEY_COLUMNS

ALL = IngestConfig(context_filter="all")


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
    assert_names_the_problem(ei.value, needles)
    assert wh.snapshot(con) == before
    # the connection is still usable afterwards
    assert con.execute("SELECT count(*) FROM feedback_events").fetchone()[0] == 3


# ------------------------------------------------------------------------------------------
# switching data sets, routing
# ------------------------------------------------------------------------------------------


def test_synthetic_route(tmp_path):
    res = ingest_dataset(DatasetSpec(kind="synthetic", preset="tiny", format="users"),
                         warehouse=tmp_path / "wh.duckdb", cfg=ALL, data_dir=tmp_path)
    assert res.n_events > 0 and res.stratum_kind == "user" and res.dataset == "synthetic:tiny:users"
    res = ingest_dataset(DatasetSpec(kind="synthetic", preset="tiny", format="sessions"),
                         warehouse=tmp_path / "wh.duckdb", cfg=ALL, data_dir=tmp_path)
    assert res.n_events > 0 and res.stratum_kind == "session"
