"""Semantic IDs: RQ-VAE recovers clusters, determinism, tie level, checks, cold start, v0 uniformity, I/O."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import chisquare
from sklearn.metrics import adjusted_rand_score

from semid_pipeline import rqvae, semantic_ids as sid
from semid_pipeline.config import RQVAEConfig, SemanticIdConfig
from semid_pipeline.errors import SemidError
from semid_pipeline.schemes import IdScheme

SMALL = SemanticIdConfig(
    levels=3, seed=0,
    rqvae=RQVAEConfig(hidden=(32,), latent_dim=8, epochs=3, batch_size=256, kmeans_sample=2000, kmeans_iters=10),
)


def blobs(n=2000, k=8, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 10, (k, dim))
    labels = rng.integers(0, k, n)
    return (centers[labels] + rng.normal(0, 1, (n, dim))).astype(np.float32), labels


def ids(n, prefix="t"):
    return [f"{prefix}{i:05d}" for i in range(n)]


def test_rqvae_first_level_recovers_blobs():
    X, labels = blobs()
    model, hist = rqvae.fit_rqvae(X, cfg=SMALL.rqvae, codebook_size=8, levels=3, seed=0)
    codes = model.encode_codes(X)
    assert codes.shape == (2000, 3) and codes.dtype == torch.long
    assert adjusted_rand_score(labels, codes[:, 0].numpy()) > 0.9


def test_rqvae_save_load_roundtrip(tmp_path):
    X, _ = blobs(500)
    model, _ = rqvae.fit_rqvae(X, cfg=SMALL.rqvae, codebook_size=8, levels=3, seed=0)
    model.save(tmp_path)
    assert {"model.pt", "config.json", "codebooks.npz"} <= {p.name for p in tmp_path.iterdir()}
    again = rqvae.RQVAE.load(tmp_path)
    assert torch.equal(model.encode_codes(X), again.encode_codes(X))
    assert torch.allclose(model.reconstruct(X), again.reconstruct(X))


def test_kmeans_is_seeded():
    X, labels = blobs(1000)
    c1, l1 = rqvae.kmeans(X, 8, 20, seed=3)
    c2, l2 = rqvae.kmeans(X, 8, 20, seed=3)
    assert torch.equal(c1, c2) and torch.equal(l1, l2)
    assert adjusted_rand_score(labels, l1.numpy()) > 0.9


@pytest.mark.parametrize("scheme", ["v0", "v1", "rqkmeans"])
def test_same_seed_same_table(scheme, tmp_path):
    X, _ = blobs(1200)
    a = sid.fit_semantic_ids(scheme=IdScheme(family=scheme, k=8), track_ids=ids(1200), X=X, cfg=SMALL, artifact_dir=tmp_path / "a")
    b = sid.fit_semantic_ids(scheme=IdScheme(family=scheme, k=8), track_ids=ids(1200), X=X, cfg=SMALL, artifact_dir=tmp_path / "b")
    pd.testing.assert_frame_equal(a.table, b.table)
    assert list(a.table.columns) == ["track_id", "c1", "c2", "c3", "tie"]
    assert sid.check_one_to_one(a.table)[0]
    assert sid.semantic_id_table_hash(a.table) == sid.semantic_id_table_hash(b.table)
    assert set(a.metrics["utilization"]) == {"c1", "c2", "c3"}


def test_order_of_input_does_not_matter(tmp_path):
    X, _ = blobs(600)
    t = ids(600)
    perm = np.random.default_rng(1).permutation(600)
    a = sid.fit_semantic_ids(scheme=IdScheme(family="rqkmeans", k=8), track_ids=t, X=X, cfg=SMALL, artifact_dir=tmp_path / "a")
    b = sid.fit_semantic_ids(scheme=IdScheme(family="rqkmeans", k=8), track_ids=[t[i] for i in perm], X=X[perm], cfg=SMALL, artifact_dir=tmp_path / "b")
    pd.testing.assert_frame_equal(a.table, b.table)


def test_planted_duplicates_get_distinct_ties(tmp_path):
    X, _ = blobs(800)
    X[:300] = X[0]  # 300 identical rows
    for scheme in ("v1", "rqkmeans"):
        res = sid.fit_semantic_ids(scheme=IdScheme(family=scheme, k=8), track_ids=ids(800), X=X, cfg=SMALL, artifact_dir=tmp_path / scheme)
        ok, details = sid.check_one_to_one(res.table)
        assert ok, details
        dup = res.table.iloc[:300]
        assert dup[["c1", "c2", "c3"]].nunique().max() == 1
        assert sorted(dup["tie"]) == list(range(300))
        assert res.metrics["max_tie"] >= 299


def test_tie_counter_hand_made():
    track_ids = ["f", "b", "e", "a", "d", "c"]
    codes = np.array([[1, 2], [1, 2], [0, 0], [1, 2], [0, 0], [3, 3]])
    # sorted: a(1,2)->0, b(1,2)->1, c(3,3)->0, d(0,0)->0, e(0,0)->1, f(1,2)->2
    assert sid.add_tie_level(track_ids, codes).tolist() == [2, 1, 1, 0, 0, 0]


def test_collapse_guard():
    n, k = 4000, 64
    degenerate = pd.DataFrame({"track_id": ids(n), "c1": 0, "c2": 0, "tie": range(n)})
    ok, details = sid.check_collapse(degenerate, k, n)
    assert not ok and details["level1_utilization"] == 1 / k
    healthy = degenerate.assign(c1=np.arange(n) % k)
    assert sid.check_collapse(healthy, k, n)[0]
    ok, details = sid.check_collapse(degenerate, 4096, n)  # k > n/4: not applied
    assert ok and "not applied" in details["note"]


def test_coverage_check():
    t = pd.DataFrame({"track_id": ["a", "b"], "c1": [0, 1], "tie": [0, 0]})
    assert sid.check_coverage(t, ["a", "b", "a"])[0]
    ok, details = sid.check_coverage(t, ["a", "z", "y"])
    assert not ok and details["missing_examples"] == ["y", "z"]


@pytest.mark.parametrize("scheme", ["v0", "v1", "rqkmeans"])
def test_cold_start_never_collides_or_changes_old_ids(scheme, tmp_path):
    X, _ = blobs(1000)
    old_ids = ids(900)
    res = sid.fit_semantic_ids(scheme=IdScheme(family=scheme, k=8), track_ids=old_ids, X=X[:900], cfg=SMALL, artifact_dir=tmp_path)
    existing = res.table
    new_ids = ids(100, "n") + ["t00000", "t00005"]  # the last two already exist
    X_new = np.vstack([X[900:950], X[:50], X[[0, 5]]])  # 50 exact copies of old content
    added = sid.assign_new_tracks(scheme=IdScheme(family=scheme, k=8), artifact_dir=tmp_path, existing=existing, new_track_ids=new_ids, X_new=X_new)
    assert sorted(added["track_id"]) == sorted(new_ids)
    old_rows = added[added["track_id"].isin(old_ids)].reset_index(drop=True)
    pd.testing.assert_frame_equal(old_rows, existing[existing["track_id"].isin(["t00000", "t00005"])].reset_index(drop=True))
    combined = pd.concat([existing, added[~added["track_id"].isin(old_ids)]], ignore_index=True)
    assert sid.check_one_to_one(combined)[0]
    again = sid.assign_new_tracks(scheme=IdScheme(family=scheme, k=8), artifact_dir=tmp_path, existing=combined, new_track_ids=new_ids, X_new=X_new)
    pd.testing.assert_frame_equal(again, added)  # idempotent
    if scheme != "v0":  # copies of old content get the old tuple and a fresh tie
        copies = added.set_index("track_id").loc[ids(100, "n")[50:]]
        src = existing.set_index("track_id").loc[old_ids[:50]]
        assert (copies[["c1", "c2", "c3"]].to_numpy() == src[["c1", "c2", "c3"]].to_numpy()).all()


def test_v0_codes_are_uniform(tmp_path):
    n, k = 20_000, 64
    X = np.zeros((n, 2), np.float32)
    res = sid.fit_semantic_ids(scheme=IdScheme(family="v0", k=k), track_ids=ids(n), X=X, cfg=SemanticIdConfig(levels=4), artifact_dir=tmp_path)
    for c in ("c1", "c2", "c3", "c4"):
        counts = np.bincount(res.table[c], minlength=k)
        assert chisquare(counts).pvalue > 0.01


def test_id_family_fits_and_extends_without_changing_old_rows(tmp_path):
    scheme = IdScheme.parse("id")
    res = sid.fit_semantic_ids(scheme=scheme, track_ids=ids(5)[::-1], X=np.zeros((5, 2), np.float32), cfg=SMALL,
                               artifact_dir=tmp_path)
    assert res.table["track_id"].tolist() == ids(5) and res.table["c1"].tolist() == [0, 1, 2, 3, 4]
    assert list(res.table.columns) == ["track_id", "c1", "tie"] and (res.table["tie"] == 0).all()
    added = sid.assign_new_tracks(scheme=scheme, artifact_dir=tmp_path, existing=res.table,
                                  new_track_ids=["n2", "n1", "t00001"], X_new=None)
    assert added.set_index("track_id")["c1"].to_dict() == {"n1": 5, "n2": 6, "t00001": 1}
    assert sid.codebook_size(scheme, pd.concat([res.table, added[added.track_id.str.startswith("n")]])) == 7


def test_v0_cold_start_uses_the_fitted_seed_not_the_current_one(tmp_path):
    fitted = SemanticIdConfig(levels=4, seed=7)
    X = np.zeros((20, 2), np.float32)
    scheme = IdScheme(family="v0", k=64)
    full = sid.fit_semantic_ids(scheme=scheme, track_ids=ids(20), X=X, cfg=fitted, artifact_dir=tmp_path / "full")
    part = sid.fit_semantic_ids(scheme=scheme, track_ids=ids(10), X=X[:10], cfg=fitted, artifact_dir=tmp_path / "part")
    added = sid.assign_new_tracks(scheme=scheme, artifact_dir=tmp_path / "part", existing=part.table,
                                  new_track_ids=ids(20)[10:], X_new=X[10:])
    cols = ["c1", "c2", "c3", "c4"]
    assert (added[cols].to_numpy() == full.table[cols].to_numpy()[10:]).all()


def test_semantic_id_seed_reaches_the_rqvae(tmp_path):
    X, _ = blobs(600)
    scheme = IdScheme(family="v1", k=8)
    runs = {seed: sid.fit_semantic_ids(scheme=scheme, track_ids=ids(600), X=X, cfg=SemanticIdConfig(
        levels=3, seed=seed, rqvae=SMALL.rqvae), artifact_dir=tmp_path / str(seed)) for seed in (0, 1)}
    a = rqvae.RQVAE.load(tmp_path / "0").state_dict()
    b = rqvae.RQVAE.load(tmp_path / "1").state_dict()
    assert not all(torch.equal(a[k], b[k]) for k in a)
    assert sid._read_config(tmp_path / "1")["seed"] == 1 and runs[0].table is not None


def test_quality_metrics(tmp_path):
    X, _ = blobs(1500)
    res = sid.fit_semantic_ids(scheme=IdScheme(family="rqkmeans", k=8), track_ids=ids(1500), X=X, cfg=SMALL, artifact_dir=tmp_path)
    m = res.metrics
    assert m["utilization"]["c1"] == 1.0 and 0 < m["entropy_bits"]["c1"] <= 3.0
    assert m["reconstruction_error"] is not None and m["reconstruction_error"] < float((X - X.mean(0)).var(0).sum())
    assert m["neighbour_preservation"] > 0.9 > m["neighbour_preservation_random"]


def test_write_read_roundtrip_and_hash(tmp_path):
    X, _ = blobs(500)
    res = sid.fit_semantic_ids(scheme=IdScheme(family="rqkmeans", k=8), track_ids=ids(500), X=X, cfg=SMALL, artifact_dir=tmp_path / "a")
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    h1 = sid.write_semantic_ids(con, IdScheme.parse("rqkmeans-k8"), res.table)
    table, h2 = sid.read_semantic_ids(con, IdScheme.parse("rqkmeans-k8"))
    assert h1 == h2 == sid.semantic_id_table_hash(res.table)
    pd.testing.assert_frame_equal(table, res.table, check_dtype=False)
    assert sid.write_semantic_ids(con, IdScheme.parse("rqkmeans-k8"), res.table.sample(frac=1, random_state=0)) == h1  # order-free
    reg = con.execute("SELECT partition_key, scheme, k, levels, n_tracks, content_hash FROM semantic_id_registry").fetchall()
    assert reg == [("rqkmeans-k8", "rqkmeans", 8, 3, 500, h1)]
    con.execute("UPDATE semantic_ids__rqkmeans_k8 SET tie = tie + 1 WHERE track_id = 't00000'")
    with pytest.raises(SemidError, match="changed outside"):
        sid.read_semantic_ids(con, IdScheme.parse("rqkmeans-k8"))
    con.close()
