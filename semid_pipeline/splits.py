"""Time-separated train / validation / test splits from the warehouse (the paper's protocol).

The paper evaluates on feedback from the period *after* training: the last ``test_days`` of event
time are the test period, the ``val_days`` before them the validation period, everything earlier
is training. A stratum (a session for MSSD-like data, a user otherwise) is an AUC stratum.

Sessions (MSSD-like, ``kind == "session"``)
    Each session (its first ``max_session_len`` events by position) belongs to the period its first
    event falls in. Training sessions are used whole; in an evaluated session the first half is the
    model input and the second half holds the evaluated (positive, negative) events.

Users (``kind == "user"``)
    Training sequence = the user's events before the validation cutoff (windowed at train time).
    For a period [start, end): input = the user's last ``max_user_history`` events strictly before
    ``start`` and at most ``max_lookback_days`` back; evaluated events = the user's events inside.

A stratum is evaluated only with >= 1 positive and >= 1 negative evaluated event and a non-empty
input. Inputs never contain an evaluated (or later) event: user inputs end before the period
starts, session inputs are positions before every evaluated position (tests prove both).

Track vocabulary: sorted(catalog track_ids ∪ event track_ids) → indices 1..N, 0 = padding.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .config import SplitConfig, parse_dataset_spec
from .errors import SplitError
from .schema import FEEDBACK_EVENTS, TRACK_CATALOG
from .warehouse import get_meta, table_columns, table_exists

MAX_SESSION_EVENTS = 20  # MSSD sessions hold at most 20 tracks

Sequence_ = tuple[np.ndarray, np.ndarray]  # (track_idx int64 (n,), feedback int64 (n,))

EVENT_COLUMNS = ["stratum_id", "position", "stratum_length", "ts", "track_id", "feedback",
                 "context_type", "artist_id", "genre_id"]


# ------------------------------------------------------------------------------------------------
# vocabulary


@dataclass(frozen=True, eq=False)
class TrackVocab:
    """Sorted track ids; track ``track_ids[i]`` has index ``i + 1`` (0 is padding)."""

    track_ids: np.ndarray  # (N,) object array of str, sorted, unique

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", pd.Index(self.track_ids))

    @classmethod
    def from_ids(cls, *id_lists) -> TrackVocab:
        ids = set()
        for lst in id_lists:
            ids.update(str(x) for x in pd.unique(pd.Series(lst).dropna()))
        return cls(np.array(sorted(ids), dtype=object))

    def __len__(self) -> int:
        return len(self.track_ids)

    @property
    def n_tracks(self) -> int:
        """N, the number of real tracks."""
        return len(self.track_ids)

    @property
    def n_tokens(self) -> int:
        """N + 1 (row 0 is padding)."""
        return len(self.track_ids) + 1

    def encode(self, ids) -> np.ndarray:
        """track_id values → indices 1..N (0 for unknown ids)."""
        pos = self._index.get_indexer(pd.Index(np.asarray(ids, dtype=object)))
        return (pos + 1).astype(np.int64)  # unknown: -1 + 1 = 0

    def decode(self, idx) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        out = np.empty(idx.shape, dtype=object)
        ok = idx > 0
        out[ok] = self.track_ids[idx[ok] - 1]
        out[~ok] = None
        return out

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update("\n".join(self.track_ids.tolist()).encode())
        return h.hexdigest()


# ------------------------------------------------------------------------------------------------
# containers


@dataclass(frozen=True, eq=False)
class EvalSet:
    """Evaluated strata of one period.

    ``inputs[i]`` is the model input of stratum ``stratum_ids[i]`` (oldest first);
    ``events`` holds its evaluated events: stratum_id, track_id, track_idx, feedback, ts, position,
    row (= i). ``input_ts`` / ``input_positions`` keep the inputs' times and positions (audits).
    """

    stratum_ids: list[str]
    inputs: list[Sequence_]
    events: pd.DataFrame
    input_ts: list[np.ndarray] = field(default_factory=list)
    input_positions: list[np.ndarray] = field(default_factory=list)

    @classmethod
    def empty(cls) -> EvalSet:
        return _empty_eval()

    def __len__(self) -> int:
        return len(self.stratum_ids)

    @property
    def history_len(self) -> np.ndarray:
        """(S,) number of input events per stratum."""
        return np.array([len(t) for t, _ in self.inputs], dtype=np.int64)


@dataclass(frozen=True, eq=False)
class Splits:
    kind: str  # "session" | "user"
    vocab: TrackVocab
    train: list[Sequence_]  # training sequences, oldest event first
    val: EvalSet
    test: EvalSet
    train_track_counts: np.ndarray  # (N+1,) training events per track index (cold start: 0)
    track_artist: np.ndarray | None = None  # (N+1,) artist index 1..A, 0 = unknown / padding
    track_genre: np.ndarray | None = None  # (N+1,) genre index 1..G, 0 = unknown / padding
    n_artists: int = 0
    n_genres: int = 0
    cutoffs: dict = field(default_factory=dict)  # max_ts, val_start, test_start (pd.Timestamp)
    train_stratum_ids: list[str] = field(default_factory=list)

    @property
    def n_train_events(self) -> int:
        return int(sum(len(t) for t, _ in self.train))


# ------------------------------------------------------------------------------------------------
# loading


def recorded_kind(con) -> str | None:
    """The stratum kind ingestion recorded for the warehouse's data set: ``stratum_kind`` in meta
    when present, else what the data-set key says (MSSD sessions or per-user files); None if unknown."""
    kind = get_meta(con, "stratum_kind")
    if kind in ("session", "user"):
        return kind
    key = get_meta(con, "dataset")
    if not key:
        return None
    spec = parse_dataset_spec(str(key))
    return "session" if spec.kind == "mssd" or (spec.kind == "synthetic" and spec.format == "sessions") else "user"


def load_splits(con, cfg: SplitConfig) -> Splits:
    """Read ``feedback_events`` and ``track_catalog`` from an open DuckDB connection and split,
    as sessions or users according to what ingestion recorded."""
    cols = ", ".join(EVENT_COLUMNS)
    events = con.execute(f"SELECT {cols} FROM {FEEDBACK_EVENTS} ORDER BY stratum_id, position").df()
    catalog = None
    if table_exists(con, TRACK_CATALOG):
        have = table_columns(con, TRACK_CATALOG)
        want = [c for c in ("track_id", "artist_id", "genre_id") if c in have]
        catalog = con.execute(f"SELECT {', '.join(want)} FROM {TRACK_CATALOG} ORDER BY track_id").df()
    return build_splits(events, catalog, cfg, kind=recorded_kind(con))


def detect_kind(events: pd.DataFrame) -> str:
    """A guess for frames that come without a warehouse (``load_splits`` reads the recorded kind):
    "session" for MSSD-like data (context_type set, or every stratum has <= MAX_SESSION_EVENTS events)."""
    if "context_type" in events and events["context_type"].notna().any():
        return "session"
    if "stratum_length" in events and events["stratum_length"].notna().any():
        max_len = events["stratum_length"].max()
    else:
        max_len = events.groupby("stratum_id").size().max() if len(events) else 0
    return "session" if max_len <= MAX_SESSION_EVENTS else "user"


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


def _empty_eval() -> EvalSet:
    ev = pd.DataFrame(
        {
            "stratum_id": pd.Series([], dtype=object),
            "track_id": pd.Series([], dtype=object),
            "track_idx": pd.Series([], dtype=np.int64),
            "feedback": pd.Series([], dtype=np.int64),
            "ts": pd.Series([], dtype="datetime64[ns]"),
            "position": pd.Series([], dtype=np.int64),
            "row": pd.Series([], dtype=np.int64),
        }
    )
    return EvalSet([], [], ev, [], [])


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


def _require_strata(val: EvalSet, test: EvalSet, *, events_span, starts, cfg: SplitConfig, kind: str) -> None:
    """Stop with what to change when the test period has no qualifying stratum (instead of a NaN
    AUC later and a crash in the evaluation). An empty validation period is allowed: training then
    keeps its last epoch (no early stopping), as the training log says."""
    day = lambda t: str(pd.Timestamp(t).date())  # noqa: E731
    first, last = events_span
    periods = (("test", test, starts[1], last, "test_days", cfg.test_days),)
    for name, ev, lo, hi, knob, days in periods:
        if len(ev.stratum_ids) == 0:
            raise SplitError(
                f"the {name} period {day(lo)} .. {day(hi)} ([split] {knob} = {days}) holds no {kind} that can be "
                f"evaluated (one needs earlier input events and both a positive and a negative event in the "
                f"period); the data spans {day(first)} .. {day(last)}. Change [split] {knob} / "
                f"{'test_days' if knob == 'val_days' else 'val_days'}, or check the timestamps (epoch "
                "milliseconds read as seconds, or a single stray far-future event, push the periods past "
                "the data)."
            )


def build_splits(events: pd.DataFrame, catalog: pd.DataFrame | None, cfg: SplitConfig,
                 *, kind: str | None = None) -> Splits:
    """Split a ``feedback_events``-shaped frame (see schema.py). ``kind`` overrides detection."""
    if events.empty:
        raise ValueError("feedback_events is empty: nothing to split")
    kind = kind or detect_kind(events)
    cat_ids = catalog["track_id"] if catalog is not None and "track_id" in catalog else []
    vocab = TrackVocab.from_ids(cat_ids, events["track_id"])

    ts = pd.to_datetime(events["ts"]).to_numpy(dtype="datetime64[ns]")
    max_ts = ts.max()
    test_start = max_ts - np.timedelta64(cfg.test_days, "D")
    val_start = test_start - np.timedelta64(cfg.val_days, "D")

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
    _require_strata(val, test, events_span=(ts.min(), max_ts), starts=(val_start, test_start), cfg=cfg, kind=kind)
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
