"""Content features: MSSD columns, popularity excluded, save/load round trip, metadata-only data, warehouse I/O."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from semid_pipeline import features
from semid_pipeline.features import FeatureTransform


def mssd_catalog(n=300, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "track_id": [f"t_{i:04d}" for i in range(n)],
        "artist_id": None, "genre_id": None, "title": None,
        "release_year": rng.integers(1960, 2019, n),
        "duration": rng.lognormal(5.3, 0.3, n),
        "us_popularity_estimate": rng.uniform(90, 100, n),
        "acousticness": rng.uniform(0, 1, n), "energy": rng.uniform(0, 1, n),
        "key": rng.integers(0, 12, n), "mode": rng.choice(["major", "minor"], n),
        "time_signature": rng.choice([3, 4, 5], n), "tempo": rng.uniform(60, 200, n),
        "loudness": rng.uniform(-30, 0, n),
        **{f"acoustic_vector_{i}": rng.normal(size=n) for i in range(8)},
    })
    df.loc[[3, 7], "tempo"] = np.nan
    df.loc[5, "energy"] = np.nan
    return df


def test_mssd_features_exclude_popularity_and_one_hot_categories():
    df = mssd_catalog()
    t = FeatureTransform.fit(df)
    X = t.transform(df)
    names = t.feature_names
    assert X.dtype == np.float32 and X.shape == (300, len(names)) and np.isfinite(X).all()
    assert not any("popularity" in n for n in names)
    assert {"key=0", "key=11", "mode=major", "mode=minor", "time_signature=4"} <= set(names)
    assert {"duration", "release_year", "tempo", "loudness", "acoustic_vector_7"} <= set(names)
    assert t.n_imputed == 3 and t.imputed_by_column == {"energy": 1, "tempo": 2}
    j = names.index("tempo")
    assert abs(np.median(X[:, j])) < 0.1 and np.abs(X).max() <= 6


def test_transform_roundtrips_through_save_load(tmp_path):
    df = mssd_catalog()
    t = FeatureTransform.fit(df)
    t.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"transform.json", "transform.npz"}
    again = FeatureTransform.load(tmp_path)
    assert again.feature_names == t.feature_names
    new = mssd_catalog(50, seed=1)  # new tracks reuse the fitted transform
    np.testing.assert_array_equal(again.transform(new), t.transform(new))
    np.testing.assert_array_equal(again.transform(df), t.transform(df))


def test_per_user_numeric_and_embedding_columns():
    rng = np.random.default_rng(0)
    n = 120
    df = pd.DataFrame({
        "track_id": [f"u{i}" for i in range(n)], "artist_id": [f"a{i % 7}" for i in range(n)],
        "genre_id": "g", "release_year": 2000, "title": "x", "popularity": rng.uniform(size=n),
        "bpm": rng.normal(120, 10, n), "embedding": [rng.normal(size=4).astype(np.float32) for _ in range(n)],
    })
    df.loc[2, "embedding"] = None
    t = FeatureTransform.fit(df)
    X = t.transform(df)
    assert "popularity" not in t.feature_names and "bpm" in t.feature_names
    assert [f"embedding_{i}" for i in range(4)] == [n for n in t.feature_names if n.startswith("embedding")]
    assert X.shape[0] == n and np.isfinite(X).all() and t.n_imputed == 4


def test_metadata_only_catalog_yields_vectors():
    n = 200
    df = pd.DataFrame({
        "track_id": [f"m{i}" for i in range(n)], "artist_id": [f"a{i % 20}" for i in range(n)],
        "genre_id": [f"g{i % 5}" for i in range(n)], "release_year": [1970 + i % 50 for i in range(n)],
        "title": [f"song number {i % 13} love" for i in range(n)],
    })
    t = FeatureTransform.fit(df)
    X = t.transform(df)
    assert t.use_metadata and X.shape == (n, 1 + 16) and np.isfinite(X).all() and X.std(0).min() > 0
    same_artist = np.linalg.norm(X[0] - X[20])  # a0, g0 both
    other = np.linalg.norm(X[0] - X[1])
    assert same_artist < other


def test_build_and_read_content_features(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    df = mssd_catalog(100).sample(frac=1, random_state=0)
    con.register("cat", df)
    con.execute("CREATE TABLE track_catalog AS SELECT * FROM cat")
    res = features.build_content_features(con, tmp_path / "features")
    ids, X = features.read_content_features(con)
    assert ids == sorted(df["track_id"]) and X.shape == (100, res.dim) and X.dtype == np.float32
    assert res.n_tracks == 100 and res.n_imputed == 3 and (tmp_path / "features" / "transform.json").exists()
    t = FeatureTransform.load(res.transform_dir)
    np.testing.assert_allclose(X, t.transform(df.sort_values("track_id")), rtol=0, atol=0)
    res2 = features.build_content_features(con, tmp_path / "features", reuse_transform=True)
    assert res2.feature_names == res.feature_names
    con.close()
