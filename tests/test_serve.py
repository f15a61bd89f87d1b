"""Serving end to end on the tiny synthetic world: the `recommendations` asset through real Dagster
runs (its blocking checks pass, and fail on planted violations), then `semid serve` as a real
subprocess on a free loopback port, queried with a real HTTP client."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pytest
import requests

from assets import definitions
from assets import recommendations as rec_assets
from assets.recommendations import recommendations
from resources import ArtifactStore, ComputeResource, DatasetResource, DuckDBWarehouse
from semid_pipeline import serving_table as st
from semid_pipeline import warehouse as wh
from semid_pipeline.artifacts import ArtifactLayout
from semid_pipeline.config import DEFAULT_CONFIG_FILE, load_config
from semid_pipeline.errors import IdTableMismatchError, SemidError
from semid_pipeline.schemes import GridCell
from semid_pipeline.serving_load import find_model_dir, load_partition

pytestmark = pytest.mark.slow

PARTITION = "32|v1-k64"
OTHER = "32|id"
REPO = Path(__file__).resolve().parent.parent
CHECK_NAMES = {spec.name for check in rec_assets.CHECKS for spec in check.check_specs}


def _semid(*args: str) -> list[str]:
    """The `semid` console script of this checkout (the installed one may point at another)."""
    return [sys.executable, "-m", "semid_pipeline.cli", *args]


def _resources(root: Path) -> dict:
    return {
        "warehouse": DuckDBWarehouse(path=str(root / "wh.duckdb")),
        "artifacts": ArtifactStore(root=str(root / "artifacts")),
        "dataset": DatasetResource(spec="synthetic:tiny", data_dir=str(root / "data")),
        "compute": ComputeResource(threads=2),
        "pipes_client": dg.PipesSubprocessClient(),  # training runs as an external process
    }


def _materialize(selection, root: Path, instance, partition_key=None):
    return dg.materialize(
        definitions.ASSETS + definitions.CHECKS, selection=selection, resources=_resources(root),
        instance=instance, partition_key=partition_key, raise_on_error=False,
    )


def _ok(result):
    assert result.success, [str(e.message) for e in result.all_events if e.is_failure]
    return result


def _checks(result) -> dict[str, bool]:
    return {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
            for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Ingest → IDs (v0-k64, v1-k64, id) → two trained partitions → recommendations of one."""
    root = tmp_path_factory.mktemp("serve")
    instance = dg.DagsterInstance.ephemeral()
    a = dg.AssetSelection.assets
    _ok(_materialize(a("feedback_events", "track_catalog", "content_features"), root, instance))
    for key in ("id", "v0-k64", "v1-k64"):
        _ok(_materialize(a("semantic_ids"), root, instance, partition_key=key))
    for key in (PARTITION, OTHER):
        _ok(_materialize(a("recommender"), root, instance, partition_key=key))
    run = _ok(_materialize(a("recommendations"), root, instance, partition_key=PARTITION))
    return root, instance, run


def _table(root: Path, key: str = PARTITION):
    with wh.connect(root / "wh.duckdb", read_only=True) as con:
        return st.read_recommendations(con, key)


def test_recommendations_asset_passes_its_checks_and_states_its_figures(world):
    root, _, run = world
    checks = _checks(run)
    assert set(checks) == CHECK_NAMES and len(checks) == 5 and all(checks.values()), checks
    mat = run.asset_materializations_for_node("recommendations")[0]
    meta = {k: v.value for k, v in mat.metadata.items()}
    recs = _table(root)
    assert meta["listeners_served"] == recs["listener_id"].nunique() > 0
    assert meta["rows"] == len(recs) == 50 * meta["listeners_served"]  # tiny catalogue: 300 tracks ≥ 50
    assert 0 < meta["catalogue_coverage"] <= 1 and meta["lists_per_s"] > 0
    first = recs.iloc[0]
    assert first["track_id"] in meta["sample_lists"] and "title" in meta["sample_lists"]


def test_rerun_replaces_the_partition_rows(world):
    root, instance, _ = world
    before = _table(root)
    _ok(_materialize(dg.AssetSelection.assets("recommendations"), root, instance, partition_key=PARTITION))
    after = _table(root)
    assert len(after) == len(before)
    assert after[["listener_id", "rank", "track_id"]].equals(before[["listener_id", "rank", "track_id"]])


@pytest.mark.parametrize("plant", ["length", "duplicate", "order", "catalogue", "policy"])
def test_each_check_fails_on_a_planted_violation(world, tmp_path, monkeypatch, plant):
    """The asset plants one violation in its own rows (on a copy of the world); its check must fail."""
    root, _, _ = world
    copy = tmp_path / "w"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("data"))
    build = st.build_recommendations

    def planted(rec, listeners, **kw):
        recs, timing = build(rec, listeners, **kw)
        first = recs.index[recs["listener_id"] == recs["listener_id"].iloc[0]]
        i, j = first[0], first[1]
        if plant == "length":
            recs = recs.drop(index=i)
        elif plant == "duplicate":
            recs.loc[j, "track_id"] = recs.loc[i, "track_id"]
        elif plant == "order":
            recs.loc[j, "score"] = recs.loc[i, "score"] + 1.0  # rank 2 scores above rank 1
        elif plant == "catalogue":
            recs.loc[i, "track_id"] = "no-such-track"
        else:
            heard = [t for t, f in listeners.histories[0] if f == 1]
            recs.loc[i, "track_id"] = heard[0]  # a track the listener already played
        return recs, timing

    monkeypatch.setattr(st, "build_recommendations", planted)
    result = _materialize(dg.AssetSelection.assets("recommendations"), copy, dg.DagsterInstance.ephemeral(),
                          partition_key=PARTITION)
    checks = _checks(result)
    failed = {name for name, ok in checks.items() if not ok}
    expected = {"length": "recommendations_list_length", "duplicate": "recommendations_no_duplicates",
                "order": "recommendations_scores_sorted", "catalogue": "recommendations_in_catalogue",
                "policy": "recommendations_policy"}[plant]
    assert len(checks) == 5 and expected in failed, checks
    assert not result.success  # blocking: the run fails


def test_a_mismatched_id_table_is_refused(world):
    root, _, run = world
    mat = run.asset_materializations_for_node("recommendations")[0]
    mdir = mat.metadata["model_dir"].value
    with pytest.raises(IdTableMismatchError):
        load_partition(warehouse=root / "wh.duckdb", layout=ArtifactLayout(root=root / "artifacts"),
                       cell="32|v0-k64", cfg=load_config(), model_dir=mdir)


def test_serving_finds_the_folder_the_recommender_trained_into(world):
    """The fingerprint folder of (data, ID table, settings), not any other model of the cell."""
    root, _, run = world
    served = run.asset_materializations_for_node("recommendations")[0].metadata["model_dir"].value
    cell, cfg, layout = GridCell.parse(PARTITION), load_config(), ArtifactLayout(root=root / "artifacts")
    found = find_model_dir(warehouse=root / "wh.duckdb", layout=layout, cell=cell, cfg=cfg)
    assert str(found) == served and (found / "model.pt").exists()
    bundle = load_partition(warehouse=root / "wh.duckdb", layout=layout, cell=cell, cfg=cfg)
    assert bundle.model_dir == served and bundle.partition_key == PARTITION
    other = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=cfg.train.epochs + 1))
    with pytest.raises(SemidError, match="materialize `recommender`"):  # trained under other settings: none
        find_model_dir(warehouse=root / "wh.duckdb", layout=layout, cell=cell, cfg=other)


def test_the_experiment_report_shows_sample_lists(world):
    """Once `recommendations` has rows, the report (HTML and asset metadata) shows its lists."""
    root, instance, _ = world
    a = dg.AssetSelection.assets
    _ok(_materialize(a("evaluation"), root, instance, partition_key=PARTITION))
    run = _ok(_materialize(a("experiment_report"), root, instance))
    meta = run.asset_materializations_for_node("experiment_report")[0].metadata
    page = Path(meta["report_html"].value).read_text()
    first = _table(root).iloc[0]
    assert "Sample recommendations" in page and f"<h3>{PARTITION}</h3>" in page
    assert first["listener_id"] in page and first["track_id"] in meta["sample_recommendations"].value


# ------------------------------------------------------------------------------------------------
# the HTTP service


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(world, tmp_path_factory):
    root, _, _ = world
    cfg = tmp_path_factory.mktemp("cfg") / "serve.toml"
    text = DEFAULT_CONFIG_FILE.read_text()
    text = re.sub(r"max_n = \d+", "max_n = 100", text)
    text = re.sub(r"max_history = \d+", "max_history = 1000", text)
    cfg.write_text(text)
    port = _free_port()
    env = {**os.environ, "SEMID_WAREHOUSE": str(root / "wh.duckdb"), "SEMID_ARTIFACTS": str(root / "artifacts"),
           "SEMID_CONFIG": str(cfg)}
    proc = subprocess.Popen(_semid("serve", "--partition", PARTITION, "--port", str(port), "--threads", "1"),
                            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"semid serve exited: {proc.stdout.read()}")
            try:
                if requests.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.time() > deadline:
                pytest.fail("semid serve did not come up in 120 s")
            time.sleep(0.3)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _histories(root: Path) -> dict[str, list[dict]]:
    """The served listeners' histories, as the asset read them (oldest first)."""
    with wh.connect(root / "wh.duckdb", read_only=True) as con:
        kind = "session" if con.execute("SELECT count(context_type) FROM feedback_events").fetchone()[0] else "user"
        ls = st.active_listeners(con, kind=kind, active_days=load_config().serve.active_days)
    return {lid: [{"track_id": t, "feedback": f} for t, f in h] for lid, h in zip(ls.ids, ls.histories)}


def test_service_top_n_equals_the_assets_list(world, server):
    root, _, _ = world
    url, _ = server
    recs = _table(root)
    histories = _histories(root)
    assert set(histories) == set(recs["listener_id"])
    for listener in sorted(histories)[:4]:
        history = histories[listener]
        r = requests.post(url + "/recommend", json={"history": history, "n": 50}, timeout=30)
        assert r.status_code == 200, r.text
        body = r.json()
        want = recs[recs["listener_id"] == listener].sort_values("rank")
        assert body["partition"] == PARTITION and body["unknown_tracks"] == 0
        assert [it["track_id"] for it in body["items"]] == want["track_id"].tolist()
        assert [it["score"] for it in body["items"]] == pytest.approx(want["score"].tolist(), rel=1e-4, abs=1e-5)


def test_unknown_history_tracks_are_counted(world, server):
    url, _ = server
    recs = _table(world[0])
    known = recs["track_id"].iloc[0]
    r = requests.post(url + "/recommend", json={"history": [{"track_id": known, "feedback": 1},
                                                            {"track_id": "nope", "feedback": 0}], "n": 5}, timeout=30)
    assert r.status_code == 200 and r.json()["unknown_tracks"] == 1 and len(r.json()["items"]) == 5
    assert known not in [it["track_id"] for it in r.json()["items"]]


BAD = {
    "empty history": ({"history": [], "n": 5}, "history"),
    "no history": ({"n": 5}, "history"),
    "track id not a string": ({"history": [{"track_id": 7, "feedback": 1}]}, "track_id"),
    "feedback not 0/1": ({"history": [{"track_id": "a", "feedback": 3}]}, "feedback"),
    "n zero": ({"history": [{"track_id": "a", "feedback": 1}], "n": 0}, "n"),
    "n negative": ({"history": [{"track_id": "a", "feedback": 1}], "n": -3}, "n"),
    "n too large": ({"history": [{"track_id": "a", "feedback": 1}], "n": 101}, "n"),
    "n a string": ({"history": [{"track_id": "a", "feedback": 1}], "n": "ten"}, "n"),
    "history over the limit": ({"history": [{"track_id": "a", "feedback": 1}] * 1001}, "history"),
    "exclude not a list": ({"history": [{"track_id": "a", "feedback": 1}], "exclude": "a"}, "exclude"),
    "unknown field": ({"history": [{"track_id": "a", "feedback": 1}], "count": 3}, "count"),
    "not an object": ([1, 2], "body"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_requests_are_4xx_naming_the_field(server, case):
    url, _ = server
    body, field = BAD[case]
    r = requests.post(url + "/recommend", json=body, timeout=30)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    locs = [str(x) for d in r.json()["detail"] for x in d["loc"]]
    assert field in locs, r.text


def test_malformed_json_is_4xx(server):
    url, _ = server
    r = requests.post(url + "/recommend", data="{not json", headers={"content-type": "application/json"}, timeout=30)
    assert 400 <= r.status_code < 500


def test_info_health_and_openapi(world, server):
    root, _, _ = world
    url, _ = server
    info = requests.get(url + "/info", timeout=30).json()
    with wh.connect(root / "wh.duckdb", read_only=True) as con:
        n_tracks = con.execute("SELECT count(*) FROM track_catalog").fetchone()[0]
        id_hash = con.execute("SELECT content_hash FROM semantic_id_registry WHERE partition_key = 'v1-k64'").fetchone()[0]
    assert info["partition"] == PARTITION and info["catalogue_size"] == n_tracks
    assert info["id_table_hash"] == id_hash == info["model_config"]["id_table_hash"]
    assert info["model_config"]["hidden"] == 32 and info["limits"] == {"max_n": 100, "max_history": 1000}
    assert requests.get(url + "/healthz", timeout=30).json()["status"] == "ok"
    schema = requests.get(url + "/openapi.json", timeout=30).json()
    assert {"/recommend", "/healthz", "/info", "/reload"} <= set(schema["paths"])


def test_reload_swaps_partition_without_dropping_requests(world, server):
    url, _ = server
    recs = _table(world[0])
    body = {"history": [{"track_id": recs["track_id"].iloc[0], "feedback": 1}], "n": 5}
    statuses, seen, stop = [], set(), threading.Event()

    def hammer():
        with requests.Session() as s:
            while not stop.is_set():
                r = s.post(url + "/recommend", json=body, timeout=30)
                statuses.append(r.status_code)
                seen.add(r.json().get("partition"))

    t = threading.Thread(target=hammer)
    t.start()
    try:
        time.sleep(0.5)
        r = requests.post(url + "/reload", json={"partition": OTHER}, timeout=120)
        assert r.status_code == 200, r.text
        assert r.json()["partition"] == OTHER and r.json()["previous"] == PARTITION
        time.sleep(0.5)
    finally:
        stop.set()
        t.join()
    assert statuses and set(statuses) == {200}
    assert seen == {PARTITION, OTHER}
    assert requests.get(url + "/info", timeout=30).json()["partition"] == OTHER
    bad = requests.post(url + "/reload", json={"partition": "32|nope-k3"}, timeout=60)
    assert bad.status_code == 400 and "partition" in bad.text
    back = requests.post(url + "/reload", json={"partition": PARTITION}, timeout=120)
    assert back.status_code == 200 and requests.get(url + "/info", timeout=30).json()["partition"] == PARTITION


def test_sighup_reloads_in_place(server):
    url, proc = server
    before = requests.get(url + "/info", timeout=30).json()
    os.kill(proc.pid, signal.SIGHUP)
    deadline = time.time() + 60
    while requests.get(url + "/info", timeout=30).json()["reloads"] == before["reloads"]:
        assert time.time() < deadline, "SIGHUP did not reload within 60 s"
        time.sleep(0.3)
    after = requests.get(url + "/info", timeout=30).json()
    assert after["partition"] == before["partition"] and after["model_dir"] == before["model_dir"]


def test_semid_serve_refuses_a_model_of_another_id_table(world):
    root, _, run = world
    mdir = run.asset_materializations_for_node("recommendations")[0].metadata["model_dir"].value
    env = {**os.environ, "SEMID_WAREHOUSE": str(root / "wh.duckdb"), "SEMID_ARTIFACTS": str(root / "artifacts")}
    done = subprocess.run(_semid("serve", "--partition", "32|v0-k64", "--model-dir", mdir, "--port", "1"),
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "semantic-ID table" in done.stderr
