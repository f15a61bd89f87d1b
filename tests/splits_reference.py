"""The pandas split that ``splits.py`` used before the DuckDB one, kept as the reference that
tests/test_splits.py compares the SQL path with (same vocabulary, sequences, strata and events)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from semid_pipeline.config import SplitConfig
from semid_pipeline import periods
from semid_pipeline.splits import EvalSet, Sequence_, Splits, TrackVocab, _empty_eval, detect_kind


def _metadata_index(vocab: TrackVocab, events: pd.DataFrame, catalog: pd.DataFrame | None, col: str):
    """(N+1,) index array (1..K, 0 unknown) for ``col`` (artist_id / genre_id), or None if absent."""
    frames = []
    if catalog is not None and col in catalog:
        frames.append(catalog[["track_id", col]])
    if col in events:
        frames.append(events[["track_id", col]])
    if not frames:
        return None, 0
    df = pd.concat(frames, ignore_index=True).dropna()
    if df.empty:
        return None, 0
    df = df.astype({"track_id": object, col: object}).drop_duplicates("track_id", keep="first")
    values = np.array(sorted({str(v) for v in df[col]}), dtype=object)
    codes = pd.Index(values).get_indexer(pd.Index(df[col].astype(str).to_numpy(dtype=object))) + 1
    out = np.zeros(vocab.n_tokens, dtype=np.int64)
    idx = vocab.encode(df["track_id"].to_numpy(dtype=object))
    keep = idx > 0
    out[idx[keep]] = codes[keep]
    return out, len(values)


class _Builder:
    """Collects evaluated strata as index ranges into the sorted event arrays."""

    def __init__(self, a: dict[str, np.ndarray]) -> None:
        self.a = a
        self.strata: list[str] = []
        self.inputs: list[Sequence_] = []
        self.input_ts: list[np.ndarray] = []
        self.input_pos: list[np.ndarray] = []
        self.eval_ranges: list[tuple[int, int]] = []

    def add(self, sid: str, inp: slice, ev: slice) -> None:
        a = self.a
        if inp.stop <= inp.start or ev.stop <= ev.start:
            return
        fb = a["feedback"][ev]
        if not (fb.any() and (fb == 0).any()):
            return
        self.strata.append(sid)
        self.inputs.append((a["track_idx"][inp], a["feedback"][inp]))
        self.input_ts.append(a["ts"][inp])
        self.input_pos.append(a["position"][inp])
        self.eval_ranges.append((ev.start, ev.stop))

    def build(self) -> EvalSet:
        if not self.strata:
            return _empty_eval()
        a = self.a
        lens = np.array([e - s for s, e in self.eval_ranges], dtype=np.int64)
        take = np.concatenate([np.arange(s, e) for s, e in self.eval_ranges])
        row = np.repeat(np.arange(len(self.strata), dtype=np.int64), lens)
        events = pd.DataFrame(
            {
                "stratum_id": np.asarray(self.strata, dtype=object)[row],
                "track_id": a["track_id"][take],
                "track_idx": a["track_idx"][take],
                "feedback": a["feedback"][take],
                "ts": pd.to_datetime(a["ts"][take]),
                "position": a["position"][take],
                "row": row,
            }
        )
        return EvalSet(self.strata, self.inputs, events, self.input_ts, self.input_pos)


def reference_build_splits(events: pd.DataFrame, catalog: pd.DataFrame | None, cfg: SplitConfig,
                 *, kind: str | None = None) -> Splits:
    """Split a ``feedback_events``-shaped frame (see schema.py). ``kind`` overrides detection."""
    if events.empty:
        raise ValueError("feedback_events is empty: nothing to split")
    kind = kind or detect_kind(events)
    cat_ids = catalog["track_id"] if catalog is not None and "track_id" in catalog else []
    vocab = TrackVocab.from_ids(cat_ids, events["track_id"])

    ts = pd.to_datetime(events["ts"]).to_numpy(dtype="datetime64[ns]")
    max_ts = ts.max()
    val_start, test_start = periods.starts(max_ts, cfg)

    sid = events["stratum_id"].astype(str).to_numpy(dtype=object)
    pos = events["position"].to_numpy(dtype=np.int64)
    # sessions: order by position; users: by time, then position (position is the time rank)
    order = np.lexsort((pos, ts, sid)) if kind == "user" else np.lexsort((ts, pos, sid))
    a = {
        "stratum_id": sid[order],
        "ts": ts[order],
        "position": pos[order],
        "track_id": events["track_id"].astype(str).to_numpy(dtype=object)[order],
        "feedback": (events["feedback"].to_numpy(dtype=np.int64)[order] > 0).astype(np.int64),
    }
    a["track_idx"] = vocab.encode(a["track_id"])
    starts = np.flatnonzero(np.r_[True, a["stratum_id"][1:] != a["stratum_id"][:-1]])
    ends = np.r_[starts[1:], len(order)]

    train: list[Sequence_] = []
    train_ids: list[str] = []
    val_b, test_b = _Builder(a), _Builder(a)
    if kind == "session":
        for s, e in zip(starts.tolist(), ends.tolist()):
            e = min(e, s + cfg.max_session_len)
            first = a["ts"][s]
            stratum = a["stratum_id"][s]
            if first < val_start:
                if e - s >= 1:
                    train.append((a["track_idx"][s:e], a["feedback"][s:e]))
                    train_ids.append(stratum)
                continue
            half = s + (e - s) // 2
            (val_b if first < test_start else test_b).add(stratum, slice(s, half), slice(half, e))
    elif kind == "user":
        lookback = np.timedelta64(cfg.max_lookback_days, "D")
        H = cfg.max_user_history
        for s, e in zip(starts.tolist(), ends.tolist()):
            t = a["ts"][s:e]
            stratum = a["stratum_id"][s]
            i_val, i_test = s + np.searchsorted(t, [val_start, test_start], side="left")
            if i_val > s:
                train.append((a["track_idx"][s:i_val], a["feedback"][s:i_val]))
                train_ids.append(stratum)
            for b, t0, p_start, p_end in ((val_b, val_start, i_val, i_test), (test_b, test_start, i_test, e)):
                if p_end <= p_start:
                    continue  # no events in the period
                i_lb = s + int(np.searchsorted(t, t0 - lookback, side="left"))
                b.add(stratum, slice(max(i_lb, p_start - H), p_start), slice(p_start, p_end))
    else:
        raise ValueError(f"unknown stratum kind {kind!r}; expected 'session' or 'user'")

    counts = np.zeros(vocab.n_tokens, dtype=np.int64)
    if train:
        counts += np.bincount(np.concatenate([t for t, _ in train]), minlength=vocab.n_tokens)
    counts[0] = 0
    val, test = val_b.build(), test_b.build()
    periods.require_strata(test, events_span=(ts.min(), max_ts), starts=(val_start, test_start), cfg=cfg, kind=kind)
    for ev in (val, test):
        ev.events["is_cold"] = counts[ev.events["track_idx"].to_numpy(dtype=np.int64)] == 0
    artist, n_art = _metadata_index(vocab, events, catalog, "artist_id")
    genre, n_gen = _metadata_index(vocab, events, catalog, "genre_id")
    return Splits(
        kind=kind,
        vocab=vocab,
        train=train,
        val=val,
        test=test,
        train_track_counts=counts,
        track_artist=artist,
        track_genre=genre,
        n_artists=n_art,
        n_genres=n_gen,
        cutoffs={
            "max_ts": pd.Timestamp(max_ts),
            "val_start": pd.Timestamp(val_start),
            "test_start": pd.Timestamp(test_start),
        },
        train_stratum_ids=train_ids,
    )
