"""Spotify extended streaming-history exports (``spotify-history:``): listeners, labels, privacy,
bad files, session strata. Export files are built by hand in temporary folders; the personal
fields carry planted fake values (documentation IP range, fake usernames) that must never be
written anywhere."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest

from semid_pipeline import warehouse as wh
from semid_pipeline.config import IngestConfig, parse_dataset_spec
from semid_pipeline.datasets import ingest_dataset
from semid_pipeline.errors import ConfigError, InputDataError
from semid_pipeline.ingest.spotify import AUDIOBOOK, PODCAST
from semid_pipeline.spotify_export import ExportConfig, write_exports

IP, USER = "203.0.113.77", "planted-username-zq"
T0 = dt.datetime(2024, 3, 1, 8, 0, 0)


def play(minute: float, uri: str | None = "spotify:track:t1", *, ms=200_000, reason_end="trackdone",
         skipped=False, **extra) -> dict:
    """One record of the extended export, with every personal field filled with planted values."""
    rec = {
        "ts": (T0 + dt.timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%SZ"), "username": USER,
        "platform": "Linux (fake)", "ms_played": ms, "conn_country": "ZZ", "ip_addr": IP,
        "user_agent_decrypted": "fake-agent/1.0",
        "master_metadata_track_name": f"Title of {uri}" if uri else None,
        "master_metadata_album_artist_name": f"Artist of {uri}" if uri else None,
        "master_metadata_album_album_name": f"Album of {uri}" if uri else None,
        "spotify_track_uri": uri, "episode_name": None, "episode_show_name": None, "spotify_episode_uri": None,
        "audiobook_title": None, "audiobook_uri": None, "reason_start": "clickrow", "reason_end": reason_end,
        "shuffle": False, "skipped": skipped, "offline": False, "offline_timestamp": None, "incognito_mode": False,
    }
    rec.update(extra)
    return rec


def write(folder: Path, name: str, records) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(json.dumps(records, indent=1))
    return p


def ingest(root: Path, tmp: Path, cfg: IngestConfig = IngestConfig(), spec: str | None = None):
    """Parser-level ingestion (the pipeline's pre-publish quality suites are tested elsewhere)."""
    return ingest_dataset(parse_dataset_spec(spec or f"spotify-history:{root}"), warehouse=tmp / "wh.duckdb",
                          cfg=cfg, data_dir=tmp, validate=False)


def table(tmp: Path, sql: str):
    with wh.connect(tmp / "wh.duckdb", read_only=True) as con:
        return con.execute(sql).fetchall()


def test_spec_parses():
    spec = parse_dataset_spec("spotify-history:/x/a, /x/b")
    assert spec.kind == "spotify-history" and spec.paths == ("/x/a", "/x/b")
    assert spec.key == "spotify-history:/x/a,/x/b"
    with pytest.raises(ConfigError):
        parse_dataset_spec("spotify-history:")


def test_three_listener_folders_ingest(tmp_path):
    root = tmp_path / "exports"
    n = {"ana": 3, "bo": 2, "cy": 4}
    for who, k in n.items():
        write(root / who, "Streaming_History_Audio_2024_0.json",
              [play(i * 5, f"spotify:track:{who}{i}", skipped=i % 2 == 1) for i in range(k)])
    write(root / "bo", "endsong_1.json", [play(100, "spotify:track:old")])  # older export name, same fields
    res = ingest(root, tmp_path)
    assert res.n_events == 10 and res.n_strata == 3 and res.stratum_kind == "user" and res.n_tracks == 10
    per_user = dict(table(tmp_path, "SELECT stratum_id, count(*) FROM feedback_events GROUP BY 1"))
    assert per_user == {"ana": 3, "bo": 3, "cy": 4}
    assert len(res.files) == 4 and all(f.kind == "spotify-history" and len(f.sha256) == 64 for f in res.files)
    cat = dict((r[0], r[1:]) for r in table(tmp_path, "SELECT track_id, artist_id, title, album FROM track_catalog"))
    assert cat["spotify:track:ana1"] == ("Artist of spotify:track:ana1", "Title of spotify:track:ana1",
                                        "Album of spotify:track:ana1")
    # two different folders of the same name would merge two people: an error naming both
    write(tmp_path / "other" / "ana", "Streaming_History_Audio_2024_0.json", [play(0)])
    with pytest.raises(InputDataError, match="same listener id 'ana'"):
        ingest(root, tmp_path, spec=f"spotify-history:{root},{tmp_path / 'other'}")
    # one listener's export folder (no sub-folders): user id = the folder's name
    res1 = ingest(root / "cy", tmp_path)
    assert res1.n_strata == 1 and table(tmp_path, "SELECT DISTINCT stratum_id FROM feedback_events") == [("cy",)]


def test_labels_as_specified_and_drops_counted(tmp_path):
    recs = [
        play(0, "spotify:track:a", skipped=True, reason_end="trackdone"),  # skipped → negative
        play(1, "spotify:track:b", skipped=None, ms=10_000, reason_end="fwdbtn"),  # short + fwdbtn → negative
        play(2, "spotify:track:c", skipped=None, ms=10_000, reason_end="endplay"),  # short + endplay → negative
        play(3, "spotify:track:d", skipped=None, ms=10_000, reason_end="logout"),  # short, logout → dropped
        play(4, "spotify:track:e", skipped=False, ms=40_000, reason_end="fwdbtn"),  # 40 s then fwd → dropped
        play(5, "spotify:track:f", skipped=False),  # trackdone → positive
        play(6, "spotify:track:g", skipped=None),  # trackdone, skipped unknown → positive
        play(7, None, spotify_episode_uri="spotify:episode:x", episode_name="E"),  # podcast
        play(8, None, audiobook_uri="spotify:audiobook:y", audiobook_title="B"),  # audiobook
        play(9, "spotify:track:h", skipped=None, reason_end=None),  # no reason_end → dropped
    ]
    src = write(tmp_path / "me", "Streaming_History_Audio_2024.json", recs)
    res = ingest(src, tmp_path)
    labels = dict(table(tmp_path, "SELECT track_id[15:], feedback FROM feedback_events"))
    assert labels == {"a": 0, "b": 0, "c": 0, "f": 1, "g": 1}
    rec = res.files[0]
    assert rec.rows_read == 10 and rec.rows_kept == 5 and rec.rows_rejected == 5
    assert rec.reject_reasons == {
        PODCAST: 1, AUDIOBOOK: 1, "neither skipped nor completed (reason_end=logout)": 1,
        "neither skipped nor completed (reason_end=fwdbtn)": 1, "neither skipped nor completed (reason_end missing)": 1,
    }
    # the thresholds are settings: 50 s makes the 40 s fwdbtn play a negative, logout a completed play
    cfg = IngestConfig(spotify_min_ms_played=50_000, spotify_positive_reasons=("trackdone", "logout"))
    ingest(src, tmp_path, cfg)
    labels = dict(table(tmp_path, "SELECT track_id[15:], feedback FROM feedback_events"))
    assert labels["e"] == 0 and labels["d"] == 1


def test_repeated_plays_follow_the_duplicate_policy(tmp_path):
    src = write(tmp_path / "me", "Streaming_History_Audio_2024.json",
                [play(0, "spotify:track:a"), play(0, "spotify:track:a"), play(1, "spotify:track:b", skipped=True)])
    with pytest.raises(InputDataError) as e:
        ingest(src, tmp_path)
    assert "record 1" in str(e.value) and "record 2" in str(e.value) and "on_duplicate" in str(e.value)
    res = ingest(src, tmp_path, IngestConfig(on_duplicate="drop"))
    assert res.n_events == 2 and res.files[0].reject_reasons == {"duplicate": 1}


def _bad_cases(d: Path) -> list[tuple[Path, str, tuple[str, ...]]]:
    good = json.dumps([play(i, f"spotify:track:{i}") for i in range(5)], indent=1)
    cases = []
    p = d / "trunc" / "Streaming_History_Audio_2024_0.json"
    p.parent.mkdir(parents=True)
    p.write_text(good[: len(good) // 2])
    cases.append((p, "(whole file)", ("truncated",)))
    p = write(d / "basic", "StreamingHistory_music_0.json",
              [{"endTime": "2024-01-01 10:00", "artistName": "A", "trackName": "T", "msPlayed": 1000}])
    cases.append((p, "spotify_track_uri", ("Extended streaming history", "Privacy settings")))
    p = write(d / "nullts", "Streaming_History_Audio_2024_0.json", [play(0), play(1, ts=None), play(2)])
    cases.append((p, "ts", ("missing value", "record 2")))
    p = write(d / "nullms", "Streaming_History_Audio_2024_0.json", [play(0), play(1), play(2, ms=None)])
    cases.append((p, "ms_played", ("missing value", "record 3")))
    p = write(d / "typems", "Streaming_History_Audio_2024_0.json", [play(0, ms="lots"), play(1)])
    cases.append((p, "ms_played", ("wrong type", "record 1", "lots")))
    p = write(d / "typeskip", "Streaming_History_Audio_2024_0.json", [play(0), play(1, skipped="maybe")])
    cases.append((p, "skipped", ("wrong type", "record 2", "maybe")))
    p = write(d / "typets", "Streaming_History_Audio_2024_0.json", [play(0, ts="yesterday")])
    cases.append((p, "ts", ("wrong type", "yesterday")))
    return cases


def test_bad_export_files_fail_clearly_and_leave_the_warehouse_unchanged(tmp_path):
    good = write(tmp_path / "good" / "me", "Streaming_History_Audio_2024.json", [play(0), play(1, "spotify:track:z")])
    ingest(good, tmp_path)
    with wh.connect(tmp_path / "wh.duckdb", read_only=True) as con:
        before = wh.snapshot(con)
    for path, column, words in _bad_cases(tmp_path / "bad"):
        with pytest.raises(InputDataError) as e:
            ingest(path.parent, tmp_path)
        msg = str(e.value)
        assert path.name in msg and column in e.value.column, msg
        assert all(w in msg for w in words), msg
        assert IP not in msg and USER not in msg
        with wh.connect(tmp_path / "wh.duckdb", read_only=True) as con:
            assert wh.snapshot(con) == before


def test_session_strata_gap_and_twenty_event_cut(tmp_path):
    minutes = [i * 1.0 for i in range(25)]  # 25 plays one minute apart: cut at 20
    minutes += [24 + 31 + i for i in range(3)]  # a 31-minute gap: a new session
    minutes += [minutes[-1] + 29]  # a 29-minute gap: the same session
    src = write(tmp_path / "me", "Streaming_History_Audio_2024.json",
                [play(m, f"spotify:track:{i}") for i, m in enumerate(minutes)])
    res = ingest(src, tmp_path, IngestConfig(stratum="session"))
    assert res.stratum_kind == "session" and res.n_strata == 3
    rows = table(tmp_path, "SELECT stratum_id, count(*), min(position), max(position), max(stratum_length) "
                           "FROM feedback_events GROUP BY 1 ORDER BY 1")
    assert rows == [("me#000001", 20, 1, 20, 20), ("me#000002", 5, 1, 5, 5), ("me#000003", 4, 1, 4, 4)]
    assert table(tmp_path, "SELECT value FROM semid_meta WHERE key = 'stratum_kind'") == [("session",)]
    # positions follow time inside a session
    ts = table(tmp_path, "SELECT ts FROM feedback_events WHERE stratum_id = 'me#000003' ORDER BY position")
    assert [t for (t,) in ts] == sorted(t for (t,) in ts)
    # a longer gap setting joins sessions 2 and 3 of the same listener's data differently
    res = ingest(src, tmp_path, IngestConfig(stratum="session", session_gap_minutes=45))
    assert res.n_strata == 2  # 20 + (5 + 4 = 9: the 31-minute gap no longer cuts)
    with pytest.raises(ConfigError):
        ingest(src, tmp_path, IngestConfig(stratum="week"))


def test_splits_use_the_sessions_protocol(tmp_path):
    from semid_pipeline.config import SplitConfig
    from semid_pipeline.splits import load_splits

    write_exports(tmp_path / "exp", cfg=ExportConfig(listeners=2, plays_per_listener=400, days=40, seed=3))
    ingest(tmp_path / "exp", tmp_path, IngestConfig(stratum="session"))
    with wh.connect(tmp_path / "wh.duckdb", read_only=True) as con:
        sp = load_splits(con, SplitConfig(test_days=7, val_days=7))
    assert sp.kind == "session" and len(sp.test) >= 5
    # sessions protocol: a test session's input is its own first half, the evaluated events the rest
    ev = sp.test.events
    for i, sid in enumerate(sp.test.stratum_ids):
        pos = ev.loc[ev["stratum_id"] == sid, "position"]
        assert len(sp.test.input_positions[i]) and sp.test.input_positions[i].max() < pos.min()
        assert sid.split("#")[0] in ("listener_01", "listener_02")


def test_generator_is_deterministic_and_has_signal(tmp_path):
    cfg = ExportConfig(listeners=2, plays_per_listener=300, seed=5)
    a = write_exports(tmp_path / "a", cfg=cfg)
    b = write_exports(tmp_path / "b", cfg=cfg)
    assert [p.read_bytes() for p in a.files] == [p.read_bytes() for p in b.files]
    assert a.files[0].read_bytes() != write_exports(tmp_path / "c", cfg=replace(cfg, seed=6)).files[0].read_bytes()
    ingest(tmp_path / "a", tmp_path)
    # listeners like different genres: per listener, some genres are mostly positive, others mostly negative
    shares = table(tmp_path, "SELECT stratum_id, split_part(artist_id, ' ', 2) AS g, avg(feedback) "
                             "FROM feedback_events GROUP BY ALL HAVING count(*) >= 10")
    assert max(s for *_, s in shares) > 0.6 and min(s for *_, s in shares) < 0.4


def test_json_reader_reads_only_the_listed_fields(tmp_path):
    """The staged columns are exactly ``FIELDS`` (+ bookkeeping): no personal field is parsed."""
    from semid_pipeline.ingest import spotify

    src = write(tmp_path / "me", "Streaming_History_Audio_2024.json", [play(0)])
    con = duckdb.connect()
    t, n = spotify._stage_file(con, src, 0, "me", IngestConfig())
    cols = [r[0] for r in con.execute(f"DESCRIBE {t}").fetchall()]
    assert n == 1 and not {"ip_addr", "username", "conn_country", "platform", "user_agent_decrypted"} & set(cols)
    dump = json.dumps(con.execute(f"SELECT * FROM {t}").fetchall(), default=str)
    assert IP not in dump and USER not in dump


@pytest.mark.slow
def test_pipeline_by_session_writes_no_personal_field_anywhere(tmp_path):
    """Three generated listeners through the real Dagster assets (ingest, features, one ID
    partition, a tiny training + evaluation), then every table, artifact, record, event and log
    line is searched for the planted IP addresses and usernames."""
    import dagster as dg

    from assets import definitions
    from resources import ArtifactStore, ComputeResource, DatasetResource, DuckDBWarehouse

    m = write_exports(tmp_path / "exports", cfg=ExportConfig(listeners=3, plays_per_listener=3000, days=40, seed=1))
    planted = [*m.fake_ips, *m.fake_usernames, "Android OS 13"]
    resources = {
        "warehouse": DuckDBWarehouse(path=str(tmp_path / "wh.duckdb")),
        "artifacts": ArtifactStore(root=str(tmp_path / "artifacts")),
        "dataset": DatasetResource(spec=f"spotify-history:{m.folder}", data_dir=str(tmp_path / "data"),
                                   stratum="session"),
        "compute": ComputeResource(threads=1),
        "pipes_client": dg.PipesSubprocessClient(),  # training runs as an external process
    }
    instance = dg.DagsterInstance.ephemeral()
    texts = []

    def run(selection: str, key=None):
        r = dg.materialize(definitions.ASSETS + definitions.CHECKS,
                           selection=dg.AssetSelection.assets(*selection.split()),
                           resources=resources, instance=instance, partition_key=key, raise_on_error=False)
        assert r.success, [str(e.message) for e in r.all_events if e.is_failure]
        texts.extend(str(e) for e in r.all_events)
        texts.extend(str(e) for e in instance.all_logs(r.run_id))
        return r

    ingest_run = run("feedback_events track_catalog content_features")
    checks = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
              for e in ingest_run.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert checks["feedback_events_quality"].passed and checks["content_features_complete"].passed
    assert "metadata-derived" in str(checks["feedback_events_quality"].metadata)
    md = {x.asset_key.to_user_string(): x.metadata for x in ingest_run.asset_materializations_for_node("raw_feedback")}
    assert md["feedback_events"]["stratum_kind"].value == "session"
    run("semantic_ids", "v0-k64")
    run("semantic_ids", "id")
    ev_run = run("recommender evaluation", "32|id")
    ev_md = ev_run.asset_materializations_for_node("evaluation")[0].metadata
    assert ev_md["stratum_kind"].value == "session"
    assert json.loads(Path(ev_md["record"].value).read_text())["stratum_kind"] == "session"
    with wh.connect(tmp_path / "wh.duckdb", read_only=True) as con:
        for (name,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall():
            texts.append(json.dumps(con.execute(f'SELECT * FROM "{name}"').fetchall(), default=str))
        assert con.execute("SELECT count(*) FROM ingestion_record").fetchone()[0] == len(m.files)
    files = [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()] + [tmp_path / "wh.duckdb"]
    assert len(files) > 3
    blobs = [p.read_bytes() for p in files]
    for needle in planted:
        assert not any(needle in t for t in texts), needle
        assert not any(needle.encode() in b for b in blobs), needle
    # the planted values are really in the source files (the search would find them)
    assert all(any(n.encode() in p.read_bytes() for p in m.files) for n in planted)


def test_per_user_events_files_can_be_cut_into_sessions(tmp_path):
    """``[ingest] stratum = "session"`` works for ``events:`` files too (same rules)."""
    import pandas as pd

    ts = [T0 + dt.timedelta(minutes=m) for m in [*range(22), 22 + 40, 22 + 41]]
    pd.DataFrame({"user_id": "u1", "track_id": [f"t{i}" for i in range(len(ts))], "timestamp": ts,
                  "feedback": [i % 2 for i in range(len(ts))]}).to_csv(tmp_path / "events.csv", index=False)
    spec = f"events:{tmp_path / 'events.csv'}"
    res = ingest(tmp_path, tmp_path, IngestConfig(stratum="session"), spec=spec)
    assert res.stratum_kind == "session"
    assert table(tmp_path, "SELECT stratum_id, count(*) FROM feedback_events GROUP BY 1 ORDER BY 1") == [
        ("u1#000001", 20), ("u1#000002", 2), ("u1#000003", 2)]
    res = ingest(tmp_path, tmp_path, IngestConfig(), spec=spec)
    assert res.stratum_kind == "user" and res.n_strata == 1


def test_coverage_gate_counts_what_the_features_stage_uses(tmp_path):
    """No numeric content: metadata-derived features count (and the description says so); a
    catalogue with neither content nor metadata fails naming the columns it looked for."""
    from semid_pipeline.quality import validate_feedback_events

    src = write(tmp_path / "me", "Streaming_History_Audio_2024.json",
                [play(i, f"spotify:track:{i}", skipped=i % 2 == 0) for i in range(6)])
    ingest(src, tmp_path)
    with wh.connect(tmp_path / "wh.duckdb") as con:
        rep = validate_feedback_events(con)
        o = rep.outcome("expect_column_mean_to_be_between")
        assert rep.success and o.success and "metadata-derived" in o.description and "title" in o.description
        con.execute("UPDATE track_catalog SET artist_id = NULL, title = NULL, album = NULL "
                    "WHERE track_id > 'spotify:track:2'")
        o = validate_feedback_events(con).outcome("expect_column_mean_to_be_between")
        assert not o.success  # 3 of 6 tracks keep metadata: 0.5 < 0.95
        con.execute("ALTER TABLE track_catalog DROP COLUMN title")
        con.execute("ALTER TABLE track_catalog DROP COLUMN album")
        con.execute("ALTER TABLE track_catalog DROP COLUMN artist_id")
        con.execute("ALTER TABLE track_catalog DROP COLUMN genre_id")
        con.execute("ALTER TABLE track_catalog DROP COLUMN release_year")
        o = validate_feedback_events(con).outcome("expect_column_mean_to_be_between")
        assert not o.success and "looked for" in o.description and "artist_id" in o.description
