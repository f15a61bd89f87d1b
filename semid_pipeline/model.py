"""SASRec-style causal transformer over (track, feedback) tokens with a pluggable track encoder.

Read top to bottom, like nanoGPT's model.py:

1. ``TrackEncoder``   a track's vector is a SUM over fields (song id, semantic-ID levels c1..cL, tie,
                       artist, genre): vec(i) = Σ_f E_f[codes_f[i]]. One encoder is shared by the
                       input tokens and the output scoring (SASRec's tied item table).
2. ``CausalSelfAttention`` / ``MLP`` / ``Block``   pre-LN transformer block.
3. ``SASRec``         token = track vec + feedback embedding + learned position; causal blocks;
                       final LayerNorm; score(candidate) = <hidden, track vec(candidate)>
                       [+ summed code biases] [+ w · z(candidate): the popularity prior
                       (``track_prior``), set after training, never trained; feedback scores
                       only, not the top-k]. The other terms
                       chosen on validation (``score_terms``) keep their buffers here too and are
                       added by ``scoring`` (they read the history, which ``score`` does not see).

Padding: sequences are LEFT-padded with track index 0; positions are counted from the right (the
last token always has position max_len-1), and padded keys are masked out of attention, so a
sequence's outputs do not depend on how much padding its batch needs.

All field tables live in ONE parameter ``table`` (rows: [pad, field1 codes, field2 codes, ...]) and
a track lookup is one ``F.embedding_bag(mode="sum")`` over its per-field row indices: a single
kernel whatever the number of fields, and never more rows touched than the tracks asked for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from .schemes import IdScheme, code_columns

# ------------------------------------------------------------------------------------------------
# track representation


class TrackEncoder(nn.Module):
    """Sum-of-fields track embedding.

    ``fields``: name → (codes, n_codes) where ``codes`` is an int array of shape (N+1,) with values
    in 1..n_codes (0 = missing / padding; row 0 of the vocabulary is padding and must be 0).
    Parameters: one table of 1 + Σ_f n_codes rows × hidden (row 0 is a shared, frozen zero pad).
    """

    def __init__(self, *, fields: Mapping[str, tuple[np.ndarray | torch.Tensor, int]], hidden: int,
                 init_std: float = 0.02, with_bias: bool = False) -> None:
        super().__init__()
        assert fields, "a TrackEncoder needs at least one field"
        self.hidden = hidden
        self.field_names: list[str] = list(fields)
        self.field_sizes: dict[str, int] = {}
        offsets, cols, off = {}, [], 1  # row 0 = shared pad
        n_tokens = None
        for name, (codes, n_codes) in fields.items():
            codes = torch.as_tensor(np.asarray(codes), dtype=torch.long)
            assert codes.ndim == 1, f"field {name}: codes must be (N+1,), got {tuple(codes.shape)}"
            n_tokens = codes.shape[0] if n_tokens is None else n_tokens
            assert codes.shape[0] == n_tokens, f"field {name}: {codes.shape[0]} rows, expected {n_tokens}"
            assert int(codes[0]) == 0, f"field {name}: the padding track (index 0) must have code 0"
            assert 0 <= int(codes.min()) and int(codes.max()) <= n_codes, f"field {name}: codes outside 0..{n_codes}"
            self.field_sizes[name] = int(n_codes)
            offsets[name] = off
            cols.append(torch.where(codes > 0, codes + off - 1, torch.zeros_like(codes)))
            off += int(n_codes)
        self.field_offsets: dict[str, int] = offsets
        self.n_tokens = int(n_tokens)  # N + 1
        self.register_buffer("codes", torch.stack(cols, dim=1))  # (N+1, F) rows of `table`, 0 = pad
        self.table = nn.Parameter(torch.empty(off, hidden))  # (1 + Σ n_f, h)
        nn.init.normal_(self.table, mean=0.0, std=init_std / math.sqrt(len(cols)))
        with torch.no_grad():
            self.table[0].zero_()
        # One scalar per table row: a track's bias is the SUM of its fields' biases (per track for
        # `id`; per codeword summed over levels + tie; per artist / genre with song decomposition).
        # Popularity is the strongest model-free signal, and a dot product alone expresses it badly.
        self.bias = nn.Parameter(torch.zeros(off)) if with_bias else None

    @property
    def has_bias(self) -> bool:
        return self.bias is not None

    def track_bias(self, track_idx: torch.Tensor) -> torch.Tensor:
        """track_idx (...,) → (...,) summed field biases (zeros without biases)."""
        if self.bias is None:
            return torch.zeros(track_idx.shape, device=track_idx.device)
        rows = self.codes[track_idx.reshape(-1)]  # (M, F)
        out = F.embedding_bag(rows, self.bias.unsqueeze(1), mode="sum", padding_idx=0)  # (M, 1)
        return out.view(track_idx.shape)

    def forward(self, track_idx: torch.Tensor) -> torch.Tensor:
        """track_idx (...,) long → (..., h); touches only the rows of the tracks asked for."""
        rows = self.codes[track_idx.reshape(-1)]  # (M, F)
        out = F.embedding_bag(rows, self.table, mode="sum", padding_idx=0)  # (M, h)
        return out.view(*track_idx.shape, self.hidden)

    def all_embeddings(self) -> torch.Tensor:
        """(N+1, h) vectors of every track (row 0 = padding = 0)."""
        return self(torch.arange(self.n_tokens, device=self.codes.device))

    def field_tables(self) -> dict[str, torch.Tensor]:
        """name → (n_f + 1, h): row 0 is a zero pad row, rows 1..n_f the field's code embeddings."""
        pad = self.table[:1].detach() * 0
        return {
            name: torch.cat([pad, self.table[off: off + self.field_sizes[name]]], dim=0)
            for name, off in self.field_offsets.items()
        }

    def field_biases(self) -> dict[str, torch.Tensor]:
        """name → (n_f + 1,) biases of the field's codes (row 0 = pad = 0); zeros without biases."""
        out = {}
        for name, off in self.field_offsets.items():
            n = self.field_sizes[name]
            b = self.bias[off: off + n].detach() if self.bias is not None else self.table.new_zeros(n).detach()
            out[name] = torch.cat([b.new_zeros(1), b])
        return out

    def scoring_tables(self) -> dict[str, torch.Tensor]:
        """name → (n_f + 1, h + 1): each code's embedding with its bias as an extra column. With
        ``SASRec.scoring_hidden`` ([h, 1]): Σ_f <[h, 1], [E_f, b_f]> == <h, vec(i)> + bias(i) exactly."""
        tables, biases = self.field_tables(), self.field_biases()
        return {name: torch.cat([tables[name], biases[name].unsqueeze(1)], dim=1) for name in tables}

    def field_codes(self) -> dict[str, torch.Tensor]:
        """name → (N+1,) long indices into ``field_tables()[name]`` (0 = pad). Σ_f field_tables()[f][
        field_codes()[f]] == all_embeddings(): score each field's codes once (L·k·h), gather-sum (N·L)."""
        out = {}
        for j, (name, off) in enumerate(self.field_offsets.items()):
            col = self.codes[:, j]
            out[name] = torch.where(col > 0, col - off + 1, torch.zeros_like(col))
        return out

    def num_parameters(self) -> int:
        return self.table.numel() + (self.bias.numel() if self.bias is not None else 0)


def semantic_fields(id_table: pd.DataFrame, track_ids: Sequence[str], *, k: int | None = None,
                    max_tie_embeddings: int | None = None,
                    ) -> tuple[dict[str, tuple[np.ndarray, int]], int]:
    """Align a semantic-ID table (track_id, c1..cL[, tie]) to the vocabulary.

    ``track_ids[i]`` is vocabulary index i+1. Codes c_l in 0..k-1 become 1..k (0 = pad); tie values
    0..max_tie become 1..max_tie+1. Returns (fields, number of vocabulary tracks missing from the table).
    The tie table is capped at ``max_tie_embeddings`` rows (``[semantic_ids]``; None = uncapped, the
    paper's): ties ≥ cap − 1 share the last row (a collapsed tokenizer grows no meaningless rows)."""
    levels = code_columns(id_table.columns)
    if not levels:
        raise ValueError(f"semantic-ID table has no c1..cL columns (columns: {list(id_table.columns)})")
    tbl = id_table.drop_duplicates("track_id")
    pos = pd.Index(tbl["track_id"].astype(str).to_numpy(dtype=object)).get_indexer(pd.Index(np.asarray(track_ids, dtype=object)))
    found = pos >= 0
    fields: dict[str, tuple[np.ndarray, int]] = {}
    for col in levels + (["tie"] if "tie" in tbl.columns else []):
        vals = tbl[col].to_numpy(dtype=np.int64)
        if vals.size and vals.min() < 0:
            raise ValueError(f"semantic-ID column {col} has negative codes")
        if col == "tie" and max_tie_embeddings:  # capped tie table
            vals = np.minimum(vals, int(max_tie_embeddings) - 1)
        size = int(vals.max()) + 1 if vals.size else 1
        if col != "tie" and k is not None:
            if size > k:
                raise ValueError(f"semantic-ID column {col} has code {size - 1} >= codebook size {k}")
            size = k
        codes = np.zeros(len(track_ids) + 1, dtype=np.int64)
        codes[1:][found] = vals[pos[found]] + 1
        fields[col] = (codes, size)
    return fields, int((~found).sum())


def build_track_encoder(*, scheme: IdScheme | str, hidden: int, n_tracks: int,
                        track_ids: Sequence[str] | None = None, id_table: pd.DataFrame | None = None,
                        artist: np.ndarray | None = None, n_artists: int = 0,
                        genre: np.ndarray | None = None, n_genres: int = 0,
                        song_decomposition: bool = False, max_tie_embeddings: int | None = None,
                        with_track_field: bool = False, with_bias: bool = False) -> TrackEncoder:
    """The encoder of an ID scheme: ``id`` (one row per track) or a semantic-ID scheme (codes from
    ``id_table``; the tie table capped at ``max_tie_embeddings`` rows). ``song_decomposition``: + the
    ``artist`` and ``genre`` fields when given. ``with_track_field``: + a per-track field (the hybrid
    "ID + summed codewords": codes share signal across similar tracks, the track row keeps the
    identity of head tracks whose codes collide). ``with_bias``: one scalar per code."""
    scheme = scheme if isinstance(scheme, IdScheme) else IdScheme.parse(scheme)
    fields: dict[str, tuple[np.ndarray, int]] = {}
    if scheme.is_id:
        fields["track"] = (np.arange(n_tracks + 1, dtype=np.int64), n_tracks)
    else:
        if id_table is None or track_ids is None:
            raise ValueError(f"ID scheme {scheme.key!r} needs id_table and track_ids")
        sem, _missing = semantic_fields(id_table, track_ids, k=scheme.k, max_tie_embeddings=max_tie_embeddings)
        fields.update(sem)
        if with_track_field or scheme.hybrid:
            fields["track"] = (np.arange(n_tracks + 1, dtype=np.int64), n_tracks)
    if song_decomposition:
        if artist is not None and n_artists > 0:
            fields["artist"] = (np.asarray(artist, dtype=np.int64), int(n_artists))
        if genre is not None and n_genres > 0:
            fields["genre"] = (np.asarray(genre, dtype=np.int64), int(n_genres))
    return TrackEncoder(fields=fields, hidden=hidden, with_bias=with_bias)


# ------------------------------------------------------------------------------------------------
# transformer


class Dropout(nn.Dropout):
    """``nn.Dropout`` with its CPU mask drawn by ``torch.rand`` (the same distribution; forward +
    backward 2.5× faster than the native ``bernoulli_`` at (128, 400, 64), 2 threads; README)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or self.p >= 1 or x.device.type != "cpu":
            return super().forward(x)
        return x * (torch.rand_like(x) >= self.p).to(x.dtype).mul_(1.0 / (1.0 - self.p))


class CausalSelfAttention(nn.Module):
    def __init__(self, *, hidden: int, heads: int, dropout: float, attention_dropout: float | None = None) -> None:
        super().__init__()
        assert hidden % heads == 0, f"hidden {hidden} not divisible by heads {heads}"
        self.heads = heads
        self.dropout = dropout if attention_dropout is None else attention_dropout  # on the attention probabilities
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.resid_drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None, *, last_only: bool = False) -> torch.Tensor:
        """x (B, T, h) → (B, T, h); with ``last_only`` the last position's output alone, (B, 1, h)."""
        B, T, C = x.shape  # (B, T, h)
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 × (B, T, h)
        if last_only:  # the last query attends to every key: causality is implicit
            q = q[:, -1:]
        Tq = q.shape[1]
        q = q.view(B, Tq, self.heads, C // self.heads).transpose(1, 2)  # (B, nh, Tq, hs)
        k = k.view(B, T, self.heads, C // self.heads).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.heads, C // self.heads).transpose(1, 2)
        p = self.dropout if self.training else 0.0
        if attn_mask is None:  # no padding in the batch: the fast causal kernel
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=not last_only)
        else:  # (B, 1, T, T) bool: causal AND (key is real OR key is the query itself)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask[:, :, T - Tq:], dropout_p=p)
        y = y.transpose(1, 2).contiguous().view(B, Tq, C)  # (B, Tq, h)
        return self.resid_drop(self.proj(y))


class MLP(nn.Module):
    def __init__(self, *, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc = nn.Linear(hidden, 4 * hidden)
        self.proj = nn.Linear(4 * hidden, hidden)
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, *, hidden: int, heads: int, dropout: float, attention_dropout: float | None = None) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(hidden)
        self.attn = CausalSelfAttention(hidden=hidden, heads=heads, dropout=dropout, attention_dropout=attention_dropout)
        self.ln_2 = nn.LayerNorm(hidden)
        self.mlp = MLP(hidden=hidden, dropout=dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None, *, last_only: bool = False) -> torch.Tensor:
        a = self.attn(self.ln_1(x), attn_mask, last_only=last_only)  # (B, T or 1, h)
        x = (x[:, -1:] if last_only else x) + a
        x = x + self.mlp(self.ln_2(x))
        return x


def block_parameter_count(hidden: int) -> int:
    """One Block: 2 LayerNorms (4h) + qkv (3h²+3h) + proj (h²+h) + MLP (4h²+4h + 4h²+h) = 12h² + 13h."""
    return 12 * hidden * hidden + 13 * hidden


def semantic_field_sizes(*, k: int, levels: int, max_tie: int, max_tie_embeddings: int | None = None) -> dict[str, int]:
    """Field sizes of a semantic-ID encoder by the formula: L levels of k codes + a tie table of
    min(max_tie + 1, max_tie_embeddings) rows (the input ``expected_parameter_count`` wants)."""
    tie_rows = int(max_tie) + 1
    if max_tie_embeddings:
        tie_rows = min(tie_rows, int(max_tie_embeddings))
    return {f"c{i}": int(k) for i in range(1, levels + 1)} | {"tie": tie_rows}


def expected_parameter_count(*, field_sizes: Mapping[str, int] | Sequence[int], hidden: int, layers: int,
                             max_len: int, with_bias: bool = False) -> dict[str, int]:
    """Trainable parameters of ``SASRec`` (documented formula, checked by tests).

    track_representation = (1 + Σ_f n_f) · h         one shared zero pad row + every field's codes
        id:            n_track = N                     → (N + 1) · h
        semantic:      L levels of k codes + tie (min(max_tie + 1, max_tie_embeddings) values: ties
                       beyond the cap share one row: ``semantic_field_sizes``) [+ artist A + genre G]
        with_bias:     + (1 + Σ_f n_f) biases (one scalar per row, the pad row included)
    other = 2h (feedback) + max_len·h (positions) + layers · (12h² + 13h) + 2h (final LayerNorm)
    (the popularity prior, w and its per-track z, is a buffer, not a parameter)
    """
    sizes = list(field_sizes.values()) if isinstance(field_sizes, Mapping) else list(field_sizes)
    track = (1 + sum(int(s) for s in sizes)) * (hidden + (1 if with_bias else 0))
    other = 2 * hidden + max_len * hidden + layers * block_parameter_count(hidden) + 2 * hidden
    return {"total": track + other, "track_representation": track, "other": other}


class SASRec(nn.Module):
    def __init__(self, *, encoder: TrackEncoder, hidden: int, layers: int, heads: int, max_len: int,
                 dropout: float, attention_dropout: float | None = None, use_sequence: bool = True,
                 prior_tokens: int = 0, affinity_dims: int = 0, memory_tokens: int = 0, personal_taste: bool = False) -> None:
        super().__init__()
        assert encoder.hidden == hidden, f"encoder hidden {encoder.hidden} != model hidden {hidden}"
        self.hidden = hidden
        # use_sequence=False is the bias-only diagnostic: the hidden state is 0, so a score is the
        # candidate's bias alone (how much a representation gets from popularity, no sequence).
        self.use_sequence = use_sequence
        self.max_len = max_len
        self.encoder = encoder
        self.feedback_emb = nn.Embedding(2, hidden)  # 0 = negative, 1 = positive
        self.pos_emb = nn.Embedding(max_len, hidden)  # counted from the right: last token = max_len-1
        self.drop = Dropout(dropout)
        blk = dict(hidden=hidden, heads=heads, dropout=dropout, attention_dropout=attention_dropout)
        self.blocks = nn.ModuleList([Block(**blk) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(hidden)
        # popularity prior (``track_prior``): + prior_weight · prior_logit[candidate]; buffers, never trained: w = 0 until set
        if prior_tokens:
            self.register_buffer("prior_logit", torch.zeros(prior_tokens))
            self.register_buffer("prior_weight", torch.zeros(()))
        else:
            self.prior_logit = self.prior_weight = None
        # content affinity (``content_affinity``): + a₊·cos(v, liked) − a₋·cos(v, disliked), v the
        # content rows of the track's codes (rows of encoder.table × d); buffers, a = 0 until chosen
        if affinity_dims:
            self.register_buffer("affinity_table", torch.zeros(encoder.table.shape[0], affinity_dims))
            self.register_buffer("affinity_weight", torch.zeros(2))
        else:
            self.affinity_table = self.affinity_weight = None
        assert affinity_dims or not personal_taste, "the personal taste reads the content affinity's rows"
        self.taste_weight = nn.Buffer(torch.zeros(())) if personal_taste else None  # + b · û·β (personal taste)
        # listener memory (``listener_memory``): + r_t·m_track + r_a·m_artist; buffers, r = 0 until chosen
        if memory_tokens:
            self.register_buffer("memory_artist", torch.zeros(memory_tokens, dtype=torch.long))  # 0 = none
            self.register_buffer("memory_weight", torch.zeros(2))
        else:
            self.memory_artist = self.memory_weight = None
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):  # nanoGPT: scaled init of residual projections
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * layers))
            elif p.ndim == 2 and not name.startswith("encoder."):
                nn.init.normal_(p, mean=0.0, std=0.02)
            elif name.endswith("bias") and not name.startswith("encoder."):  # the encoder inits its own
                nn.init.zeros_(p)

    @property
    def has_prior(self) -> bool:
        return self.prior_logit is not None

    @torch.no_grad()
    def set_prior(self, z: np.ndarray | torch.Tensor, weight: float) -> None:
        """Copy in the (N+1,) per-track z (``track_prior.prior_logits``) and its weight w."""
        self.prior_logit.copy_(torch.as_tensor(z, dtype=torch.float32))  # NumPy, or a tensor on any device
        self.prior_weight.fill_(float(weight))

    @property
    def has_affinity(self) -> bool:
        return self.affinity_table is not None

    @torch.no_grad()
    def set_affinity(self, *, table: torch.Tensor | None = None, weights: Sequence[float] | None = None,
                     taste: float | None = None) -> None:
        """Copy in the content rows (``content_affinity.field_table``), (a₊, a₋) and / or the taste's b."""
        if table is not None:
            self.affinity_table.copy_(torch.as_tensor(table, dtype=torch.float32))
        if weights is not None:
            self.affinity_weight.copy_(torch.as_tensor([float(x) for x in weights]))
        if taste is not None:
            self.taste_weight.fill_(float(taste))

    @property
    def has_memory(self) -> bool:
        return self.memory_weight is not None

    @property
    def has_terms(self) -> bool:
        """Whether the score carries terms chosen on validation (prior, affinity, memory)."""
        return self.has_prior or self.has_affinity or self.has_memory

    @torch.no_grad()
    def set_memory(self, *, artist: np.ndarray | None = None, weights: Sequence[float] | None = None) -> None:
        """Copy in the (N+1,) track → artist map (``listener_memory.artist_map``) and / or (r_t, r_a)."""
        if artist is not None:
            self.memory_artist.copy_(torch.as_tensor(np.asarray(artist, dtype=np.int64)))
        if weights is not None:
            self.memory_weight.copy_(torch.as_tensor([float(x) for x in weights]))

    def affinity_vectors(self, track_idx: torch.Tensor) -> torch.Tensor:
        """track_idx (...,) → (..., d) the content each track's codes say (Σ of its fields' rows)."""
        rows = self.encoder.codes[track_idx.reshape(-1)]  # (M, F)
        out = F.embedding_bag(rows, self.affinity_table, mode="sum", padding_idx=0)  # (M, d)
        return out.view(*track_idx.shape, self.affinity_table.shape[1])

    def prior(self, track_idx: torch.Tensor) -> torch.Tensor:
        """(...,) → (...,) w · z of each track (zeros without a prior)."""
        if self.prior_logit is None:
            return torch.zeros(track_idx.shape, device=track_idx.device)
        return self.prior_weight * self.prior_logit[track_idx]

    def forward(self, track_idx: torch.Tensor, feedback: torch.Tensor, *,
                track_vecs: torch.Tensor | None = None, last_only: bool = False) -> torch.Tensor:
        """track_idx (B, T) long, left-padded with 0; feedback (B, T) in {0, 1} → hidden (B, T, h).

        ``track_vecs`` (B, T, h): ``encoder(track_idx)`` when the caller already has it (training
        reuses the window's vectors for the next-event targets). ``last_only``: the hidden state
        after the last token alone, (B, 1, h) (scoring a later period needs nothing else): the last
        block then computes one query and one MLP row per sequence.
        """
        B, T = track_idx.shape
        assert T <= self.max_len, f"sequence length {T} > max_len {self.max_len}"
        if not self.use_sequence:
            return torch.zeros(B, 1 if last_only else T, self.hidden, device=track_idx.device)
        valid = track_idx > 0  # (B, T)
        pos = torch.arange(self.max_len - T, self.max_len, device=track_idx.device)  # (T,)
        tok = self.encoder(track_idx) if track_vecs is None else track_vecs  # (B, T, h)
        x = tok + self.feedback_emb(feedback.long().clamp(0, 1)) + self.pos_emb(pos)  # (B, T, h)
        x = self.drop(x * valid.unsqueeze(-1).to(x.dtype))
        attn_mask = None
        if not bool(valid.all()):
            causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()  # (T, T)
            eye = torch.eye(T, dtype=torch.bool, device=x.device)  # a padded query sees itself: no NaN
            attn_mask = (causal & (valid[:, None, :] | eye)).unsqueeze(1)  # (B, 1, T, T)
        for i, block in enumerate(self.blocks):
            x = block(x, attn_mask, last_only=last_only and i == len(self.blocks) - 1)
        return self.ln_f(x)  # (B, T, h), or (B, 1, h) with last_only

    def score(self, hidden: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """hidden (B, h) with candidates (B, C) → (B, C); or (B, T, h) with (B, T, C) → (B, T, C)."""
        cand = self.encoder(candidates)  # (..., C, h)
        dot = torch.einsum("...h,...ch->...c", hidden, cand.to(hidden.dtype))
        if self.encoder.has_bias:
            dot = dot + self.encoder.track_bias(candidates).to(dot.dtype)
        return dot + self.prior(candidates).to(dot.dtype) if self.has_prior else dot

    def scoring_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., h) → (..., h+1) with a trailing 1: the query side of ``encoder.scoring_tables()``."""
        return torch.cat([hidden, hidden.new_ones(*hidden.shape[:-1], 1)], dim=-1)

    def parameter_counts(self) -> dict[str, int]:
        track = sum(p.numel() for p in self.encoder.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {"total": total, "track_representation": track, "other": total - track}
