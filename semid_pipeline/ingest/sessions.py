"""Strata of per-user data: one per listener ("user"), or listening sessions ("session").

Per-user logs evaluated per user give few strata (15 listeners → 14 test strata, CIs of ±0.1);
the paper evaluated Spotify data by session. A session of a user starts at their first event and
after every gap of more than ``session_gap_minutes`` between consecutive events; a session is
also cut every ``session_max_events`` events (20 in the paper's Spotify setting), so no stratum
is longer than that. ``stratum_id`` is ``<user>#<session number>`` (1-based, zero-padded so the
ids sort in time order) and ``position`` counts within the session. The kind is recorded with
the tables (meta key ``stratum_kind``), so the splits use the sessions protocol (input = first
half, evaluated = second half) for "session" and the per-user protocol for "user".
"""

from __future__ import annotations

from ..config import IngestConfig
from ..errors import ConfigError
from ..sql import ident

STRATA = ("user", "session")


def validate(cfg: IngestConfig) -> str:
    """The configured stratum kind, or ConfigError for a bad setting."""
    if cfg.stratum not in STRATA:
        raise ConfigError(f"ingest.stratum={cfg.stratum!r}: expected one of {', '.join(STRATA)}")
    if not float(cfg.session_gap_minutes) > 0:
        raise ConfigError(f"ingest.session_gap_minutes={cfg.session_gap_minutes!r} must be > 0")
    if int(cfg.session_max_events) < 2:
        raise ConfigError(f"ingest.session_max_events={cfg.session_max_events!r} must be >= 2")
    return cfg.stratum


def strata_select(source: str, cfg: IngestConfig, *, user: str = "user_id", order: str = "ts, track_id") -> str:
    """``source`` (one row per kept event: ``user``, ts, track_id, ...) + stratum_id, position,
    stratum_length (all other columns passed through), ordered by stratum and position."""
    u = ident(user)
    if validate(cfg) == "user":
        return (
            f"SELECT *, CAST({u} AS VARCHAR) AS stratum_id, "
            f"CAST(row_number() OVER (PARTITION BY {u} ORDER BY {order}) AS INTEGER) AS position, "
            f"CAST(count(*) OVER (PARTITION BY {u}) AS INTEGER) AS stratum_length FROM {source}"
        )
    gap_us = int(round(float(cfg.session_gap_minutes) * 60 * 1_000_000))
    cut = int(cfg.session_max_events)
    return f"""
        WITH g AS (
            SELECT *, CASE WHEN lag(ts) OVER w IS NULL
                            OR epoch_us(ts) - epoch_us(lag(ts) OVER w) > {gap_us} THEN 1 ELSE 0 END AS __new,
                   row_number() OVER w AS __k
            FROM {source} WINDOW w AS (PARTITION BY {u} ORDER BY {order})
        ), s AS (
            SELECT *, sum(__new) OVER (PARTITION BY {u} ORDER BY __k ROWS UNBOUNDED PRECEDING) AS __gs FROM g
        ), c AS (
            SELECT *, row_number() OVER (PARTITION BY {u}, __gs ORDER BY __k) - 1 AS __i FROM s
        ), n AS (
            SELECT *, dense_rank() OVER (PARTITION BY {u} ORDER BY __gs, __i // {cut}) AS __sess FROM c
        )
        SELECT * EXCLUDE (__new, __k, __gs, __i, __sess),
               CAST({u} AS VARCHAR) || '#' || lpad(CAST(__sess AS VARCHAR), 6, '0') AS stratum_id,
               CAST(__i % {cut} + 1 AS INTEGER) AS position,
               CAST(count(*) OVER (PARTITION BY {u}, __sess) AS INTEGER) AS stratum_length
        FROM n
    """
