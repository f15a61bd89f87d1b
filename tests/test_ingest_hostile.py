"""SQL from data is never pasted: hostile header names, file names and config strings either
ingest correctly or fail with a clear error — and never run as SQL (no file written, warehouse
unchanged)."""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb
import pytest

from mssd_fixture import write_log
from semid_pipeline import warehouse as wh
from semid_pipeline.config import IngestConfig
from semid_pipeline.errors import ConfigError, InputDataError
from semid_pipeline.ingest import append_files, ingest_events, ingest_mssd
from semid_pipeline.sql import ident, literal, struct

ALL = IngestConfig(context_filter="all")
# Before sql.py, this header broke out of the repr()-built ``columns=`` struct and wrote PWNED.csv.
PWN = 'x"\': $$VARCHAR$$}); COPY (SELECT 42) TO $$PWNED.csv$$; --'
HOSTILE = [
    PWN,
    "x': $$VARCHAR$$}); COPY (SELECT 42) TO $$PWNED.csv$$; --",
    'y": \'VARCHAR\'}); COPY (SELECT 42) TO \'PWNED.csv\'; --',
    "z'); COPY (SELECT 42) TO 'PWNED.csv'; --",
    'w"); DROP TABLE feedback_events; --',
    "$$; COPY (SELECT 42) TO $$PWNED.csv$$; $$",
]
HOSTILE_NAMES = ["o'brien.csv", "a;b$$c.csv", 'q"uote.csv', "x'); COPY (SELECT 42) TO 'PWNED.csv'; --.csv"]


@pytest.fixture
def con(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative COPY ... TO would land here
    c = duckdb.connect(str(tmp_path / "wh.duckdb"))
    yield c
    c.close()


def no_side_effect(root: Path) -> None:
    written = [p for p in root.rglob("*") if p.name == "PWNED.csv"]
    assert written == [], f"SQL from data ran: {written}"


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


EVENTS = [["u1", "t1", "2024-01-01 10:00:00", "1"], ["u1", "t2", "2024-01-02 10:00:00", "0"],
          ["u2", "t1", "2024-01-03 10:00:00", "1"]]


@pytest.mark.parametrize("text", HOSTILE + ["plain", "", "a'b\"c;d$$e"])
def test_quoting_round_trips_through_duckdb(text):
    c = duckdb.connect()
    assert c.execute(f"SELECT {literal(text)}").fetchone()[0] == text
    if text:  # (an empty name is refused earlier, by the header check)
        assert [d[0] for d in c.execute(f"SELECT 1 AS {ident(text)}").description] == [text]
        assert c.execute(f"SELECT {struct({text: text})}").fetchone()[0] == {text: text}


@pytest.mark.parametrize("header", HOSTILE)
def test_hostile_header_in_events_and_tracks(con, tmp_path, header):
    ev = write_csv(tmp_path / "events.csv", ["user_id", "track_id", "timestamp", "feedback", header],
                   [r + ["v"] for r in EVENTS])
    tr = write_csv(tmp_path / "tracks.csv", ["track_id", header], [["t1", "0.5"], ["t2", "0.25"]])
    res = ingest_events(con, [ev], [tr], dataset_key="events:hostile", cfg=ALL)
    assert res.n_events == 3
    cat = wh.table_columns(con, "track_catalog")
    assert cat[header] == "DOUBLE"  # a content column of the tracks file, under its exact name
    assert con.execute(f"SELECT sum({ident(header)}) FROM track_catalog").fetchone()[0] == 0.75
    no_side_effect(tmp_path)


@pytest.mark.parametrize("header", HOSTILE)
def test_hostile_header_in_rejected_files(con, tmp_path, header):
    good = write_csv(tmp_path / "good.csv", ["user_id", "track_id", "timestamp", "feedback"], EVENTS)
    ingest_events(con, [good], [], dataset_key="events:good", cfg=ALL)
    before = wh.snapshot(con)
    bad = write_csv(tmp_path / "bad.csv", ["user_id", "track_id", "timestamp", "feedback", header],
                    [EVENTS[0] + ["v"], ["u1", "t3", "yesterday", "1", "v"]])
    with pytest.raises(InputDataError, match="(?s)bad.csv.*timestamp.*line 3"):
        ingest_events(con, [bad], [], dataset_key="events:bad", cfg=ALL)
    log = tmp_path / "log_bad.csv"
    text = write_log(tmp_path / "log_src.csv").read_text().splitlines()
    rows = [text[0] + "," + header.replace('"', '""').join('""')] + [t + ",v" for t in text[1:]]
    rows[2] = rows[2].replace(",2,20,", ",abc,20,")
    log.write_text("\n".join(rows) + "\n")
    with pytest.raises(InputDataError, match="(?s)log_bad.csv.*session_position.*line 3"):
        ingest_mssd(con, [log], [], dataset_key="mssd:bad", cfg=ALL)
    assert wh.snapshot(con) == before
    no_side_effect(tmp_path)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_file_names(con, tmp_path, name):
    d = tmp_path / "it's; $$dir"
    d.mkdir()
    ev = write_csv(d / name, ["user_id", "track_id", "timestamp", "feedback"], EVENTS)
    res = ingest_events(con, [ev], [], dataset_key=f"events:{ev}", cfg=ALL)
    assert res.n_events == 3 and res.files[0].path == str(ev)
    assert con.execute("SELECT DISTINCT source_file FROM feedback_events").fetchall() == [(name,)]
    log = write_log(d / ("log_" + name))
    res = ingest_mssd(con, [log], [], dataset_key=f"mssd:{log}", cfg=ALL)
    assert con.execute("SELECT DISTINCT source_file FROM feedback_events").fetchall() == [("log_" + name,)]
    no_side_effect(tmp_path)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_landed_file_names(con, tmp_path, name):
    ev = write_csv(tmp_path / "events.csv", ["user_id", "track_id", "timestamp", "feedback"], EVENTS)
    ingest_events(con, [ev], [], dataset_key="events:base", cfg=ALL)
    land = tmp_path / "landing"
    land.mkdir()
    new = write_csv(land / ("events_" + name), ["user_id", "track_id", "timestamp", "feedback"],
                    [["u3", "t9", "2024-02-01 10:00:00", "1"]])
    res = append_files(con, [new], cfg=ALL, validate=False)
    assert res.n_events == 4 and res.dataset == "events:base"
    assert con.execute("SELECT track_id FROM feedback_events WHERE source_file = ?", [new.name]).fetchall() == [("t9",)]
    no_side_effect(tmp_path)


@pytest.mark.parametrize("setting", [
    {"context_filter": "radio' OR TRUE; COPY (SELECT 42) TO 'PWNED.csv'; --"},
    {"skip_definition": 'skip_2" OR TRUE; COPY (SELECT 42) TO \'PWNED.csv\'; --'},
    {"min_date": "1990-01-01' AS TIMESTAMP); COPY (SELECT 42) TO 'PWNED.csv'; --"},
    {"timestamp_unit": "s'); COPY (SELECT 42) TO 'PWNED.csv'; --"},
    {"on_duplicate": "drop'; COPY (SELECT 42) TO 'PWNED.csv'; --"},
])
def test_hostile_config_strings(con, tmp_path, setting):
    log = write_log(tmp_path / "log_0.csv")
    ingest_mssd(con, [log], [], dataset_key="mssd:good", cfg=ALL)
    before = wh.snapshot(con)
    ev = write_csv(tmp_path / "events.csv", ["user_id", "track_id", "timestamp", "feedback"], EVENTS)
    cfg = IngestConfig(**{"context_filter": "all", **setting})
    with pytest.raises(ConfigError, match=next(iter(setting))):
        if next(iter(setting)) in ("context_filter", "skip_definition", "min_date"):
            ingest_mssd(con, [log], [], dataset_key="mssd:x", cfg=cfg)
        else:
            ingest_events(con, [ev], [], dataset_key="events:x", cfg=cfg)
    assert wh.snapshot(con) == before
    no_side_effect(tmp_path)
