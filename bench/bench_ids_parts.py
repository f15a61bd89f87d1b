"""Parts of ``bench_semantic_ids.py`` for collision-aware IDs (issue 11): balanced last-level cost,
metadata-only catalogue distinctness (text encoder speed: ``bench_text_encoders.py``). Each prints
a small table."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from metadata_world import metadata_catalog
from semid_pipeline import features, semantic_ids as sid
from semid_pipeline.config import FeaturesConfig, SemanticIdConfig
from semid_pipeline.schemes import IdScheme


def _print(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    keys = list(rows[0])
    print(" | ".join(f"{k:>12}" for k in keys))
    for r in rows:
        print(" | ".join(f"{v:>12}" if isinstance(v, str) else f"{v:>12.4g}" for v in r.values()))
    print(f"(load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)", flush=True)


def _fit(scheme: str, k: int, ids, X, cfg: SemanticIdConfig, d: Path) -> tuple[dict, float]:
    t = time.perf_counter()
    res = sid.fit_semantic_ids(scheme=IdScheme(family=scheme, k=k), track_ids=ids, X=X, cfg=cfg, artifact_dir=d)
    return res.metrics, time.perf_counter() - t


def balanced_part(X: np.ndarray, k: int = 256) -> None:
    """Fit + assign wall time, balanced vs greedy, for v1 and rqkmeans on the synthetic features."""
    ids = [f"t{i:07d}" for i in range(len(X))]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for scheme in ("rqkmeans", "v1"):
            times = {}
            for on in (False, True):
                cfg = SemanticIdConfig(balanced_last_level=on)
                m, dt = _fit(scheme, k, ids, X, cfg, Path(tmp) / f"{scheme}-{on}")
                times[on] = dt
                rows.append({"scheme": f"{scheme}-k{k}", "balanced": str(on), "fit+assign_s": dt,
                             "unique_share": m["unique_tuple_share"], "max_tie": m["max_tie"],
                             "ratio": dt / times[False]})
    _print(f"balanced last level: {len(X)} tracks × {X.shape[1]} features (aim ratio ≤ 1.5)", rows)


def _both_assignments(scheme: str, k: int, ids, X: np.ndarray, d: Path) -> list[tuple[bool, dict, float]]:
    """Fit ``scheme`` once (balanced off), then assign the last level both ways through the same
    frozen codebooks: the greedy table comes from the fit, the balanced one from ``balanced_codes``
    (identical to a fit with ``balanced_last_level = true``: same seed, same model)."""
    import torch

    from semid_pipeline import balanced, rqvae as rq

    cfg = SemanticIdConfig(balanced_last_level=False)
    m_off, fit_s = _fit(scheme, k, ids, X, cfg, d)
    t = time.perf_counter()
    if scheme == "v1":
        model = rq.RQVAE.load(d)
        codes = balanced.balanced_codes(model.latent(X), model.quantizer.codebooks.detach())
    else:
        codes = balanced.balanced_codes(X, torch.from_numpy(np.load(d / "codebooks.npz")["codebooks"]))
    assign_s = time.perf_counter() - t
    table = sid.make_table(ids, codes, sid.add_tie_level(ids, codes))
    m_on = sid.codebook_quality(table, k, max_tie_embeddings=16)
    return [(False, m_off, fit_s), (True, m_on, assign_s)]


def metadata_part(n: int, ks: list[int], *, cache: str | None = None, schemes=("v1", "rqkmeans"),
                  hashed: bool = True, text_encoders=("minilm", "minilm-static")) -> None:
    """Distinctness on a metadata-only catalogue: MiniLM / static text block vs hashed fallback, balanced on/off."""
    cat = metadata_catalog(n, seed=0)
    ids = cat["track_id"].tolist()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = Path(cache) if cache else Path(tmp) / "text_cache"
        encoders = {}
        for name in text_encoders:
            t = time.perf_counter()
            cfg = FeaturesConfig(text_encoder=name)
            emb = features.make_embedder(cfg, cache_dir)
            tf = features.FeatureTransform.fit(cat, cfg=cfg, embedder=emb)
            encoders[name] = tf.transform(cat)
            print(f"[metadata] {n} tracks: {name} features {encoders[name].shape} in {time.perf_counter() - t:.1f}s "
                  f"({emb.embedded if emb else 0} strings embedded); {tf.text_note}", flush=True)
        if hashed:
            encoders["hashed"] = features.FeatureTransform.fit(cat, cfg=FeaturesConfig(text_encoder="hashed")).transform(cat)
        distinct = {name: len(np.unique(X, axis=0)) / n for name, X in encoders.items()}
        for name, X in encoders.items():
            for scheme in schemes:
                for k in ks:
                    if name == "hashed" and k != ks[0]:
                        continue
                    for on, m, secs in _both_assignments(scheme, k, ids, X, Path(tmp) / f"{name}-{scheme}-{k}"):
                        rows.append({"features": name, "distinct_vec": distinct[name], "scheme": f"{scheme}-k{k}",
                                     "balanced": str(on), "unique_share": m["unique_tuple_share"],
                                     "max_tie": m["max_tie"], "grp>2_share": m["share_in_groups_over_2"],
                                     "tie_rows": m["tie_table_rows"], "secs": secs})
                        print(rows[-1], flush=True)
    _print(f"metadata-only catalogue, {n} tracks (done when v1-k256 balanced: unique ≥ 0.97, max tie ≤ 3; "
           "secs = fit for balanced False, balanced re-assignment for True)", rows)
