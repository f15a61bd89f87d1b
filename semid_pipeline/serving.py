"""Serving: the top-N next tracks of a listener from one trained partition (framework-free).

A track's embedding is the sum of its codeword embeddings, so a full-catalogue score is exact and
cheap when decomposed: every codeword of every field is scored once against the listener's
hidden state (Σ_f k_f · h), then each track's score is a gather-sum of its F codeword scores
(N · F adds) instead of an N · h dot product per track. A cold-start track (an ID but no training
events) is scored the same way, through its codewords, so it competes with every other track.

Two seams keep this module independent of how models are stored and scored elsewhere:
``serving_load.load_partition`` (the one place that finds a partition's model + ID table) and
:func:`codeword_scores` (the one place that does the decomposed scoring).

Policy (``ServePolicy``): exclude tracks heard with positive feedback, exclude tracks skipped or
disliked, include cold-start tracks, at most ``artist_cap`` tracks per artist in a list. An
explicit ``exclude`` list is always honoured.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from .model import SASRec
from .scoring import scoring_fields, stack_fields
from .vocab import TrackVocab

History = Sequence[tuple[str, int]]  # (track_id, feedback 1|0), oldest first


@dataclass(frozen=True)
class ServePolicy:
    """What a list may contain. ``artist_cap`` = 0 means no cap; unknown artists are never capped."""

    exclude_heard: bool = True
    exclude_skipped: bool = True
    include_cold_start: bool = True
    artist_cap: int = 3


def policy_from_config(cfg) -> ServePolicy:
    """The list policy of a ``config.ServeConfig`` (``[serve]`` in semid.toml)."""
    return ServePolicy(exclude_heard=cfg.exclude_heard, exclude_skipped=cfg.exclude_skipped,
                       include_cold_start=cfg.include_cold_start, artist_cap=cfg.artist_cap)


@dataclass(frozen=True)
class RecList:
    """One ranked list: track ids best first, their scores, and what the history held."""

    track_ids: list[str]
    scores: list[float]
    track_idx: list[int]
    unknown_tracks: int = 0  # history entries whose track is not in the vocabulary (ignored)
    history_used: int = 0  # history entries the model read (known tracks, last max_len)


@dataclass(frozen=True, eq=False)
class PartitionBundle:
    """Everything a ``Recommender`` needs, as loaded by the seam (``serving_load``)."""

    partition_key: str
    model: SASRec
    vocab: TrackVocab
    train_track_counts: np.ndarray  # (N+1,) training events per index; 0 = cold start
    track_artist: np.ndarray | None  # (N+1,) artist index, 0 = unknown
    id_table_hash: str | None
    model_dir: str
    config: dict
    catalog: pd.DataFrame | None = None  # track_id, artist_id, title (for display)
    dataset_fingerprint: str | None = None
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------
# the decomposed scorer (seam: re-point here when scoring moves)


def decomposition(model: SASRec) -> tuple[torch.Tensor, torch.Tensor]:
    """(K_tot, h) stacked codeword table and (N+1, F) rows of it per track, from the encoder."""
    table, offs = stack_fields(*scoring_fields(model))  # (K_tot, h), or (K_tot, h+1) with biases
    return table.contiguous(), offs.contiguous()


@torch.no_grad()
def codeword_scores(hidden: torch.Tensor, table: torch.Tensor, offs: torch.Tensor,
                    offs_t: torch.Tensor | None = None) -> torch.Tensor:
    """(B, h) hidden states → (B, N+1) scores of every track: codewords once, gather-sum per track.

    Row 0 of every field table is the zero pad, so a track's unused fields add exactly 0. A table
    one column wider than ``hidden`` carries the item biases (score = dot product + bias). One
    listener (an HTTP request): F passes of a 1-D gather (``offs_t`` = offs.T, contiguous) beat
    ``embedding_bag`` about 2× on a CPU; batches use ``embedding_bag`` over (N+1, B) columns.
    """
    if table.shape[1] == hidden.shape[1] + 1:  # the bias column (``scoring_fields``): query gets a 1
        hidden = torch.cat([hidden, hidden.new_ones(hidden.shape[0], 1)], dim=1)
    w = (table @ hidden.T).contiguous()  # (K_tot, B): each codeword scored once per listener
    if hidden.shape[0] == 1 and offs_t is not None:
        w1 = w[:, 0].contiguous()
        sc = w1.index_select(0, offs_t[0])
        for f in range(1, offs_t.shape[0]):
            sc += w1.index_select(0, offs_t[f])
        return sc.unsqueeze(0)
    sc = torch.nn.functional.embedding_bag(offs, w, mode="sum")  # (N+1, B)
    return sc.T.contiguous()


def topk_1d(x: torch.Tensor, k: int, block: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k of a long vector: maxima of blocks, the k best blocks (+ the tail), top-k of those.

    Every top-k element lies in one of the k blocks with the largest maxima, so the result equals
    ``x.topk(k)`` (up to the order of exact ties) at a fraction of the cost for N ≫ k·block.
    """
    n = x.numel()
    nb = n // block
    if nb <= 2 * k:
        return x.topk(k)
    bmax = x[: nb * block].view(nb, block).amax(1)
    best = bmax.topk(k).indices
    cand = (best[:, None] * block + torch.arange(block)).reshape(-1)
    cand = torch.cat([cand, torch.arange(nb * block, n)])
    v, i = x[cand].topk(k)
    return v, cand[i]


# ------------------------------------------------------------------------------------------------
# the recommender


class Recommender:
    """Top-N lists from one partition. Thread-safe for concurrent ``recommend`` calls (read-only)."""

    def __init__(self, *, bundle: PartitionBundle, max_len: int | None = None, score_budget: int = 1 << 22) -> None:
        self.bundle = bundle
        self.model = bundle.model.eval()
        self.vocab = bundle.vocab
        self.partition_key = bundle.partition_key
        self.max_len = min(max_len or self.model.max_len, self.model.max_len)
        self.table, self.offs = decomposition(self.model)
        self.offs_t = self.offs.T.contiguous()  # (F, N+1): the one-listener gather path
        n_tok = self.vocab.n_tokens
        if self.offs.shape[0] != n_tok:
            raise ValueError(f"model has {self.offs.shape[0]} track rows, vocabulary {n_tok}")
        counts = np.asarray(bundle.train_track_counts, dtype=np.int64)
        self.is_cold = torch.from_numpy(counts == 0)
        self.is_cold[0] = False
        art = bundle.track_artist
        self.artist = np.zeros(n_tok, dtype=np.int64) if art is None else np.asarray(art, dtype=np.int64)
        self.score_budget = score_budget  # floats per (listeners × tracks) block

    @property
    def n_tracks(self) -> int:
        return self.vocab.n_tracks

    # -- inputs ------------------------------------------------------------------------------------

    def encode_history(self, history: History) -> tuple[np.ndarray, np.ndarray, int]:
        """History → (track_idx, feedback) of its known tracks, and the count of unknown ones."""
        if len(history) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), 0
        ids = [str(t) for t, _ in history]
        fb = np.array([1 if int(f) > 0 else 0 for _, f in history], dtype=np.int64)
        idx = self.vocab.encode(ids)
        known = idx > 0
        return idx[known], fb[known], int((~known).sum())

    def encode_histories(self, histories: Sequence[History]) -> list[tuple[np.ndarray, np.ndarray, int]]:
        """``encode_history`` of many histories with one vocabulary lookup (the per-call cost dominates)."""
        lens = [len(h) for h in histories]
        if sum(lens) == 0:
            return [self.encode_history(h) for h in histories]
        ids = [str(t) for h in histories for t, _ in h]
        fb = np.array([1 if int(f) > 0 else 0 for h in histories for _, f in h], dtype=np.int64)
        idx = self.vocab.encode(ids)
        out, a = [], 0
        for L in lens:
            i, f = idx[a: a + L], fb[a: a + L]
            known = i > 0
            out.append((i[known], f[known], int(L - known.sum())))
            a += L
        return out

    @torch.no_grad()
    def hidden(self, seqs: Sequence[tuple[np.ndarray, np.ndarray]], batch_size: int = 512) -> torch.Tensor:
        """(B, h) final hidden state after each sequence's last ``max_len`` events (empty → zeros)."""
        out = torch.zeros(len(seqs), self.model.hidden)
        lengths = np.array([min(len(t), self.max_len) for t, _ in seqs], dtype=np.int64)
        order = [int(i) for i in np.argsort(lengths, kind="stable") if lengths[i] > 0]
        for b in range(0, len(order), batch_size):
            rows = order[b: b + batch_size]
            T = int(max(lengths[rows]))
            tr = torch.zeros(len(rows), T, dtype=torch.long)
            fb = torch.zeros(len(rows), T, dtype=torch.long)
            for j, i in enumerate(rows):
                t, f = seqs[i]
                L = int(lengths[i])
                tr[j, T - L:] = torch.from_numpy(np.asarray(t[-L:], dtype=np.int64))
                fb[j, T - L:] = torch.from_numpy(np.asarray(f[-L:], dtype=np.int64))
            h = self.model(tr, fb, last_only=True)[:, -1].float()  # eval mode + no_grad: safe from many threads
            out[torch.tensor(rows)] = h
        return out

    # -- lists -------------------------------------------------------------------------------------

    def recommend(self, history: History, n: int = 10, exclude: Sequence[str] = (),
                  policy: ServePolicy | None = None) -> RecList:
        """One listener's top-``n`` (fewer only when the policy leaves fewer eligible tracks)."""
        return self.recommend_batch([history], n=n, excludes=[exclude], policy=policy)[0]

    def recommend_batch(self, histories: Sequence[History], n: int = 10,
                        excludes: Sequence[Sequence[str]] | None = None,
                        policy: ServePolicy | None = None,
                        model_histories: Sequence[History] | None = None) -> list[RecList]:
        """Top-``n`` per listener. ``model_histories`` (default: ``histories``) is what the model
        reads; ``histories`` decides the heard/skipped exclusions (e.g. a listener's whole log)."""
        policy = policy or ServePolicy()
        excludes = excludes or [()] * len(histories)
        model_histories = histories if model_histories is None else model_histories
        enc = self.encode_histories(histories)
        menc = enc if model_histories is histories else self.encode_histories(model_histories)
        hid = self.hidden([(t, f) for t, f, _ in menc])
        masks = [self._excluded(t, f, ex, policy) for (t, f, _), ex in zip(enc, excludes)]
        step = max(1, self.score_budget // max(self.vocab.n_tokens, 1))
        out: list[RecList] = []
        for s in range(0, len(histories), step):
            scores = codeword_scores(hid[s: s + step], self.table, self.offs, self.offs_t)  # (b, N+1)
            self._mask(scores, masks[s: s + step], policy)
            for j, (idx, val) in enumerate(self._select_batch(scores, n, policy.artist_cap)):
                i = s + j
                out.append(RecList(
                    track_ids=[str(x) for x in self.vocab.decode(idx)], scores=[float(v) for v in val],
                    track_idx=[int(x) for x in idx], unknown_tracks=enc[i][2],
                    history_used=int(min(len(menc[i][0]), self.max_len)),
                ))
        return out

    def _mask(self, scores: torch.Tensor, masks: Sequence[np.ndarray], policy: ServePolicy) -> None:
        """-inf for padding, (optionally) cold-start tracks and each row's own exclusions, in place."""
        scores[:, 0] = -math.inf
        if not policy.include_cold_start:
            scores[:, self.is_cold] = -math.inf
        lens = [len(m) for m in masks]
        if sum(lens):
            rows = torch.from_numpy(np.repeat(np.arange(len(masks)), lens))
            cols = torch.from_numpy(np.concatenate([m for m in masks if len(m)]))
            scores[rows, cols] = -math.inf

    def _select_batch(self, scores: torch.Tensor, n: int, cap: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per row, the top-n with the artist cap: one batched topk of 4n candidates; a row whose
        candidates run out under the cap falls back to a wider search of its own."""
        if n <= 0 or scores.shape[0] == 0:
            return [(np.zeros(0, np.int64), np.zeros(0, np.float32))] * scores.shape[0]
        want = min(n if cap <= 0 else 4 * n, scores.shape[1])
        top = topk_1d(scores[0], want) if scores.shape[0] == 1 else scores.topk(want, dim=1)
        vals, idxs = (x.reshape(scores.shape[0], -1).numpy() for x in top)
        out = []
        for j in range(scores.shape[0]):
            ok = np.isfinite(vals[j])
            val, idx = vals[j][ok], idxs[j][ok]
            if cap > 0:
                keep = _cap_artists(self.artist[idx], cap, n)
                if len(keep) < n and ok.all() and want < scores.shape[1]:  # more eligible tracks exist
                    out.append(self._select(scores[j], n, cap))
                    continue
                val, idx = val[keep], idx[keep]
            out.append((idx[:n], val[:n]))
        return out

    def _excluded(self, idx: np.ndarray, fb: np.ndarray, exclude: Sequence[str], policy: ServePolicy) -> np.ndarray:
        parts = []
        if policy.exclude_heard:
            parts.append(idx[fb > 0])
        if policy.exclude_skipped:
            parts.append(idx[fb == 0])
        if len(exclude):
            ex = self.vocab.encode([str(x) for x in exclude])
            parts.append(ex[ex > 0])
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)

    def _select(self, row: torch.Tensor, n: int, cap: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-n of one score row, keeping at most ``cap`` tracks per known artist."""
        finite = int(torch.isfinite(row).sum())
        if finite == 0 or n <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        want = min(n if cap <= 0 else 4 * n, finite)
        while True:
            val, idx = topk_1d(row, want)
            val, idx = val.numpy(), idx.numpy()
            if cap <= 0:
                return idx[:n], val[:n]
            keep = _cap_artists(self.artist[idx], cap, n)
            if len(keep) >= n or want >= finite:
                return idx[keep], val[keep]
            want = min(2 * want, finite)


def _cap_artists(artists: np.ndarray, cap: int, n: int) -> np.ndarray:
    """Positions of the first ``n`` entries (in order) with at most ``cap`` per artist (0 = unknown)."""
    seen: dict[int, int] = {}
    keep = []
    for pos, a in enumerate(artists.tolist()):
        if a > 0:
            c = seen.get(a, 0)
            if c >= cap:
                continue
            seen[a] = c + 1
        keep.append(pos)
        if len(keep) == n:
            break
    return np.asarray(keep, dtype=np.int64)


class RecommenderHolder:
    """The current ``Recommender`` behind a lock: a reload swaps it whole, never mid-request.

    A request takes a reference under the lock and then works on that object, so requests in
    flight during a swap finish on the old model and later ones use the new one: none is dropped.
    """

    def __init__(self, recommender: Recommender) -> None:
        self._lock = threading.Lock()
        self._rec = recommender
        self.reloads = 0

    def get(self) -> Recommender:
        with self._lock:
            return self._rec

    def swap(self, recommender: Recommender) -> Recommender:
        with self._lock:
            old, self._rec = self._rec, recommender
            self.reloads += 1
        return old


# ------------------------------------------------------------------------------------------------
# display


def render_sample_lists(recs: pd.DataFrame, catalog: pd.DataFrame | None = None, *, listeners: int = 5,
                        top: int = 10, html: bool = False) -> str:
    """A table of sample lists (listener, rank, track, title, artist, score) as markdown or HTML.

    ``recs``: rows of the ``recommendations`` table (listener_id, rank, track_id, score). The
    first ``listeners`` listeners in sorted order are shown, so the sample is stable across runs.
    """
    if recs is None or len(recs) == 0:
        return "<p>(no recommendations)</p>" if html else "_(no recommendations)_"
    who = sorted(recs["listener_id"].astype(str).unique())[:listeners]
    df = recs[recs["listener_id"].astype(str).isin(who) & (recs["rank"] <= top)].copy()
    if catalog is not None and len(catalog):
        cols = [c for c in ("track_id", "title", "artist_id") if c in catalog]
        df = df.drop(columns=[c for c in cols if c != "track_id" and c in df]).merge(
            catalog[cols].drop_duplicates("track_id"), on="track_id", how="left")
    show = [c for c in ("listener_id", "rank", "track_id", "title", "artist_id", "score", "is_cold") if c in df]
    df = df.sort_values(["listener_id", "rank"])[show].fillna("")
    if html:
        return df.to_html(index=False, float_format=lambda x: f"{x:.4f}", border=0, classes="sample-lists")
    return df.to_markdown(index=False, floatfmt=".4f")
