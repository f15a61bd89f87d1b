"""Scoring a trained ``SASRec``: the hidden state after each stratum's input, scores of the
evaluated events, and full-catalogue top-k lists.

Sits between ``model`` (the network) and ``evaluation`` (metrics on scored frames): ``train``
uses it for validation AUC, ``experiment`` for the test-period record. The top-k search scores
each embedding field's codewords once and gathers per track (``topk_decomposed``), with a plain
matmul reference (``topk_naive``) that tests and the benchmark compare it with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import nullcontext

import numpy as np
import pandas as pd
import torch

from . import evaluation
from .content_affinity import cosines, personal_tastes, profiles, unit
from .listener_memory import evidence
from .model import SASRec
from .splits import EvalSet


def device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def autocast(device: torch.device):
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast(device_type="cuda", dtype=dtype)
    return nullcontext()



def left_pad(seqs: list[tuple[np.ndarray, np.ndarray]], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Last ``max_len`` events of each sequence, left-padded to the longest: (S, T) tracks and feedback."""
    T = max(1, min(max_len, max((len(t) for t, _ in seqs), default=1)))
    tracks = np.zeros((len(seqs), T), dtype=np.int64)
    fb = np.zeros((len(seqs), T), dtype=np.int64)
    for i, (t, f) in enumerate(seqs):
        t, f = t[-T:], f[-T:]
        if len(t):
            tracks[i, T - len(t):] = t
            fb[i, T - len(t):] = f
    return torch.from_numpy(tracks), torch.from_numpy(fb)


@torch.no_grad()
def final_hidden(model: SASRec, eval_set: EvalSet, *, max_len: int | None = None, batch_size: int = 1024
                 ) -> torch.Tensor:
    """(S, h) float32 hidden state after each stratum's input (its last max_len events), on CPU."""
    max_len = min(max_len or model.max_len, model.max_len)
    device = device_of(model)
    was_training = model.training
    model.eval()
    S = len(eval_set)
    out = torch.zeros(S, model.hidden)
    lengths = np.array([min(len(t), max_len) for t, _ in eval_set.inputs], dtype=np.int64)
    amp = autocast(device)
    for rows in length_chunks(lengths, batch_size=batch_size, max_cells=None):  # similar lengths: little padding
        tracks, fb = left_pad([eval_set.inputs[i] for i in rows], max_len)
        with amp:
            h = model(tracks.to(device), fb.to(device), last_only=True)[:, -1]  # (b, h)
        out[torch.from_numpy(rows)] = h.float().cpu()
    model.train(was_training)
    return out


@torch.no_grad()
def score_eval_set(model: SASRec, eval_set: EvalSet, *, max_len: int | None = None, batch_size: int = 1024,
                   train_track_counts: np.ndarray | None = None, term_columns: bool = False) -> pd.DataFrame:
    """One row per evaluated event: stratum_id, track_id, track_idx, feedback, score, history_len, is_cold
    [, terms: w · z + the content affinity + the listener memory inside ``score``; affinity_liked /
    affinity_disliked: the two cosines of ``content_affinity``, affinity_taste: its personal taste
    û · β, memory_track / memory_artist: the two evidences of ``listener_memory``, when they were
    computed].

    The affinity's cosines and the memory's evidences are computed when their weights are not 0 or
    ``term_columns`` asks for them (the weights' search); the per-epoch validation, with the weights
    at 0, skips them.

    ``history_len`` is the stratum's input length in events (≤ max_user_history / half a session),
    the activity measure for per-segment analysis; the model itself reads the last ``max_len``.

    ``is_cold`` = the track had no training events (from ``train_track_counts`` if given, else the
    eval set's own ``is_cold`` column written by the split).
    """
    ev = eval_set.events
    cols = ["stratum_id", "track_id", "track_idx", "feedback", "score", "history_len", "is_cold"]
    if len(eval_set) == 0:
        return pd.DataFrame({c: [] for c in cols})
    max_len = min(max_len or model.max_len, model.max_len)
    device = device_of(model)
    hid = final_hidden(model, eval_set, max_len=max_len, batch_size=batch_size)  # (S, h)
    liked = disliked = sims = None
    affinity = model.has_affinity and (term_columns or bool(model.affinity_weight.abs().sum() > 0))
    mem = taste = None
    if model.taste_weight is not None and (term_columns or bool(model.taste_weight != 0)):  # (E,), the whole input
        taste = taste_scores(model, eval_set, batch_size=batch_size)
    if model.has_memory and (term_columns or bool(model.memory_weight.abs().sum() > 0)):  # (E, 2), the whole input
        artist = model.memory_artist.cpu().numpy()
        mem = torch.from_numpy(evidence(eval_set.inputs, ev["row"].to_numpy(np.int64), ev["track_idx"].to_numpy(np.int64),
                                        artist if artist.any() else None))
    if affinity:
        liked, disliked = history_profiles(model, eval_set, max_len=max_len, batch_size=batch_size)  # (S, d) each
        sims = torch.empty(len(ev), 2)
    terms = torch.zeros(len(ev))
    rows = torch.from_numpy(np.array(ev["row"], dtype=np.int64))  # copies: writable
    tidx = torch.from_numpy(np.array(ev["track_idx"], dtype=np.int64))
    scores = torch.empty(len(ev))
    step = max(batch_size * 64, 1)
    was_training = model.training
    model.eval()
    for s in range(0, len(ev), step):
        t = tidx[s: s + step].to(device)
        cand = model.encoder(t).float()  # (E, h)
        sc = (hid[rows[s: s + step]].to(device) * cand).sum(-1)
        if model.encoder.has_bias:  # the same score the loss trained: dot product + summed code biases
            sc = sc + model.encoder.track_bias(t).float()
        extra = torch.zeros_like(sc)
        if model.has_prior:  # + w · z (the popularity prior)
            extra = extra + model.prior(t).float()
        if affinity:  # + a₊ · cos(v, liked) − a₋ · cos(v, disliked) (the content affinity)
            r = rows[s: s + step]
            cs = cosines(model.affinity_vectors(t).float(), liked[r].to(device), disliked[r].to(device))  # (E, 2)
            extra = extra + cs[:, 0] * model.affinity_weight[0] - cs[:, 1] * model.affinity_weight[1]
            sims[s: s + step] = cs.cpu()
        if taste is not None:  # + b · û · β (the personal taste)
            extra = extra + model.taste_weight * taste[s: s + step].to(device)
        if mem is not None:  # + r_t · m_track + r_a · m_artist (the listener memory)
            extra = extra + (mem[s: s + step].to(device).float() * model.memory_weight).sum(-1)
        scores[s: s + step] = (sc + extra).cpu()
        terms[s: s + step] = extra.cpu()
    model.train(was_training)
    hist = eval_set.history_len  # events available as input (the model reads the last max_len of them)
    if train_track_counts is not None:
        is_cold = np.asarray(train_track_counts)[tidx.numpy()] == 0
    elif "is_cold" in ev:
        is_cold = ev["is_cold"].to_numpy(dtype=bool)
    else:
        is_cold = np.zeros(len(ev), dtype=bool)
    return pd.DataFrame({
        "stratum_id": ev["stratum_id"].to_numpy(),
        "track_id": ev["track_id"].to_numpy(),
        "track_idx": tidx.numpy(),
        "feedback": ev["feedback"].to_numpy(dtype=np.int64),
        "score": scores.numpy().astype(np.float64),
        "history_len": hist[ev["row"].to_numpy(dtype=np.int64)],
        "is_cold": is_cold,
        **({"terms": terms.numpy().astype(np.float64)} if model.has_terms else {}),
        **({"affinity_liked": sims[:, 0].numpy().astype(np.float64),
            "affinity_disliked": sims[:, 1].numpy().astype(np.float64)} if sims is not None else {}),
        **({"affinity_taste": taste.numpy().astype(np.float64)} if taste is not None else {}),
        **({"memory_track": mem[:, 0].numpy(), "memory_artist": mem[:, 1].numpy()} if mem is not None else {}),
    })


@torch.no_grad()
def history_profiles(model: SASRec, eval_set: EvalSet, *, max_len: int, batch_size: int = 1024
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(liked (S, d), disliked (S, d)) mean content-affinity vectors of each stratum's input (its
    last max_len events, as the model reads it; ``content_affinity.profiles``), on CPU."""
    S, d = len(eval_set), model.affinity_table.shape[1]
    liked, disliked = torch.zeros(S, d), torch.zeros(S, d)
    device = device_of(model)
    for b in range(0, S, batch_size):
        tracks, fb = left_pad(eval_set.inputs[b: b + batch_size], max_len)
        tracks, fb = tracks.to(device), fb.to(device)
        p, n = profiles(model.affinity_vectors(tracks).float(), fb, tracks > 0)
        liked[b: b + len(p)], disliked[b: b + len(n)] = p.cpu(), n.cpu()
    return liked, disliked


@torch.no_grad()
def taste_scores(model: SASRec, eval_set: EvalSet, *, batch_size: int = 1024) -> torch.Tensor:
    """(E,) û(track) · β(listener) of each evaluated event (``content_affinity.personal_tastes``: β
    from the stratum's whole input, as the listener memory reads it), in ``eval_set.events`` order, on CPU.
    The inputs are fitted in chunks of similar length (``length_chunks``), each padded to its own longest."""
    ev = eval_set.events
    rows = torch.from_numpy(ev["row"].to_numpy(np.int64).copy())
    beta = torch.zeros(len(eval_set), model.affinity_table.shape[1])
    device = device_of(model)
    lengths = np.fromiter((len(t) for t, _ in eval_set.inputs), dtype=np.int64, count=len(eval_set))
    for idx in length_chunks(lengths, batch_size=batch_size):
        tracks, fb = left_pad([eval_set.inputs[i] for i in idx], int(lengths[idx[-1]]))
        tracks, fb = tracks.to(device), fb.to(device)
        beta[torch.from_numpy(idx)] = personal_tastes(model.affinity_vectors(tracks).float(), fb, tracks > 0).cpu()
    cand = unit(model.affinity_vectors(torch.from_numpy(ev["track_idx"].to_numpy(np.int64).copy()).to(device)).float())
    return (cand.cpu() * beta[rows]).sum(-1)


def length_chunks(lengths: np.ndarray, *, batch_size: int, max_cells: int | None = 200_000) -> list[np.ndarray]:
    """Row indices in chunks of similar length: sorted by length (stable), each chunk at most
    ``batch_size`` rows and ``max_cells`` padded (row × its chunk's longest) cells (None: rows only).
    Every row once.
    Until 2026-12-04 the chunks were taken in input order and sized by the period's longest input:
    a few long histories set the size of every chunk and the width of most."""
    order = np.argsort(lengths, kind="stable")
    chunks, b = [], 0
    while b < len(order):
        width = max(int(lengths[order[min(b + batch_size, len(order)) - 1]]), 1)  # the longest of a full chunk
        n = batch_size if max_cells is None else max(1, min(batch_size, max_cells // width))
        chunks.append(order[b: b + n])
        b += n
    return chunks


def without_prior(model: SASRec, scored: pd.DataFrame) -> pd.DataFrame:
    """``score_eval_set``'s frame with the validation-chosen terms (w · z, the popularity prior, the
    content affinity and the listener memory) taken out of each score: the model's own score, as with all weights 0
    (training never sees them)."""
    if "terms" not in scored:
        return scored
    return scored.assign(score=scored["score"] - scored["terms"], terms=0.0)


def evaluate_auc(model: SASRec, eval_set: EvalSet, *, max_len: int | None = None, batch_size: int = 1024) -> float:
    scored = score_eval_set(model, eval_set, max_len=max_len, batch_size=batch_size)
    return evaluation.stratified_auc(scored["stratum_id"], scored["feedback"], scored["score"])[0]


# ------------------------------------------------------------------------------------------------
# full-catalogue top-k


def _select_topk_cs(scores_cs: torch.Tensor, k: int, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k along dim 0 of a (C, S) score block -> (S, k) values, (S, k) row indices.

    Two-stage: maxima of blocks of ``block`` consecutive rows (one pass), the top-k blocks
    per column, then top-k among those blocks' k·block rows. Exact: every top-k element
    lies in one of the k blocks with the largest maxima (up to exact ties).
    """
    c, s = scores_cs.shape
    k = min(k, c)
    if c <= block * max(k, 1) * 2:
        v, i = scores_cs.T.contiguous().topk(k, dim=1)
        return v, i
    nb = -(-c // block)
    pad = nb * block - c
    if pad:
        fill = torch.full((pad, s), -math.inf, dtype=scores_cs.dtype)
        scores_cs = torch.cat([scores_cs, fill], 0)
    bmax = scores_cs.view(nb, block, s).amax(dim=1)  # (nb, S)
    blk = bmax.T.contiguous().topk(k, dim=1).indices  # (S, k)
    rows = (blk[:, :, None] * block + torch.arange(block)[None, None, :]).reshape(s, k * block)
    flat = rows * s + torch.arange(s)[:, None]
    vals = scores_cs.reshape(-1)[flat]  # (S, k*block)
    v, i = vals.topk(k, dim=1)
    return v, rows.gather(1, i)


def _merge(best_v, best_i, v, i, k):
    if best_v is None:
        return v, i
    cv = torch.cat([best_v, v], 1)
    ci = torch.cat([best_i, i], 1)
    tv, ti = cv.topk(min(k, cv.shape[1]), dim=1)
    return tv, ci.gather(1, ti)


def _exclude_mask(exclude, n) -> torch.Tensor | None:
    if exclude is None:
        return None
    ex = torch.as_tensor(exclude).long().reshape(-1)
    if ex.numel() == 0:
        return None
    m = torch.zeros(n, dtype=torch.bool)
    m[ex] = True
    return m


def stack_fields(tables: Sequence[torch.Tensor], codes: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The fields' codeword tables stacked into one (K_tot, h) table, and each track's F rows of it
    (N, F): ``item_emb[i] = table[offs[i]].sum(0)``, so every codeword is scored once per query."""
    sizes = [int(t.shape[0]) for t in tables]
    base = torch.tensor([0] + sizes[:-1]).cumsum(0)
    offs = torch.stack([c.long() for c in codes], 1) + base[None, :]
    return torch.cat(list(tables), 0), offs


@torch.no_grad()
def topk_decomposed(
    hidden: torch.Tensor,
    tables: Sequence[torch.Tensor],
    codes: Sequence[torch.Tensor],
    k: int = 10,
    exclude: torch.Tensor | None = None,
    chunk: int = 16384,
    strata_chunk: int = 256,
    block: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of ``hidden @ item_emb.T`` over the whole catalogue, where the item embedding
    is a sum over fields: ``item_emb[i] = sum_f tables[f][codes[f][i]]``.

    Each field's ``k_f`` codewords are scored once per stratum (S×k_f), then the per-track
    scores are gathered and summed (``embedding_bag``, cost S·N·F) chunk by chunk over
    tracks (``chunk``) and strata (``strata_chunk``); top-k is merged across chunks. Memory
    beyond the inputs is bounded by the chunks (no (N, h) item table, no (N, F) offsets).
    ``exclude``: track indices never returned (e.g. a padding row 0).
    Returns ``(scores (S, k), indices (S, k))``, best first.
    """
    if len(tables) != len(codes) or not tables:
        raise ValueError(f"need one code vector per table: {len(tables)} tables, {len(codes)} codes")
    n = int(codes[0].shape[0])
    for f, (t, c) in enumerate(zip(tables, codes)):
        if c.shape != (n,):
            raise ValueError(f"codes[{f}] has shape {tuple(c.shape)}, expected ({n},)")
        if t.ndim != 2 or t.shape[1] != hidden.shape[1]:
            raise ValueError(f"tables[{f}] has shape {tuple(t.shape)}, expected (k_f, {hidden.shape[1]})")
    sizes = [int(t.shape[0]) for t in tables]
    base = torch.tensor([0] + sizes[:-1]).cumsum(0)  # (F,) first row of each field in the stacked table
    table = torch.cat(list(tables), 0).to(hidden.dtype)  # (K_tot, h)
    mask = _exclude_mask(exclude, n)
    n_ok = n - (int(mask.sum()) if mask is not None else 0)
    k = min(k, n_ok)
    out_v, out_i = [], []
    for s0 in range(0, hidden.shape[0], strata_chunk):
        hid = hidden[s0 : s0 + strata_chunk]
        w = (table @ hid.T).contiguous()  # (K_tot, S_c): every codeword scored once
        best_v = best_i = None
        for a in range(0, n, chunk):
            b = min(n, a + chunk)
            offs = torch.stack([c[a:b].long() for c in codes], 1) + base[None, :]  # (C, F): per chunk, O(chunk)
            sc = torch.nn.functional.embedding_bag(offs, w, mode="sum")  # (C, S_c)
            if mask is not None:
                mm = mask[a:b]
                if mm.any():
                    sc[mm] = -math.inf
            v, i = _select_topk_cs(sc, k, block)
            best_v, best_i = _merge(best_v, best_i, v, i + a, k)
        out_v.append(best_v)
        out_i.append(best_i)
    if not out_v:
        return torch.empty(0, k, dtype=hidden.dtype), torch.empty(0, k, dtype=torch.long)
    return torch.cat(out_v, 0), torch.cat(out_i, 0)


@torch.no_grad()
def topk_naive(
    hidden: torch.Tensor,
    item_emb: torch.Tensor,
    k: int = 10,
    exclude: torch.Tensor | None = None,
    chunk: int = 65536,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference full-catalogue top-k: ``hidden @ item_emb.T`` (chunked over tracks) and
    ``torch.topk``. ``item_emb`` (N, h) is every track's (already built) embedding."""
    n = int(item_emb.shape[0])
    mask = _exclude_mask(exclude, n)
    n_ok = n - (int(mask.sum()) if mask is not None else 0)
    k = min(k, n_ok)
    best_v = best_i = None
    for a in range(0, n, chunk):
        sc = hidden @ item_emb[a : a + chunk].T  # (S, C)
        if mask is not None:
            mm = mask[a : a + chunk]
            if mm.any():
                sc[:, mm] = -math.inf
        v, i = sc.topk(min(k, sc.shape[1]), dim=1)
        best_v, best_i = _merge(best_v, best_i, v, i + a, k)
    if best_v is None:
        return torch.empty(hidden.shape[0], 0, dtype=hidden.dtype), torch.empty(hidden.shape[0], 0, dtype=torch.long)
    return best_v, best_i


def top_k_lists(model: SASRec, eval_set: EvalSet, *, k: int, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-catalogue top-k per stratum, scoring each field's codewords once (decomposed). Without
    the popularity prior: it predicts feedback on a play, not which track to play (with it, recall@10
    of the demo fell, e.g. ``64|v1-k1024`` 0.240 → 0.193; serving ranks the same way)."""
    hidden = scoring_query(model, final_hidden(model, eval_set, max_len=max_len))  # (S, h[+1])
    tables, codes = scoring_fields(model)
    with torch.no_grad():
        return topk_decomposed(hidden, tables, codes, k=k, exclude=torch.tensor([0]))


def scoring_fields(model: SASRec) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per field: its (n_f+1, h[+1]) codeword table and (N+1,) codes, float32 on CPU.

    With item biases each table carries the code's bias as a last column (``scoring_tables``), so
    every decomposed scorer (evaluation top-k, serving) stays exact: Σ_f <[h, 1], [E_f, b_f]> =
    <h, vec(i)> + bias(i). Pair with ``scoring_query``.
    """
    enc = model.encoder
    tables = enc.scoring_tables() if enc.has_bias else enc.field_tables()
    codes = enc.field_codes()
    names = list(tables)
    return [tables[n].detach().float().cpu() for n in names], [codes[n].cpu() for n in names]


def scoring_query(model: SASRec, hidden: torch.Tensor) -> torch.Tensor:
    """(..., h) → the query side of ``scoring_fields``: a trailing 1 when the encoder has biases."""
    return model.scoring_hidden(hidden) if model.encoder.has_bias else hidden
