"""Spotify "extended streaming history" exports (``Streaming_History_Audio_*.json``, older
``endsong_*.json``): the listening data a person can download about themselves.

Each file is one JSON array of plays. It is streamed through DuckDB's JSON reader with an
explicit column list (``FIELDS``), so the personal fields of the export (``ip_addr``,
``conn_country``, ``platform``, ``username``, ``user_agent_decrypted`` ...) are never parsed and
never reach the warehouse, the artifacts, the logs or the metadata.

Labels (``[ingest]`` ``spotify_*`` keys): negative = ``skipped`` is true, or fewer than
``spotify_min_ms_played`` ms played with ``reason_end`` in ``spotify_short_reasons``; positive =
``reason_end`` in ``spotify_positive_reasons`` and not negative; every other play is dropped and
counted by reason, as are podcast episodes and audiobooks (no track URI). One sub-folder per
listener (user id = folder name), or one listener's export (user id = the folder's name). The
catalogue comes from the plays (track URI, artist, album, title: metadata only). Duplicates,
timestamps, strata (``sessions``), the one-transaction publish and the record work as for the
per-user events files.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from .. import warehouse as wh
from ..config import IngestConfig
from ..errors import ConfigError, InputDataError
from ..schema import FEEDBACK_EVENTS
from ..sql import literal
from . import sessions, timestamps
from .diagnose import EXAMPLES, duck_msg, raise_first_rows, row_offset
from .files import check_exists, hash_all
from .publish import publish
from .records import FileRecord, IngestionResult

# The only fields ever read (DuckDB parses nothing else of a record).
FIELDS = (
    "ts", "ms_played", "master_metadata_track_name", "master_metadata_album_artist_name",
    "master_metadata_album_album_name", "spotify_track_uri", "reason_end", "skipped",
    "spotify_episode_uri", "audiobook_uri",
)
EXPORT_RX = re.compile(r"^(Streaming_History_Audio_.*|endsong_.*)\.json$", re.IGNORECASE)
OTHER_EXPORT_RX = re.compile(r"^StreamingHistory.*\.json$", re.IGNORECASE)
HOW_TO_REQUEST = (
    "this looks like the basic 'account data' export (StreamingHistory_music_*.json: endTime, artistName, "
    "trackName, msPlayed), which has no track URI and no skip flag; the 'Extended streaming history' export "
    "is needed (Streaming_History_Audio_*.json or endsong_*.json): request it in your Spotify account under "
    "Privacy settings → 'Extended streaming history'; it arrives by e-mail within about 30 days as a zip of "
    "JSON files"
)
MISSING_IN_BASIC = "ts, spotify_track_uri, skipped"  # fields the basic export lacks
PODCAST, AUDIOBOOK, NO_URI = "podcast episode (no track URI)", "audiobook (no track URI)", "no track URI"
DUPLICATE = "duplicate"
_ST = "_semid_stage_spotify"


def _exports_in(folder: Path) -> list[Path]:
    found = sorted(q for q in folder.iterdir() if q.is_file() and EXPORT_RX.match(q.name))
    other = sorted(q for q in folder.iterdir() if q.is_file() and OTHER_EXPORT_RX.match(q.name))
    if not found and other:
        raise InputDataError(HOW_TO_REQUEST, file=str(other[0]), column=MISSING_IN_BASIC)
    return found


def resolve_spotify_paths(paths: list[str | Path]) -> list[tuple[str, Path]]:
    """(listener, file) pairs: a folder of export files is one listener (its name), a folder of
    sub-folders is one listener per sub-folder; a file belongs to the listener named by its folder."""
    out: list[tuple[str, Path]] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            direct = _exports_in(p)
            if direct:
                out += [(p.resolve().name, f) for f in direct]
                continue
            subs = sorted(q for q in p.iterdir() if q.is_dir() and not q.name.startswith("."))
            per = [(s.name, f) for s in subs for f in _exports_in(s)]
            if not per:
                raise InputDataError(
                    "folder holds no Spotify extended-streaming-history files (Streaming_History_Audio_*.json or "
                    "endsong_*.json), neither directly nor in one sub-folder per listener",
                    file=str(p), column="(none)")
            out += per
        elif p.exists():
            out.append((p.resolve().parent.name, p))
        else:
            raise InputDataError("Spotify streaming-history path does not exist", file=str(p), column="(none)")
    unique: dict[Path, tuple[str, Path]] = {}
    for u, f in out:  # a file named twice is read once
        unique.setdefault(f.resolve(), (u, f))
    folders: dict[str, set[Path]] = {}
    for u, f in unique.values():
        folders.setdefault(u, set()).add(f.resolve().parent)
    clash = {u: sorted(map(str, d)) for u, d in folders.items() if len(d) > 1}
    if clash:  # two different folders of the same name would silently merge two people
        u, dirs = next(iter(clash.items()))
        raise InputDataError(f"two folders give the same listener id {u!r}; rename one of them",
                             file=", ".join(dirs), column="(folder name = listener id)")
    return list(unique.values())


def _sniff(path: Path) -> None:
    """The file must be a JSON array of plays of the extended export, not the basic one."""
    check_exists(path, "Spotify streaming-history")
    with open(path, "rb") as f:
        head = f.read(8192)
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if OTHER_EXPORT_RX.match(path.name) or ('"endTime"' in text and '"ts"' not in text):
        raise InputDataError(HOW_TO_REQUEST, file=str(path), column=MISSING_IN_BASIC)
    if not text.startswith("["):
        raise InputDataError(
            f"Spotify streaming-history file is not a JSON array of plays (starts with {text[:40]!r})",
            file=str(path), column="(whole file)")


def _stage_file(con, path: Path, fi: int, user: str, cfg: IngestConfig) -> tuple[str, int]:
    """Read ONE export file (only ``FIELDS``) into a temp table with its record numbers; validate."""
    _sniff(path)
    raw = f"{_ST}_raw"
    cols = "{" + ", ".join(f"{literal(c)}: 'VARCHAR'" for c in FIELDS) + "}"
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {raw} AS SELECT * FROM "
                    f"read_json({literal(str(path))}, format='array', columns={cols})")
    except duckdb.Error as e:
        hint = " (the file looks truncated: download or unzip it again)" if "end of data" in str(e) else ""
        raise InputDataError(f"Spotify streaming-history file is not valid JSON{hint}: {duck_msg(e)}",
                             file=str(path), column="(whole file)") from e
    out = f"{_ST}_{fi}"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {out} AS SELECT CAST({fi} AS INTEGER) AS __fi, "
        f"CAST(rowid + {row_offset(con, raw, 'row')} AS BIGINT) AS __rec, {literal(path.name)} AS __src, "
        f"{literal(user)} AS user_id, *, {timestamps.ts_expr('ts', 'VARCHAR', cfg.timestamp_unit)} AS __ts, "
        f"TRY_CAST(ms_played AS BIGINT) AS __ms, TRY_CAST(skipped AS BOOLEAN) AS __skip FROM {raw} ORDER BY rowid")
    con.execute(f"DROP TABLE IF EXISTS {raw}")
    lo, hi = timestamps.validate_time_config(cfg)
    checks = [
        ("ts IS NULL", "ts", "missing value", "ts"),
        ("__ts IS NULL", "ts", "wrong type (expected an ISO timestamp such as 2023-04-01T18:02:11Z)", "ts"),
        (timestamps.out_of_range("__ts", lo, hi), "ts", timestamps.range_reason(lo, hi), "ts"),
        ("ms_played IS NULL", "ms_played", "missing value", "ms_played"),
        ("__ms IS NULL OR __ms < 0", "ms_played", "wrong type (expected a whole number of milliseconds >= 0)",
         "ms_played"),
        ("skipped IS NOT NULL AND __skip IS NULL", "skipped", "wrong type (expected true, false or null)",
         "skipped"),
    ]
    for pred, column, reason, show in checks:
        raise_first_rows(con, table=out, predicate=pred, line="__rec", label="record", column=column,
                         reason=f"Spotify streaming-history file: {reason}", path=path, show=show)
    return out, int(con.execute(f"SELECT count(*) FROM {out}").fetchone()[0])


def _label_sql(cfg: IngestConfig) -> tuple[str, str]:
    """(feedback expression 1/0/NULL, drop-reason expression) over a staged file's columns."""
    short = ", ".join(literal(r) for r in cfg.spotify_short_reasons) or "NULL"
    pos = ", ".join(literal(r) for r in cfg.spotify_positive_reasons) or "NULL"
    neg = f"(coalesce(__skip, false) OR (__ms < {int(cfg.spotify_min_ms_played)} AND reason_end IN ({short})))"
    fb = f"CASE WHEN spotify_track_uri IS NULL THEN NULL WHEN {neg} THEN 0 WHEN reason_end IN ({pos}) THEN 1 END"
    reason = (
        f"CASE WHEN spotify_track_uri IS NULL THEN (CASE WHEN spotify_episode_uri IS NOT NULL THEN {literal(PODCAST)} "
        f"WHEN audiobook_uri IS NOT NULL THEN {literal(AUDIOBOOK)} ELSE {literal(NO_URI)} END) "
        "WHEN reason_end IS NULL THEN 'neither skipped nor completed (reason_end missing)' "
        "ELSE 'neither skipped nor completed (reason_end=' || reason_end || ')' END"
    )
    return fb, reason


def _validate_cfg(cfg: IngestConfig) -> None:
    if cfg.on_duplicate not in ("error", "drop"):
        raise ConfigError(f"ingest.on_duplicate={cfg.on_duplicate!r}: expected one of error, drop")
    if int(cfg.spotify_min_ms_played) < 0:
        raise ConfigError(f"ingest.spotify_min_ms_played={cfg.spotify_min_ms_played!r} must be >= 0")
    timestamps.validate_time_config(cfg)
    sessions.validate(cfg)


def _duplicates(con, files: list[Path], cfg: IngestConfig) -> tuple[dict[int, int], dict[int, list[str]]]:
    """Repeated (listener, track, ts) plays among the labelled ones: error, or flag all but the first."""
    groups = con.execute(
        f"SELECT user_id, spotify_track_uri, __ts, list(__fi ORDER BY __fi, __rec), list(__rec ORDER BY __fi, __rec) "
        f"FROM {_ST} WHERE fb IS NOT NULL GROUP BY ALL HAVING count(*) > 1 ORDER BY min(__fi), min(__rec) "
        f"LIMIT {EXAMPLES}").fetchall()
    if not groups:
        return {}, {}
    rows, per_file = [], {}
    for u, t, ts, fis, recs in groups:
        where = ", ".join(f"{files[fi].name} record {r}" for fi, r in zip(fis[:5], recs))
        rows.append(f"listener={u!r}, spotify_track_uri={t!r}, ts={ts}: {where}")
        for fi in sorted(set(fis[1:])):
            per_file.setdefault(fi, []).append(rows[-1])
    if cfg.on_duplicate == "error":
        raise InputDataError(
            "Spotify streaming history contains repeated plays (same listener, track URI and ts); set "
            "[ingest] on_duplicate = \"drop\" to keep the first of each",
            file=", ".join(sorted({str(files[fi]) for g in groups for fi in g[3]})), column="ts, spotify_track_uri",
            rows=rows)
    con.execute(f"UPDATE {_ST} SET __dup = TRUE WHERE (__fi, __rec) IN (SELECT __fi, __rec FROM (SELECT __fi, __rec, "
                "row_number() OVER (PARTITION BY user_id, spotify_track_uri, __ts ORDER BY __fi, __rec) AS k "
                f"FROM {_ST} WHERE fb IS NOT NULL) WHERE k > 1)")
    dropped = con.execute(f"SELECT __fi, count(*) FROM {_ST} WHERE __dup GROUP BY __fi").fetchall()
    return {int(k): int(v) for k, v in dropped}, per_file


def _events_select(cfg: IngestConfig) -> str:
    kept = (f"(SELECT user_id, __ts AS ts, spotify_track_uri AS track_id, fb, master_metadata_album_artist_name "
            f"AS artist, __src FROM {_ST} WHERE fb IS NOT NULL AND NOT __dup)")
    strata = sessions.strata_select(kept, cfg, order="ts, track_id")
    return (
        "SELECT stratum_id, position, stratum_length, CAST(ts AS TIMESTAMP) AS ts, CAST(track_id AS VARCHAR) AS "
        "track_id, CAST(fb AS TINYINT) AS feedback, CAST(NULL AS VARCHAR) AS context_type, CAST(artist AS VARCHAR) "
        "AS artist_id, CAST(NULL AS VARCHAR) AS genre_id, __src AS source_file "
        f"FROM ({strata}) ORDER BY stratum_id, position"
    )


# The catalogue: the metadata of each track's most recent labelled play (deterministic tie-break).
_CATALOG = (
    "SELECT spotify_track_uri AS track_id, "
    "CAST(arg_max(master_metadata_album_artist_name, (__ts, __fi, __rec)) AS VARCHAR) AS artist_id, "
    "CAST(NULL AS VARCHAR) AS genre_id, CAST(NULL AS INTEGER) AS release_year, "
    "CAST(arg_max(master_metadata_track_name, (__ts, __fi, __rec)) AS VARCHAR) AS title, "
    "CAST(arg_max(master_metadata_album_album_name, (__ts, __fi, __rec)) AS VARCHAR) AS album "
    f"FROM {_ST} WHERE spotify_track_uri IN (SELECT DISTINCT track_id FROM {FEEDBACK_EVENTS}) "
    "GROUP BY spotify_track_uri ORDER BY track_id"
)


def _records(con, files: list[tuple[str, Path]], hashed, n_read: list[int], dropped: dict[int, int],
             dup_rows: dict[int, list[str]]) -> list[FileRecord]:
    reasons: dict[int, dict[str, int]] = {}
    for fi, reason, n in con.execute(f"SELECT __fi, reason, count(*) FROM {_ST} WHERE fb IS NULL "
                                     "GROUP BY ALL ORDER BY __fi, reason").fetchall():
        reasons.setdefault(int(fi), {})[reason] = int(n)
    records = []
    for fi, ((_, p), (size, sha)) in enumerate(zip(files, hashed)):
        r = dict(reasons.get(fi, {}))
        if dropped.get(fi):
            r[DUPLICATE] = dropped[fi]
        rej = sum(r.values())
        ex = {DUPLICATE: dup_rows.get(fi, [])} if dropped.get(fi) else {}
        records.append(FileRecord(str(p), "spotify-history", size, sha, n_read[fi], n_read[fi] - rej, rej, r, {}, ex))
    return records


def ingest_spotify_history(
    con: duckdb.DuckDBPyConnection, paths: list[str | Path], *, dataset_key: str, cfg: IngestConfig,
    validate: bool = False,
) -> IngestionResult:
    """Ingest Spotify extended-streaming-history exports (folders or files), all-or-nothing."""
    _validate_cfg(cfg)
    files = resolve_spotify_paths(paths)
    if not files:
        raise InputDataError("no Spotify streaming-history files given", file="(none)", column="(none)")
    hashes = hash_all([p for _, p in files])
    fb, reason = _label_sql(cfg)
    with wh.atomic(con):
        staged = [_stage_file(con, p, fi, user, cfg) for fi, (user, p) in enumerate(files)]
        con.execute(f"CREATE OR REPLACE TEMP TABLE {_ST} AS SELECT *, {fb} AS fb, {reason} AS reason, FALSE AS __dup "
                    f"FROM ({' UNION ALL '.join(f'SELECT * FROM {t}' for t, _ in staged)})")
        dropped, dup_rows = _duplicates(con, [p for _, p in files], cfg)
        records = _records(con, files, hashes.result(), [n for _, n in staged], dropped, dup_rows)
        result = publish(
            con, events_select=_events_select(cfg), catalog_select=_CATALOG,
            temp_tables=[f"{_ST}_raw", *(t for t, _ in staged)], dataset_key=dataset_key, records=records,
            cfg=cfg, fmt="spotify-history", stratum_kind=cfg.stratum, validate=validate,
        )
        con.execute(f"DROP TABLE IF EXISTS {_ST}")
        return result
