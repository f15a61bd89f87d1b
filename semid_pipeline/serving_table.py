"""The ``recommendations`` table: who is served, building every list, writing it, checking it.

Who is served: for per-user data every listener with events in the last ``active_days`` of the
data (the model reads their last ``max_len`` events; the whole log decides what was heard); for
session data every session that starts on the last day (its events are the history).

The checks are plain functions over the table's rows, so the Dagster checks stay thin and tests
can plant each violation directly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from html import escape

import numpy as np
import pandas as pd

from .report import ReportSection
from .schema import FEEDBACK_EVENTS
from .serving import Recommender, ServePolicy, render_sample_lists
from .warehouse import atomic, table_exists

RECOMMENDATIONS = "recommendations"
COLUMNS = {
    "partition_key": "VARCHAR",
    "listener_id": "VARCHAR",
    "rank": "INTEGER",
    "track_id": "VARCHAR",
    "score": "DOUBLE",
    "is_cold": "BOOLEAN",
}


@dataclass(frozen=True)
class Listeners:
    """Served listeners: ids and their histories [(track_id, feedback), ...] oldest first."""

    ids: list[str]
    histories: list[list[tuple[str, int]]]
    kind: str
    since: pd.Timestamp


def active_listeners(con, *, kind: str, active_days: int) -> Listeners:
    """Listeners active in the last ``active_days`` (users) or sessions of the last day (sessions)."""
    ev = con.execute(
        f"SELECT stratum_id, ts, position, track_id, feedback FROM {FEEDBACK_EVENTS} "
        "ORDER BY stratum_id, " + ("ts, position" if kind == "user" else "position, ts")
    ).df()
    if ev.empty:
        return Listeners([], [], kind, pd.NaT)
    ev["ts"] = pd.to_datetime(ev["ts"])
    max_ts = ev["ts"].max()
    if kind == "session":
        since = max_ts.normalize()
        first = ev.groupby("stratum_id", sort=False)["ts"].min()
        active = set(first.index[first >= since].astype(str))
    else:
        since = max_ts - pd.Timedelta(days=active_days)
        active = set(ev.loc[ev["ts"] >= since, "stratum_id"].astype(str))
    ev = ev[ev["stratum_id"].astype(str).isin(active)]
    ids, hists = [], []
    for sid, grp in ev.groupby("stratum_id", sort=True):
        ids.append(str(sid))
        hists.append(list(zip(grp["track_id"].astype(str), (grp["feedback"].to_numpy() > 0).astype(int).tolist())))
    return Listeners(ids, hists, kind, since)


def build_recommendations(rec: Recommender, listeners: Listeners, *, n: int, policy: ServePolicy,
                          batch: int = 1024) -> tuple[pd.DataFrame, dict]:
    """Every served listener's top-n as table rows, plus timing (seconds, lists per second)."""
    t0 = time.perf_counter()
    frames = []
    for s in range(0, len(listeners.ids), batch):
        lists = rec.recommend_batch(listeners.histories[s: s + batch], n=n, policy=policy)
        for lid, r in zip(listeners.ids[s: s + batch], lists):
            frames.append(pd.DataFrame({
                "listener_id": lid, "rank": np.arange(1, len(r.track_ids) + 1, dtype=np.int32),
                "track_id": r.track_ids, "score": np.asarray(r.scores, dtype=np.float64),
                "is_cold": rec.is_cold.numpy()[np.asarray(r.track_idx, dtype=np.int64)] if r.track_idx else [],
            }))
    seconds = time.perf_counter() - t0
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({c: [] for c in COLUMNS if c != "partition_key"})
    df.insert(0, "partition_key", rec.partition_key)
    df = df.astype({"rank": "int32", "is_cold": bool, "score": "float64"})
    return df, {"seconds": seconds, "lists_per_s": len(listeners.ids) / max(seconds, 1e-9)}


def write_recommendations(con, partition_key: str, df: pd.DataFrame) -> None:
    """Replace one partition's rows in one transaction (other partitions untouched)."""
    cols = ", ".join(f"{c} {t}" for c, t in COLUMNS.items())
    with atomic(con):
        con.execute(f"CREATE TABLE IF NOT EXISTS {RECOMMENDATIONS} ({cols})")
        con.execute(f"DELETE FROM {RECOMMENDATIONS} WHERE partition_key = ?", [partition_key])
        frame = df[list(COLUMNS)]
        con.register("_recs", frame)
        try:
            con.execute(f"INSERT INTO {RECOMMENDATIONS} SELECT * FROM _recs")
        finally:
            con.unregister("_recs")


def read_recommendations(con, partition_key: str) -> pd.DataFrame:
    return con.execute(
        f"SELECT * FROM {RECOMMENDATIONS} WHERE partition_key = ? ORDER BY listener_id, rank", [partition_key]
    ).df()


def sample_lists_section(con, catalog: pd.DataFrame | None, *, listeners: int = 5, top: int = 10
                         ) -> ReportSection | None:
    """The report's *Sample recommendations*: the first ``listeners`` lists (top ``top``) of every
    partition in the table, with titles and artists; None when no ``recommendations`` exist yet."""
    if not table_exists(con, RECOMMENDATIONS):
        return None
    keys = [r[0] for r in con.execute(
        f"SELECT DISTINCT partition_key FROM {RECOMMENDATIONS} ORDER BY partition_key").fetchall()]
    if not keys:
        return None
    parts = {key: read_recommendations(con, key) for key in keys}
    kw = {"listeners": listeners, "top": top}
    body = "\n".join(f"<h3>{escape(key)}</h3>\n" + render_sample_lists(df, catalog, html=True, **kw)
                     for key, df in parts.items())
    md = "\n\n".join(f"### {key}\n\n" + render_sample_lists(df, catalog, **kw) for key, df in parts.items())
    return ReportSection(title="Sample recommendations", html=body, markdown=md)


# ------------------------------------------------------------------------------------------------
# checks: each returns (passed, metadata)


def _first(bad: pd.DataFrame, k: int = 5) -> list[dict]:
    return bad.head(k).astype(str).to_dict("records")


def check_list_lengths(recs: pd.DataFrame, *, n: int, expected: dict[str, int]) -> tuple[bool, dict]:
    """Exactly min(n, eligible tracks) rows per served listener; every served listener present."""
    got = recs.groupby("listener_id").size().to_dict()
    bad = [{"listener_id": lid, "rows": int(got.get(lid, 0)), "expected": int(e)}
           for lid, e in expected.items() if int(got.get(lid, 0)) != int(e)]
    extra = sorted(set(got) - set(expected))
    short = sum(1 for e in expected.values() if e < n)
    return not bad and not extra, {
        "n": n, "listeners": len(expected), "wrong_length": len(bad), "unexpected_listeners": len(extra),
        "shorter_because_catalogue_smaller": short, "first_offending": bad[:5] + [{"listener_id": x} for x in extra[:5]],
    }


def check_no_duplicates(recs: pd.DataFrame) -> tuple[bool, dict]:
    dup = recs[recs.duplicated(["listener_id", "track_id"], keep=False)]
    return dup.empty, {"duplicate_rows": int(len(dup)), "first_offending": _first(dup)}


def check_scores_sorted(recs: pd.DataFrame) -> tuple[bool, dict]:
    """Ranks are 1..len per listener and scores never increase with rank."""
    r = recs.sort_values(["listener_id", "rank"], kind="stable")
    same = r["listener_id"].eq(r["listener_id"].shift())
    rising = same & (r["score"] > r["score"].shift())
    ranks_ok = r.groupby("listener_id")["rank"].apply(lambda x: list(x) == list(range(1, len(x) + 1)))
    bad = r[rising]
    return bad.empty and bool(ranks_ok.all()), {
        "score_increases": int(rising.sum()), "listeners_with_bad_ranks": int((~ranks_ok).sum()),
        "first_offending": _first(bad),
    }


def check_in_catalogue(recs: pd.DataFrame, catalogue_ids) -> tuple[bool, dict]:
    bad = recs[~recs["track_id"].astype(str).isin(set(map(str, catalogue_ids)))]
    return bad.empty, {"tracks_not_in_catalogue": int(len(bad)), "first_offending": _first(bad)}


def excluded_sets(listeners: Listeners, policy: ServePolicy) -> dict[str, set[str]]:
    """Per listener, the tracks the policy forbids (heard and/or skipped in their history)."""
    out = {}
    for lid, hist in zip(listeners.ids, listeners.histories):
        out[lid] = {t for t, f in hist if (f > 0 and policy.exclude_heard) or (f <= 0 and policy.exclude_skipped)}
    return out


def check_policy(recs: pd.DataFrame, *, policy: ServePolicy, excluded: dict[str, set[str]],
                 cold_ids: set[str], artist_of: dict[str, str]) -> tuple[bool, dict]:
    """No excluded (heard/skipped) track, no cold-start track when they are off, the artist cap kept."""
    forbidden = np.array([t in excluded.get(l, ()) for l, t in zip(recs["listener_id"], recs["track_id"])], dtype=bool)
    cold = recs["track_id"].isin(cold_ids).to_numpy() if not policy.include_cold_start else np.zeros(len(recs), bool)
    over = pd.Series(False, index=recs.index)
    if policy.artist_cap > 0 and artist_of:
        art = recs["track_id"].map(artist_of)
        known = art.notna()
        counts = recs[known].assign(a=art[known]).groupby(["listener_id", "a"])["track_id"].transform("size")
        over.loc[counts.index] = counts > policy.artist_cap
    bad = recs[forbidden | cold | over.to_numpy()]
    return bad.empty, {
        "policy": {"exclude_heard": policy.exclude_heard, "exclude_skipped": policy.exclude_skipped,
                   "include_cold_start": policy.include_cold_start, "artist_cap": policy.artist_cap},
        "excluded_tracks_listed": int(forbidden.sum()), "cold_start_listed_when_off": int(cold.sum()),
        "over_artist_cap": int(over.sum()), "first_offending": _first(bad),
    }


def expected_lengths(listeners: Listeners, excluded: dict[str, set[str]], *, n: int, n_catalogue: int,
                     n_cold_excluded: int = 0) -> dict[str, int]:
    """min(n, tracks left after the listener's exclusions): a list is shorter only when the catalogue is."""
    return {lid: min(n, n_catalogue - n_cold_excluded - len(excluded[lid])) for lid in listeners.ids}


def summary(recs: pd.DataFrame, *, n_catalogue: int, artist_of: dict[str, str]) -> dict:
    """Listeners served, catalogue coverage, cold-start share, distinct artists per list."""
    per_list = recs.assign(a=recs["track_id"].map(artist_of)).groupby("listener_id")["a"].nunique() if artist_of else None
    return {
        "listeners_served": int(recs["listener_id"].nunique()),
        "rows": int(len(recs)),
        "catalogue_coverage": float(recs["track_id"].nunique() / max(n_catalogue, 1)),
        "cold_start_share": float(recs["is_cold"].mean()) if len(recs) else 0.0,
        "distinct_artists_per_list": float(per_list.mean()) if per_list is not None and len(per_list) else float("nan"),
    }
