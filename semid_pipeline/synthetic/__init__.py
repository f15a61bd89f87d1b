"""The embedded synthetic music world: a deterministic stand-in for Spotify MSSD and Pandora-style data.

``write_world(preset_or_config, out_dir)`` writes REAL FILES in the two input formats the pipeline
ingests, so the synthetic data goes through exactly the same loading code as real data:

``out_dir/sessions/``  Spotify MSSD format: ``log_<n>.csv`` (``.csv.gz`` for the bench preset)
                       with exactly :data:`schema.MSSD_LOG_COLUMNS` (booleans ``true``/``false``,
                       dates ``YYYY-MM-DD``) and ``tf_0.csv`` with exactly
                       :data:`schema.MSSD_TRACK_COLUMNS` (``mode`` is ``major``/``minor``).
``out_dir/users/``     per-user format: ``events.parquet`` (user_id, track_id, timestamp,
                       feedback 1/0, artist_id, genre_id) and ``tracks.parquet`` (keys, release
                       year, title, Spotify-style numeric attributes, ``popularity`` and an
                       ``embedding`` list<float32>[8], the acoustic vector).
``out_dir/truth.parquet``, ``out_dir/truth_users.parquet``  the hidden ground truth (per-track
                       genre, artist, latent vector, appeal, popularity weight; per-user taste,
                       favourite genre, skip bias, activity) for analysis and tests.
``<format dir>/oracle.parquet``  the generator's own P(positive) per event: stratum_id, position,
                       p_positive (see :mod:`.oracle`; read it with :func:`load_oracle`). Ingestion
                       never reads it.
``out_dir/manifest.json``  config, config hash, file sizes and the counts of what was written.

The story
---------
* **Genres → artists → tracks.** Each genre has a centre in a 16-dim latent "musical" space;
  each artist belongs to one genre and has an offset from its centre; each track of an artist
  adds its own noise: ``latent = genre centre + artist offset + track noise``. Artist sizes are
  skewed (a few prolific artists, many with a handful of tracks).
* **Content is a noisy, non-linear view of the latent vector.** The 8-dim acoustic vector is
  ``tanh`` of random projections plus noise; the Spotify attributes (acousticness, energy,
  valence, ...) are sigmoids of other random projections mapped onto their documented ranges;
  tempo, loudness, duration, dynamic range are monotone maps of projections with noise;
  release year follows a per-genre era; key is uniform noise, mode leans on the valence
  projection, time signature is mostly 4. The popularity columns (``us_popularity_estimate``,
  ``popularity``) are percentiles of the track's popularity weight, not of its content.
* **Appeal.** Every track has an ``appeal`` scalar, independent of its content: content features
  cannot reveal it, a per-track ID embedding can learn it from enough feedback. Popularity is
  weakly correlated with appeal (good songs get played more), popularity weights are Zipf-like
  in the popularity rank.
* **Listeners** have a favourite genre and a taste vector in the latent space (their favourite
  genre's centre plus personal noise), a personal skip bias and a lognormal activity level
  (many light listeners, a few heavy ones; per-user events are capped at ``max_user_events``).
* **Radio stations** belong to a listener and are seeded by a track, an artist or a genre
  (seed chosen from the listener's favourite genre most of the time, the most taste-matching of a
  few popular candidates). Candidate pools: genre station → the genre's tracks; artist station →
  the artist's tracks half of the time, the artist's genre otherwise; track station → the
  ``station_pool`` tracks of the seed's genre nearest to the seed in latent space. Within a pool,
  tracks are drawn by popularity weight (Zipf-like within the pool); a track is not repeated
  inside one sitting/session (duplicates are redrawn a few times).
* **Feedback.** ``P(positive) = sigmoid(taste_weight · z(taste·latent) + appeal_weight · appeal
  + user bias + context offset − position_weight · (position − 1) + b)`` where ``z`` standardises
  the affinity over the generated events and ``b`` is solved (bisection) so that the expected
  positive share equals ``positive_share`` (≈ half negative, like MSSD's ``skip_2``). Later
  tracks in a sitting/session are skipped more.
* **Sessions format (MSSD):** each session is one listener on one station (or, for the
  non-radio ``1 − radio_share`` of sessions, a chart / genre playlist / collection context) on one
  day: 10–20 tracks (a third of them exactly 20, like MSSD's truncation). ``skip_2`` true ⇔
  negative; ``skip_1 ⊂ skip_2 ⊂ skip_3`` and ``not_skipped = not skip_3``. The other behaviour
  columns (pauses, seeks, shuffle, reasons) are plausible filler, consistent with the skips.
* **Users format:** each listener's events are grouped into station "sittings" (3–~20 tracks)
  spread over the listener's active window (most listeners are active to the end of the period,
  some join late or churn early), sittings never overlap in time, events inside a sitting are
  spaced by the listened duration.
* Both formats come from the same world (tracks, artists, genres, listeners, stations), so they
  share track ids; each format uses its own random stream, so writing only one format gives the
  same files as writing both. Same seed → byte-identical files.

Limits (what this world does NOT model)
---------------------------------------
No temporal dynamics by default except in the ``demo`` preset, whose tastes weigh 3.5 and drift
(``taste_drift_weight = 2.5``, see ``config.PRESETS``); elsewhere tastes, popularity and the catalogue are static (no new releases,
trends, or weekly habits beyond a diurnal hour profile and a weekend bump; opt-in:
``appeal_trend_weight`` gives each track a linear trend, ``taste_drift_weight`` lets each listener's
taste walk over the days, ``mood_weight`` gives each sitting / session a mood that drifts track by
track); feedback of an event does not
depend on earlier feedback (no fatigue beyond the position effect, no sequential dependence a
transformer could exploit beyond "this user likes this region of latent space"); stations do not
adapt to feedback; MSSD sessions carry no user id and sessions of one listener are independent;
MSSD's behaviour columns (pauses, seeks, shuffle, reasons, premium) carry no signal beyond the
skips; the numbers are plausible, not fitted to any real data set. Use it to exercise the
pipeline and to check that semantic IDs can exploit content; do not read its AUCs as evidence
about real music.

Worlds as hard as real catalogues (opt-in; the default world is unchanged)
------------------------------------------------------------------------
Real catalogues break semantic IDs in ways the default world hides (there ``v1-k64`` is 99.8%
unique). Three options, all per-user format only (``SEMID_DATASET=synthetic:<preset>:users:<mode>``):

* **metadata** (``content="metadata"``): the tracks file has track_id, artist_id, artist (a
  generated name), genre_id, genre, album and a realistic generated title, and NO numeric
  content column (no audio attributes, embedding, release year or popularity). Story: a
  catalogue from a shop or a tagging service. Limit: titles are generated from word lists, so
  their words carry no musical meaning; the only content signal is artist/genre/album identity.
* **genreflags** (``content="genreflags"``): track_id, title, release_year and one 0/1
  ``genre_<name>`` column per coarse genre name (worlds with more than 20 genres fold onto 20
  names); exactly one flag per track. Story: an old item catalogue with genre checkboxes. Limit:
  only ~(flags × years) distinct content vectors exist, by design.
* **near duplicates** (``near_duplicate_share``, 0.15 in both modes above, 0 by default; any
  share in code via ``WorldConfig``): live versions ``Song (Live)``, remasters ``Song - 2011
  Remaster``, radio edits, covers (same title, another artist of the genre) and same-artist
  sound-alikes whose latent vector and content are near copies of an original (see
  :mod:`.extras`; ``truth.parquet`` then names each version's original). Limit: versions are
  listened to like any other track (no "listeners who like the original like the live take"
  beyond the near-identical latent vector).

These modes draw their extras from a separate random stream: listeners, stations and sessions
of a mode world are those of the default world with the same seed except where a track's latent
vector changed.

Where things live
-----------------
``presets`` names only (imported by ``semid_pipeline.config``) · ``config`` WorldConfig, Story
constants, presets · ``sampling`` random streams, samplers · ``catalogue`` genres/artists/tracks
and their content · ``extras``/``titles`` hard-catalogue additions · ``listeners`` listeners and
stations · ``world`` the assembled world · ``feedback`` the feedback model · ``behaviour`` MSSD's
behaviour columns · ``users_format``/``sessions_format`` the two file formats ·
``tracks_table`` the tracks tables per content mode · ``oracle`` the oracle sidecar · ``ceiling`` the learnable ceiling (estimated taste +
appeal on the test pairs) · ``files``
write_world, manifest, ground truth · ``io`` deterministic file writing.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name → submodule. Imported lazily (PEP 562) so that ``semid_pipeline.config`` can read
# ``synthetic.presets`` without importing numpy/pyarrow and the generator.
_EXPORTS = {
    "ACOUSTIC_DIM": "catalogue",
    "USERS_ATTRIBUTE_COLUMNS": "catalogue",
    "GENERATOR_VERSION": "config",
    "PRESETS": "config",
    "Story": "config",
    "WorldConfig": "config",
    "preset": "config",
    "MANIFEST_NAME": "files",
    "WorldManifest": "files",
    "ground_truth": "files",
    "load_manifest": "files",
    "write_world": "files",
    "write_world_for_spec": "files",
    "ORACLE_NAME": "oracle",
    "load_oracle": "oracle",
    "CONTENT_MODES": "presets",
    "FORMATS": "presets",
    "PRESET_NAMES": "presets",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = [
    "ACOUSTIC_DIM",
    "CONTENT_MODES",
    "FORMATS",
    "GENERATOR_VERSION",
    "MANIFEST_NAME",
    "ORACLE_NAME",
    "PRESETS",
    "PRESET_NAMES",
    "Story",
    "USERS_ATTRIBUTE_COLUMNS",
    "WorldConfig",
    "WorldManifest",
    "ground_truth",
    "load_manifest",
    "load_oracle",
    "preset",
    "write_world",
    "write_world_for_spec",
]
