"""The Dagster layer end to end on the tiny synthetic world: real instance, real DuckDB file,
real great-expectations checks, real torch training (small grid slice)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import pytest

from assets import definitions, operations
from assets.definitions import defs
from resources import ArtifactStore, ComputeResource, DatasetResource, DuckDBWarehouse
from semid_pipeline import warehouse as wh
from semid_pipeline.schema import FEEDBACK_EVENTS

pytestmark = pytest.mark.slow

ALL_ASSETS, ALL_CHECKS = definitions.ASSETS, definitions.CHECKS


def _resources(root: Path, spec: str = "synthetic:tiny") -> dict:
    return {
        "warehouse": DuckDBWarehouse(path=str(root / "wh.duckdb")),
        "artifacts": ArtifactStore(root=str(root / "artifacts")),
        "dataset": DatasetResource(spec=spec, data_dir=str(root / "data")),
        "compute": ComputeResource(threads=2),
        "pipes_client": dg.PipesSubprocessClient(),  # training runs as an external process
    }


def _materialize(selection: str, root: Path, instance, *, spec="synthetic:tiny", partition_key=None, ok=True):
    result = dg.materialize(
        ALL_ASSETS + ALL_CHECKS,
        selection=dg.AssetSelection.assets(*selection.split()),
        resources=_resources(root, spec),
        instance=instance,
        partition_key=partition_key,
        raise_on_error=False,
    )
    if ok:
        assert result.success, [str(e.message) for e in result.all_events if e.is_failure]
    return result


def _check_results(result) -> dict[str, bool]:
    return {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Ingest → features → IDs (id, v0-k64, v1-k64) → two grid partitions → report, once."""
    root = tmp_path_factory.mktemp("pipeline")
    instance = dg.DagsterInstance.ephemeral()
    runs = {"ingest": _materialize("feedback_events track_catalog content_features", root, instance)}
    for key in ("id", "v0-k64", "v1-k64"):
        runs[key] = _materialize("semantic_ids", root, instance, partition_key=key)
    for key in ("32|id", "32|v1-k64"):
        runs[key] = _materialize("recommender evaluation", root, instance, partition_key=key)
    runs["report"] = _materialize("experiment_report", root, instance)
    return root, instance, runs


def test_definitions_load_and_hold_the_lineage():
    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert {"feedback_events", "track_catalog", "content_features", "semantic_ids", "recommender",
            "evaluation", "experiment_report"} <= keys
    assert defs.resolve_schedule_def("weekly_retraining").default_status == dg.DefaultScheduleStatus.STOPPED
    assert defs.resolve_sensor_def("landing_folder")


def test_ingestion_counts_match_generator_and_checks_pass(world):
    root, _, runs = world
    manifest = json.loads((root / "data" / "synthetic" / "tiny" / "manifest.json").read_text())
    counts = manifest["counts"]
    with wh.connect(root / "wh.duckdb", read_only=True) as con:
        n_events = con.execute(f"SELECT count(*) FROM {FEEDBACK_EVENTS}").fetchone()[0]
        n_pos = con.execute(f"SELECT sum(feedback) FROM {FEEDBACK_EVENTS}").fetchone()[0]
        n_tracks = con.execute("SELECT count(*) FROM track_catalog").fetchone()[0]
    assert n_events == counts["users_events"] and n_pos == counts["users_positive"]
    assert n_tracks == counts["users_tracks"]
    checks = _check_results(runs["ingest"])
    assert checks == {"feedback_events_quality": True, "feedback_events_time_split": True, "track_catalog_quality": True,
                      "content_features_complete": True}
    mat = runs["ingest"].asset_materializations_for_node("raw_feedback")
    md = {m.asset_key.to_user_string(): m.metadata for m in mat}
    assert md["feedback_events"]["dagster/row_count"].value == n_events
    assert "sha256" in md["feedback_events"]["ingestion_record"].value
    # peak RSS per stage (semid_pipeline.resources_usage): ingestion and content features record theirs
    features_md = runs["ingest"].asset_materializations_for_node("content_features")[0].metadata
    for m in (md["feedback_events"], md["track_catalog"], features_md):
        assert m["peak_rss_method"].value in ("hwm-reset", "sampled") and 50 < m["peak_rss_mb"].value < 8000


def test_semantic_id_partitions_pass_their_checks(world):
    _, _, runs = world
    for key in ("id", "v0-k64", "v1-k64"):
        assert _check_results(runs[key]) == {"ids_one_to_one": True, "ids_cover_events": True, "ids_no_collapse": True,
                                             "ids_distinct_tuples": True}  # semid-ids: collision gate
    md = runs["v1-k64"].asset_materializations_for_node("semantic_ids")[0].metadata
    assert len(md["content_hash"].value) == 64
    assert 0.9 <= md["quality/unique_tuple_share"].value <= 1.0
    assert 50 < md["peak_rss_mb"].value < 8000  # the stage's own peak RSS
    assert "utilization" in md["per_level"].value


def test_rerun_of_a_partition_keeps_ids_and_extends_nothing(world):
    root, instance, runs = world
    before = runs["v1-k64"].asset_materializations_for_node("semantic_ids")[0].metadata["content_hash"].value
    again = _materialize("semantic_ids", root, instance, partition_key="v1-k64")
    md = again.asset_materializations_for_node("semantic_ids")[0].metadata
    assert md["mode"].value == "unchanged" and md["content_hash"].value == before


def test_grid_partitions_train_evaluate_and_report(world):
    root, _, runs = world
    for key in ("32|id", "32|v1-k64"):
        md = runs[key].asset_materializations_for_node("recommender")[0].metadata
        assert md["params/total"].value > md["params/track_representation"].value > 0
        assert "val_auc" in md["training_curve"].value
        assert Path(md["training_curve_png"].value).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        ev = runs[key].asset_materializations_for_node("evaluation")[0].metadata
        assert ev["test_ci_lo"].value <= ev["test_auc"].value <= ev["test_ci_hi"].value
        # a synthetic per-user world: the ceilings next to the model's AUC in the asset's metadata
        assert 0.5 < ev["ceiling/learnable_auc"].value < ev["ceiling/oracle_auc"].value
        # the final fit trains on the validation period: the validation AUC shown is the held-out one,
        # with the popularity prior's weight chosen there (the default)
        prior = json.loads(Path(ev["record"].value).read_text())["prior"]
        assert md["prior_weight"].value == ev["prior_weight"].value == prior["weight"] >= 0
        assert ev["val_auc"].value == pytest.approx(prior["val_auc"], abs=1e-6)
        assert prior["val_auc"] >= prior["val_auc_without"] == pytest.approx(md["best_val_auc"].value, abs=1e-6)
        for m in (md, ev):  # peak RSS of the training worker (through Pipes) and of the evaluation
            assert m["peak_rss_method"].value in ("hwm-reset", "sampled") and 50 < m["peak_rss_mb"].value < 8000
    id_params = runs["32|id"].asset_materializations_for_node("recommender")[0].metadata["params/track_representation"].value
    v1_params = runs["32|v1-k64"].asset_materializations_for_node("recommender")[0].metadata["params/track_representation"].value
    n_tracks = 300  # the tiny preset's catalogue
    max_tie = runs["v1-k64"].asset_materializations_for_node("semantic_ids")[0].metadata["quality/max_tie"].value
    from semid_pipeline.config import load_config

    row = 32 + int(load_config().train.item_bias)  # h per row (+ the row's bias with item_bias)
    assert id_params == row * (1 + n_tracks)  # one row per track (+ the shared pad row)
    assert v1_params == row * (1 + 4 * 64 + max_tie + 1) < id_params  # 4 levels of k=64 + the tie level
    rep = runs["report"].asset_materializations_for_node("experiment_report")[0].metadata
    assert rep["partitions_evaluated"].value == 2
    html = Path(rep["report_html"].value).read_text()
    assert "32|v1-k64" in html and "data:image/png;base64" in html
    assert html.index("Verdict on this data") < html.index("<h2>Partitions</h2>") and "oracle" in html
    records = [json.loads(p.read_text()) for p in root.rglob("evaluations/*/*.json")]
    assert len(records) == 2  # a synthetic world: every record carries the oracle ceiling on its test pairs
    assert all(r["oracle"]["ci_lo"] <= r["oracle"]["auc"] <= r["oracle"]["ci_hi"] for r in records)
    # a per-user world: the learnable ceiling (estimated taste + appeal) sits below the oracle, in the report
    assert all(0.5 < r["oracle"]["learnable"]["auc"] < r["oracle"]["auc"] for r in records)
    assert "learnable ceiling" in html and "learnable from this data" in html


def _recommender_md(result) -> dict:
    return result.asset_materializations_for_node("recommender")[0].metadata


def test_diagnostics_train_bias_only_and_shuffled_models_once_and_the_report_shows_them(world):
    root, instance, _ = world
    _materialize("semantic_ids", root, instance, partition_key="v1-k1024")  # the production scheme's codes
    run = _materialize("diagnostics experiment_report", root, instance)
    record_path = next(root.rglob("evaluations/*/diagnostics/record.json"))
    rec = json.loads(record_path.read_text())
    rows = {r["name"]: r for r in rec["rows"]}
    assert set(rows) == {"bias-only id (per-track biases)", "bias-only v1-k1024 (per-codeword biases, summed)",
                         "32|id on shuffled histories"}
    for r in rows.values():
        t = r["test"]
        assert 0.0 < t["ci_lo"] <= t["auc"] <= t["ci_hi"] < 1.0 and t["n_strata"] > 0
    for name in ("bias-only id (per-track biases)", "bias-only v1-k1024 (per-codeword biases, summed)"):
        assert rows[name]["bias_only"] and rows[name]["own"]["auc"] == rows[name]["test"]["auc"]  # no score terms
    shuffled = rows["32|id on shuffled histories"]
    assert shuffled["shuffled"] and shuffled["compare_to"] == "32|id"
    # the report: the diagnostics section, each row, and what order is worth = the cell's own score − the shuffled one's
    html = Path(run.asset_materializations_for_node("experiment_report")[0].metadata["report_html"].value).read_text()
    assert "Diagnostics: order and popularity alone" in html
    assert all(name in html for name in rows)
    cell = json.loads(next(root.rglob("evaluations/*/32_id.json")).read_text())
    worth = cell["test_without_prior"]["auc"] - shuffled["own"]["auc"]
    assert f"{worth:.4f}" in html
    md = run.asset_materializations_for_node("diagnostics")[0].metadata
    assert md["auc/32|id on shuffled histories"].value == pytest.approx(shuffled["test"]["auc"])
    # trained once per data and settings: a second materialization reads the record back unchanged
    mtime = record_path.stat().st_mtime_ns
    _materialize("diagnostics", root, instance)
    assert record_path.stat().st_mtime_ns == mtime and json.loads(record_path.read_text()) == rec


def test_pipes_training_gives_the_in_process_model_and_metadata(world, tmp_path):
    """The recommender trained through Dagster Pipes (an external process) = ``stages.train_cell``
    called in this process: same weights, same metadata (timings aside), same data version."""
    import torch

    from semid_pipeline import stages
    from semid_pipeline.artifacts import ArtifactLayout
    from semid_pipeline.config import load_config
    from semid_pipeline.schemes import GridCell

    root, instance, runs = world
    run = runs["32|v1-k64"]
    md = _recommender_md(run)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # as the Pipes run (ComputeResource(threads=2))
    try:
        local = stages.train_cell(warehouse=str(root / "wh.duckdb"), layout=ArtifactLayout(root=tmp_path / "a"),
                                  cell=GridCell.parse("32|v1-k64"), cfg=load_config(), device="cpu",
                                  log=lambda _m: None)
    finally:
        torch.set_num_threads(threads)
    piped = torch.load(Path(md["model_dir"].value) / "model.pt", weights_only=True)
    mine = torch.load(local.model_dir / "model.pt", weights_only=True)
    assert piped.keys() == mine.keys() and all(torch.equal(piped[k], mine[k]) for k in mine)
    res = local.result
    assert Path(md["model_dir"].value).name == local.model_dir.name  # the same fingerprint folder
    assert md["params/total"].value == res.parameter_counts["total"]
    assert md["params/track_representation"].value == res.parameter_counts["track_representation"]
    assert md["best_epoch"].value == res.best_epoch and md["best_val_auc"].value == res.best_val_auc
    assert md["config"].value == res.config and md["id_table_hash"].value == local.id_table_hash
    assert md["wall_seconds"].value > 0 and md["events_per_s"].value > 0
    assert all(f"{r['val_auc']:.4g}" in md["training_curve"].value for r in res.history)
    assert md["training_curve_plot"].value.startswith("![training curve](data:image/png;base64,")
    assert md["prior_weight"].value == res.prior["weight"]  # the popularity prior's w (default on)
    assert md["affinity_weights"].value == res.prior["affinity"]  # the content affinity's (a+, a-) (default on)
    assert md["memory_weights"].value == res.prior["memory"]  # the listener memory's (r_track, r_artist) (default on)
    assert md["taste_weight"].value == res.prior["taste"]  # the personal taste's b (default on)
    assert set(md) == {"model_dir", "params/total", "params/track_representation", "best_epoch", "best_val_auc",
                       "wall_seconds", "events_per_s", "training_curve", "training_curve_plot",
                       "training_curve_png", "config", "id_table_hash", "peak_rss_mb", "peak_rss_method",
                       "prior_weight", "affinity_weights", "memory_weights", "taste_weight"}
    mat = run.asset_materializations_for_node("recommender")[0]
    assert mat.tags["dagster/data_version"] == local.fingerprint[:16]
    logs = [e.user_message for e in instance.all_logs(run.run_id)]
    assert any("epoch 1/" in m and "val AUC" in m for m in logs)  # progress streamed by pipes.log


def test_two_processes_through_torchrun_train_within_the_ci(world, tmp_path, monkeypatch):
    """``[train] processes = 2``: the asset launches torchrun (2 gloo ranks) through Pipes; the model
    lands in its own folder and its test AUC lies inside the 1-process model's bootstrap CI."""
    root, instance, runs = world
    work = tmp_path / "w"
    shutil.copytree(root, work)
    toml = tmp_path / "semid.toml"
    text = (Path(__file__).resolve().parents[1] / "semid.toml").read_text()
    assert "\nprocesses = 1 " in text
    toml.write_text(text.replace("\nprocesses = 1 ", "\nprocesses = 2 "))
    monkeypatch.setenv("SEMID_CONFIG", str(toml))
    two = _materialize("recommender evaluation", work, instance, partition_key="32|v1-k64")
    md1, md2 = _recommender_md(runs["32|v1-k64"]), _recommender_md(two)
    assert md2["config"].value["train"]["processes"] == 2
    assert Path(md2["model_dir"].value).name != Path(md1["model_dir"].value).name
    assert md2["params/total"].value == md1["params/total"].value
    logs = [e.user_message for e in instance.all_logs(two.run_id)]
    assert any("torch.distributed.run" in m and "--nproc-per-node=2" in m for m in logs)
    assert any("2 processes" in m for m in logs)  # rank 0's start line, streamed through Pipes
    ev1 = runs["32|v1-k64"].asset_materializations_for_node("evaluation")[0].metadata
    ev2 = two.asset_materializations_for_node("evaluation")[0].metadata
    assert ev1["test_ci_lo"].value <= ev2["test_auc"].value <= ev1["test_ci_hi"].value


def test_time_split_check_blocks_periods_that_leave_nothing_to_train_or_test(world, tmp_path, monkeypatch):
    """The blocking ``feedback_events_time_split`` check: on the tiny world it passes and says what
    each period holds; with [split] periods longer than the data it fails, naming the setting, and
    nothing downstream runs."""
    root, instance, runs = world
    ok = next(e.asset_check_evaluation_data for e in runs["ingest"].all_events
              if e.event_type_value == "ASSET_CHECK_EVALUATION"
              and e.asset_check_evaluation_data.check_name == "feedback_events_time_split")
    assert ok.passed and ok.metadata["training_sequences"].value > 0 and ok.metadata["test_strata"].value > 0
    work = tmp_path / "w"
    shutil.copytree(root, work, ignore=shutil.ignore_patterns("*.wal"))
    toml = tmp_path / "semid.toml"
    text = (Path(__file__).resolve().parents[1] / "semid.toml").read_text()
    assert "\ntest_days = 14\n" in text
    toml.write_text(text.replace("\ntest_days = 14\n", "\ntest_days = 3000\n"))
    monkeypatch.setenv("SEMID_CONFIG", str(toml))
    result = _materialize("feedback_events track_catalog content_features", work, instance, ok=False)
    bad = next(e.asset_check_evaluation_data for e in result.all_events
               if e.event_type_value == "ASSET_CHECK_EVALUATION"
               and e.asset_check_evaluation_data.check_name == "feedback_events_time_split")
    assert not bad.passed and "test_days = 3000" in bad.description and "data spans" in bad.description
    assert not result.asset_materializations_for_node("content_features")  # blocked
    # fewer test strata than [eval] min_strata: said at ingestion, not after training every cell
    n_test = ok.metadata["test_strata"].value
    assert "\nmin_strata = 50 " in text or "\nmin_strata = 50\n" in text
    toml.write_text(text.replace("\nmin_strata = 50", f"\nmin_strata = {n_test + 1}", 1))
    result = _materialize("feedback_events track_catalog", work, instance, ok=False)
    few = next(e.asset_check_evaluation_data for e in result.all_events
               if e.event_type_value == "ASSET_CHECK_EVALUATION"
               and e.asset_check_evaluation_data.check_name == "feedback_events_time_split")
    assert not few.passed and f"holds {n_test} strata" in few.description and f"min_strata = {n_test + 1}" in few.description
    # a validation period of 15 minutes holds no stratum: a warning, and the next stage still runs
    toml.write_text(text.replace("\nval_days = 14\n", "\nval_days = 0.01\n"))
    result = _materialize("feedback_events track_catalog content_features", work, instance, ok=False)
    thin = next(e.asset_check_evaluation_data for e in result.all_events
                if e.event_type_value == "ASSET_CHECK_EVALUATION"
                and e.asset_check_evaluation_data.check_name == "feedback_events_time_split")
    assert not thin.passed and thin.severity == dg.AssetCheckSeverity.WARN
    assert "validation period holds 0 strata" in thin.description and "val_days (now 0.01)" in thin.description
    assert result.asset_materializations_for_node("content_features")  # not blocked


def test_bad_mssd_file_fails_clearly_and_leaves_warehouse_unchanged(world, tmp_path):
    root, instance, _ = world
    shutil.copytree(root, tmp_path / "copy", ignore=shutil.ignore_patterns("*.wal"))
    copy = tmp_path / "copy"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "log_0.csv").write_text(
        (Path(__file__).resolve().parents[2] / "shared/data/mssd_fragment/very_small.csv").read_text()
        .replace("session_position", "sesion_position", 1)
        if (Path(__file__).resolve().parents[2] / "shared/data/mssd_fragment/very_small.csv").exists()
        else "session_id,sesion_position\nx,1\n"
    )
    with wh.connect(copy / "wh.duckdb", read_only=True) as con:
        before = wh.snapshot(con)
    result = _materialize("feedback_events track_catalog", copy, instance, spec=f"mssd:{bad}", ok=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    text = failure.step_failure_data.error.to_string()
    assert "log_0.csv" in text and "session_position" in text
    with wh.connect(copy / "wh.duckdb", read_only=True) as con:
        assert wh.snapshot(con) == before


def test_failing_blocking_expectation_stops_ingestion_and_downstream(tmp_path):
    """Events whose tracks mostly lack content features: the coverage expectation fails on the
    staged data, so nothing is published, the step fails naming it, and `content_features` is not
    materialized in that run."""
    import pandas as pd

    events = pd.DataFrame({
        "user_id": ["u1"] * 4 + ["u2"] * 4,
        "track_id": ["a", "b", "c", "d", "a", "b", "c", "d"],
        "timestamp": pd.date_range("2024-01-01", periods=8, freq="D"),
        "feedback": [1, 0, 1, 0, 1, 0, 0, 1],
    })
    events.to_parquet(tmp_path / "events.parquet")
    pd.DataFrame({"track_id": ["a"], "energy": [0.5]}).to_parquet(tmp_path / "tracks.parquet")
    spec = f"events:{tmp_path / 'events.parquet'},{tmp_path / 'tracks.parquet'}"
    result = _materialize(
        "feedback_events track_catalog content_features", tmp_path, dg.DagsterInstance.ephemeral(), spec=spec, ok=False
    )
    assert not result.success
    assert not result.asset_materializations_for_node("raw_feedback")
    assert not result.asset_materializations_for_node("content_features")
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    text = failure.step_failure_data.error.to_string()
    assert "DataQualityError" in text and "expect_column_mean_to_be_between(has_features)" in text
    with wh.connect(tmp_path / "wh.duckdb", read_only=True) as con:
        assert not wh.table_exists(con, FEEDBACK_EVENTS)  # nothing was published


def test_landing_sensor_requests_each_new_file_once(tmp_path, monkeypatch):
    landing = tmp_path / "landing"
    landing.mkdir()
    monkeypatch.setattr(operations, "landing_dir", lambda: landing)
    sensor = defs.resolve_sensor_def("landing_folder")
    with dg.build_sensor_context() as ctx:
        assert isinstance(sensor(ctx), dg.SkipReason)
    (landing / "log_9.csv").write_text("session_id\nx\n")
    ctx = dg.build_sensor_context(cursor=None)
    req = sensor(ctx)
    assert isinstance(req, dg.RunRequest)
    assert req.run_config["ops"]["raw_feedback"]["config"]["append_files"] == [str(landing / "log_9.csv")]
    cursor = ctx.cursor
    # the same file again, and a byte-identical copy under another name: nothing new
    shutil.copy(landing / "log_9.csv", landing / "log_9_copy.csv")
    assert isinstance(sensor(dg.build_sensor_context(cursor=cursor)), dg.SkipReason)
    (landing / "log_10.csv").write_text("session_id\ny\n")
    req2 = sensor(dg.build_sensor_context(cursor=cursor))
    assert req2.run_config["ops"]["raw_feedback"]["config"]["append_files"] == [str(landing / "log_10.csv")]


def test_weekly_schedule_starts_the_production_chain():
    schedule = defs.resolve_schedule_def("weekly_retraining")
    assert schedule.cron_schedule == "0 3 * * 1"
    with dg.build_schedule_context(scheduled_execution_time=__import__("datetime").datetime(2026, 11, 23, 3)) as ctx:
        req = schedule.evaluate_tick(ctx).run_requests[0]
    assert req.tags[operations.CHAIN_TAG] == "weekly"
    keys = [str(k) for k in operations.production_grid_keys()]
    prod = operations.CONFIG.production
    assert keys[0] == f"{prod.hidden}|{prod.scheme}" and all(k.startswith(f"{prod.hidden}|") for k in keys)


def test_landed_files_extend_ids_through_cold_start(world, tmp_path):
    """A landed events + tracks file with new tracks: appended in one run, features through the
    saved transform, and the ID table extended without changing any existing ID."""
    import pandas as pd

    from semid_pipeline import semantic_ids as sid
    from semid_pipeline.schemes import IdScheme

    root, instance, _ = world
    work = tmp_path / "w"
    shutil.copytree(root, work)
    with wh.connect(work / "wh.duckdb", read_only=True) as con:
        old = sid.read_semantic_ids(con, IdScheme.parse("v1-k64"))[0]
    tiny = work / "data" / "synthetic" / "tiny" / "users"
    tracks = pd.read_parquet(tiny / "tracks.parquet").head(5).copy()
    tracks["track_id"] = [f"new_{i}" for i in range(5)]
    events = pd.read_parquet(tiny / "events.parquet").tail(10).copy()
    events["track_id"] = [f"new_{i % 5}" for i in range(10)]
    events["timestamp"] = events["timestamp"] + pd.Timedelta(seconds=1)
    landing = tmp_path / "landing"
    landing.mkdir()
    tracks.to_parquet(landing / "tracks_new.parquet")
    events.to_parquet(landing / "events_new.parquet")
    files = [str(landing / "events_new.parquet"), str(landing / "tracks_new.parquet")]
    res = dg.materialize(
        ALL_ASSETS + ALL_CHECKS,
        selection=dg.AssetSelection.assets("feedback_events", "track_catalog", "content_features"),
        resources=_resources(work),
        instance=instance,
        run_config={"ops": {"raw_feedback": {"config": {"append_files": files}}}},
    )
    assert res.success
    assert res.asset_materializations_for_node("content_features")[0].metadata["transform_mode"].value == "reused"
    ids = _materialize("semantic_ids", work, instance, partition_key="v1-k64")
    md = ids.asset_materializations_for_node("semantic_ids")[0].metadata
    assert md["mode"].value == "cold-start: 5 new tracks"
    assert all(_check_results(ids).values())
    with wh.connect(work / "wh.duckdb", read_only=True) as con:
        new = sid.read_semantic_ids(con, IdScheme.parse("v1-k64"))[0]
    merged = old.merge(new, on="track_id", suffixes=("_old", ""))
    cols = [c for c in old.columns if c != "track_id"]
    assert len(merged) == len(old)
    assert all((merged[f"{c}_old"] == merged[c]).all() for c in cols)
    assert set(new["track_id"]) - set(old["track_id"]) == {f"new_{i}" for i in range(5)}


def test_same_inputs_and_config_give_the_same_ids_and_metrics(world, tmp_path):
    """Refit the v1 codebook and retrain one partition from scratch in another folder: identical
    ID table hash, weights-derived metrics and parameter counts."""
    root, instance, runs = world
    work = tmp_path / "again"
    shutil.copytree(root, work)
    for sub in ("models", "evaluations", "semantic_ids"):
        shutil.rmtree(work / "artifacts" / sub)
    refit = dg.materialize(
        ALL_ASSETS + ALL_CHECKS,
        selection=dg.AssetSelection.assets("semantic_ids"),
        resources=_resources(work),
        instance=instance,
        partition_key="v1-k64",
        run_config={"ops": {"semantic_ids": {"config": {"refit": True}}}},
    )
    first = runs["v1-k64"].asset_materializations_for_node("semantic_ids")[0].metadata
    second = refit.asset_materializations_for_node("semantic_ids")[0].metadata
    assert second["mode"].value.startswith("fit") and second["content_hash"].value == first["content_hash"].value
    again = _materialize("recommender evaluation", work, instance, partition_key="32|v1-k64")
    for node, keys in (("recommender", ["best_val_auc", "params/total"]), ("evaluation", ["test_auc", "test_ci_lo", "val_auc"])):
        a = runs["32|v1-k64"].asset_materializations_for_node(node)[0].metadata
        b = again.asset_materializations_for_node(node)[0].metadata
        assert {k: a[k].value for k in keys} == {k: b[k].value for k in keys}
