"""Duplicate policy (``[ingest] on_duplicate``) and clear errors for long fields, mislabelled
compressed files and event tracks missing from the tracks files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from mssd_fixture import write_log
from semid_pipeline import warehouse as wh
from semid_pipeline.config import IngestConfig
from semid_pipeline.errors import ConfigError, InputDataError
from semid_pipeline.ingest import ingest_events, ingest_mssd
from semid_pipeline.ingest.events import DUPLICATE, MISSING_TRACK

ALL = IngestConfig(context_filter="all")
DROP = IngestConfig(context_filter="all", on_duplicate="drop")
HEADER = "user_id,track_id,timestamp,feedback\n"


def write(path: Path, rows: list[str]) -> Path:
    path.write_text(HEADER + "".join(r + "\n" for r in rows))
    return path


ROWS = ["u1,t1,2024-01-01 10:00:00,1", "u1,t2,2024-01-01 11:00:00,0", "u1,t1,2024-01-01 10:00:00,0",
        "u2,t1,2024-01-02 10:00:00,1", "u1,t1,2024-01-01 10:00:00,1"]


def test_duplicates_are_an_error_by_default(con, tmp_path):
    p = write(tmp_path / "ev.csv", ROWS)
    with pytest.raises(InputDataError, match="(?s)duplicate events.*lines 2, 4, 6"):
        ingest_events(con, [p], [], dataset_key="events:dup", cfg=ALL)
    with pytest.raises(ConfigError, match="on_duplicate"):
        ingest_events(con, [p], [], dataset_key="events:dup", cfg=IngestConfig(on_duplicate="last"))


def test_drop_keeps_the_first_and_records_the_rest(con, tmp_path):
    p = write(tmp_path / "ev.csv", ROWS)
    res = ingest_events(con, [p], [], dataset_key="events:dup", cfg=DROP)
    (rec,) = res.files
    assert (rec.rows_read, rec.rows_kept, rec.rows_rejected) == (5, 3, 2)
    assert rec.reject_reasons == {DUPLICATE: 2}
    assert rec.examples[DUPLICATE] == ["user_id='u1', track_id='t1', timestamp=2024-01-01 10:00:00: ev.csv lines 2, 4, 6"]
    # the first occurrence (line 2, positive) is the one kept
    assert con.execute("SELECT feedback FROM feedback_events WHERE stratum_id = 'u1' AND track_id = 't1'").fetchall() == [(1,)]
    assert con.execute("SELECT stratum_length FROM feedback_events WHERE stratum_id = 'u1' LIMIT 1").fetchone() == (2,)
    ir = con.execute("SELECT reject_reasons, examples FROM ingestion_record").fetchone()
    assert json.loads(ir[0]) == {DUPLICATE: 2} and json.loads(ir[1]) == rec.examples
    assert "duplicate" in res.to_frame().loc[0, "examples"]


def test_drop_across_files_keeps_the_earlier_file(con, tmp_path):
    a = write(tmp_path / "a.csv", ROWS[:2])
    b = write(tmp_path / "b.csv", ["u1,t2,2024-01-01 11:00:00,1", "u3,t3,2024-01-03 10:00:00,1"])
    res = ingest_events(con, [a, b], [], dataset_key="events:two", cfg=DROP)
    assert [(f.rows_kept, f.rows_rejected) for f in res.files] == [(2, 0), (1, 1)]
    assert res.files[1].reject_reasons == {DUPLICATE: 1} and "a.csv line 3, b.csv line 2" in res.files[1].examples[DUPLICATE][0]
    assert res.files[0].examples == {}  # the kept rows' file has nothing dropped
    assert con.execute("SELECT feedback, source_file FROM feedback_events WHERE track_id = 't2'").fetchall() == [(0, "a.csv")]


def test_long_first_field_gives_a_clear_error(con, tmp_path):
    p = tmp_path / "ev.csv"
    p.write_text(HEADER + "u1,t1,2024-01-01 10:00:00,1," + "x" * 200_000 + "\n")
    with pytest.raises(InputDataError) as ei:
        ingest_events(con, [p], [], dataset_key="events:long", cfg=ALL)
    assert "line 2" in str(ei.value) and "131,072 characters" in str(ei.value) and ei.value.file == str(p)
    log = tmp_path / "log_long.csv"
    text = write_log(tmp_path / "log_src.csv").read_text().splitlines()
    log.write_text(text[0] + "\n" + text[1].replace("editorial_playlist", "e" * 140_000) + "\n")
    with pytest.raises(InputDataError, match="(?s)line 2.*log_long.csv"):
        ingest_mssd(con, [log], [], dataset_key="mssd:long", cfg=ALL)


@pytest.mark.parametrize("kind,needle", [("gzip", "gzip-compressed"), ("parquet", "Parquet"), ("zip", "zip")])
def test_compressed_bytes_in_a_csv_file_are_named(con, tmp_path, kind, needle):
    good = write(tmp_path / "good.csv", ROWS[:2])
    ingest_events(con, [good], [], dataset_key="events:good", cfg=ALL)
    before = wh.snapshot(con)
    p = tmp_path / "events.csv"
    if kind == "gzip":
        p.write_bytes(gzip.compress(good.read_bytes()))
    elif kind == "parquet":
        pd.read_csv(good).to_parquet(p)
    else:
        import zipfile

        with zipfile.ZipFile(p, "w") as z:
            z.write(good, "good.csv")
    with pytest.raises(InputDataError, match=f"(?s)named as CSV text but holds.*{needle}") as ei:
        ingest_events(con, [p], [], dataset_key="events:bad", cfg=ALL)
    assert "UTF-8" not in str(ei.value) and ei.value.file == str(p)
    log = tmp_path / "log_0.csv"
    log.write_bytes(gzip.compress(write_log(tmp_path / "log_src.csv").read_bytes()))
    with pytest.raises(InputDataError, match="(?s)gzip-compressed.*log_0.csv"):
        ingest_mssd(con, [log], [], dataset_key="mssd:bad", cfg=ALL)
    assert wh.snapshot(con) == before


def test_event_tracks_missing_from_tracks_file_are_named(con, tmp_path):
    ev = write(tmp_path / "ev.csv", ["u1,t1,2024-01-01 10:00:00,1", "u1,t9,2024-01-01 11:00:00,0",
                                     "u2,t9,2024-01-02 10:00:00,1", "u2,t8,2024-01-02 11:00:00,1"])
    tr = tmp_path / "tracks.csv"
    tr.write_text("track_id,tempo\nt1,100\n")
    res = ingest_events(con, [ev], [tr], dataset_key="events:missing", cfg=ALL)
    assert res.n_events == 4  # kept: the content-coverage check decides
    rec = res.files[0]
    assert rec.notes == {MISSING_TRACK: 3} and rec.rows_rejected == 0
    assert rec.examples[MISSING_TRACK] == ["track_id='t9': 2 events (first at line 3)",
                                           "track_id='t8': 1 events (first at line 5)"]
    assert json.loads(con.execute("SELECT notes FROM ingestion_record WHERE kind = 'events'").fetchone()[0]) == rec.notes
    tr.write_text("track_id,tempo\nt1,100\nt8,90\nt9,80\n")
    assert ingest_events(con, [ev], [tr], dataset_key="events:missing", cfg=ALL).files[0].notes == {}
