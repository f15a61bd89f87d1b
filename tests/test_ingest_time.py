"""Time read right: zones to UTC, epoch seconds vs milliseconds, Parquet zones, absurd dates."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from mssd_fixture import Session, default_sessions, write_log
from semid_pipeline import warehouse as wh
from semid_pipeline.config import IngestConfig
from semid_pipeline.errors import ConfigError, InputDataError
from semid_pipeline.ingest import ingest_events, ingest_mssd

ALL = IngestConfig(context_filter="all")


def write_events(path: Path, stamps: list, *, users: list[str] | None = None) -> Path:
    df = pd.DataFrame({
        "user_id": users or [f"u{i % 2}" for i in range(len(stamps))],
        "track_id": [f"t{i}" for i in range(len(stamps))],
        "timestamp": stamps,
        "feedback": [str(i % 2) for i in range(len(stamps))],
    })
    df.to_parquet(path) if path.suffix == ".parquet" else df.to_csv(path, index=False)
    return path


def stored(con) -> list[dt.datetime]:
    return [r[0] for r in con.execute("SELECT ts FROM feedback_events ORDER BY track_id").fetchall()]


def test_iso_offsets_become_utc(con, tmp_path):
    p = write_events(tmp_path / "ev.csv", ["2024-01-01T08:30:00-05:00", "2024-01-01 08:30:00Z",
                                           "2024-01-01T15:00:00+05:30", "2024-01-01 08:30:00",
                                           "2024-01-01T08:30:00.250+02:00", "2024-01-02"])
    ingest_events(con, [p], [], dataset_key="events:tz", cfg=ALL)
    assert stored(con) == [
        dt.datetime(2024, 1, 1, 13, 30), dt.datetime(2024, 1, 1, 8, 30), dt.datetime(2024, 1, 1, 9, 30),
        dt.datetime(2024, 1, 1, 8, 30), dt.datetime(2024, 1, 1, 6, 30, 0, 250000), dt.datetime(2024, 1, 2),
    ]
    assert wh.table_columns(con, "feedback_events")["ts"] == "TIMESTAMP"


def test_offsets_decide_the_order_within_a_user(con, tmp_path):
    # local 09:00 in New York is after local 12:00 in Berlin
    p = write_events(tmp_path / "ev.csv", ["2024-03-01T09:00:00-05:00", "2024-03-01T12:00:00+01:00"],
                     users=["u", "u"])
    ingest_events(con, [p], [], dataset_key="events:order", cfg=ALL)
    assert con.execute("SELECT track_id FROM feedback_events ORDER BY position").fetchall() == [("t1",), ("t0",)]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_epoch_seconds_and_milliseconds_told_apart(con, tmp_path, suffix):
    p = write_events(tmp_path / f"ev{suffix}", [1704110400, 1704110400000, 1704110400.5, 1704110400500])
    ingest_events(con, [p], [], dataset_key="events:epoch", cfg=ALL)
    noon = dt.datetime(2024, 1, 1, 12, 0)
    half = noon + dt.timedelta(milliseconds=500)
    assert stored(con) == [noon, noon, half, half]


@pytest.mark.parametrize("unit,value,ok", [("s", 1704110400, True), ("ms", 1704110400000, True),
                                           ("s", 1704110400000, False), ("ms", 1704110400, False)])
def test_configured_timestamp_unit(con, tmp_path, unit, value, ok):
    p = write_events(tmp_path / "ev.csv", [value, value + (1000 if unit == "ms" else 1)])
    cfg = IngestConfig(context_filter="all", timestamp_unit=unit)
    if ok:
        ingest_events(con, [p], [], dataset_key="events:unit", cfg=cfg)
        assert stored(con)[0] == dt.datetime(2024, 1, 1, 12, 0)
    else:  # the wrong unit gives the year 55971 or January 1970: absurd, rejected
        with pytest.raises(InputDataError, match="(?s)absurd date.*ev.csv.*timestamp.*line 2"):
            ingest_events(con, [p], [], dataset_key="events:unit", cfg=cfg)


def test_parquet_timestamp_with_zone_becomes_utc(con, tmp_path):
    stamps = pd.to_datetime(["2024-01-01 08:30:00", "2024-06-01 08:30:00"]).tz_localize("America/New_York")
    p = write_events(tmp_path / "ev.parquet", list(stamps))
    assert duckdb.connect().execute("DESCRIBE SELECT timestamp FROM read_parquet(?)", [str(p)]).fetchone()[1] == "TIMESTAMP WITH TIME ZONE"
    ingest_events(con, [p], [], dataset_key="events:pqtz", cfg=ALL)
    assert stored(con) == [dt.datetime(2024, 1, 1, 13, 30), dt.datetime(2024, 6, 1, 12, 30)]  # EST, then EDT


@pytest.mark.parametrize("bad", ["1985-06-01 10:00:00", "2199-01-01 00:00:00", "0", "99999999999999"])
def test_absurd_event_dates_rejected(con, tmp_path, bad):
    good = write_events(tmp_path / "good.csv", ["2024-01-01", "2024-01-02"])
    ingest_events(con, [good], [], dataset_key="events:good", cfg=ALL)
    before = wh.snapshot(con)
    p = write_events(tmp_path / "ev.csv", ["2024-01-01", "2024-01-02", bad])
    with pytest.raises(InputDataError) as ei:
        ingest_events(con, [p], [], dataset_key="events:bad", cfg=ALL)
    assert ei.value.file == str(p) and ei.value.column == "timestamp"
    assert "absurd date" in str(ei.value) and f"line 4: timestamp={bad!r}" in ei.value.rows
    assert wh.snapshot(con) == before


def test_tomorrow_is_accepted_and_min_date_is_configurable(con, tmp_path):
    tomorrow = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=20)).strftime("%Y-%m-%d %H:%M:%S")
    p = write_events(tmp_path / "ev.csv", ["1985-06-01 10:00:00", tomorrow])
    with pytest.raises(InputDataError, match="1990-01-01"):
        ingest_events(con, [p], [], dataset_key="events:old", cfg=ALL)
    res = ingest_events(con, [p], [], dataset_key="events:old", cfg=IngestConfig(context_filter="all",
                                                                                  min_date="1980-01-01"))
    assert res.n_events == 2
    with pytest.raises(ConfigError, match="min_date"):
        ingest_events(con, [p], [], dataset_key="x", cfg=IngestConfig(min_date="last year"))
    with pytest.raises(ConfigError, match="timestamp_unit"):
        ingest_events(con, [p], [], dataset_key="x", cfg=IngestConfig(timestamp_unit="us"))


def test_absurd_mssd_dates_rejected(con, tmp_path):
    old = [Session("0_old", "radio", dt.date(1989, 12, 31), 10, ("t1", "t2")), *default_sessions()[1:]]
    for dates in ("dmy", "iso"):
        p = write_log(tmp_path / f"log_{dates}.csv", old, dates=dates)
        with pytest.raises(InputDataError) as ei:
            ingest_mssd(con, [p], [], dataset_key="mssd:old", cfg=ALL)
        assert ei.value.column == "date" and "absurd date" in str(ei.value) and "line 2" in str(ei.value)
    res = ingest_mssd(con, [p], [], dataset_key="mssd:old", cfg=IngestConfig(context_filter="all",
                                                                              min_date="1980-01-01"))
    assert res.n_strata == 4
