"""The embedded synthetic world: files follow the real formats, counts are true, the story holds."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from semid_pipeline import synthetic as syn
from semid_pipeline import warehouse as wh
from semid_pipeline.config import SYNTHETIC_PRESETS, DatasetSpec, IngestConfig, parse_dataset_spec
from semid_pipeline.errors import ConfigError, InputDataError
from semid_pipeline.ingest import ingest_dataset
from semid_pipeline.schema import (
    FEEDBACK_EVENTS,
    MSSD_CONTEXT_TYPES,
    MSSD_LOG_COLUMNS,
    MSSD_TRACK_COLUMNS,
    MSSD_TRACK_RANGES,
)


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    return syn.write_world("tiny", out)


@pytest.fixture(scope="module")
def logs(world) -> pd.DataFrame:
    return pd.concat(
        [pd.read_csv(p).assign(_file=p.name) for p in world.session_logs], ignore_index=True
    )


@pytest.fixture(scope="module")
def tf(world) -> pd.DataFrame:
    return pd.concat([pd.read_csv(p) for p in world.session_tracks], ignore_index=True)


@pytest.fixture(scope="module")
def events(world) -> pd.DataFrame:
    return pd.read_parquet(world.users_events)


@pytest.fixture(scope="module")
def tracks(world) -> pd.DataFrame:
    return pd.read_parquet(world.users_tracks)


# ---------------------------------------------------------------- API, presets, determinism


def test_presets_and_config_validation():
    tiny, demo, bench = syn.preset("tiny"), syn.preset("demo"), syn.preset("bench")
    assert tiny.n_events < demo.n_events < bench.n_events
    assert bench.n_events >= 1_000_000 and bench.n_session_events >= 1_000_000
    assert bench.n_tracks >= 100_000
    for cfg in (tiny, demo, bench):
        assert cfg.n_days >= 56
    with pytest.raises(ConfigError, match="unknown synthetic preset"):
        syn.preset("huge")
    with pytest.raises(ConfigError):
        replace(tiny, n_artists=tiny.n_tracks + 1)
    with pytest.raises(ConfigError):
        syn.write_world("tiny", "/nonexistent-never-written", formats=("csv",))
    with pytest.raises(dataclasses_frozen_error()):
        tiny.n_tracks = 5  # type: ignore[misc]


def dataclasses_frozen_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_same_seed_byte_identical_different_seed_differs(tmp_path, world):
    a = syn.write_world("tiny", tmp_path / "a")
    assert _hashes(a.out_dir) == _hashes(world.out_dir)
    b = syn.write_world("tiny", tmp_path / "b", seed=syn.preset("tiny").seed + 1)
    ha, hb = _hashes(a.out_dir), _hashes(b.out_dir)
    assert ha.keys() == hb.keys()
    for name in ha:
        assert ha[name] != hb[name], f"{name} did not change with the seed"


def test_one_format_alone_gives_the_same_files(tmp_path, world):
    only = syn.write_world("tiny", tmp_path / "s", formats=("sessions",))
    assert only.users_events is None and only.counts["users_events"] == 0
    both = _hashes(world.out_dir)
    for name, digest in _hashes(only.out_dir).items():
        if name.startswith("sessions/"):
            assert both[name] == digest


def test_idempotent_rerun_and_regeneration(tmp_path):
    m1 = syn.write_world("tiny", tmp_path)
    mtimes = {p: p.stat().st_mtime_ns for p in m1.files()}
    m2 = syn.write_world("tiny", tmp_path)
    assert m2.counts == m1.counts and m2.config_hash == m1.config_hash
    assert {p: p.stat().st_mtime_ns for p in m2.files()} == mtimes  # nothing rewritten
    # a truncated file invalidates the manifest: the world is regenerated, identically
    before = _hashes(tmp_path)
    m1.users_events.write_bytes(m1.users_events.read_bytes()[:100])
    m3 = syn.write_world("tiny", tmp_path)
    assert _hashes(tmp_path) == before and m3.counts == m1.counts
    # another seed in the same folder replaces the files
    m4 = syn.write_world("tiny", tmp_path, seed=99)
    assert m4.config.seed == 99 and m4.config_hash != m1.config_hash
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["config_hash"] == m4.config_hash and manifest["config"]["seed"] == 99


def test_gzip_parts_are_deterministic_and_readable(tmp_path):
    cfg = replace(syn.preset("tiny"), gzip_logs=True, session_parts=3, name="tiny-gz")
    a = syn.write_world(cfg, tmp_path / "a", formats=("sessions",))
    b = syn.write_world(cfg, tmp_path / "b", formats=("sessions",))
    assert [p.name for p in a.session_logs] == ["log_0.csv.gz", "log_1.csv.gz", "log_2.csv.gz"]
    assert _hashes(a.out_dir) == _hashes(b.out_dir)
    df = pd.concat([pd.read_csv(p) for p in a.session_logs])
    assert len(df) == a.counts["sessions_rows"]
    with gzip.open(a.session_logs[0], "rt") as f:
        assert f.readline().rstrip("\n").split(",") == MSSD_LOG_COLUMNS


# ---------------------------------------------------------------- counts and formats


def test_manifest_counts_match_files(world, logs, tf, events, tracks):
    c = world.counts
    assert c["users_events"] == len(events)
    assert c["users_positive"] == int(events["feedback"].sum())
    assert c["users_users"] == events["user_id"].nunique()
    assert c["users_tracks"] == len(tracks)
    assert c["sessions_rows"] == len(logs)
    assert c["sessions_sessions"] == logs["session_id"].nunique()
    radio = logs[logs["context_type"] == "radio"]
    assert c["sessions_radio_rows"] == len(radio)
    assert c["sessions_radio_sessions"] == radio["session_id"].nunique()
    assert c["sessions_radio_negative"] == int(radio["skip_2"].sum())
    assert c["sessions_tracks"] == len(tf)
    dates = pd.concat([pd.to_datetime(logs["date"]), events["timestamp"].dt.floor("D")])
    assert c["first_date"] == dates.min().date().isoformat()
    assert c["last_date"] == dates.max().date().isoformat()
    assert c["n_days"] == (dates.max() - dates.min()).days + 1
    on_disk = json.loads((world.out_dir / "manifest.json").read_text())
    assert on_disk["counts"] == c
    assert {Path(world.out_dir / k) for k in on_disk["files"]} == set(world.files())


def test_session_log_format(world, logs):
    for p in world.session_logs:
        assert re.fullmatch(r"log_\d+\.csv", p.name)
        text = p.read_text()
        header, first = text.splitlines()[:2]
        assert header.split(",") == MSSD_LOG_COLUMNS
        fields = dict(zip(MSSD_LOG_COLUMNS, first.split(",")))
        for col in ("skip_1", "skip_2", "skip_3", "not_skipped", "premium", "hist_user_behavior_is_shuffle"):
            assert fields[col] in ("true", "false"), (col, fields[col])
        assert '"' not in text
    assert list(logs.columns[:-1]) == MSSD_LOG_COLUMNS
    assert logs["date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    assert logs["session_id"].str.fullmatch(r"\d+_[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}").all()
    assert logs["track_id_clean"].str.fullmatch(r"t_[0-9a-f-]+").all()
    assert set(logs["context_type"]) <= MSSD_CONTEXT_TYPES
    assert logs["hour_of_day"].between(0, 23).all()
    pauses = logs[["no_pause_before_play", "short_pause_before_play", "long_pause_before_play"]]
    assert pauses.isin([0, 1]).all().all() and (pauses.sum(axis=1) <= 1).all()


def test_sessions_lengths_positions_and_contexts(logs):
    g = logs.groupby("session_id")
    size = g.size()
    assert size.between(10, 20).all()
    assert (g["session_length"].nunique() == 1).all()
    assert (g["session_length"].first() == size).all()
    assert (g["session_position"].apply(lambda s: sorted(s.tolist()) == list(range(1, len(s) + 1)))).all()
    assert (g["date"].nunique() == 1).all() and (g["context_type"].nunique() == 1).all()
    assert g["track_id_clean"].nunique().sum() > 0.99 * size.sum()  # (almost) no repeats in a session
    share_radio = (g["context_type"].first() == "radio").mean()
    assert 0.55 < share_radio < 0.85
    assert g["context_type"].first().nunique() >= 4  # the context filter has something to drop


def test_skip_columns_consistent_and_balanced(logs):
    s1, s2, s3, ns = (logs[c].astype(bool) for c in ("skip_1", "skip_2", "skip_3", "not_skipped"))
    assert not (s1 & ~s2).any() and not (s2 & ~s3).any()
    assert (ns == ~s3).all()
    assert 0.3 < s2.mean() < 0.7
    radio = logs["context_type"] == "radio"
    assert 0.3 < s2[radio].mean() < 0.7
    # later in a session → more skips
    early = s2[logs["session_position"] <= 5].mean()
    late = s2[logs["session_position"] >= 15].mean()
    assert late > early
    # the end reason follows the skip
    done = logs["hist_user_behavior_reason_end"] == "trackdone"
    assert not (done & s3).any()


def test_track_features_format_and_ranges(world, tf):
    header = world.session_tracks[0].read_text().splitlines()[0]
    assert [p.name for p in world.session_tracks] == ["tf_0.csv"]
    assert header.split(",") == MSSD_TRACK_COLUMNS
    assert tf["track_id"].is_unique
    assert tf["track_id"].str.fullmatch(r"t_[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}").all()
    assert set(tf["mode"]) <= {"major", "minor"} and tf["mode"].nunique() == 2
    assert tf["key"].between(0, 11).all() and tf["key"].nunique() > 6
    assert tf["time_signature"].between(3, 5).all()
    for col, rng in MSSD_TRACK_RANGES.items():
        if rng is None:
            continue
        lo, hi = rng
        values = pd.to_numeric(tf[col])
        assert values.notna().all(), col
        assert values.std() > 0, f"{col} is constant"
        if lo is not None:
            assert (values >= lo).all(), col
        if hi is not None:
            assert (values <= hi).all(), col


def test_users_format_schema(world, events, tracks, tf):
    ev_schema = pq.read_schema(world.users_events)
    assert ev_schema.names == ["user_id", "track_id", "timestamp", "feedback", "artist_id", "genre_id"]
    assert pa.types.is_timestamp(ev_schema.field("timestamp").type)
    assert pa.types.is_integer(ev_schema.field("feedback").type)
    assert set(events["feedback"].unique()) == {0, 1}
    tr_schema = pq.read_schema(world.users_tracks)
    emb_type = tr_schema.field("embedding").type
    assert pa.types.is_list(emb_type) and emb_type.value_type == pa.float32()
    assert (tracks["embedding"].map(len) == 8).all()
    expected = {"track_id", "artist_id", "genre_id", "release_year", "title", "popularity", "embedding"}
    attrs = [c for c in MSSD_TRACK_COLUMNS if c not in ("track_id", "release_year", "us_popularity_estimate")
             and not c.startswith("acoustic_vector_")]
    assert set(tracks.columns) == expected | set(attrs)
    for c in attrs + ["release_year", "popularity"]:
        assert pd.api.types.is_numeric_dtype(tracks[c]), c
    assert tracks["track_id"].is_unique
    # the same world underlies both formats
    assert set(tracks["track_id"]) == set(tf["track_id"])
    assert set(events["track_id"]) <= set(tracks["track_id"])
    # artist/genre of an event agree with the track table; every artist has one genre
    merged = events.merge(tracks[["track_id", "artist_id", "genre_id"]], on="track_id", suffixes=("", "_t"))
    assert (merged["artist_id"] == merged["artist_id_t"]).all() and (merged["genre_id"] == merged["genre_id_t"]).all()
    assert (tracks.groupby("artist_id")["genre_id"].nunique() == 1).all()
    # the embedding is the acoustic vector of the MSSD file
    emb = np.stack(tracks.set_index("track_id").loc[tf["track_id"], "embedding"].to_numpy())
    av = tf[[f"acoustic_vector_{i}" for i in range(8)]].to_numpy()
    assert np.allclose(emb, av, atol=1e-5)


# ---------------------------------------------------------------- the story's properties


def test_dates_span_and_recent_activity(world, logs, events):
    for days in (pd.to_datetime(logs["date"]), events["timestamp"].dt.floor("D")):
        span = (days.max() - days.min()).days + 1
        assert span >= 56
        last = days.max()
        test = days > last - pd.Timedelta(days=14)
        val = (days > last - pd.Timedelta(days=28)) & ~test
        assert test.mean() > 0.1 and val.mean() > 0.1
    assert world.counts["n_days"] >= 56


def test_user_activity_is_skewed(events):
    n = events.groupby("user_id").size().sort_values(ascending=False)
    assert n.median() < n.mean() / 1.5
    top = n.iloc[: max(1, len(n) // 10)].sum() / n.sum()
    assert top > 0.3
    assert n.max() <= syn.preset("tiny").max_user_events


def test_user_sittings_do_not_overlap_and_time_is_ordered(events):
    ts = events.groupby("user_id")["timestamp"]
    assert ts.apply(lambda s: s.is_unique).all()


def _truth_frame(world, events):
    truth = pd.read_parquet(world.truth_tracks).set_index("track_id")
    users = pd.read_parquet(world.truth_users).set_index("user_id")
    lat = np.stack(truth.loc[events["track_id"], "latent"].to_numpy())
    taste = np.stack(users.loc[events["user_id"], "taste"].to_numpy())
    return (lat * taste).sum(1), truth.loc[events["track_id"], "appeal"].to_numpy()


def test_feedback_depends_on_content_and_appeal(world, events):
    aff, appeal = _truth_frame(world, events)
    y = events["feedback"].to_numpy()
    for x, floor in ((aff, 0.6), (appeal, 0.55)):
        model = LogisticRegression().fit(x[:, None], y)
        assert roc_auc_score(y, model.predict_proba(x[:, None])[:, 1]) > floor
    both = np.c_[aff, appeal]
    model = LogisticRegression().fit(both, y)
    assert model.coef_[0][0] > 0 and model.coef_[0][1] > 0
    # within a listener too (the stratified AUC the pipeline reports)
    df = events.assign(aff=aff)
    per_user = [
        roc_auc_score(g["feedback"], g["aff"]) for _, g in df.groupby("user_id") if g["feedback"].nunique() == 2
    ]
    assert np.mean(per_user) > 0.55


def test_appeal_is_not_content(world, tracks):
    truth = pd.read_parquet(world.truth_tracks).set_index("track_id").loc[tracks["track_id"]]
    content = np.c_[np.stack(tracks["embedding"].to_numpy()), tracks[["energy", "valence", "tempo"]].to_numpy()]
    appeal = truth["appeal"].to_numpy()
    corr = np.abs([np.corrcoef(content[:, j], appeal)[0, 1] for j in range(content.shape[1])])
    assert corr.max() < 0.25
    # but content does reveal the genre (the latent space)
    genre = truth["genre_id"].to_numpy()
    acc = LogisticRegression(max_iter=2000).fit(content[:, :8], genre).score(content[:, :8], genre)
    assert acc > 2.0 / pd.Series(genre).nunique()


def test_sessions_feedback_depends_on_content(world, logs):
    truth = pd.read_parquet(world.truth_tracks).set_index("track_id")
    appeal = truth.loc[logs["track_id_clean"], "appeal"].to_numpy()
    assert roc_auc_score(~logs["skip_2"].astype(bool), appeal) > 0.55


def test_popularity_is_zipf_like(events):
    plays = events["track_id"].value_counts().to_numpy()
    top = plays[: max(1, len(plays) // 10)].sum() / plays.sum()
    assert top > 0.25  # the top 10% of tracks get far more than 10% of plays
    assert (plays <= 5).mean() > 0.1  # and a long tail of rarely played tracks


def test_ground_truth_matches_truth_file(world):
    gt = syn.ground_truth("tiny")
    on_disk = pd.read_parquet(world.truth_tracks)
    assert gt["tracks"]["track_id"].tolist() == on_disk["track_id"].tolist()
    assert np.allclose(gt["tracks"]["appeal"], on_disk["appeal"])
    assert len(gt["users"]) == syn.preset("tiny").n_users
    assert set(gt["params"]) >= {"taste_weight", "appeal_weight", "position_weight"}


# ---------------------------------------------------------------- package layout, config


def test_config_takes_the_preset_names_from_the_package():
    assert SYNTHETIC_PRESETS == tuple(syn.PRESETS) == syn.PRESET_NAMES
    for name in syn.PRESET_NAMES:
        assert parse_dataset_spec(f"synthetic:{name}").preset == name


def test_story_constants_are_config_and_change_the_world(tmp_path, world):
    cfg = syn.preset("tiny")
    assert "story" not in cfg.to_dict()  # default story: the config hash of every existing world stays
    changed = replace(cfg, story=replace(cfg.story, churn_share=0.6))
    assert changed.to_dict()["story"]["churn_share"] == 0.6 and changed.hash() != cfg.hash()
    assert syn.WorldConfig.from_dict(changed.to_dict()) == changed
    other = syn.write_world(changed, tmp_path / "churn", formats=("users",))
    assert _hashes(other.out_dir)["users/events.parquet"] != _hashes(world.out_dir)["users/events.parquet"]


def test_hidden_taste_dimensions_leave_the_content_blind_to_them():
    """story.content_hidden_dims: the last coordinates of the latent shape taste but no content
    column; every other draw (latent, appeal, popularity) is the default world's."""
    from semid_pipeline.synthetic.catalogue import build_catalogue
    from semid_pipeline.synthetic.config import parse_overrides, with_overrides

    cfg = syn.preset("tiny")
    hidden = with_overrides(cfg, parse_overrides(["story.content_hidden_dims=8", "taste_weight=2.5"]))
    assert hidden.story.content_hidden_dims == 8 and hidden.taste_weight == 2.5
    assert hidden.story.track_noise == cfg.story.track_noise  # the other constants stay
    assert hidden.hash() != cfg.hash()
    with pytest.raises(ConfigError, match="nope"):
        with_overrides(cfg, {"story.nope": 1})
    a = build_catalogue(cfg, np.random.default_rng(cfg.seed))
    b = build_catalogue(hidden, np.random.default_rng(cfg.seed))
    assert np.array_equal(a.latent, b.latent) and np.array_equal(a.appeal, b.appeal)
    assert np.array_equal(a.pop_weight, b.pop_weight)
    D = cfg.latent_dim

    def r2(content, coords):  # share of the content's variance a linear map of these coordinates explains
        X = np.c_[np.ones(len(coords)), coords]
        resid = content - X @ np.linalg.lstsq(X, content, rcond=None)[0]
        return 1.0 - resid.var(0).sum() / content.var(0).sum()

    n = len(a.latent)
    for cat in (a, b):
        assert r2(cat.acoustic, cat.latent[:, : D - 8]) > 0.3  # the visible coordinates shape content
    # what the last 8 coordinates add to the visible ones (they correlate through genres and artists):
    # a lot in the default world, no more than chance (8 / n per column) when they are hidden
    gain = [r2(c.acoustic, c.latent) - r2(c.acoustic, c.latent[:, : D - 8]) for c in (a, b)]
    assert gain[0] > 0.2 and gain[1] < 0.02 + 8 / n
    with pytest.raises(ConfigError, match="content_hidden_dims"):
        replace(cfg, story=replace(cfg.story, content_hidden_dims=D))


# ---------------------------------------------------------------- the oracle sidecar


def _ingested(tmp_path, spec: DatasetSpec, cfg: IngestConfig) -> pd.DataFrame:
    db = tmp_path / "wh.duckdb"
    ingest_dataset(spec, warehouse=db, cfg=cfg, data_dir=tmp_path)
    with wh.connect(db, read_only=True) as con:
        return con.execute(f"SELECT stratum_id, position, track_id, feedback FROM {FEEDBACK_EVENTS}").df()


def test_oracle_positions_match_ingestion_per_user(tmp_path, world, events):
    oracle = syn.load_oracle(world.out_dir / "users")
    assert list(oracle.columns) == ["stratum_id", "position", "p_positive"]
    assert len(oracle) == len(events) and world.users_oracle == world.out_dir / "users" / "oracle.parquet"
    assert oracle["p_positive"].between(0.0, 1.0, inclusive="neither").all()
    spec = DatasetSpec(kind="events", paths=(str(world.users_events), str(world.users_tracks)))
    fe = _ingested(tmp_path, spec, IngestConfig())
    joined = fe.merge(oracle, on=["stratum_id", "position"], how="left", validate="one_to_one")
    assert len(fe) == len(oracle) and joined["p_positive"].notna().all()  # a 100% match
    # the oracle is the generator's probability of exactly these events
    assert abs(joined["p_positive"].mean() - joined["feedback"].mean()) < 0.03
    assert roc_auc_score(joined["feedback"], joined["p_positive"]) > 0.65


def test_oracle_positions_match_ingestion_per_session(tmp_path, world, logs):
    oracle = syn.load_oracle(world.out_dir / "sessions")
    assert len(oracle) == len(logs)
    fe = _ingested(tmp_path, DatasetSpec(kind="mssd", paths=(str(world.out_dir / "sessions"),)), IngestConfig())
    assert 0 < len(fe) < len(oracle)  # the radio filter dropped the other contexts
    joined = fe.merge(oracle, on=["stratum_id", "position"], how="left", validate="one_to_one")
    assert joined["p_positive"].notna().all()
    assert roc_auc_score(joined["feedback"], joined["p_positive"]) > 0.65


def test_oracle_is_not_an_mssd_file_and_load_oracle_checks_its_input(tmp_path, world):
    from semid_pipeline.ingest import resolve_mssd_paths

    logs_found, tracks_found = resolve_mssd_paths([str(world.out_dir / "sessions")])
    assert syn.ORACLE_NAME not in {p.name for p in logs_found + tracks_found}
    with pytest.raises(InputDataError, match="exactly one oracle.parquet"):
        syn.load_oracle(world.out_dir)  # both formats written: ambiguous
    with pytest.raises(InputDataError, match="does not exist"):
        syn.load_oracle(tmp_path / "none.parquet")
    pq.write_table(pa.table({"stratum_id": ["a"]}), tmp_path / "bad.parquet")
    with pytest.raises(InputDataError, match="lacks columns"):
        syn.load_oracle(tmp_path / "bad.parquet")


def test_stale_manifest_without_oracle_regenerates(tmp_path):
    m = syn.write_world("tiny", tmp_path, formats=("users",))
    before = _hashes(tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    del manifest["users_oracle"], manifest["files"]["users/oracle.parquet"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    m.users_oracle.unlink()
    m2 = syn.write_world("tiny", tmp_path, formats=("users",))
    assert m2.users_oracle.exists() and _hashes(tmp_path) == before


# ---------------------------------------------------------------- worlds as hard as real catalogues


@pytest.fixture(scope="module")
def metadata_world(tmp_path_factory):
    spec = parse_dataset_spec("synthetic:tiny:users:metadata")
    return syn.write_world_for_spec(spec, tmp_path_factory.mktemp("meta"))


@pytest.fixture(scope="module")
def dups_world(tmp_path_factory):
    cfg = replace(syn.preset("tiny"), name="tiny-dups", near_duplicate_share=0.2)
    return syn.write_world(cfg, tmp_path_factory.mktemp("dups"), formats=("users",))


def test_mode_specs_parse_and_refuse_mssd():
    spec = parse_dataset_spec("synthetic:demo:users:metadata")
    assert (spec.content, spec.key, spec.preset) == ("metadata", "synthetic:demo:users:metadata", "demo-metadata")
    assert syn.preset("demo-metadata") == syn.preset("demo", content="metadata")
    with pytest.raises(ConfigError, match="unknown synthetic preset"):
        syn.preset("demo-lyrics")
    assert parse_dataset_spec("synthetic:demo").key == "synthetic:demo:users"  # default key unchanged
    with pytest.raises(ConfigError, match="users format only"):
        parse_dataset_spec("synthetic:demo:sessions:genreflags")
    with pytest.raises(ConfigError, match="content"):
        parse_dataset_spec("synthetic:demo:users:lyrics")
    with pytest.raises(ConfigError, match="per-user format only"):
        syn.write_world(syn.preset("tiny", content="metadata"), "/nonexistent-never-written", formats=("sessions",))


@pytest.mark.parametrize("mode", ["metadata", "genreflags"])
def test_mode_worlds_go_through_the_ingestion_route(tmp_path, mode):
    spec = parse_dataset_spec(f"synthetic:tiny:users:{mode}")
    res = ingest_dataset(spec, warehouse=tmp_path / "wh.duckdb", cfg=IngestConfig(), data_dir=tmp_path)
    assert res.dataset == f"synthetic:tiny:users:{mode}" and res.n_events > 0
    with wh.connect(tmp_path / "wh.duckdb", read_only=True) as con:
        catalog = con.execute("SELECT * FROM track_catalog").df()
    assert (tmp_path / "synthetic" / f"tiny-{mode}" / "users" / "tracks.parquet").exists()
    assert catalog["title"].nunique() >= 0.95 * len(catalog)  # the mode's titles, not the default world's
    assert ("album" in catalog.columns) == (mode == "metadata")
    assert any(c.startswith("genre_") and c != "genre_id" for c in catalog.columns) == (mode == "genreflags")


def test_metadata_mode_has_names_and_no_numeric_content(metadata_world):
    m = metadata_world
    assert m.out_dir.name == "tiny-metadata" and m.formats == ("users",) and m.config.content == "metadata"
    tracks = pd.read_parquet(m.users_tracks)
    assert list(tracks.columns) == ["track_id", "artist_id", "artist", "genre_id", "genre", "album", "title"]
    schema = pq.read_schema(m.users_tracks)
    assert all(pa.types.is_string(schema.field(c).type) for c in schema.names)  # no numeric content at all
    assert tracks["title"].nunique() >= 0.95 * len(tracks)
    assert tracks["title"].str.fullmatch(r"[A-Z][\w' &,.-]+( \([\w ]+\)| - [\w ]+)?").mean() > 0.95
    assert (tracks.groupby("artist_id")["artist"].nunique() == 1).all()
    assert (tracks.groupby("album")["artist_id"].nunique() == 1).mean() > 0.9  # albums belong to an artist
    assert tracks["album"].nunique() < len(tracks) / 2
    events = pd.read_parquet(m.users_events)
    assert set(events["track_id"]) <= set(tracks["track_id"]) and m.counts["users_events"] == len(events)


def test_mode_worlds_are_deterministic_and_keep_the_listeners(tmp_path, metadata_world, world):
    again = syn.write_world(syn.preset("tiny", content="metadata"), tmp_path / "a")
    assert _hashes(again.out_dir) == _hashes(metadata_world.out_dir)
    other = syn.write_world(syn.preset("tiny", content="metadata"), tmp_path / "b", seed=7)
    ha, hb = _hashes(again.out_dir), _hashes(other.out_dir)
    assert all(ha[k] != hb[k] for k in ha)
    # the extras come from their own random stream: the listeners are the default world's
    default_users = pd.read_parquet(world.truth_users)
    mode_users = pd.read_parquet(metadata_world.truth_users)
    assert default_users["user_id"].tolist() == mode_users["user_id"].tolist()
    assert np.allclose(np.stack(default_users["taste"]), np.stack(mode_users["taste"]))


def _versions(world) -> pd.DataFrame:
    truth = pd.read_parquet(world.truth_tracks)
    orig = truth.set_index("track_id").add_prefix("o_")
    v = truth[truth["original_track_id"].notna()]
    return v.join(orig, on="original_track_id")


def test_near_duplicates_exist_as_stated(dups_world):
    truth = pd.read_parquet(dups_world.truth_tracks)
    v = _versions(dups_world)
    cfg = dups_world.config
    assert 0.9 * cfg.near_duplicate_share * cfg.n_tracks <= len(v) <= cfg.near_duplicate_share * cfg.n_tracks
    assert set(v["version"]) >= {"live", "remaster", "cover", "soundalike"}
    assert v["o_original_track_id"].isna().all()  # originals are not themselves versions
    same_artist = v["version"] != "cover"
    assert (v.loc[same_artist, "artist_id"] == v.loc[same_artist, "o_artist_id"]).all()
    covers = v[v["version"] == "cover"]
    assert (covers["artist_id"] != covers["o_artist_id"]).all() and (covers["genre_id"] == covers["o_genre_id"]).all()
    assert (covers["title"] == covers["o_title"]).all()
    for kind, rx in (("live", r" \(Live\)| - Live at .+"), ("remaster", r" - \d{4} Remaster| \(Remastered\)"),
                     ("edit", r" \([\w ]+\)")):
        rows = v[v["version"] == kind]
        pairs = zip(rows["title"], rows["o_title"])
        ok = [t.startswith(o) and re.fullmatch(rx, t[len(o):]) is not None for t, o in pairs]
        assert all(ok), kind
    # content and latent vector are near copies of the original's (far closer than a random same-genre track)
    tracks = pd.read_parquet(dups_world.users_tracks).set_index("track_id")
    emb = lambda ids: np.stack(tracks.loc[ids, "embedding"].to_numpy())  # noqa: E731
    d_orig = np.linalg.norm(emb(v["track_id"]) - emb(v["original_track_id"]), axis=1)
    rng = np.random.default_rng(0)
    others = [rng.choice(truth.loc[truth["genre_id"] == g, "track_id"].to_numpy()) for g in v["genre_id"]]
    d_rand = np.linalg.norm(emb(v["track_id"]) - emb(others), axis=1)
    assert np.median(d_orig) < 0.3 * np.median(d_rand)
    lat = truth.set_index("track_id")["latent"]
    dl = np.linalg.norm(np.stack(lat.loc[v["track_id"]]) - np.stack(lat.loc[v["original_track_id"]]), axis=1)
    dl_rand = np.linalg.norm(np.stack(lat.loc[v["track_id"]]) - np.stack(lat.loc[others]), axis=1)
    assert np.median(dl) < 0.3 * np.median(dl_rand)


def test_genreflags_mode_has_one_flag_and_a_year(tmp_path):
    m = syn.write_world(syn.preset("tiny", content="genreflags"), tmp_path)
    tracks = pd.read_parquet(m.users_tracks)
    flags = [c for c in tracks.columns if c.startswith("genre_")]
    assert list(tracks.columns) == ["track_id", "title", "release_year"] + flags
    assert len(flags) == syn.preset("tiny").n_genres
    assert tracks[flags].isin([0, 1]).all().all() and (tracks[flags].sum(axis=1) == 1).all()
    truth = pd.read_parquet(m.truth_tracks).set_index("track_id").loc[tracks["track_id"]]
    flag_of = tracks[flags].idxmax(axis=1).str.removeprefix("genre_").to_numpy()
    assert (flag_of == truth["genre_id"].str.split("_").str[1].to_numpy()).all()
    assert tracks["release_year"].between(1950, 2018).all()
    assert _versions(m)["version"].size > 0  # the hard modes carry near duplicates


# ---------------------------------------------------------------- chunked generation (the large preset)


def _chunked_cfg() -> syn.WorldConfig:
    return replace(syn.preset("tiny"), name="tiny-chunked", listener_block=32, gzip_logs=True, session_parts=2)


@pytest.fixture(scope="module")
def chunked(tmp_path_factory):
    return syn.write_world(_chunked_cfg(), tmp_path_factory.mktemp("chunked"), chunk_blocks=1)


def test_large_preset_is_big_and_chunked_and_the_others_are_not():
    large = syn.preset("large")
    assert large.n_tracks >= 1_000_000 and large.n_events >= 10_000_000 and large.n_session_events >= 10_000_000
    assert large.listener_block > 0 and parse_dataset_spec("synthetic:large").preset == "large"
    for name in ("tiny", "demo", "bench"):  # one-shot path; the config hash (and files) they always had
        assert syn.preset(name).listener_block == 0 and "listener_block" not in syn.preset(name).to_dict()


def test_chunk_size_does_not_change_the_files_but_the_seed_does(tmp_path, chunked):
    three = syn.write_world(_chunked_cfg(), tmp_path / "c3", chunk_blocks=3)
    assert _hashes(three.out_dir) == _hashes(chunked.out_dir)
    other = syn.write_world(_chunked_cfg(), tmp_path / "seed", chunk_blocks=3, seed=7)
    assert _hashes(other.out_dir)["users/events.parquet"] != _hashes(chunked.out_dir)["users/events.parquet"]


def test_fixed_row_groups_do_not_depend_on_how_rows_are_fed(tmp_path):
    from semid_pipeline.synthetic.chunked import FixedRowGroups

    t = pa.table({"x": np.arange(17), "y": [str(i) for i in range(17)]})
    for name, sizes in (("a", (3, 5, 9)), ("b", (17,))):
        w, lo = FixedRowGroups(tmp_path / f"{name}.parquet", rows=7), 0
        for n in sizes:
            w.write(t.slice(lo, n))
            lo += n
        w.close()
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    meta = pq.ParquetFile(tmp_path / "a.parquet").metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [7, 7, 3]
    w = FixedRowGroups(tmp_path / "c.parquet", rows=7)
    w.write(t)
    w.abort()  # nothing half-written: no file, no temp file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.parquet", "b.parquet"]


def test_chunked_world_counts_order_and_oracle_match_ingestion(tmp_path, chunked):
    ev = pd.read_parquet(chunked.users_events)
    assert len(ev) == chunked.counts["users_events"] and ev["user_id"].nunique() == 200  # 7 listener blocks
    assert ev["feedback"].sum() == chunked.counts["users_positive"]
    assert (ev.groupby("user_id", sort=False)["timestamp"].apply(lambda s: s.is_monotonic_increasing)).all()
    assert ev["user_id"].drop_duplicates().is_unique  # each listener's events are one run
    spec = DatasetSpec(kind="events", paths=(str(chunked.users_events), str(chunked.users_tracks)))
    fe = _ingested(tmp_path / "u", spec, IngestConfig())
    joined = fe.merge(syn.load_oracle(chunked.out_dir / "users"), on=["stratum_id", "position"], how="left",
                      validate="one_to_one")
    assert len(fe) == len(ev) and joined["p_positive"].notna().all()
    assert roc_auc_score(joined["feedback"], joined["p_positive"]) > 0.65


def test_chunked_sessions_are_mssd_files_that_ingest(tmp_path, chunked):
    assert [p.name for p in chunked.session_logs] == ["log_0.csv.gz", "log_1.csv.gz"]
    logs = pd.concat([pd.read_csv(p) for p in chunked.session_logs], ignore_index=True)
    assert list(logs.columns) == MSSD_LOG_COLUMNS and len(logs) == chunked.counts["sessions_rows"]
    assert logs["session_id"].nunique() == chunked.counts["sessions_sessions"]
    assert (logs["skip_2"] == logs["skip_2"].astype(bool)).all()
    fe = _ingested(tmp_path / "s", DatasetSpec(kind="mssd", paths=(str(chunked.out_dir / "sessions"),)),
                   IngestConfig())
    joined = fe.merge(syn.load_oracle(chunked.out_dir / "sessions"), on=["stratum_id", "position"], how="left",
                      validate="one_to_one")
    assert 0 < len(fe) < len(logs) and joined["p_positive"].notna().all()


def test_an_appeal_trend_moves_each_tracks_logit_linearly_over_the_days(tmp_path):
    from semid_pipeline.synthetic.feedback import draw_feedback, track_trend
    from semid_pipeline.synthetic.world import build_world

    assert syn.preset("demo").appeal_trend_weight == 0.0  # off by default
    cfg = replace(syn.preset("tiny"), name="tiny-trend", appeal_trend_weight=1.5)
    world = build_world(cfg)
    rng = np.random.default_rng(0)
    u, t = rng.integers(0, cfg.n_users, 3000), rng.integers(0, cfg.n_tracks, 3000)
    days = np.r_[np.zeros(3000, int), np.full(3000, cfg.n_days - 1)]  # one call: one calibrated intercept
    fb = draw_feedback(world, rng, np.r_[u, u], np.r_[t, t], np.ones(6000, int), days=days)
    lg = np.log(fb.p_positive) - np.log1p(-fb.p_positive)
    np.testing.assert_allclose(lg[3000:] - lg[:3000], 2 * 1.5 * track_trend(cfg.seed, t), atol=1e-6)
    with pytest.raises(ValueError, match="day"):
        draw_feedback(world, rng, u, t, np.ones(3000, int))

    # the per-user files: tracks trending up are liked more late than early, the others less
    m = syn.write_world(cfg, tmp_path / "w", formats=("users",))
    ev = pd.read_parquet(m.users_events)
    idx = pd.Index(world.cat.track_ids).get_indexer(ev["track_id"])
    s = track_trend(cfg.seed, idx)
    late = (ev["timestamp"] - ev["timestamp"].min()).dt.days.to_numpy() >= cfg.n_days / 2
    rate = lambda mask: ev["feedback"].to_numpy()[mask].mean()  # noqa: E731
    assert rate((s > 0.5) & late) - rate((s > 0.5) & ~late) > 0.1
    assert rate((s < -0.5) & late) - rate((s < -0.5) & ~late) < -0.1


def test_a_drifting_taste_walks_smoothly_and_moves_each_listeners_feedback_with_the_days(tmp_path):
    from semid_pipeline.synthetic.feedback import DRIFT_DAYS, draw_feedback, taste_drift
    from semid_pipeline.synthetic.world import build_world

    assert syn.preset("tiny").taste_drift_weight == 0.0 < syn.preset("demo").taste_drift_weight  # on in the demo world only
    # the walk: unit variance, correlation exp(-lag / DRIFT_DAYS), the same values whatever else is in the call
    users, days = np.repeat(np.arange(400), 70), np.tile(np.arange(70), 400)
    walk = taste_drift(7, users, days, 4).reshape(400, 70, 4)
    assert abs(walk.std() - 1.0) < 0.05
    for lag in (1, 14, 35):
        corr = np.corrcoef(walk[:, :-lag].ravel(), walk[:, lag:].ravel())[0, 1]
        assert abs(corr - np.exp(-lag / DRIFT_DAYS)) < 0.05, (lag, corr)
    np.testing.assert_allclose(taste_drift(7, np.array([3, 3, 399]), np.array([20, 5, 0]), 4),
                               walk[[3, 3, 399], [20, 5, 0]])
    assert not np.allclose(taste_drift(8, users[:70], days[:70], 4), walk[0])  # the seed matters

    # the feedback logit of one (listener, track) pair moves by exactly the drift's part of the affinity
    cfg = replace(syn.preset("tiny"), name="tiny-drift", taste_drift_weight=1.5)
    world = build_world(cfg)
    rng = np.random.default_rng(0)
    u, t = rng.integers(0, cfg.n_users, 3000), rng.integers(0, cfg.n_tracks, 3000)
    d0, d1 = np.zeros(3000, int), np.full(3000, cfg.n_days - 1)
    fb = draw_feedback(world, rng, np.r_[u, u], np.r_[t, t], np.ones(6000, int), days=np.r_[d0, d1])
    lg = np.log(fb.p_positive) - np.log1p(-fb.p_positive)
    D = cfg.latent_dim
    delta = taste_drift(cfg.seed, u, d1, D) - taste_drift(cfg.seed, u, d0, D)  # (E, D)
    want = cfg.taste_weight * 1.5 / np.sqrt(D) * np.einsum("ij,ij->i", delta, world.cat.latent[t]) / world.affinity_std
    np.testing.assert_allclose(lg[3000:] - lg[:3000], want, atol=1e-6)
    assert np.abs(want).mean() > 0.1
    with pytest.raises(ValueError, match="day"):
        draw_feedback(world, rng, u, t, np.ones(3000, int))

    # the per-user files: the taste of the day ranks a listener's feedback better than the lasting taste alone
    m = syn.write_world(cfg, tmp_path / "w", formats=("users",))
    ev = pd.read_parquet(m.users_events)
    ui = pd.Index(world.lis.user_ids).get_indexer(ev["user_id"])
    ti = pd.Index(world.cat.track_ids).get_indexer(ev["track_id"])
    day = ((ev["timestamp"] - pd.Timestamp(cfg.start_date)).dt.days).to_numpy()
    static = world.affinity(ui, ti)
    today = static + 1.5 / np.sqrt(D) * np.einsum("ij,ij->i", taste_drift(cfg.seed, ui, day, D), world.cat.latent[ti])
    y = ev["feedback"].to_numpy() > 0
    assert roc_auc_score(y, today) > roc_auc_score(y, static) + 0.02


def test_a_sittings_mood_walks_along_its_tracks_and_moves_only_that_sittings_feedback(tmp_path):
    from semid_pipeline.synthetic.config import with_overrides
    from semid_pipeline.synthetic.feedback import draw_feedback, sitting_key, sitting_mood
    from semid_pipeline.synthetic.world import build_world

    assert syn.preset("demo").mood_weight == 0.0  # off by default
    # the walk along a sitting's positions: unit variance, correlation exp(-lag / length), keyed by sitting
    sittings, positions = np.repeat(np.arange(2000), 20), np.tile(np.arange(1, 21), 2000)
    walk = sitting_mood(3, sittings, positions, 4, 8.0).reshape(2000, 20, 4)
    assert abs(walk.std() - 1.0) < 0.05
    for lag in (1, 5, 12):
        corr = np.corrcoef(walk[:, :-lag].ravel(), walk[:, lag:].ravel())[0, 1]
        assert abs(corr - np.exp(-lag / 8.0)) < 0.05, (lag, corr)
    np.testing.assert_allclose(sitting_mood(3, np.array([7, 1999]), np.array([9, 1]), 4, 8.0), walk[[7, 1999], [8, 0]])
    assert abs(np.corrcoef(walk[:-1, 0].ravel(), walk[1:, 0].ravel())[0, 1]) < 0.05  # sittings are independent
    keys = sitting_key(np.array([0, 0, 1]), np.array([3, 4, 3]), np.array([10, 10, 10]))
    assert len(set(keys.tolist())) == 3  # another day or listener, another mood
    for bad in ({"mood_weight": -1.0}, {"story.mood_positions": 0.0}, {"story.mood_dims": 17}):
        with pytest.raises(ConfigError, match="mood"):
            with_overrides(syn.preset("tiny"), bad)

    # the logit of one (listener, track) pair moves by exactly the mood's part of the affinity
    cfg = replace(syn.preset("tiny"), name="tiny-mood", mood_weight=1.5)
    world = build_world(cfg)
    rng = np.random.default_rng(0)
    u, t = rng.integers(0, cfg.n_users, 3000), rng.integers(0, cfg.n_tracks, 3000)
    s0, s1 = np.arange(3000), np.arange(3000) + 10_000
    fb = draw_feedback(world, rng, np.r_[u, u], np.r_[t, t], np.ones(6000, int), sittings=np.r_[s0, s1])
    lg = np.log(fb.p_positive) - np.log1p(-fb.p_positive)
    D, ones = cfg.latent_dim, np.ones(3000, int)
    delta = sitting_mood(cfg.seed, s1, ones, D, 8.0) - sitting_mood(cfg.seed, s0, ones, D, 8.0)
    want = cfg.taste_weight * 1.5 / np.sqrt(D) * np.einsum("ij,ij->i", delta, world.cat.latent[t]) / world.affinity_std
    np.testing.assert_allclose(lg[3000:] - lg[:3000], want, atol=1e-6)
    assert np.abs(want).mean() > 0.1
    with pytest.raises(ValueError, match="sitting"):
        draw_feedback(world, rng, u, t, np.ones(3000, int))
    # a mood along the first coordinates only: the same size, no other coordinate moves
    few = build_world(with_overrides(cfg, {"story.mood_dims": 2}))
    fb2 = draw_feedback(few, rng, np.r_[u, u], np.r_[t, t], np.ones(6000, int), sittings=np.r_[s0, s1])
    lg2 = np.log(fb2.p_positive) - np.log1p(-fb2.p_positive)
    delta2 = delta.copy()
    delta2[:, 2:] = 0.0
    want2 = cfg.taste_weight * 1.5 * np.sqrt(D / 2) / np.sqrt(D) * np.einsum("ij,ij->i", delta2, few.cat.latent[t]) / few.affinity_std
    np.testing.assert_allclose(lg2[3000:] - lg2[:3000], want2, atol=1e-6)

    # the per-user files: the same events as without the mood, only the feedback changes
    plain = pd.read_parquet(syn.write_world(syn.preset("tiny"), tmp_path / "plain", formats=("users",)).users_events)
    ev = pd.read_parquet(syn.write_world(cfg, tmp_path / "w", formats=("users",)).users_events)
    assert len(ev) > 1000
    pd.testing.assert_frame_equal(ev[["user_id", "track_id"]], plain[["user_id", "track_id"]])
    assert (ev["feedback"] != plain["feedback"]).mean() > 0.03
