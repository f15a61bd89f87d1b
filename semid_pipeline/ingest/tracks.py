"""Per-user tracks files (CSV or Parquet): keys, metadata, numeric content, an ``embedding`` list.

Every file is validated on its own (errors name the file and its lines); a track_id repeated
WITHIN a file is an error, one repeated in a LATER file replaces the earlier file's row.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from ..errors import InputDataError
from ..schema import TRACK_KEY_COLUMNS
from ..sql import ident
from .diagnose import duck_msg, raise_first_rows, row_offset
from .files import require_columns, suggest_unknown
from .tables import stage_any, temp_types

STAGE_TR = "_semid_stage_tracks"


class _Rows:
    """``raise_first_rows`` bound to one staged tracks file."""

    def __init__(self, con, path: Path, label: str):
        self.con, self.path, self.label = con, path, label
        self.line = f"rowid + {row_offset(con, STAGE_TR, label)}"

    def check(self, predicate: str, column: str, reason: str, show: str | None = None) -> None:
        raise_first_rows(self.con, table=STAGE_TR, predicate=predicate, line=self.line, label=self.label,
                         column=column, reason=reason, path=self.path, show=show)


def _embedding_expr(con, rows: _Rows, dtype: str) -> str:
    """The FLOAT[] expression of the embedding column, after checking every value and length."""
    if dtype == "VARCHAR":
        rows.check("embedding IS NOT NULL AND (TRY_CAST(embedding AS FLOAT[]) IS NULL OR "
                   "list_count(TRY_CAST(embedding AS FLOAT[])) < len(TRY_CAST(embedding AS FLOAT[])))",
                   "embedding", "tracks file: embedding is not a list of numbers (expected e.g. [0.1, -0.2, ...])")
        expr = "TRY_CAST(t.embedding AS FLOAT[])"
    elif re.search(r"\[\d*\]$", dtype):
        expr = "CAST(t.embedding AS FLOAT[])"
    else:
        raise InputDataError(f"tracks file: column 'embedding' has type {dtype}, expected a list of floats",
                             file=str(rows.path), column="embedding")
    lens = con.execute(
        f"SELECT len({expr}) AS l, count(*) FROM {STAGE_TR} t WHERE t.embedding IS NOT NULL "
        "GROUP BY l ORDER BY count(*) DESC"
    ).fetchall()
    if len(lens) > 1:
        common = lens[0][0]
        rows.check(f"embedding IS NOT NULL AND len({expr}) <> {common}", "embedding",
                   f"tracks file: embeddings have different lengths (most have {common})", f"len({expr})")
    return expr


def _key_select(rows: _Rows, cols: list[str], types: dict[str, str], ev_art: bool, ev_gen: bool) -> list[str]:
    sel = ["CAST(t.track_id AS VARCHAR) AS track_id"]
    for key, kt in list(TRACK_KEY_COLUMNS.items())[1:]:
        if key in cols:
            if kt != "VARCHAR" and types[key] == "VARCHAR":
                rows.check(f"{ident(key)} IS NOT NULL AND TRY_CAST(TRY_CAST({ident(key)} AS DOUBLE) AS {kt}) IS NULL",
                           key, f"tracks file: wrong type in column {key!r} (expected {kt})")
                sel.append(f"CAST(CAST(t.{ident(key)} AS DOUBLE) AS {kt}) AS {key}")
            else:
                sel.append(f"CAST(t.{ident(key)} AS {kt}) AS {key}")
        elif key == "artist_id" and ev_art:
            sel.append("e.artist_id AS artist_id")
        elif key == "genre_id" and ev_gen:
            sel.append("e.genre_id AS genre_id")
        else:
            sel.append(f"CAST(NULL AS {kt}) AS {key}")
    return sel


def _content_select(con, rows: _Rows, cols: list[str], types: dict[str, str]) -> list[str]:
    sel = []
    for c in cols:
        if c in TRACK_KEY_COLUMNS:
            continue
        if c == "embedding":
            sel.append(f"{_embedding_expr(con, rows, types[c])} AS embedding")
        elif types[c] == "VARCHAR":
            # CSV text: numeric if every value parses as a number, else kept as text
            nonnum = con.execute(
                f"SELECT count(*) FROM {STAGE_TR} WHERE {ident(c)} IS NOT NULL "
                f"AND TRY_CAST({ident(c)} AS DOUBLE) IS NULL"
            ).fetchone()[0]
            sel.append(f"CAST(t.{ident(c)} AS DOUBLE) AS {ident(c)}" if nonnum == 0 else f"t.{ident(c)}")
        else:
            sel.append(f"t.{ident(c)}")
    return sel


def stage_tracks_file(con, path: Path, fi: int, ev: str, ev_art: bool, ev_gen: bool) -> tuple[str, int]:
    """Stage + validate ONE tracks file into ``{STAGE_TR}_cat_{fi}`` (catalog columns + __fi/__rid).

    ``ev`` is the staged union of all events (for the artist/genre fallback). Returns (table, rows)."""
    cols, label = stage_any(con, path, STAGE_TR, "tracks")
    require_columns(path, cols, ["track_id"], "tracks")
    suggest_unknown(path, cols, list(TRACK_KEY_COLUMNS) + ["embedding"])
    types = temp_types(con, STAGE_TR)
    rows = _Rows(con, path, label)
    n_tr = con.execute(f"SELECT count(*) FROM {STAGE_TR}").fetchone()[0]
    rows.check("track_id IS NULL", "track_id", "tracks file: missing value")
    tdups = con.execute(
        f"SELECT CAST(track_id AS VARCHAR), list({rows.line} ORDER BY rowid) FROM {STAGE_TR} "
        "GROUP BY track_id HAVING count(*) > 1 ORDER BY min(rowid) LIMIT 5"
    ).fetchall()
    if tdups:
        raise InputDataError(
            "tracks file contains duplicate track_id keys", file=str(path), column="track_id",
            rows=[f"track_id={t!r}: {label}s {', '.join(map(str, ls[:5]))}" for t, ls in tdups],
        )
    sel = _key_select(rows, cols, types, ev_art, ev_gen) + _content_select(con, rows, cols, types)
    sel += [f"CAST({fi} AS INTEGER) AS __fi", "t.rowid AS __rid"]
    join = ""
    if ("artist_id" not in cols and ev_art) or ("genre_id" not in cols and ev_gen):
        join = (
            f" LEFT JOIN (SELECT track_id AS __tid, any_value(artist_id) AS artist_id, "
            f"any_value(genre_id) AS genre_id FROM {ev} GROUP BY track_id) e ON e.__tid = CAST(t.track_id AS VARCHAR)"
        )
    out = f"{STAGE_TR}_cat_{fi}"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {out} AS SELECT {', '.join(sel)} FROM {STAGE_TR} t{join} ORDER BY t.rowid"
    )
    con.execute(f"DROP TABLE IF EXISTS {STAGE_TR}")
    return out, int(n_tr)


def union_tracks(con: duckdb.DuckDBPyConnection, tables: list[str], tracks_files: list[Path]) -> str:
    """Union the per-file catalogs; a track_id repeated in a LATER tracks file replaces the earlier row.

    Returns the table holding the winners (with __fi/__rid)."""
    allt = f"{STAGE_TR}_all"
    union = " UNION ALL BY NAME ".join(f"SELECT * FROM {t}" for t in tables)
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {allt} AS SELECT * FROM ({union}) "
            "QUALIFY row_number() OVER (PARTITION BY track_id ORDER BY __fi DESC) = 1 ORDER BY __fi, __rid"
        )
    except duckdb.Error as e:
        per_file = [temp_types(con, t) for t in tables]
        clash = sorted({c for tt in per_file for c in tt if len({t2[c] for t2 in per_file if c in t2}) > 1})
        raise InputDataError(
            f"tracks files cannot be combined: column types differ between the files ({duck_msg(e)})",
            file=", ".join(str(p) for p in tracks_files), column=", ".join(clash) or "(unknown)",
        ) from e
    if "embedding" in temp_types(con, allt):
        lens = con.execute(
            f"SELECT len(embedding) AS l, list(DISTINCT __fi ORDER BY __fi), count(*) FROM {allt} "
            "WHERE embedding IS NOT NULL GROUP BY l ORDER BY count(*) DESC"
        ).fetchall()
        if len(lens) > 1:
            odd = sorted({fi for _, fis, _ in lens[1:] for fi in fis})
            raise InputDataError(
                f"tracks files: embeddings have different lengths across files (most have {lens[0][0]})",
                file=", ".join(str(tracks_files[i]) for i in odd), column="embedding",
                rows=[f"{n} tracks with length {ln} (in {', '.join(tracks_files[i].name for i in fis)})"
                      for ln, fis, n in lens[1:]],
            )
    return allt
