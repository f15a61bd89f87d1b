"""Semantic IDs: track → (c1..cL, tie) for the schemes of the paper, their quality, checks and I/O.

Schemes
  ``v1``        RQ-VAE on the content features (``rqvae.py``)
  ``v0``        uniform random L-tuples: the paper's control. Derived from sha256(seed, track_id),
                so a track's codes do not depend on which other tracks exist (cold start is free)
  ``rqkmeans``  residual k-means on the standardized features (no neural net)

Every scheme gets a final non-learned level ``tie``: 0 for the first track (in sorted track_id
order) with a given L-tuple, 1 for the next, … so (c1..cL, tie) is unique and reruns agree.
New tracks get IDs from content through the frozen encoder + codebooks, with ties after the
largest one taken (``assign_new_tracks``): no existing ID ever changes.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import balanced as bal
from . import kmeans as km
from . import rqvae as rq
from .config import SemanticIdConfig
from .determinism import deterministic
from .errors import EXAMPLES, ConfigError, SemidError
from .fileutil import atomic_write_json, read_json
from .id_store import (  # noqa: F401  (warehouse I/O lives in id_store.py; re-exported for callers)
    codebook_size, event_track_ids, has_semantic_ids, read_semantic_ids, semantic_id_table_hash, write_semantic_ids,
)
from .schemes import IdScheme, code_columns

BALANCED_SCHEMES = ("v1", "rqkmeans")  # families whose last level can be balanced (balanced.py)
RQKMEANS_MAX_FIT = 50_000  # rqkmeans fits on at most this many tracks, then assigns all
RQVAE_MAX_FIT = 200_000  # v1's RQ-VAE trains on at most this many tracks (seeded sample), then assigns all in batches
NEIGHBOURS = 10
NEIGHBOUR_SAMPLE = 5000


@dataclass(frozen=True)
class SemanticIdResult:
    table: pd.DataFrame  # track_id, c1..cL, tie (sorted by track_id)
    metrics: dict
    artifact_dir: Path
    fit_seconds: float


# ----------------------------------------------------------------------------------------------
# small helpers


def make_table(track_ids, codes: np.ndarray, tie: np.ndarray) -> pd.DataFrame:
    codes = np.asarray(codes, dtype=np.int64)
    df = pd.DataFrame({"track_id": pd.Series(list(track_ids), dtype=object)})
    for level in range(codes.shape[1]):
        df[f"c{level + 1}"] = codes[:, level]
    df["tie"] = np.asarray(tie, dtype=np.int64)
    return df


def add_tie_level(track_ids, codes: np.ndarray) -> np.ndarray:
    """Collision counter: 0 for the first track (sorted track_id) with a given tuple, 1 for the next, …

    Returned in the order of the inputs.
    """
    codes = np.asarray(codes, dtype=np.int64)  # (N, L)
    n = codes.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(np.asarray(list(track_ids), dtype=object).astype(str), kind="stable")  # sorted track_id
    _, group = np.unique(codes[order], axis=0, return_inverse=True)  # (N,) tuple id in sorted order
    group = group.reshape(-1)
    by_group = np.argsort(group, kind="stable")  # positions grouped, sorted-track order inside a group
    g_sorted = group[by_group]
    starts = np.r_[0, np.flatnonzero(np.diff(g_sorted)) + 1]
    run_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    rank = np.empty(n, dtype=np.int64)
    rank[by_group] = np.arange(n) - run_start
    tie = np.empty(n, dtype=np.int64)
    tie[order] = rank
    return tie


def v0_codes(track_ids, *, k: int, levels: int, seed: int) -> np.ndarray:
    """Uniform codes from sha256(seed, track_id): seeded, order-independent. (N, L)."""
    out = np.empty((len(track_ids), levels), dtype=np.int64)
    for i, t in enumerate(track_ids):
        digest = hashlib.sha256(f"semid-v0:{seed}:{t}".encode()).digest()
        words = np.frombuffer(digest, dtype="<u8", count=4)
        if levels > 4:  # extend the stream for unusual depths
            more = hashlib.sha512(digest).digest()
            words = np.concatenate([words, np.frombuffer(more, dtype="<u8")])
        out[i] = (words[:levels] % np.uint64(k)).astype(np.int64)
    return out


def _sorted_inputs(track_ids, X: np.ndarray | None) -> tuple[list[str], np.ndarray | None]:
    ids = [str(t) for t in track_ids]
    if len(set(ids)) != len(ids):
        raise SemidError("semantic IDs: track_ids are not unique")
    order = np.argsort(np.asarray(ids, dtype=object), kind="stable")
    ids = [ids[i] for i in order]
    if X is not None:
        X = np.asarray(X, dtype=np.float32)
        if X.shape[0] != len(order):
            raise SemidError(f"semantic IDs: {X.shape[0]} feature rows for {len(order)} track ids")
        X = X[order]
    return ids, X


def _write_config(d: Path, cfg: dict) -> None:
    atomic_write_json(d / "config.json", cfg, indent=2, sort_keys=True)


def _read_config(d: Path) -> dict:
    cfg = read_json(Path(d) / "config.json")
    if cfg is None:
        raise SemidError(f"no semantic-ID artifact at {d} (config.json missing): fit the scheme first")
    return cfg


# ----------------------------------------------------------------------------------------------
# fitting: one function per family


def _fit_id(ids, X, *, levels, seed, d, meta):
    """``id``: one code per track (c1 = its rank in sorted track_id order), no learned levels."""
    _write_config(d, {"format": "semid-id/1", **meta, "k": len(ids), "levels": 1})
    return np.arange(len(ids), dtype=np.int64)[:, None], None


def _fit_v0(ids, X, *, levels, seed, d, meta, k, cfg):
    codes = v0_codes(ids, k=k, levels=levels, seed=seed)
    _write_config(d, {"format": "semid-v0/1", **meta})
    np.savez(d / "codebooks.npz", codebooks=np.zeros((levels, 0, X.shape[1]), dtype=np.float32))
    return codes, None


def fit_sample(n: int, max_rows: int, seed: int) -> np.ndarray | None:
    """Sorted row indices of a seeded sample of ``max_rows`` of ``n`` rows (None: fit on all)."""
    if n <= max_rows:
        return None
    return np.sort(np.random.default_rng([int(seed), n]).choice(n, size=max_rows, replace=False))


def _fit_v1(ids, X, *, levels, seed, d, meta, k, cfg):
    rows = fit_sample(len(X), RQVAE_MAX_FIT, seed)  # a million-track catalogue trains on a sample
    if rows is not None:  # recorded in the artifact only when sampled (smaller catalogues: as before)
        meta["fit_rows"] = len(rows)
    model, history = rq.fit_rqvae(X if rows is None else X[rows], cfg=cfg.rqvae, codebook_size=k, levels=levels,
                                  seed=seed)
    if meta.get("balanced_last_level"):  # collision-aware last level on the encoder output (balanced.py)
        codes = bal.balanced_codes(model.latent(X), model.quantizer.codebooks.detach())
        recon = float(((model.decode_codes(codes) - torch.from_numpy(X)) ** 2).sum(1).mean())
    else:
        codes = model.encode_codes(X).numpy()
        recon = model.reconstruction_error(X)
    model.save(d, extra={**meta, "rqvae_config": rq.config_record(cfg.rqvae), "dead_code_resets": history["dead_code_resets"]})
    return codes, recon


def _fit_rqkmeans(ids, X, *, levels, seed, d, meta, k, cfg):
    g = torch.Generator().manual_seed(seed)
    xt = torch.from_numpy(X)
    fit_rows = xt if len(xt) <= RQKMEANS_MAX_FIT else xt[torch.randperm(len(xt), generator=g)[:RQKMEANS_MAX_FIT]]
    with deterministic():
        books, _ = km.residual_kmeans(fit_rows, levels=levels, k=k, iters=cfg.rqvae.kmeans_iters, seed=seed)
        balanced = meta.get("balanced_last_level")
        codes_t = torch.from_numpy(bal.balanced_codes(xt, books)) if balanced else km.residual_assign(xt, books)
    x_hat = sum(books[level][codes_t[:, level]] for level in range(levels))
    recon = float(((x_hat - xt) ** 2).sum(1).mean())
    _write_config(d, {"format": "semid-rqkmeans/1", **meta})
    np.savez(d / "codebooks.npz", codebooks=books.numpy())
    return codes_t.numpy(), recon


_FITTERS = {"v0": _fit_v0, "v1": _fit_v1, "rqkmeans": _fit_rqkmeans}  # sized families; ``id`` below


def fit_semantic_ids(
    *, scheme: IdScheme, track_ids: list[str], X: np.ndarray, cfg: SemanticIdConfig, artifact_dir: Path
) -> SemanticIdResult:
    """Fit one scheme on (track_ids, X) and save what it needs to extend later under ``artifact_dir``."""
    if scheme.family != "id" and scheme.family not in _FITTERS:
        raise ConfigError(f"ID scheme {scheme.key!r}: no fit for family {scheme.family!r}")
    ids, X = _sorted_inputs(track_ids, X)
    levels = cfg.levels
    d = Path(artifact_dir)
    d.mkdir(parents=True, exist_ok=True)
    meta = {"scheme": scheme.family, "k": scheme.k, "levels": int(levels), "seed": int(cfg.seed),
            "input_dim": int(X.shape[1]) if X is not None and X.ndim == 2 else 0}
    balanced = bool(cfg.balanced_last_level) and scheme.family in BALANCED_SCHEMES  # collision-aware last level
    if scheme.family in BALANCED_SCHEMES:
        meta["balanced_last_level"] = balanced
    t0 = time.perf_counter()
    if scheme.is_id:
        codes, recon = _fit_id(ids, X, levels=levels, seed=cfg.seed, d=d, meta=meta)
    else:
        codes, recon = _FITTERS[scheme.family](ids, X, levels=levels, seed=cfg.seed, d=d, meta=meta, k=int(scheme.k), cfg=cfg)
    fit_seconds = time.perf_counter() - t0
    tie = np.zeros(len(ids), dtype=np.int64) if scheme.is_id else add_tie_level(ids, codes)
    table = make_table(ids, codes, tie)
    metrics = codebook_quality(table, codebook_size(scheme, table), X=None if scheme.is_id else X, recon_error=recon,
                               max_tie_embeddings=cfg.max_tie_embeddings)
    metrics["balanced_last_level"] = balanced
    metrics["fit_seconds"] = fit_seconds
    return SemanticIdResult(table=table, metrics=metrics, artifact_dir=d, fit_seconds=fit_seconds)


def encode_with_artifact(artifact_dir: Path, X: np.ndarray, track_ids=None, *, existing_codes: np.ndarray | None = None
                         ) -> np.ndarray:
    """Codes (N, L) for content X through the FROZEN artifact (v0 needs track_ids and uses the
    seed it was fitted with, so a cold-start track gets the code it would have had at fit time).

    An artifact fitted with ``balanced_last_level`` assigns the last level under capacity, with
    ``existing_codes`` (M, L) (IDs already given out) occupying it: new tracks prefer codes still
    free under their prefix, existing IDs are never touched.
    """
    d = Path(artifact_dir)
    meta = _read_config(d)
    scheme = meta["scheme"]
    if scheme == "v0":
        return v0_codes([str(t) for t in track_ids], k=meta["k"], levels=meta["levels"], seed=meta["seed"])
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != meta["input_dim"]:
        raise SemidError(f"{d}: expected features of dim {meta['input_dim']}, got shape {X.shape}")
    if len(X) == 0:
        return np.zeros((0, meta["levels"]), dtype=np.int64)
    balanced = bool(meta.get("balanced_last_level", False))
    if scheme == "v1":
        model = rq.RQVAE.load(d)
        if balanced:
            return bal.balanced_codes(model.latent(X), model.quantizer.codebooks.detach(), existing_codes=existing_codes)
        return model.encode_codes(X).numpy()
    books = torch.from_numpy(np.load(d / "codebooks.npz")["codebooks"])
    if balanced:
        return bal.balanced_codes(X, books, existing_codes=existing_codes)
    return km.residual_assign(X, books).numpy()


def _fresh_ids(existing: pd.DataFrame, ids: list[str]) -> tuple[list[str], dict[str, int]]:
    """Sorted ids not yet in ``existing`` and their first position in ``ids``."""
    known = set(existing["track_id"].astype(str))
    fresh_pos: dict[str, int] = {}
    for i, t in enumerate(ids):
        if t not in known and t not in fresh_pos:
            fresh_pos[t] = i
    return sorted(fresh_pos), fresh_pos


def _extend_codes(scheme: IdScheme, artifact_dir: Path, existing: pd.DataFrame, cols: list[str], fresh, X_f):
    """(codes, tie) of fresh tracks: ``id`` takes the next free rows; other families encode through
    the frozen artifact, ties continuing after the largest one taken for each L-tuple."""
    if scheme.is_id:
        start = int(existing["c1"].max()) + 1 if len(existing) else 0
        return np.arange(start, start + len(fresh), dtype=np.int64)[:, None], np.zeros(len(fresh), dtype=np.int64)
    meta = _read_config(Path(artifact_dir))
    if meta["scheme"] != scheme.family:
        raise SemidError(f"{artifact_dir}: artifact is scheme {meta['scheme']!r}, asked for {scheme.key!r}")
    given = existing[cols].to_numpy(dtype=np.int64) if len(existing) else None  # occupies balanced capacity
    codes = encode_with_artifact(Path(artifact_dir), X_f, fresh, existing_codes=given)
    if codes.shape[1] != len(cols):
        raise SemidError(f"artifact has {codes.shape[1]} levels, existing table {len(cols)}")
    return codes, continuing_ties(existing, cols, fresh, codes)


def continuing_ties(existing: pd.DataFrame, cols: list[str], track_ids, codes: np.ndarray) -> np.ndarray:
    """Ties of new tracks (N,): after the largest tie ``existing`` already took for their tuple,
    in track_id order among the new tracks sharing one. Existing ties never change."""
    next_tie = existing.groupby(cols, sort=False)["tie"].max().add(1).to_dict() if len(existing) else {}
    local = add_tie_level(track_ids, codes)  # rank among the new tracks sharing a tuple
    keys = [tuple(int(v) for v in row) if len(cols) > 1 else int(row[0]) for row in codes]
    return np.array([next_tie.get(key, 0) + r for key, r in zip(keys, local)], dtype=np.int64)


def assign_new_tracks(
    *, scheme: IdScheme, artifact_dir: Path, existing: pd.DataFrame, new_track_ids, X_new: np.ndarray | None
) -> pd.DataFrame:
    """IDs for new tracks from content alone (``id``: the next free rows), through the frozen artifact.

    No existing ID changes and no two tracks share one. Tracks already in ``existing`` come back
    unchanged. Returns rows for ``new_track_ids`` (sorted by track_id).
    """
    cols = code_columns(existing)
    ids = [str(t) for t in new_track_ids]
    X_new = np.asarray(X_new, dtype=np.float32) if X_new is not None else None
    if X_new is not None and X_new.shape[0] != len(ids):
        raise SemidError(f"assign_new_tracks: {X_new.shape[0]} feature rows for {len(ids)} track ids")
    fresh, fresh_pos = _fresh_ids(existing, ids)
    old = existing[existing["track_id"].astype(str).isin(set(ids))][["track_id", *cols, "tie"]]
    if fresh:
        X_f = X_new[[fresh_pos[t] for t in fresh]] if X_new is not None else None
        codes, tie = _extend_codes(scheme, artifact_dir, existing, cols, fresh, X_f)
        out = pd.concat([old, make_table(fresh, codes, tie)], ignore_index=True)
    else:
        out = old.copy()
    out = out.reset_index(drop=True)
    out["track_id"] = pd.Series([str(t) for t in out["track_id"]], dtype=object)
    return out.sort_values("track_id", kind="stable").reset_index(drop=True).astype({c: "int64" for c in [*cols, "tie"]})


# ----------------------------------------------------------------------------------------------
# quality and checks


def _entropy_bits(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum()) if len(p) else 0.0


def codebook_quality(
    table: pd.DataFrame, k: int, X: np.ndarray | None = None, recon_error: float | None = None, *, seed: int = 0,
    max_tie_embeddings: int | None = None,
) -> dict:
    """Per-level utilization / entropy (dicts keyed c1..cL), unique-tuple share, max tie,
    share of tracks in collision groups larger than 2, the model's tie-table rows (max tie + 1,
    capped at ``max_tie_embeddings``), reconstruction error, and neighbour preservation against
    random codes of the same k.

    ``X`` rows must be aligned with ``table`` rows.
    """
    cols = code_columns(table)
    n = len(table)
    codes = table[cols].to_numpy(dtype=np.int64) if n else np.zeros((0, len(cols)), dtype=np.int64)
    out: dict = {"n_tracks": int(n), "k": int(k), "levels": len(cols), "utilization": {}, "entropy_bits": {}}
    for i, c in enumerate(cols):
        counts = np.bincount(codes[:, i], minlength=k) if n else np.zeros(k)
        out["utilization"][c] = float((counts > 0).sum() / max(k, 1))
        out["entropy_bits"][c] = _entropy_bits(counts)
    if n:
        _, inv, cnt = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
        out["unique_tuple_share"] = float((cnt[inv.reshape(-1)] == 1).mean())
        out["distinct_tuples"] = int(len(cnt))
        out["share_in_groups_over_2"] = float((cnt[inv.reshape(-1)] > 2).mean())
    else:
        out["unique_tuple_share"], out["distinct_tuples"], out["share_in_groups_over_2"] = 1.0, 0, 0.0
    out["max_tie"] = int(table["tie"].max()) if n else 0
    out["tie_table_rows"] = tie_table_rows(out["max_tie"], max_tie_embeddings)
    out["reconstruction_error"] = None if recon_error is None else float(recon_error)
    out["neighbour_preservation"] = None
    out["neighbour_preservation_random"] = None
    if X is not None and n > NEIGHBOURS + 1 and len(X) == n:
        from sklearn.neighbors import NearestNeighbors

        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(n, size=min(n, NEIGHBOUR_SAMPLE), replace=False))
        xs = np.asarray(X, dtype=np.float32)[idx]
        nn_idx = NearestNeighbors(n_neighbors=NEIGHBOURS + 1).fit(xs).kneighbors(xs, return_distance=False)[:, 1:]
        first = codes[idx, 0]
        out["neighbour_preservation"] = float((first[nn_idx] == first[:, None]).mean())
        rand = rng.integers(0, k, size=len(idx))
        out["neighbour_preservation_random"] = float((rand[nn_idx] == rand[:, None]).mean())
    return out


def tie_table_rows(max_tie: int, max_tie_embeddings: int | None) -> int:
    """Rows of the model's tie embedding table: max tie + 1, capped (``model.semantic_fields``)."""
    rows = int(max_tie) + 1
    return rows if not max_tie_embeddings else min(rows, int(max_tie_embeddings))


def check_one_to_one(table: pd.DataFrame) -> tuple[bool, dict]:
    """track_id unique AND (c1..cL, tie) unique."""
    cols = [*code_columns(table), "tie"]
    dup_tracks = table["track_id"][table["track_id"].duplicated()].astype(str).tolist()
    dup_ids = table[table.duplicated(cols, keep=False)]
    details = {
        "tracks": int(len(table)),
        "duplicate_track_ids": int(len(dup_tracks)),
        "duplicate_track_id_examples": dup_tracks[:EXAMPLES],
        "tracks_sharing_an_id": int(len(dup_ids)),
        "shared_id_examples": dup_ids.head(EXAMPLES).astype(str).to_dict("records"),
    }
    return (not dup_tracks and dup_ids.empty), details


def check_coverage(table: pd.DataFrame, event_track_ids) -> tuple[bool, dict]:
    """Every track with events has an ID."""
    have = set(table["track_id"].astype(str))
    events = sorted({str(t) for t in event_track_ids})
    missing = [t for t in events if t not in have]
    return not missing, {"event_tracks": len(events), "missing": len(missing), "missing_examples": missing[:EXAMPLES]}


def check_collapse(table: pd.DataFrame, k: int, n_tracks: int, min_util: float = 0.9) -> tuple[bool, dict]:
    """Level-1 utilization ≥ ``min_util`` whenever k ≤ n_tracks / 4 (trivially passes otherwise)."""
    cols = code_columns(table)
    used = int(table[cols[0]].nunique()) if len(table) and cols else 0
    util = used / max(k, 1)
    details = {"k": int(k), "n_tracks": int(n_tracks), "level1_used_codes": used, "level1_utilization": util, "min_utilization": min_util}
    if k > n_tracks / 4:
        details["note"] = f"not applied: k={k} > n_tracks/4={n_tracks / 4:g} (too few tracks to fill the codebook)"
        return True, details
    return util >= min_util, details


# ----------------------------------------------------------------------------------------------
# warehouse I/O
