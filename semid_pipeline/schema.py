"""The warehouse's table contracts: every stage reads and writes these names and columns.

Tables (all in one DuckDB file, ``SEMID_WAREHOUSE``):

``feedback_events``  one row per feedback event, any source format
    stratum_id      VARCHAR   session id (MSSD) or user id (per-user data): the AUC stratum
    position        INTEGER   1-based order inside the stratum (MSSD ``session_position``;
                              per-user: rank by timestamp, then track_id)
    stratum_length  INTEGER   MSSD ``session_length``; per-user: the user's number of events
    ts              TIMESTAMP event time (MSSD: ``date`` + ``hour_of_day`` hours)
    track_id        VARCHAR
    feedback        TINYINT   1 = positive (play / thumb up), 0 = negative (skip / thumb down)
    context_type    VARCHAR   MSSD context (``radio`` ...); NULL for per-user data
    artist_id       VARCHAR   nullable
    genre_id        VARCHAR   nullable
    source_file     VARCHAR   basename of the file the row came from

``track_catalog``  one row per track: keys + metadata + the raw content columns of the source
    track_id        VARCHAR   unique
    artist_id       VARCHAR   nullable
    genre_id        VARCHAR   nullable
    release_year    INTEGER   nullable
    title           VARCHAR   nullable
    ... then the source's raw columns: MSSD ``tf_*`` columns (duration, us_popularity_estimate,
    acousticness, ..., acoustic_vector_0..7), or the per-user tracks file's numeric columns and
    an ``embedding FLOAT[]`` column.

``ingestion_record``  one row per source file of the current data set (see ``ingest``)
``semid_meta``        key/value: ``dataset`` (the spec the tables hold), ``dataset_fingerprint``
"""

from __future__ import annotations

FEEDBACK_EVENTS = "feedback_events"
TRACK_CATALOG = "track_catalog"
INGESTION_RECORD = "ingestion_record"
META = "semid_meta"
CONTENT_FEATURES = "content_features"
SEMANTIC_ID_REGISTRY = "semantic_id_registry"

FEEDBACK_EVENTS_COLUMNS: dict[str, str] = {
    "stratum_id": "VARCHAR",
    "position": "INTEGER",
    "stratum_length": "INTEGER",
    "ts": "TIMESTAMP",
    "track_id": "VARCHAR",
    "feedback": "TINYINT",
    "context_type": "VARCHAR",
    "artist_id": "VARCHAR",
    "genre_id": "VARCHAR",
    "source_file": "VARCHAR",
}

TRACK_KEY_COLUMNS: dict[str, str] = {
    "track_id": "VARCHAR",
    "artist_id": "VARCHAR",
    "genre_id": "VARCHAR",
    "release_year": "INTEGER",
    "title": "VARCHAR",
}

# MSSD track-feature columns (``tf_*.csv``) and their documented ranges (None = unbounded).
MSSD_TRACK_RANGES: dict[str, tuple[float | None, float | None]] = {
    "duration": (0.0, None),
    "release_year": (1900, 2100),
    "us_popularity_estimate": (0.0, 100.0),
    "acousticness": (0.0, 1.0),
    "beat_strength": (0.0, 1.0),
    "bounciness": (0.0, 1.0),
    "danceability": (0.0, 1.0),
    "dyn_range_mean": (0.0, None),
    "energy": (0.0, 1.0),
    "flatness": (0.0, 1.5),
    "instrumentalness": (0.0, 1.0),
    "key": (0, 11),
    "liveness": (0.0, 1.0),
    "loudness": (-60.0, 5.0),
    "mechanism": (0.0, 1.0),
    "mode": None,  # "major"/"minor" (a string in MSSD)
    "organism": (0.0, 1.0),
    "speechiness": (0.0, 1.0),
    "tempo": (0.0, 260.0),
    "time_signature": (0, 7),
    "valence": (0.0, 1.0),
    **{f"acoustic_vector_{i}": (None, None) for i in range(8)},
}
MSSD_TRACK_COLUMNS: list[str] = ["track_id", *MSSD_TRACK_RANGES]

# Columns never used as content (popularity is not content, as the paper says).
NON_CONTENT_COLUMNS = frozenset(
    {"track_id", "artist_id", "genre_id", "title", "us_popularity_estimate", "popularity", "album",
     "artist", "genre"}  # artist / genre *names* (metadata-only catalogues): text, not categorical content
)

MSSD_LOG_COLUMNS: list[str] = [
    "session_id", "session_position", "session_length", "track_id_clean",
    "skip_1", "skip_2", "skip_3", "not_skipped", "context_switch",
    "no_pause_before_play", "short_pause_before_play", "long_pause_before_play",
    "hist_user_behavior_n_seekfwd", "hist_user_behavior_n_seekback",
    "hist_user_behavior_is_shuffle", "hour_of_day", "date", "premium", "context_type",
    "hist_user_behavior_reason_start", "hist_user_behavior_reason_end",
]
MSSD_CONTEXT_TYPES = frozenset(
    {"editorial_playlist", "user_collection", "catalog", "radio", "charts", "personalized_playlist"}
)
MSSD_SKIP_COLUMNS = ("skip_1", "skip_2", "skip_3", "not_skipped")


def semantic_id_table(partition_key: str) -> str:
    """DuckDB table holding one ``semantic_ids`` partition, e.g. ``v1-k256`` → ``semantic_ids__v1_k256``."""
    return "semantic_ids__" + partition_key.replace("-", "_")
