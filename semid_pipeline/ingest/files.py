"""File sniffing: does the file exist, is it what its name says (CSV text, gzip, Parquet), is it
UTF-8, what is its sha256, and what do its header and first data row say.

These checks run before any SQL touches a file, so the common mistakes (a missing or empty file,
a gzip or Parquet file named ``.csv``, a latin-1 export, a huge first field) get a short, exact
error instead of a parser's.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import gzip
import hashlib
import zlib
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ..errors import InputDataError

WHOLE_FILE = "(whole file)"

# Leading bytes of formats that are sometimes given a ``.csv`` name by mistake.
_MAGIC = (
    (b"\x1f\x8b", "gzip-compressed data (rename it to .csv.gz)"),
    (b"PAR1", "a Parquet file (rename it to .parquet)"),
    (b"PK\x03\x04", "a zip archive (unpack it first)"),
    (b"\xfd7zXZ", "xz-compressed data (decompress it first)"),
    (b"BZh", "bzip2-compressed data (decompress it first)"),
    (b"(\xb5/\xfd", "zstd-compressed data (decompress it first)"),
)


def is_gz(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def is_parquet(path: Path) -> bool:
    return path.name.lower().endswith((".parquet", ".pq", ".parq"))


def hash_file(path: Path) -> tuple[int, str]:
    """(size in bytes, sha256 hex) of a file, read in 4 MB chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(4 << 20):
            size += len(chunk)
            h.update(chunk)
    return size, h.hexdigest()


def hash_all(paths: list[Path]) -> Future:
    """Hash the files on a background thread while DuckDB reads them (the result is needed last)."""
    ex = ThreadPoolExecutor(max_workers=1, thread_name_prefix="semid-sha256")
    fut = ex.submit(lambda: [hash_file(p) for p in paths])
    ex.shutdown(wait=False)
    return fut


def check_exists(path: Path, what: str) -> None:
    if not path.exists():
        raise InputDataError(f"{what} file does not exist", file=str(path), column=WHOLE_FILE)
    if not path.is_file():
        raise InputDataError(f"{what} path is not a regular file", file=str(path), column=WHOLE_FILE)
    if path.stat().st_size == 0:
        raise InputDataError(f"{what} file is empty (0 bytes)", file=str(path), column=WHOLE_FILE)


def open_binary(path: Path):
    return gzip.open(path, "rb") if is_gz(path) else open(path, "rb")


def check_magic(path: Path, what: str) -> None:
    """A CSV file (after gunzip for ``.gz``) must not start with another format's magic bytes."""
    try:
        with open_binary(path) as f:
            head = f.read(8)
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile):
        return  # reported by the gzip check with the reason
    for magic, words in _MAGIC:
        if head.startswith(magic):
            raise InputDataError(
                f"{what} file is named as CSV text but holds {words}",
                file=str(path), column=WHOLE_FILE, rows=[f"first bytes: {head!r}"],
            )


def _parse_line(path: Path, text: str, lineno: int, what: str) -> list[str]:
    try:
        return next(csv.reader([text]))
    except csv.Error as e:
        limit = csv.field_size_limit()
        raise InputDataError(
            f"{what} file: line {lineno} cannot be read as CSV ({e}; a field must be shorter than "
            f"{limit:,} characters and quotes must be balanced)",
            file=str(path), column="(row structure)", rows=[f"line {lineno}: {text[:120]!r}..."],
        ) from e


def read_head(path: Path, what: str) -> tuple[list[str], list[str]]:
    """Header and first data row of a CSV (gzip-aware), read line by line (tiny)."""
    check_magic(path, what)
    lines: list[str] = []
    try:
        with open_binary(path) as f:
            for lineno in (1, 2):
                raw = f.readline()
                if not raw:
                    break
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise_utf8(path, what)
                lines.append(text.lstrip("\ufeff") if lineno == 1 else text)
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile) as e:
        raise InputDataError(
            f"{what} file is not a readable gzip/CSV file ({e})", file=str(path), column=WHOLE_FILE
        ) from e
    if not lines or not lines[0].strip():
        raise InputDataError(f"{what} file is empty (no header line)", file=str(path), column=WHOLE_FILE)
    header = [h.strip() for h in _parse_line(path, lines[0], 1, what)]
    if len(lines) < 2 or not lines[1].strip():
        raise InputDataError(
            f"{what} file has a header but no data rows", file=str(path), column=", ".join(header[:3]) + ", ..."
        )
    return header, _parse_line(path, lines[1], 2, what)


def require_columns(path: Path, header: Sequence[str], required: Sequence[str], what: str) -> None:
    missing = [c for c in required if c not in header]
    if not missing:
        return
    hints = []
    extra = [h for h in header if h not in required]
    for m in missing:
        close = difflib.get_close_matches(m, extra, n=1, cutoff=0.6)
        if close:
            hints.append(f"column {close[0]!r} looks like a misspelling of {m!r}")
    msg = f"{what} file lacks required column(s) {', '.join(repr(m) for m in missing)}"
    if hints:
        msg += " (" + "; ".join(hints) + ")"
    msg += f"; found columns: {', '.join(header)}"
    raise InputDataError(msg, file=str(path), column=", ".join(missing))


def suggest_unknown(path: Path, header: Sequence[str], known: Sequence[str]) -> None:
    """Columns that are not known but look like a known one: clearly misspelt → error."""
    for h in header:
        if h in known:
            continue
        close = difflib.get_close_matches(h, [k for k in known if k not in header], n=1, cutoff=0.85)
        if close:
            raise InputDataError(
                f"column {h!r} looks like a misspelling of the expected column {close[0]!r}",
                file=str(path), column=h,
            )


def dup_header(path: Path, header: list[str]) -> None:
    """Every header name must be non-empty and unique (each becomes a column name)."""
    seen = set()
    for i, h in enumerate(header, start=1):
        if not h:
            raise InputDataError(
                f"header has an empty column name (field {i}; an unnamed index column? write the file without it)",
                file=str(path), column=f"(field {i})",
            )
        if h in seen:
            raise InputDataError("header names the same column twice", file=str(path), column=h)
        seen.add(h)


def raise_utf8(path: Path, what: str) -> None:
    rows = find_bad_utf8(path)
    col = rows[0][1] if rows and rows[0][1] is not None else None
    raise InputDataError(
        f"{what} file is not valid UTF-8",
        file=str(path),
        column=col or "(unknown)",
        rows=[f"line {ln}: column {c!r}: {snip}" for ln, c, snip in rows],
    )


def _bad_field(raw: bytes, header: list[str] | None) -> str | None:
    for i, fld in enumerate(raw.rstrip(b"\r\n").split(b",")):
        try:
            fld.decode("utf-8")
        except UnicodeDecodeError:
            return header[i].strip() if header and i < len(header) else f"field {i + 1}"
    return None


def find_bad_utf8(path: Path, limit: int = 5) -> list[tuple[int, str | None, str]]:
    out: list[tuple[int, str | None, str]] = []
    header: list[str] | None = None
    dec = codecs.getincrementaldecoder("utf-8")
    with open_binary(path) as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                text = dec().decode(raw, final=True)
                if lineno == 1:
                    header = next(csv.reader([text.lstrip("\ufeff")]))
                continue
            except UnicodeDecodeError:
                pass
            out.append((lineno, _bad_field(raw, header), repr(raw[:120])))
            if len(out) >= limit:
                break
    return out


def check_gzip(path: Path, what: str) -> None:
    if not is_gz(path):
        return
    try:
        with gzip.open(path, "rb") as f:
            while f.read(8 << 20):
                pass
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile) as e:
        raise InputDataError(
            f"{what} file is a truncated or corrupt gzip stream ({e})", file=str(path), column=WHOLE_FILE
        ) from e


def as_paths(files: Path | str | Sequence[Path | str] | None) -> list[Path]:
    """A single path, a sequence of paths, or None → a de-duplicated list of Paths (order kept)."""
    if files is None:
        return []
    if isinstance(files, (str, Path)):
        return [Path(files)]
    return list(dict.fromkeys(Path(f) for f in files))
