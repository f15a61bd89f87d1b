"""Names of the synthetic world's presets, file formats and content modes.

A tiny, import-free module so that ``semid_pipeline.config`` can validate a ``SEMID_DATASET``
value without importing numpy/pyarrow or the generator (and without an import cycle).
"""

from __future__ import annotations

#: Preset worlds: ``tiny`` for tests, ``demo`` the default, ``bench`` ≥ 1M events per format,
#: ``large`` 1M tracks and ≥ 10M events per format (generated in chunks, see ``synthetic.chunked``).
PRESET_NAMES: tuple[str, ...] = ("tiny", "demo", "bench", "large")

#: File formats a world is written in: per-user files, Spotify MSSD session files.
FORMATS: tuple[str, ...] = ("users", "sessions")

#: What the tracks files carry as content (see the package docstring):
#: ``audio`` (default: acoustic vector + Spotify-style numeric attributes), ``metadata`` (artist,
#: genre, album, generated titles; no numeric content), ``genreflags`` (one-hot genre flags + year).
CONTENT_MODES: tuple[str, ...] = ("audio", "metadata", "genreflags")
DEFAULT_CONTENT = "audio"
