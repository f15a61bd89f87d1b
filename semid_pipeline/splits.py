"""Time-separated train / validation / test splits from the warehouse (the paper's protocol).

The paper evaluates on feedback from the period *after* training: the last ``test_days`` of event
time are the test period, the ``val_days`` before them the validation period, everything earlier
is training (``periods``: fractions of a day allowed, and the checks that each period holds data).
A stratum (a session for MSSD-like data, a user otherwise) is an AUC stratum.

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

from dataclasses import dataclass, field, replace

import duckdb
import numpy as np
import pandas as pd

from .config import SplitConfig, parse_dataset_spec
from .errors import SplitError
from .vocab import TrackVocab
from . import periods
from .schema import FEEDBACK_EVENTS, TRACK_CATALOG
from .warehouse import get_meta, table_columns, table_exists

MAX_SESSION_EVENTS = 20  # MSSD sessions hold at most 20 tracks

Sequence_ = tuple[np.ndarray, np.ndarray]  # (track_idx int64 (n,), feedback int64 (n,))

EVENT_COLUMNS = ["stratum_id", "position", "stratum_length", "ts", "track_id", "feedback",
                 "context_type", "artist_id", "genre_id"]


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
class TrainSequences:
    """S training sequences stored flat (CSR): sequence i is ``tracks[offsets[i]:offsets[i+1]]``.

    Reads like the list of ``(track_idx, feedback)`` pairs it replaces (``len``, indexing, iteration,
    ``+`` with a list) while holding three arrays instead of 2·S small ones; ``windows`` cuts its
    training windows straight from the flat arrays.
    """

    tracks: np.ndarray  # (E,) int64 track index, oldest event first within each sequence
    feedback: np.ndarray  # (E,) int64 0/1
    offsets: np.ndarray  # (S+1,) int64, offsets[0] = 0, offsets[-1] = E

    @classmethod
    def from_list(cls, seqs) -> TrainSequences:
        seqs = list(seqs)
        lens = np.array([len(t) for t, _ in seqs], dtype=np.int64)
        cat = lambda xs: np.concatenate(xs).astype(np.int64) if xs else np.empty(0, np.int64)  # noqa: E731
        return cls(tracks=cat([np.asarray(t) for t, _ in seqs]), feedback=cat([np.asarray(f) for _, f in seqs]),
                   offsets=np.r_[0, np.cumsum(lens)].astype(np.int64))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i):
        if isinstance(i, slice):
            return TrainSequences.from_list([self[j] for j in range(*i.indices(len(self)))])
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        lo, hi = self.offsets[i], self.offsets[i + 1]
        return self.tracks[lo:hi], self.feedback[lo:hi]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __add__(self, other) -> list[Sequence_]:
        return list(self) + list(other)

    @property
    def lengths(self) -> np.ndarray:
        """(S,) events per sequence."""
        return np.diff(self.offsets)


def as_train_sequences(seqs) -> TrainSequences:
    """A ``TrainSequences`` as is; a list of (tracks, feedback) pairs packed flat."""
    return seqs if isinstance(seqs, TrainSequences) else TrainSequences.from_list(seqs)


@dataclass(frozen=True, eq=False)
class Splits:
    kind: str  # "session" | "user"
    vocab: TrackVocab
    train: TrainSequences  # training sequences, oldest event first (a list of pairs is accepted too)
    val: EvalSet
    test: EvalSet
    train_track_counts: np.ndarray  # (N+1,) training events per track index (cold start: 0)
    track_artist: np.ndarray | None = None  # (N+1,) artist index 1..A, 0 = unknown / padding
    track_genre: np.ndarray | None = None  # (N+1,) genre index 1..G, 0 = unknown / padding
    n_artists: int = 0
    n_genres: int = 0
    cutoffs: dict = field(default_factory=dict)  # max_ts, val_start, test_start (pd.Timestamp)
    train_stratum_ids: list[str] = field(default_factory=list)
    # (E,) datetime64[ns] of each training event, aligned with ``train.tracks`` (None: unknown, e.g.
    # after ``diagnostics.shuffle_splits``): trailing windows before the validation period
    train_ts: np.ndarray | None = None
    training_problem: str | None = None  # why nothing can be trained on (``periods.training_problem``), or None
    # with a training problem: (test, validation) strata the suggested periods would hold (None: none suggested)
    suggested_strata: tuple[int, int] | None = None

    @property
    def n_train_events(self) -> int:
        return int(sum(len(t) for t, _ in self.train)) if not isinstance(self.train, TrainSequences) \
            else int(self.train.offsets[-1])

    def train_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(E,) track indices and (E,) feedback of every training event, sequence after sequence."""
        t = as_train_sequences(self.train)
        return t.tracks, t.feedback


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
    return "session" if parse_dataset_spec(str(key)).mssd_format else "user"


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


def _detect_kind_sql(con, columns: set[str]) -> str:
    """``detect_kind`` on the warehouse table, without reading it into memory."""
    if "context_type" in columns and con.execute(
            f"SELECT count(*) FROM {FEEDBACK_EVENTS} WHERE context_type IS NOT NULL").fetchone()[0]:
        return "session"
    max_len = None
    if "stratum_length" in columns:
        max_len = con.execute(f"SELECT max(stratum_length) FROM {FEEDBACK_EVENTS}").fetchone()[0]
    if max_len is None:
        max_len = con.execute(f"SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM {FEEDBACK_EVENTS} "
                              "GROUP BY stratum_id)").fetchone()[0]
    return "session" if max_len <= MAX_SESSION_EVENTS else "user"


def load_splits(con, cfg: SplitConfig) -> Splits:
    """Split ``feedback_events`` (+ ``track_catalog``) of an open DuckDB connection, as sessions or
    users according to what ingestion recorded. The ordering, per-stratum positions and period
    cutoffs are computed in DuckDB; only numeric columns of the sorted events come back."""
    ev_cols = set(table_columns(con, FEEDBACK_EVENTS))
    cat_cols = set(table_columns(con, TRACK_CATALOG)) if table_exists(con, TRACK_CATALOG) else None
    kind = recorded_kind(con) or _detect_kind_sql(con, ev_cols)
    return _split_sql(con, cfg, kind=kind, ev_cols=ev_cols, cat_cols=cat_cols)


def build_splits(events: pd.DataFrame, catalog: pd.DataFrame | None, cfg: SplitConfig,
                 *, kind: str | None = None) -> Splits:
    """Split a ``feedback_events``-shaped frame (see schema.py). ``kind`` overrides detection.
    The frames are loaded into an in-memory DuckDB and split exactly as ``load_splits`` does."""
    if events.empty:
        raise ValueError("feedback_events is empty: nothing to split")
    kind = kind or detect_kind(events)
    with duckdb.connect() as con:
        con.register("_events_frame", events)
        con.execute(f"CREATE TABLE {FEEDBACK_EVENTS} AS SELECT * FROM _events_frame")
        cat_cols = None
        if catalog is not None and "track_id" in catalog:
            con.register("_catalog_frame", catalog)
            con.execute(f"CREATE TABLE {TRACK_CATALOG} AS SELECT * FROM _catalog_frame")
            cat_cols = set(catalog.columns)
        return _split_sql(con, cfg, kind=kind, ev_cols=set(events.columns), cat_cols=cat_cols)


def _vocab_sql(cat_cols: set[str] | None) -> str:
    union = f" UNION ALL SELECT CAST(track_id AS VARCHAR) FROM {TRACK_CATALOG}" if cat_cols else ""
    return (f"SELECT DISTINCT track_id FROM (SELECT CAST(track_id AS VARCHAR) AS track_id FROM {FEEDBACK_EVENTS}"
            f"{union}) WHERE track_id IS NOT NULL")


def _sorted_events(con, kind: str, cat_cols: set[str] | None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(stratum ids (S,) sorted, arrays of the events sorted by stratum then order): sc (stratum
    code), rn (0-based position in the stratum: ``row_number`` per stratum), ts, position,
    track_idx (1..N, 0 unknown), feedback (0/1). Users are ordered by time, then position; sessions
    by position, then time."""
    order = "e.ts, e.position" if kind == "user" else "e.position, e.ts"
    strata = f"SELECT stratum_id, row_number() OVER (ORDER BY stratum_id) - 1 AS sc FROM " \
             f"(SELECT DISTINCT CAST(stratum_id AS VARCHAR) AS stratum_id FROM {FEEDBACK_EVENTS})"
    ids = con.execute(f"SELECT stratum_id FROM ({strata}) ORDER BY sc").fetchnumpy()["stratum_id"]
    q = f"""
        WITH v AS (SELECT track_id, row_number() OVER (ORDER BY track_id) AS track_idx FROM ({_vocab_sql(cat_cols)})),
             s AS ({strata}),
             e AS (SELECT CAST(stratum_id AS VARCHAR) AS stratum_id, CAST(position AS BIGINT) AS position,
                          CAST(ts AS TIMESTAMP) AS ts, CAST(track_id AS VARCHAR) AS track_id,
                          CAST(feedback > 0 AS BIGINT) AS feedback FROM {FEEDBACK_EVENTS})
        SELECT s.sc, row_number() OVER (PARTITION BY s.sc ORDER BY {order}) - 1 AS rn, e.ts, e.position,
               coalesce(v.track_idx, 0) AS track_idx, e.feedback
        FROM e JOIN s USING (stratum_id) LEFT JOIN v USING (track_id)
        ORDER BY s.sc, rn"""
    a = con.execute(q).fetchnumpy()
    out = {k: np.asarray(a[k], dtype=np.int64) for k in ("sc", "rn", "position", "track_idx", "feedback")}
    out["ts"] = np.asarray(a["ts"]).astype("datetime64[ns]")
    return np.asarray(ids, dtype=object), out


def _stratum_cutoffs(con, bounds: dict[str, np.datetime64], n_strata: int) -> dict[str, np.ndarray]:
    """Per stratum code (S,): number of events and, for each named bound, the number strictly
    before it — with events sorted by time inside a user, the index where that period starts."""
    names = list(bounds)
    counts = ", ".join(f"count_if(CAST(ts AS TIMESTAMP) < ?) AS {n}" for n in names)
    q = f"""WITH s AS (SELECT stratum_id, row_number() OVER (ORDER BY stratum_id) - 1 AS sc FROM
                 (SELECT DISTINCT CAST(stratum_id AS VARCHAR) AS stratum_id FROM {FEEDBACK_EVENTS}))
            SELECT s.sc, count(*) AS n, {counts} FROM
                 (SELECT CAST(stratum_id AS VARCHAR) AS stratum_id, ts FROM {FEEDBACK_EVENTS}) e
            JOIN s USING (stratum_id) GROUP BY s.sc ORDER BY s.sc"""
    params = [pd.Timestamp(bounds[n]).to_pydatetime() for n in names]
    a = con.execute(q, params).fetchnumpy()
    assert len(a["sc"]) == n_strata
    return {k: np.asarray(a[k], dtype=np.int64) for k in ["n"] + names}


def _ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(lo[i], hi[i])`` for every i, without a Python loop."""
    n = hi - lo
    if n.sum() == 0:
        return np.empty(0, np.int64)
    starts = np.repeat(lo - np.r_[0, np.cumsum(n)[:-1]], n)
    return starts + np.arange(n.sum(), dtype=np.int64)


def _eval_set(a: dict, ids: np.ndarray, vocab: TrackVocab, inp: tuple[np.ndarray, np.ndarray],
              ev: tuple[np.ndarray, np.ndarray], keep: np.ndarray) -> EvalSet:
    """Evaluated strata ``ids[keep]`` with input rows [inp[0], inp[1]) and evaluated rows [ev[0], ev[1])."""
    i_lo, i_hi, e_lo, e_hi = (x[keep] for x in (*inp, *ev))
    if not len(i_lo):
        return _empty_eval()
    take = _ranges(e_lo, e_hi)
    row = np.repeat(np.arange(len(i_lo), dtype=np.int64), e_hi - e_lo)
    strata = ids[keep]
    events = pd.DataFrame({
        "stratum_id": strata[row], "track_id": vocab.decode(a["track_idx"][take]),
        "track_idx": a["track_idx"][take], "feedback": a["feedback"][take],
        "ts": pd.to_datetime(a["ts"][take]), "position": a["position"][take], "row": row,
    })
    sl = [slice(lo, hi) for lo, hi in zip(i_lo.tolist(), i_hi.tolist())]
    return EvalSet(strata.tolist(), [(a["track_idx"][s], a["feedback"][s]) for s in sl], events,
                   [a["ts"][s] for s in sl], [a["position"][s] for s in sl])


def _evaluable(a: dict, inp: tuple[np.ndarray, np.ndarray], ev: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(S,) bool: a non-empty input and >= 1 positive and >= 1 negative evaluated event."""
    cum = np.r_[0, np.cumsum(a["feedback"])]
    n_ev, n_pos = ev[1] - ev[0], cum[ev[1]] - cum[ev[0]]
    return (inp[1] > inp[0]) & (n_ev > 0) & (n_pos > 0) & (n_pos < n_ev)


def _periods(a: dict, c: dict, starts: np.ndarray, ends: np.ndarray, cfg: SplitConfig, kind: str,
             bounds: dict[str, np.datetime64]):
    """Row ranges per stratum: train (lo, hi), and for val / test (input (lo, hi), evaluated (lo, hi))."""
    if kind == "session":
        stop = np.minimum(ends, starts + cfg.max_session_len)
        first = a["ts"][starts]
        half = starts + (stop - starts) // 2
        is_train = first < bounds["val_start"]
        in_val = ~is_train & (first < bounds["test_start"])
        in_test = ~is_train & ~in_val
        train = (starts, np.where(is_train, stop, starts))
        val = ((starts, np.where(in_val, half, starts)), (half, np.where(in_val, stop, half)))
        test = ((starts, np.where(in_test, half, starts)), (half, np.where(in_test, stop, half)))
        return train, val, test
    if kind != "user":
        raise ValueError(f"unknown stratum kind {kind!r}; expected 'session' or 'user'")
    H = cfg.max_user_history
    i_val, i_test = starts + c["val_start"], starts + c["test_start"]
    val_in = (np.maximum(starts + c["val_lookback"], i_val - H), i_val)
    test_in = (np.maximum(starts + c["test_lookback"], i_test - H), i_test)
    return (starts, i_val), (val_in, (i_val, i_test)), (test_in, (i_test, ends))


def _split_sql(con, cfg: SplitConfig, *, kind: str, ev_cols: set[str], cat_cols: set[str] | None,
               suggest: bool = True) -> Splits:
    """The split itself, on a connection holding ``feedback_events`` (+ ``track_catalog``).
    ``suggest``: where nothing can be trained on, suggest periods that fit the data and split with them
    to say how many strata they would hold (``Splits.suggested_strata``)."""
    n, lo_ts, hi_ts = con.execute(f"SELECT count(*), min(CAST(ts AS TIMESTAMP)), max(CAST(ts AS TIMESTAMP)) "
                                  f"FROM {FEEDBACK_EVENTS}").fetchone()
    if not n:
        raise ValueError("feedback_events is empty: nothing to split")
    if kind not in ("session", "user"):
        raise ValueError(f"unknown stratum kind {kind!r}; expected 'session' or 'user'")
    max_ts = np.datetime64(pd.Timestamp(hi_ts), "ns")
    val_start, test_start = periods.starts(max_ts, cfg)
    lookback = np.timedelta64(cfg.max_lookback_days, "D")
    bounds = {"val_start": val_start, "test_start": test_start, "val_lookback": val_start - lookback,
              "test_lookback": test_start - lookback}
    vocab = TrackVocab(np.asarray(con.execute(f"{_vocab_sql(cat_cols)} ORDER BY track_id").fetchnumpy()["track_id"],
                                  dtype=object))
    ids, a = _sorted_events(con, kind, cat_cols)
    c = _stratum_cutoffs(con, bounds, len(ids))
    starts = np.r_[0, np.cumsum(c["n"])[:-1]].astype(np.int64)
    ends = starts + c["n"]
    (t_lo, t_hi), val_r, test_r = _periods(a, c, starts, ends, cfg, kind, bounds)
    has_train = t_hi > t_lo
    take = _ranges(t_lo[has_train], t_hi[has_train])
    train = TrainSequences(tracks=a["track_idx"][take], feedback=a["feedback"][take],
                           offsets=np.r_[0, np.cumsum(t_hi[has_train] - t_lo[has_train])].astype(np.int64))
    val, test = (_eval_set(a, ids, vocab, r[0], r[1], _evaluable(a, *r)) for r in (val_r, test_r))
    span = (np.datetime64(pd.Timestamp(lo_ts), "ns"), max_ts)
    n_trainable = int(((t_hi - t_lo) >= 2).sum())
    periods.require_strata(test, events_span=span, starts=(val_start, test_start), cfg=cfg, kind=kind)
    suggested, held = None, None  # periods that would fit the data, and the (test, validation) strata they hold
    if not n_trainable and suggest:
        quantiles = con.execute(f"SELECT quantile_disc(CAST(ts AS TIMESTAMP), {list(periods.SUGGESTED_SHARES)}) "
                                f"FROM {FEEDBACK_EVENTS}").fetchone()[0]
        suggested = periods.suggestion(max_ts, quantiles)
        try:
            alt = _split_sql(con, replace(cfg, test_days=suggested[0], val_days=suggested[1]), kind=kind,
                             ev_cols=ev_cols, cat_cols=cat_cols, suggest=False)
            held = (len(alt.test), len(alt.val))
        except SplitError:  # no test stratum with them either
            held = (0, 0)
    problem = periods.training_problem(n_trainable, events_span=span, val_start=val_start, cfg=cfg, suggested=suggested,
                                       suggested_strata=held)
    counts = np.bincount(train.tracks, minlength=vocab.n_tokens).astype(np.int64)
    counts[0] = 0
    for es in (val, test):
        es.events["is_cold"] = counts[es.events["track_idx"].to_numpy(dtype=np.int64)] == 0
    artist, n_art = _metadata_index(con, vocab, "artist_id", ev_cols, cat_cols)
    genre, n_gen = _metadata_index(con, vocab, "genre_id", ev_cols, cat_cols)
    return Splits(kind=kind, vocab=vocab, train=train, val=val, test=test, train_track_counts=counts,
                  track_artist=artist, track_genre=genre, n_artists=n_art, n_genres=n_gen,
                  cutoffs={"max_ts": pd.Timestamp(max_ts), "val_start": pd.Timestamp(val_start),
                           "test_start": pd.Timestamp(test_start)},
                  train_stratum_ids=ids[has_train].tolist(), train_ts=a["ts"][take], training_problem=problem,
                  suggested_strata=held)


def _metadata_index(con, vocab: TrackVocab, col: str, ev_cols: set[str], cat_cols: set[str] | None):
    """(N+1,) index array (1..K, 0 unknown) for ``col`` (artist_id / genre_id), or (None, 0) if absent.
    A track's value comes from the catalogue when it has one, else from its first event."""
    parts = []
    if cat_cols and col in cat_cols:
        parts.append(f"SELECT CAST(track_id AS VARCHAR) AS track_id, CAST({col} AS VARCHAR) AS v, 0 AS src, "
                     f"'' AS o1, CAST(0 AS BIGINT) AS o2 FROM {TRACK_CATALOG}")
    if col in ev_cols:
        parts.append(f"SELECT CAST(track_id AS VARCHAR) AS track_id, CAST({col} AS VARCHAR) AS v, 1 AS src, "
                     f"CAST(stratum_id AS VARCHAR) AS o1, CAST(position AS BIGINT) AS o2 FROM {FEEDBACK_EVENTS}")
    if not parts:
        return None, 0
    q = (f"SELECT track_id, arg_min(v, struct_pack(a := src, b := o1, c := o2)) AS v "
         f"FROM ({' UNION ALL '.join(parts)}) "
         "WHERE track_id IS NOT NULL AND v IS NOT NULL GROUP BY track_id")
    got = con.execute(q).fetchnumpy()
    if not len(got["track_id"]):
        return None, 0
    vals = np.asarray(got["v"], dtype=object)
    values = np.array(sorted(set(vals.tolist())), dtype=object)
    codes = pd.Index(values).get_indexer(pd.Index(vals)) + 1
    out = np.zeros(vocab.n_tokens, dtype=np.int64)
    idx = vocab.encode(np.asarray(got["track_id"], dtype=object))
    keep = idx > 0
    out[idx[keep]] = codes[keep]
    return out, len(values)
