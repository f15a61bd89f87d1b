"""Validate before publish: a data set that fails the blocking suites is never committed, a new
data set drops the previous one's content features in the same transaction, the data-set base
fingerprint (not the spec string) decides extend-or-refit, and a killed ingestion leaves the old
data set or the new one, never a mix."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from semid_pipeline import stages, warehouse as wh
from semid_pipeline.artifacts import ArtifactLayout
from semid_pipeline.config import DatasetSpec, IngestConfig, SemidConfig
from semid_pipeline.datasets import ingest_dataset
from semid_pipeline.errors import DataQualityError, InputDataError
from semid_pipeline.schemes import IdScheme

REPO = Path(__file__).resolve().parent.parent
CFG = IngestConfig()


def write_dataset(folder: Path, *, seed: int, n_tracks: int = 40, all_positive: bool = False) -> Path:
    """A small valid per-user data set with numeric content (events.csv + tracks.csv)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    tracks = pd.DataFrame({"track_id": [f"s{seed}-t{i:03d}" for i in range(n_tracks)],
                           "energy": rng.random(n_tracks), "tempo": 60 + 100 * rng.random(n_tracks)})
    rows = [(f"u{u}", tracks.track_id[int(rng.integers(n_tracks))], f"2024-01-{1 + d:02d} 10:{m:02d}:00",
             1 if all_positive else int(rng.random() < 0.6)) for u in range(12) for d in range(20) for m in (1, 2)]
    pd.DataFrame(rows, columns=["user_id", "track_id", "timestamp", "feedback"]).to_csv(folder / "events.csv", index=False)
    tracks.to_csv(folder / "tracks.csv", index=False)
    return folder


def spec(folder: Path) -> DatasetSpec:
    return DatasetSpec(kind="events", paths=(str(folder / "events.csv"), str(folder / "tracks.csv")))


def snapshot(path: Path) -> dict:
    with wh.connect(path, read_only=True) as con:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]
        return {t: con.execute(f'SELECT * FROM "{t}" ORDER BY ALL').fetchall() for t in tables}


def test_failing_data_set_is_not_published_and_old_one_stays_whole(tmp_path):
    whp, layout = tmp_path / "wh.duckdb", ArtifactLayout(tmp_path / "artifacts")
    good = write_dataset(tmp_path / "good", seed=1)
    ingest_dataset(spec(good), warehouse=whp, cfg=CFG, data_dir=tmp_path)
    stages.build_content_features(warehouse=str(whp), layout=layout, refit=False)
    before = snapshot(whp)
    assert "content_features" in before
    bad = write_dataset(tmp_path / "bad", seed=2, all_positive=True)
    with pytest.raises(DataQualityError) as err:
        ingest_dataset(spec(bad), warehouse=whp, cfg=CFG, data_dir=tmp_path)
    assert "expect_column_distinct_values_to_contain_set(feedback)" in str(err.value)
    assert snapshot(whp) == before  # the previous data set, its features included, untouched


def test_new_data_set_drops_the_previous_features(tmp_path):
    whp, layout = tmp_path / "wh.duckdb", ArtifactLayout(tmp_path / "artifacts")
    ingest_dataset(spec(write_dataset(tmp_path / "a", seed=1)), warehouse=whp, cfg=CFG, data_dir=tmp_path)
    stages.build_content_features(warehouse=str(whp), layout=layout, refit=False)
    ingest_dataset(spec(write_dataset(tmp_path / "b", seed=3)), warehouse=whp, cfg=CFG, data_dir=tmp_path)
    with wh.connect(whp, read_only=True) as con:
        assert not wh.table_exists(con, "content_features")  # never features of another data set


def test_reingesting_a_changed_file_under_the_same_spec_refits_ids(tmp_path):
    whp, layout = tmp_path / "wh.duckdb", ArtifactLayout(tmp_path / "artifacts")
    folder = tmp_path / "same"
    scheme, cfg = IdScheme.parse("v0-k16"), SemidConfig()
    builds = []
    for seed in (1, 4):  # the user fixes the file and re-ingests it: same spec, new content
        write_dataset(folder, seed=seed)
        ingest_dataset(spec(folder), warehouse=whp, cfg=CFG, data_dir=tmp_path)
        stages.build_content_features(warehouse=str(whp), layout=layout, refit=False)
        builds.append(stages.build_semantic_ids(warehouse=str(whp), layout=layout, scheme=scheme, cfg=cfg,
                                                refit=False, log=lambda m: None))
    assert builds[1].mode.startswith("fit"), builds[1].mode
    assert set(builds[1].table.track_id) == {f"s4-t{i:03d}" for i in range(40)}  # no track of the old data set


KILL = """
import sys
from pathlib import Path
from semid_pipeline.config import DatasetSpec, IngestConfig
from semid_pipeline.datasets import ingest_dataset
folder = Path(sys.argv[2])
ingest_dataset(DatasetSpec(kind="events", paths=(str(folder / "events.csv"), str(folder / "tracks.csv"))),
               warehouse=sys.argv[1], cfg=IngestConfig(), data_dir=folder)
"""


@pytest.mark.slow
def test_killed_ingestion_leaves_old_or_new_never_a_mix(tmp_path):
    whp = tmp_path / "wh.duckdb"
    old = ingest_dataset(spec(write_dataset(tmp_path / "old", seed=1)), warehouse=whp, cfg=CFG, data_dir=tmp_path)
    new_folder = write_dataset(tmp_path / "new", seed=5, n_tracks=60)
    outcomes = set()
    for delay in (0.3, 0.8, 1.5, 2.5, 4.0, 6.0):
        p = subprocess.Popen([sys.executable, "-c", KILL, str(whp), str(new_folder)], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
        p.wait()
        with wh.connect(whp, read_only=True) as con:
            fp = wh.get_meta(con, "dataset_fingerprint")
            tracks = {r[0][:3] for r in con.execute("SELECT DISTINCT track_id FROM feedback_events").fetchall()}
            catalog = {r[0][:3] for r in con.execute("SELECT DISTINCT track_id FROM track_catalog").fetchall()}
            record = con.execute("SELECT count(*) FROM ingestion_record").fetchone()[0]
        state = "old" if fp == old.fingerprint else "new"
        assert tracks == catalog == ({"s1-"} if state == "old" else {"s5-"}), (delay, tracks, catalog)
        assert record == 2
        outcomes.add(state)
        if state == "new":  # start again from the old data set for the next kill point
            ingest_dataset(spec(tmp_path / "old"), warehouse=whp, cfg=CFG, data_dir=tmp_path)
    assert "old" in outcomes  # at least one kill landed mid-ingestion


def test_reingesting_a_changed_file_under_the_same_spec_refits_the_feature_transform(tmp_path):
    """The transform is the data set's (base fingerprint), not the spec string's: a fixed file is
    standardised on its own tracks, not through the old file's fitted statistics."""
    whp, layout = tmp_path / "wh.duckdb", ArtifactLayout(tmp_path / "artifacts")
    folder = tmp_path / "same"
    reused = []
    for seed in (1, 4):
        write_dataset(folder, seed=seed)
        ingest_dataset(spec(folder), warehouse=whp, cfg=CFG, data_dir=tmp_path)
        reused.append(stages.build_content_features(warehouse=str(whp), layout=layout, refit=False).reused)
    assert reused == [False, False]
    again = stages.build_content_features(warehouse=str(whp), layout=layout, refit=False)
    assert again.reused  # the same data set: its own transform is reused


def test_artifacts_that_cannot_be_written_leave_no_features_of_another_data_set(tmp_path):
    """An artifacts folder that cannot be written (here: a file in its place; chmod does not stop
    root) fails `content_features` with the path named, and no stage can read the previous data
    set's features meanwhile: the new ingestion already dropped them."""
    whp = tmp_path / "wh.duckdb"
    ingest_dataset(spec(write_dataset(tmp_path / "a", seed=1)), warehouse=whp, cfg=CFG, data_dir=tmp_path)
    stages.build_content_features(warehouse=str(whp), layout=ArtifactLayout(tmp_path / "artifacts"), refit=False)
    ingest_dataset(spec(write_dataset(tmp_path / "b", seed=3)), warehouse=whp, cfg=CFG, data_dir=tmp_path)
    blocked = tmp_path / "blocked"
    blocked.write_text("not a folder")
    with pytest.raises(OSError, match="blocked"):
        stages.build_content_features(warehouse=str(whp), layout=ArtifactLayout(blocked), refit=False)
    with wh.connect(whp, read_only=True) as con:
        assert not wh.table_exists(con, "content_features")
    with pytest.raises(InputDataError, match="content_features does not exist"):
        stages.build_semantic_ids(warehouse=str(whp), layout=ArtifactLayout(blocked), scheme=IdScheme.parse("v0-k16"),
                                  cfg=SemidConfig(), refit=False, log=lambda m: None)
