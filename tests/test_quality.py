"""great-expectations validations of feedback_events / track_catalog (semid_pipeline.quality).

Each test builds a tiny warehouse with DuckDB in a temp folder (following schema.py), plants one
violation and checks that exactly the right expectation fails, with the planted row among its
examples. great-expectations is imported once for the module (the ``gx`` fixture).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from semid_pipeline import schema
from semid_pipeline.config import IngestConfig
from semid_pipeline.expectations import ExpectationOutcome, ExpectationSpec, ValidationReport, validate_dataframe
from semid_pipeline.quality import validate_feedback_events, validate_track_catalog

REPO = Path(__file__).resolve().parent.parent

CATALOG_COLUMNS: dict[str, str] = {
    **schema.TRACK_KEY_COLUMNS,
    "duration": "DOUBLE",
    "us_popularity_estimate": "DOUBLE",
    "acousticness": "DOUBLE",
    "danceability": "DOUBLE",
    "energy": "DOUBLE",
    "key": "INTEGER",
    "loudness": "DOUBLE",
    "mode": "VARCHAR",
    "tempo": "DOUBLE",
    "time_signature": "INTEGER",
    "acoustic_vector_0": "DOUBLE",
    "embedding": "FLOAT[]",
}

T0 = dt.datetime(2024, 1, 1, 12, 0, 0)


def clean_events() -> list[dict]:
    """3 strata x 4 positions over tracks t1..t6, both labels."""
    rows = []
    for s in range(3):
        for p in range(1, 5):
            rows.append(
                {
                    "stratum_id": f"s{s}",
                    "position": p,
                    "stratum_length": 4,
                    "ts": T0 + dt.timedelta(hours=s, minutes=p),
                    "track_id": f"t{(s * 4 + p) % 6 + 1}",
                    "feedback": (s + p) % 2,
                    "context_type": "radio",
                    "artist_id": "a1",
                    "genre_id": None,
                    "source_file": "log_0.csv",
                }
            )
    return rows


def clean_catalog() -> list[dict]:
    rows = []
    for i in range(1, 7):
        rows.append(
            {
                "track_id": f"t{i}",
                "artist_id": "a1",
                "genre_id": None,
                "release_year": 1990 + i,
                "title": f"song {i}",
                "duration": 180.0 + i,
                "us_popularity_estimate": 90.0 + i,
                "acousticness": 0.1 * i,
                "danceability": 0.15 * i,
                "energy": 0.5,
                "key": i,
                "loudness": -10.0 - i,
                "mode": "major" if i % 2 else "minor",
                "tempo": 100.0 + i,
                "time_signature": 4,
                "acoustic_vector_0": -0.5 + 0.1 * i,
                "embedding": [0.1 * i, 0.2, 0.3],
            }
        )
    return rows


def write_table(con, name: str, columns: dict[str, str], rows: list[dict]) -> None:
    con.execute(f"CREATE TABLE {name} ({', '.join(f'{c} {t}' for c, t in columns.items())})")
    if rows:
        con.executemany(
            f"INSERT INTO {name} VALUES ({', '.join('?' for _ in columns)})",
            [[r.get(c) for c in columns] for r in rows],
        )


_counter = iter(range(10_000))


def make_warehouse(
    root: Path,
    *,
    events: list[dict] | None = None,
    catalog: list[dict] | None = None,
    event_columns: dict[str, str] | None = None,
    catalog_columns: dict[str, str] | None = None,
) -> duckdb.DuckDBPyConnection:
    path = root / f"warehouse_{next(_counter)}.duckdb"
    con = duckdb.connect(str(path))
    write_table(
        con,
        schema.FEEDBACK_EVENTS,
        event_columns or schema.FEEDBACK_EVENTS_COLUMNS,
        clean_events() if events is None else events,
    )
    write_table(
        con,
        schema.TRACK_CATALOG,
        catalog_columns or CATALOG_COLUMNS,
        clean_catalog() if catalog is None else catalog,
    )
    return con


def failing(report: ValidationReport) -> set[tuple[str, str | None]]:
    return {(o.name, o.column) for o in report.failures()}


def only_failure(report: ValidationReport, name: str, column: str | None) -> ExpectationOutcome:
    assert not report.success
    assert failing(report) == {(name, column)}, report
    return report.outcome(name, column)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("quality")


@pytest.fixture(scope="module")
def clean_reports(root):
    """Validating the clean warehouse imports great-expectations once for the whole module."""
    con = make_warehouse(root)
    try:
        return validate_feedback_events(con), validate_track_catalog(con)
    finally:
        con.close()


# ------------------------------------------------------------------------------------------ clean


def test_clean_warehouse_passes_every_expectation(clean_reports):
    events, catalog = clean_reports
    assert events.success, events
    assert catalog.success, catalog
    assert events.failures() == [] and catalog.failures() == []
    names = {o.name for o in events.outcomes}
    assert {
        "expect_table_columns_to_match_set",
        "expect_column_pair_values_to_be_equal",
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_in_set",
        "expect_compound_columns_to_be_unique",
        "expect_column_values_to_be_between",
        "expect_column_pair_values_a_to_be_greater_than_b",
        "expect_column_distinct_values_to_contain_set",
        "expect_column_mean_to_be_between",
    } <= names
    assert {o.column for o in events.outcomes if o.name == "expect_column_values_to_not_be_null"} == {
        "stratum_id", "track_id", "position", "ts", "feedback"
    }
    ranged = {o.column for o in catalog.outcomes if o.name == "expect_column_values_to_be_between"}
    # every documented range of a present column; acoustic_vector_0 is unbounded
    assert ranged == {
        "duration", "release_year", "us_popularity_estimate", "acousticness", "danceability",
        "energy", "key", "loudness", "tempo", "time_signature",
    }
    assert catalog.outcome("expect_column_values_to_be_in_set", "mode").success
    assert all(o.examples == [] for o in events.outcomes + catalog.outcomes)


def test_report_renders_markdown_and_json(clean_reports, root):
    events, _ = clean_reports
    md = events.summary_markdown()
    assert "| expectation | column | ok | observed | first offending rows |" in md
    assert md.count("\n|") >= len(events.outcomes) + 1
    meta = events.to_metadata()
    json.dumps(meta)
    assert meta["failed"] == 0 and meta["passed"] == len(events.outcomes) and meta["success"] is True

    ev = clean_events()
    ev[5]["feedback"] = 2
    con = make_warehouse(root, events=ev)
    bad = validate_feedback_events(con)
    con.close()
    meta = json.loads(json.dumps(bad.to_metadata()))
    assert meta["failed"] == 1
    (f,) = meta["failures"]
    assert f["expectation"] == "expect_column_values_to_be_in_set" and f["column"] == "feedback"
    assert f["examples"][0]["feedback"] == 2
    md = bad.summary_markdown()
    assert "FAILED" in md and "❌" in md and "feedback=2" in md


def test_progress_bars_and_logging_are_silent(root, clean_reports, capfd):
    con = make_warehouse(root)
    validate_feedback_events(con)
    con.close()
    out, err = capfd.readouterr()
    assert "Calculating Metrics" not in err + out
    assert err.strip() == ""


# -------------------------------------------------------------------------------- feedback_events


def test_null_track_id(root, clean_reports):
    ev = clean_events()
    ev[6]["track_id"] = None  # s1, position 3
    con = make_warehouse(root, events=ev)
    o = only_failure(validate_feedback_events(con), "expect_column_values_to_not_be_null", "track_id")
    con.close()
    assert o.unexpected_count == 1
    assert {"stratum_id": "s1", "position": 3, "track_id": None} in o.examples


def test_feedback_outside_0_1(root, clean_reports):
    ev = clean_events()
    ev[5]["feedback"] = 2  # s1, position 2
    con = make_warehouse(root, events=ev)
    o = only_failure(validate_feedback_events(con), "expect_column_values_to_be_in_set", "feedback")
    con.close()
    assert o.unexpected_count == 1
    assert o.examples == [{"stratum_id": "s1", "position": 2, "track_id": ev[5]["track_id"], "feedback": 2}]
    assert "1 of 12 rows" in o.observed


def test_duplicate_stratum_position(root, clean_reports):
    ev = clean_events()
    ev[10]["position"] = 2  # s2: positions 1, 2, 2, 4
    con = make_warehouse(root, events=ev)
    o = only_failure(
        validate_feedback_events(con), "expect_compound_columns_to_be_unique", "stratum_id,position"
    )
    con.close()
    assert o.unexpected_count == 2
    assert {(e["stratum_id"], e["position"], e["track_id"]) for e in o.examples} == {
        ("s2", 2, ev[9]["track_id"]),
        ("s2", 2, ev[10]["track_id"]),
    }


def test_position_beyond_stratum_length(root, clean_reports):
    ev = clean_events()
    ev[11]["position"] = 7  # s2, length 4
    con = make_warehouse(root, events=ev)
    o = only_failure(
        validate_feedback_events(con),
        "expect_column_pair_values_a_to_be_greater_than_b",
        "stratum_length,position",
    )
    con.close()
    assert o.examples == [{"stratum_id": "s2", "position": 7, "track_id": ev[11]["track_id"], "stratum_length": 4}]


def test_position_below_one(root, clean_reports):
    ev = clean_events()
    ev[0]["position"] = 0
    con = make_warehouse(root, events=ev)
    o = only_failure(validate_feedback_events(con), "expect_column_values_to_be_between", "position")
    con.close()
    assert o.examples[0]["stratum_id"] == "s0" and o.examples[0]["position"] == 0


def test_null_position_fails_only_not_null(root, clean_reports):
    ev = clean_events()
    ev[2]["position"] = None  # s0, third event: nullable INTEGER column
    con = make_warehouse(root, events=ev)
    o = only_failure(validate_feedback_events(con), "expect_column_values_to_not_be_null", "position")
    con.close()
    assert o.examples == [{"stratum_id": "s0", "position": None, "track_id": ev[2]["track_id"]}]


def test_only_positive_labels(root, clean_reports):
    ev = clean_events()
    for r in ev:
        r["feedback"] = 1
    con = make_warehouse(root, events=ev)
    o = only_failure(validate_feedback_events(con), "expect_column_distinct_values_to_contain_set", "feedback")
    con.close()
    assert o.examples == [{"column": "feedback", "missing_value": 0}]
    assert "missing values: 0" in o.observed


def test_feature_coverage_below_bound(root, clean_reports):
    ev = clean_events()
    ev[0]["track_id"] = "ghost_1"  # not in the catalog
    ev[1]["track_id"] = "ghost_2"
    cat = clean_catalog()
    for c in ("duration", "acousticness", "danceability", "energy", "key", "loudness", "tempo",
              "time_signature", "acoustic_vector_0", "embedding", "release_year"):
        cat[0][c] = None  # t1: in the catalog, but no numeric content (release_year is metadata)
    con = make_warehouse(root, events=ev, catalog=cat)
    report = validate_feedback_events(con, cfg=IngestConfig(min_feature_coverage=0.95))
    o = only_failure(report, "expect_column_mean_to_be_between", "has_features")
    # a laxer bound accepts the same warehouse
    assert validate_feedback_events(con, cfg=IngestConfig(min_feature_coverage=0.5)).success
    con.close()
    tracks = {e["track_id"]: e for e in o.examples}
    assert tracks["ghost_1"]["in_catalog"] is False and tracks["ghost_2"]["in_catalog"] is False
    assert tracks["t1"]["in_catalog"] is True and tracks["t1"]["has_features"] == 0
    n_tracks = len({r["track_id"] for r in ev})
    assert o.unexpected_count == 3
    assert f"{(n_tracks - 3) / n_tracks:.4g}" in o.observed and "0.95" in o.observed


def test_embedding_alone_counts_as_content(root, clean_reports):
    cols = {**schema.TRACK_KEY_COLUMNS, "us_popularity_estimate": "DOUBLE", "embedding": "FLOAT[]"}
    cat = [{"track_id": f"t{i}", "us_popularity_estimate": 5.0, "embedding": [1.0, 2.0]} for i in range(1, 7)]
    con = make_warehouse(root, catalog=cat, catalog_columns=cols)
    assert validate_feedback_events(con).success
    con.close()
    # popularity is not content: without the embedding nothing counts
    for r in cat:
        r["embedding"] = None
    con = make_warehouse(root, catalog=cat, catalog_columns=cols)
    o = only_failure(validate_feedback_events(con), "expect_column_mean_to_be_between", "has_features")
    con.close()
    assert "observed 0" in o.observed


def test_missing_column(root, clean_reports):
    cols = {c: t for c, t in schema.FEEDBACK_EVENTS_COLUMNS.items() if c != "feedback"}
    con = make_warehouse(root, event_columns=cols)
    report = validate_feedback_events(con)
    con.close()
    assert not report.success
    o = report.outcome("expect_table_columns_to_match_set")
    assert not o.success and "missing: feedback" in o.observed
    assert o.examples == [{"column": "feedback", "problem": "missing"}]
    # the checks on the missing column are reported as not evaluated, not silently skipped
    assert failing(report) == {
        ("expect_table_columns_to_match_set", None),
        ("expect_column_values_to_not_be_null", "feedback"),
        ("expect_column_values_to_be_in_set", "feedback"),
        ("expect_column_distinct_values_to_contain_set", "feedback"),
    }
    assert report.outcome("expect_column_values_to_be_in_set", "feedback").observed.startswith("not evaluated")
    # the other expectations still ran
    assert report.outcome("expect_compound_columns_to_be_unique").success


def test_extra_column_and_wrong_type(root, clean_reports):
    cols = {**schema.FEEDBACK_EVENTS_COLUMNS, "position": "BIGINT", "user_agent": "VARCHAR"}
    con = make_warehouse(root, event_columns=cols)
    report = validate_feedback_events(con)
    con.close()
    assert failing(report) == {
        ("expect_table_columns_to_match_set", None),
        ("expect_column_pair_values_to_be_equal", "position"),
    }
    cols_o = report.outcome("expect_table_columns_to_match_set")
    assert "not in schema.py: user_agent" in cols_o.observed
    types = report.outcome("expect_column_pair_values_to_be_equal")
    assert types.examples == [{"column": "position", "actual_type": "BIGINT", "expected_type": "INTEGER"}]


def test_missing_tables(tmp_path, clean_reports):
    con = duckdb.connect(str(tmp_path / "empty.duckdb"))
    for report in (validate_feedback_events(con), validate_track_catalog(con)):
        assert not report.success
        assert report.failures()[0].name == "expect_table_to_exist"
    con.close()


# ---------------------------------------------------------------------------------- track_catalog


def test_catalog_feature_out_of_range(root, clean_reports):
    cat = clean_catalog()
    cat[2]["danceability"] = 1.7  # t3
    con = make_warehouse(root, catalog=cat)
    o = only_failure(validate_track_catalog(con), "expect_column_values_to_be_between", "danceability")
    con.close()
    assert o.examples == [{"track_id": "t3", "danceability": 1.7}]
    assert o.unexpected_count == 1


def test_catalog_release_year_and_mode(root, clean_reports):
    cat = clean_catalog()
    cat[0]["release_year"] = 1850
    cat[1]["mode"] = "dorian"
    cat[2]["release_year"] = None  # nullable: fine
    con = make_warehouse(root, catalog=cat)
    report = validate_track_catalog(con)
    con.close()
    assert failing(report) == {
        ("expect_column_values_to_be_between", "release_year"),
        ("expect_column_values_to_be_in_set", "mode"),
    }
    assert report.outcome("expect_column_values_to_be_between", "release_year").examples == [
        {"track_id": "t1", "release_year": 1850}
    ]
    assert report.outcome("expect_column_values_to_be_in_set", "mode").examples == [
        {"track_id": "t2", "mode": "dorian"}
    ]


def test_catalog_nullable_integer_out_of_range(root, clean_reports):
    cat = clean_catalog()
    cat[0]["key"] = None  # NULL → DuckDB hands pandas a nullable Int32 column
    cat[4]["key"] = 12
    con = make_warehouse(root, catalog=cat)
    o = only_failure(validate_track_catalog(con), "expect_column_values_to_be_between", "key")
    con.close()
    assert o.examples == [{"track_id": "t5", "key": 12}]


def test_catalog_duplicate_track_id(root, clean_reports):
    cat = clean_catalog()
    dup = copy.deepcopy(cat[3])  # t4 twice
    dup["title"] = "t4 again"
    cat.append(dup)
    con = make_warehouse(root, catalog=cat)
    o = only_failure(validate_track_catalog(con), "expect_column_values_to_be_unique", "track_id")
    # the events' coverage check is unaffected by the duplicate
    assert validate_feedback_events(con).success
    con.close()
    assert o.unexpected_count == 2
    assert o.examples == [{"track_id": "t4"}, {"track_id": "t4"}]


def test_catalog_null_track_id(root, clean_reports):
    cat = clean_catalog()
    cat[4]["track_id"] = None
    con = make_warehouse(root, catalog=cat)
    report = validate_track_catalog(con)
    con.close()
    o = only_failure(report, "expect_column_values_to_not_be_null", "track_id")
    assert o.examples == [{"track_id": None}]


# ---------------------------------------------------------------------------------- generic runner


def test_validate_dataframe_reports_each_spec(clean_reports):
    df = pd.DataFrame({"k": ["a", "b", "c", "d"], "x": [1.0, 2.0, 30.0, None]})
    report = validate_dataframe(
        df,
        "generic",
        [
            ExpectationSpec("expect_column_values_to_be_between", {"column": "x", "min_value": 0, "max_value": 10}),
            ExpectationSpec("expect_column_values_to_not_be_null", {"column": "x"}),
            ExpectationSpec("expect_column_values_to_be_unique", {"column": "k"}),
            ExpectationSpec("expect_column_values_to_not_be_null", {"column": "nope"}),
        ],
        key_columns=["k"],
    )
    assert [(o.name, o.column, o.success) for o in report.outcomes] == [
        ("expect_column_values_to_be_between", "x", False),
        ("expect_column_values_to_not_be_null", "x", False),
        ("expect_column_values_to_be_unique", "k", True),
        ("expect_column_values_to_not_be_null", "nope", False),
    ]
    assert report.outcomes[0].examples == [{"k": "c", "x": 30.0}]
    assert report.outcomes[1].examples == [{"k": "d", "x": None}]
    assert "not evaluated" in report.outcomes[3].observed
    json.dumps(report.to_metadata())


def test_import_is_lazy_and_dagster_free():
    code = (
        "import sys, semid_pipeline.quality\n"
        "assert 'great_expectations' not in sys.modules\n"
        "assert not any(m == 'dagster' or m.startswith('dagster.') for m in sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
