"""Semantic IDs: RQ-VAE recovers clusters, determinism, tie level, checks, cold start, v0 uniformity, I/O."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import chisquare
from sklearn.metrics import adjusted_rand_score

from dataclasses import replace

from semid_pipeline import balanced, id_gates, kmeans, rqvae, semantic_ids as sid
from semid_pipeline.config import RQVAEConfig, SemanticIdConfig
from semid_pipeline.errors import SemidError
from semid_pipeline.model import semantic_fields
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
    c1, l1 = kmeans.kmeans(X, 8, 20, seed=3)
    c2, l2 = kmeans.kmeans(X, 8, 20, seed=3)
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
    paper = replace(SMALL, balanced_last_level=False)  # the paper's exact greedy method
    for scheme in ("v1", "rqkmeans"):
        res = sid.fit_semantic_ids(scheme=IdScheme(family=scheme, k=8), track_ids=ids(800), X=X, cfg=paper, artifact_dir=tmp_path / scheme)
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


@pytest.mark.parametrize("balanced_on", [True, False])
@pytest.mark.parametrize("scheme", ["v0", "v1", "rqkmeans"])
def test_cold_start_never_collides_or_changes_old_ids(scheme, balanced_on, tmp_path):
    X, _ = blobs(1000)
    old_ids = ids(900)
    cfg = replace(SMALL, balanced_last_level=balanced_on)
    res = sid.fit_semantic_ids(scheme=IdScheme(family=scheme, k=8), track_ids=old_ids, X=X[:900], cfg=cfg, artifact_dir=tmp_path)
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
    if scheme != "v0":  # copies of old content get the old prefix (and, greedy, the old tuple + a fresh tie)
        copies = added.set_index("track_id").loc[ids(100, "n")[50:]]
        src = existing.set_index("track_id").loc[old_ids[:50]]
        same = ["c1", "c2"] if balanced_on else ["c1", "c2", "c3"]
        assert (copies[same].to_numpy() == src[same].to_numpy()).all()


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


# ----------------------------------------------------------------------------------------------
# collision-aware IDs: balanced last level, tie cap, quality gate


def _collapsed_world(n=1200, n_same=400, dim=16, seed=0):
    """Blobs with ``n_same`` rows of one identical content vector (a planted collapse)."""
    X, _ = blobs(n, dim=dim, seed=seed)
    X[:n_same] = X[0]
    return X


@pytest.mark.parametrize("scheme", ["v1", "rqkmeans"])
def test_balanced_last_level_spreads_planted_duplicates(scheme, tmp_path):
    X = _collapsed_world()
    k = 16
    on = sid.fit_semantic_ids(scheme=IdScheme(family=scheme, k=k), track_ids=ids(len(X)), X=X, cfg=SMALL,
                              artifact_dir=tmp_path / "on")
    off = sid.fit_semantic_ids(scheme=IdScheme(family=scheme, k=k), track_ids=ids(len(X)), X=X,
                               cfg=replace(SMALL, balanced_last_level=False), artifact_dir=tmp_path / "off")
    assert on.metrics["balanced_last_level"] and not off.metrics["balanced_last_level"]
    assert off.metrics["max_tie"] >= 399  # the paper's method: one tuple, a counter to 399
    # balanced: the 400 copies share a prefix, so at most ceil(group / k) per code
    group = on.table.groupby(["c1", "c2"]).size().max()
    assert on.metrics["max_tie"] <= -(-group // k) - 1 < off.metrics["max_tie"]
    assert on.metrics["unique_tuple_share"] >= off.metrics["unique_tuple_share"]
    assert on.metrics["share_in_groups_over_2"] < off.metrics["share_in_groups_over_2"]
    for c in ("c1", "c2", "c3"):  # codebook sizes respected
        assert on.table[c].between(0, k - 1).all()
    assert sid.check_one_to_one(on.table)[0]


def test_balanced_prefix_is_the_greedy_prefix_and_deterministic():
    g = torch.Generator().manual_seed(0)
    books = torch.randn(3, 8, 4, generator=g)
    z = torch.randn(500, 4, generator=g)
    a = balanced.balanced_codes(z, books)
    b = balanced.balanced_codes(z.clone(), books.clone())
    np.testing.assert_array_equal(a, b)
    greedy = kmeans.residual_assign(z, books).numpy()
    np.testing.assert_array_equal(a[:, :2], greedy[:, :2])
    assert a.min() >= 0 and a.max() < 8
    df = pd.DataFrame(a, columns=["p1", "p2", "c"])
    per_code_max = df.groupby(["p1", "p2", "c"]).size().groupby(level=[0, 1]).max()
    group = df.groupby(["p1", "p2"]).size()
    cap = np.maximum(1, -(-group // 8))  # under every prefix, each code holds ≤ ceil(group / k) tracks
    assert (per_code_max <= cap.loc[per_code_max.index]).all()
    tuples = pd.Series(list(map(tuple, greedy)))
    alone = (tuples.map(tuples.value_counts()) == 1).to_numpy()
    assert alone.any() and (a[alone, 2] == greedy[alone, 2]).all()  # uncontested tracks keep their nearest code


def test_balanced_cold_start_prefers_free_codes(tmp_path):
    X, _ = blobs(600)
    scheme = IdScheme(family="rqkmeans", k=16)
    res = sid.fit_semantic_ids(scheme=scheme, track_ids=ids(500), X=X[:500], cfg=SMALL, artifact_dir=tmp_path)
    existing = res.table
    added = sid.assign_new_tracks(scheme=scheme, artifact_dir=tmp_path, existing=existing,
                                  new_track_ids=ids(20, "n"), X_new=X[:20])  # exact copies of old content
    src = existing.set_index("track_id").loc[ids(20)]
    new = added.set_index("track_id").loc[ids(20, "n")]
    assert (new[["c1", "c2"]].to_numpy() == src[["c1", "c2"]].to_numpy()).all()
    sizes = existing.groupby(["c1", "c2"]).size()
    n_new = src.groupby(["c1", "c2"]).size()
    roomy = np.array([sizes.get((a, b), 0) + n_new[(a, b)] <= 16 for a, b in zip(src["c1"], src["c2"])])  # prefix has room
    assert roomy.any()
    assert (new["c3"].to_numpy()[roomy] != src["c3"].to_numpy()[roomy]).all()  # took a free code instead
    assert (new["tie"].to_numpy()[roomy] == 0).all()
    combined = pd.concat([existing, added], ignore_index=True)
    assert sid.check_one_to_one(combined)[0]


def test_tie_table_is_capped_in_the_model_fields():
    n = 40
    table = pd.DataFrame({"track_id": ids(n), "c1": 0, "c2": 0, "tie": range(n)})
    fields, missing = semantic_fields(table, ids(n), k=4, max_tie_embeddings=16)
    codes, size = fields["tie"]
    assert missing == 0 and size == 16 and codes.max() == 16  # values 1..16 (0 = pad)
    assert (codes[1:][15:] == 16).all() and len(set(codes[1:16])) == 15  # ties 0..14 own rows, 15+ share one
    _, size_uncapped = semantic_fields(table, ids(n), k=4, max_tie_embeddings=None)[0]["tie"]
    assert size_uncapped == n
    q = sid.codebook_quality(table, 4, max_tie_embeddings=16)
    assert q["tie_table_rows"] == 16 and q["max_tie"] == n - 1 and q["share_in_groups_over_2"] == 1.0


def _with_ties(track_ids, codes):
    t = sid.make_table(track_ids, codes, np.zeros(len(track_ids)))
    t["tie"] = sid.add_tie_level(t["track_id"], codes)
    return t


def test_distinct_gate_fails_on_planted_collapse_and_names_groups():
    n = 300
    cat = pd.DataFrame({
        "track_id": ids(n),
        "title": [f"Song {i // 100} (Live)" if i % 2 else f"Song {i // 100} - Remaster" for i in range(n)],
        "artist_id": [f"artist{i // 100}" for i in range(n)],
    })
    g = np.arange(n) // 100  # three groups of 100 identical tuples
    collapsed = _with_ties(ids(n), np.stack([g, g, g, g], 1))
    ok, details = id_gates.check_distinct(collapsed, 64, min_unique_share=0.9, max_tie_limit=15, catalog=cat)
    assert not ok and details["share_gate_applied"] and details["max_tie"] == 99
    groups = details["largest_collision_groups"]
    assert [grp["size"] for grp in groups] == [100, 100, 100]
    first = groups[0]["tracks"][0]
    assert first["title"].startswith("Song 0") and first["artist_id"] == "artist0"
    healthy = _with_ties(ids(n), np.random.default_rng(0).integers(0, 64, (n, 4)))  # roomy random space
    assert id_gates.check_distinct(healthy, 64, catalog=cat)[0]
    ok, details = id_gates.check_distinct(collapsed, 64, max_tie_limit=1000)  # only the share fails
    assert not ok and details["unique_tuple_share"] == 0.0
    small_space = _with_ties(ids(n), np.stack([g, g], 1))
    ok, details = id_gates.check_distinct(small_space, 3, max_tie_limit=1000)  # k^L < 10 x tracks: share gate off
    assert ok and "not applied" in details["note"]


def test_id_quality_report_table_merge_and_figure(tmp_path):
    from semid_pipeline import id_quality_report as iqr
    from semid_pipeline.report import records_frame

    n = 200
    g = np.arange(n) // 50  # collapsed: 4 tuples of 50
    tables = {
        "v1-k64": _with_ties(ids(n), np.stack([g, g, g, g], 1)),
        "v0-k64": _with_ties(ids(n), np.random.default_rng(0).integers(0, 64, (n, 4))),
        "id": pd.DataFrame({"track_id": ids(n), "c1": range(n), "tie": 0}),
    }
    q = iqr.id_quality_table(tables, max_tie_embeddings=16).set_index("scheme_key")
    assert q.loc["v1-k64", "unique_tuple_share"] == 0.0 and q.loc["v1-k64", "max_tie"] == 49
    assert q.loc["v1-k64", "tie_table_rows"] == 16 and q.loc["id", "unique_tuple_share"] == 1.0
    assert q.loc["v0-k64", "unique_tuple_share"] > 0.9
    records = [{"partition_key": f"64|{key}", "test": {"auc": auc, "ci_lo": auc - 0.01, "ci_hi": auc + 0.01}}
               for key, auc in (("v1-k64", 0.55), ("v0-k64", 0.6), ("id", 0.62))]
    merged = iqr.merge_id_quality(records_frame(records), q.reset_index())
    row = merged.set_index("scheme_key").loc["v1-k64"]
    assert row["test_auc"] == 0.55 and row["max_tie"] == 49
    png = iqr.plot_auc_vs_unique_share(merged, tmp_path / "fig.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    for key, t in tables.items():
        sid.write_semantic_ids(con, IdScheme.parse(key), t)
    pd.testing.assert_frame_equal(iqr.id_quality_from_warehouse(con).set_index("scheme_key").sort_index(), q.sort_index(),
                                  check_dtype=False)
    con.close()


def test_v1_trains_on_a_seeded_sample_of_a_large_catalogue_and_codes_every_track(tmp_path, monkeypatch):
    assert sid.fit_sample(500, 500, seed=0) is None  # small catalogues: every track, as before
    rows = sid.fit_sample(1000, 300, seed=0)
    assert len(rows) == len(np.unique(rows)) == 300 and (np.diff(rows) > 0).all()
    np.testing.assert_array_equal(rows, sid.fit_sample(1000, 300, seed=0))
    assert not np.array_equal(rows, sid.fit_sample(1000, 300, seed=1))
    monkeypatch.setattr(sid, "RQVAE_MAX_FIT", 300)
    X, _ = blobs(n=1000)
    res = sid.fit_semantic_ids(scheme=IdScheme(family="v1", k=8), track_ids=ids(1000), X=X, cfg=SMALL,
                               artifact_dir=tmp_path / "v1")
    assert len(res.table) == 1000 and res.table["tie"].notna().all()
    assert sid._read_config(tmp_path / "v1")["fit_rows"] == 300
    again = sid.encode_with_artifact(tmp_path / "v1", X[:50])  # the frozen artifact codes any track
    assert again.shape == (50, SMALL.levels)
