"""World configuration: the knobs of a synthetic world, its story constants and the presets.

Why two dataclasses: :class:`WorldConfig` holds what a user changes (sizes, seed, feedback
weights, content mode); :class:`Story` holds the constants that shape the story (how skewed
artists are, how often listeners churn, ...). Both are part of the config hash, so changing any
constant regenerates the world. Fields added after generator version 1 (``story``, ``content``,
``near_duplicate_share``) are left out of :meth:`WorldConfig.to_dict` while they hold their
default, so a default world keeps the config hash (and manifest bytes) it always had.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import date
from typing import Any

from ..errors import ConfigError
from .presets import CONTENT_MODES, DEFAULT_CONTENT, FORMATS, PRESET_NAMES

GENERATOR_VERSION = "1"


@dataclass(frozen=True)
class Story:
    """Story constants (defaults = the world every test and demo report was measured on)."""

    # genres, artists, tracks (latent space: sd = 1/sqrt(latent_dim) per coordinate)
    genre_weight_sd: float = 0.5  # lognormal spread of genre popularity
    era_range: tuple[float, float] = (1965.0, 2014.0)  # uniform range of a genre's central year
    artist_offset: float = 0.6  # artist offset from its genre centre, in units of sd
    artist_era_sd: float = 5.0  # years an artist's era differs from its genre's
    artist_productivity_sd: float = 0.9  # lognormal spread of tracks per artist
    artist_fame_sd: float = 0.5  # per-artist popularity boost
    track_noise: float = 0.45  # a track's own offset from its artist, in units of sd
    # the last this many latent coordinates shape taste but no content column (0 = content sees all)
    content_hidden_dims: int = 0
    popularity_appeal: float = 0.5  # weight of appeal in the popularity score (good songs get played)
    # listeners
    taste_noise: float = 0.8  # personal taste offset from the favourite genre's centre, units of sd
    premium_share: float = 0.7
    late_join_span: float = 0.5  # joiners start within this share of the period (skewed early)
    churn_share: float = 0.25  # share of listeners who stop before the end
    churn_span: float = 0.4  # churners stop up to this share of the period early
    min_active_days: int = 7
    # stations
    extra_stations_mean: float = 1.5  # stations per listener = 1 + Poisson(this), capped
    fav_genre_station_share: float = 0.75  # stations seeded from the favourite genre
    seed_candidates: int = 5  # popular candidates a station seed is the most taste-matching of
    station_type_p: tuple[float, float, float] = (0.4, 0.35, 0.25)  # track, artist, genre station
    artist_station_genre_share: float = 0.5  # artist stations play the artist's genre this often
    # per-user sittings
    sitting_min: int = 3  # sitting length = sitting_min + Poisson(sitting_extra_mean)
    sitting_extra_mean: float = 9.0
    skip_seconds: tuple[float, float] = (5.0, 45.0)  # a negative is skipped after U(a, b) seconds
    played_share: tuple[float, float] = (0.9, 1.0)  # a positive plays U(a, b) of the track
    gap_seconds: float = 2.0  # pause between two tracks of a sitting
    max_track_seconds: float = 1300.0  # bound on one event's duration (duration cap + gap)
    # MSSD sessions
    full_session_share: float = 0.35  # sessions of exactly 20 tracks (MSSD truncation)
    session_len_range: tuple[int, int] = (10, 20)  # other sessions: uniform in [a, b)
    session_fav_genre_share: float = 0.6  # non-radio genre contexts draw the favourite genre
    shuffle_share: tuple[float, float] = (0.05, 0.35)  # radio, other contexts
    weekend_weight: float = 1.2  # relative listening on Saturdays and Sundays
    skip1_share: float = 0.55  # share of skip_2 events that are also skip_1
    skip3_extra: float = 0.25  # share of positives that still count as skip_3
    # feedback model
    mood_positions: float = 8.0  # correlation length (tracks) of a sitting's mood (× WorldConfig.mood_weight)
    mood_dims: int = 0  # a mood moves only the first this many latent coordinates (same total size); 0 = all
    affinity_ref_pairs: int = 200_000  # reference listener × station-track pairs to standardise taste·latent
    affinity_ref_per_user: int = 50

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Story":
        known = {f.name: f for f in fields(cls)}
        unknown = set(d) - set(known)
        if unknown:
            raise ConfigError(f"Story: unknown constants {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


# Fields of generator version 1: always in to_dict; later fields only when not at their default.
_V1_FIELDS = (
    "name", "n_tracks", "n_artists", "n_genres", "n_users", "n_events", "n_session_events", "n_days",
    "start_date", "seed", "latent_dim", "session_parts", "gzip_logs", "radio_share", "positive_share",
    "min_user_events", "max_user_events", "activity_sigma", "popularity_exponent", "taste_weight",
    "appeal_weight", "position_weight", "user_bias_sd", "station_pool", "max_stations",
)


@dataclass(frozen=True)
class WorldConfig:
    """Everything that determines a synthetic world (and therefore its files)."""

    name: str = "custom"
    n_tracks: int = 4000
    n_artists: int = 400
    n_genres: int = 20
    n_users: int = 2000
    n_events: int = 120_000  # target rows of the per-user events file
    n_session_events: int = 120_000  # target rows of the MSSD session logs
    n_days: int = 70
    start_date: str = "2018-06-01"
    seed: int = 0
    latent_dim: int = 16
    session_parts: int = 2  # number of log_<n>.csv files
    gzip_logs: bool = False  # write log_<n>.csv.gz
    radio_share: float = 0.7  # share of MSSD sessions with context_type radio
    positive_share: float = 0.5  # target share of positive feedback (both formats)
    min_user_events: int = 5
    max_user_events: int = 1000
    activity_sigma: float = 1.3  # lognormal spread of listener activity
    popularity_exponent: float = 0.9  # Zipf exponent of track popularity weights
    taste_weight: float = 2.0  # logit weight of the standardised taste·latent affinity
    appeal_weight: float = 0.8  # logit weight of the hidden per-track appeal
    position_weight: float = 0.04  # logit decrease per position inside a sitting/session
    user_bias_sd: float = 0.5  # spread of per-listener skip propensity
    # logit weight of a listener's own lasting opinion of a track (a standard-normal draw per
    # (listener, track), the same at every play: who skipped it once tends to skip it again); 0 = none
    pair_opinion_weight: float = 0.0
    # logit weight of a per-track trend: each track's appeal moves linearly over the world's days,
    # appeal_trend_weight · s(track) · (2 · day / (n_days − 1) − 1), s standard normal per track
    # (a hash, no RNG stream: the world is drawn as without it): a hit wears off, a sleeper grows;
    # what the trailing-window rate sees and the whole-period rate averages away; 0 = none
    appeal_trend_weight: float = 0.0
    # a listener's taste drifts: taste + this · sd · d(listener, day), d a smooth unit-variance walk
    # per latent coordinate that turns over in weeks to months (``feedback.taste_drift``; a hash, no
    # RNG stream), sd the personal taste noise's scale: recent feedback says more than old; 0 = none
    taste_drift_weight: float = 0.0
    # a sitting's (session's) mood: taste + this · sd · m(sitting, position), m a unit-variance walk
    # per latent coordinate along the sitting's tracks (``feedback.sitting_mood``; a hash, no RNG
    # stream): what a listener liked a few tracks ago says more than their long-run taste; 0 = none
    mood_weight: float = 0.0
    station_pool: int = 50  # candidate pool size of track-seeded stations
    max_stations: int = 6  # stations per listener (1 + Poisson(1.5), capped)
    story: Story = field(default_factory=Story)
    content: str = DEFAULT_CONTENT  # audio | metadata | genreflags (see presets.CONTENT_MODES)
    near_duplicate_share: float = 0.0  # share of tracks that are versions of another track
    # > 0: generate events in blocks of this many listeners (users) / sessions, each block from its
    # own stream, written chunk by chunk (memory bounded by the chunk: see .chunked); 0 = one shot
    listener_block: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.n_genres < 1 or self.n_artists < self.n_genres or self.n_tracks < self.n_artists:
            problems.append("need 1 <= n_genres <= n_artists <= n_tracks")
        if self.n_users < 1 or self.n_events < 1 or self.n_session_events < 1:
            problems.append("n_users, n_events and n_session_events must be positive")
        if self.n_days < 1:
            problems.append("n_days must be positive")
        if not 0.0 < self.radio_share <= 1.0:
            problems.append("radio_share must be in (0, 1]")
        if not 0.05 < self.positive_share < 0.95:
            problems.append("positive_share must be in (0.05, 0.95)")
        if self.session_parts < 1:
            problems.append("session_parts must be >= 1")
        if not 1 <= self.min_user_events <= self.max_user_events:
            problems.append("need 1 <= min_user_events <= max_user_events")
        if self.content not in CONTENT_MODES:
            problems.append(f"content must be one of {', '.join(CONTENT_MODES)}, got {self.content!r}")
        if not 0.0 <= self.near_duplicate_share <= 0.5:
            problems.append("near_duplicate_share must be in [0, 0.5]")
        if self.listener_block < 0:
            problems.append("listener_block must be >= 0 (0 = one-shot generation)")
        if self.mood_weight < 0:
            problems.append("mood_weight must be >= 0 (0 = no moods)")
        if not isinstance(self.story, Story):
            problems.append("story must be a Story")
        elif not 0 <= self.story.content_hidden_dims < self.latent_dim:
            problems.append("story.content_hidden_dims must be in [0, latent_dim): content must show some taste")
        elif not self.story.mood_positions > 0:
            problems.append("story.mood_positions must be > 0 (tracks a mood lasts)")
        if isinstance(self.story, Story) and not 0 <= self.story.mood_dims <= self.latent_dim:
            problems.append("story.mood_dims must be in [0, latent_dim] (0 = every coordinate)")
        try:
            date.fromisoformat(self.start_date)
        except (TypeError, ValueError):
            problems.append(f"start_date {self.start_date!r} is not YYYY-MM-DD")
        if problems:
            raise ConfigError("WorldConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in _V1_FIELDS}
        defaults = WorldConfig()
        for f in fields(self):
            if f.name not in _V1_FIELDS and getattr(self, f.name) != getattr(defaults, f.name):
                value = getattr(self, f.name)
                d[f.name] = asdict(value) if isinstance(value, Story) else value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "WorldConfig":
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in known}
        if isinstance(kwargs.get("story"), dict):
            kwargs["story"] = Story.from_dict(kwargs["story"])
        return cls(**kwargs)

    def hash(self, formats: tuple[str, ...] = FORMATS) -> str:
        """Stable hash of the config, the formats and the generator version."""
        payload = json.dumps(
            {"config": self.to_dict(), "formats": sorted(formats), "generator": GENERATOR_VERSION},
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()


PRESETS: dict[str, WorldConfig] = {
    "tiny": WorldConfig(
        name="tiny", n_tracks=300, n_artists=30, n_genres=6, n_users=200,
        n_events=9_000, n_session_events=6_000, n_days=60, session_parts=1, station_pool=30,
    ),
    # tastes that matter and drift (issue 10): with the static taste of weight 2, popularity and a
    # whole-history summary explained almost all a history could (README "The demo world's tastes")
    "demo": WorldConfig(
        name="demo", n_tracks=6_000, n_artists=500, n_genres=20, n_users=2_000,
        n_events=120_000, n_session_events=120_000, n_days=70, session_parts=2,
        taste_weight=3.5, taste_drift_weight=2.5,
    ),
    "bench": WorldConfig(
        name="bench", n_tracks=100_000, n_artists=8_000, n_genres=50, n_users=25_000,
        n_events=1_200_000, n_session_events=1_200_000, n_days=90, session_parts=8, gzip_logs=True,
    ),
    # a million tracks, ≥ 10M events per format; generated in blocks (memory bounded by the chunk)
    "large": WorldConfig(
        name="large", n_tracks=1_000_000, n_artists=50_000, n_genres=100, n_users=200_000,
        n_events=12_000_000, n_session_events=10_500_000, n_days=90, session_parts=16, gzip_logs=True,
        listener_block=4096,
    ),
}
assert tuple(PRESETS) == PRESET_NAMES

#: Near-duplicate share of the hard content modes (real catalogues carry covers, remasters, lives).
HARD_MODE_DUPLICATE_SHARE = 0.15


def preset(name: str, *, content: str = DEFAULT_CONTENT) -> WorldConfig:
    """The named preset (``tiny`` for tests, ``demo`` the default, ``bench`` ≥ 1M events, ``large``
    1M tracks and ≥ 10M events per format, generated in chunks).

    A content mode other than ``audio`` (``content=`` or a ``<preset>-<mode>`` name such as
    ``demo-metadata``) gives the preset's world with that content mode and
    :data:`HARD_MODE_DUPLICATE_SHARE` near duplicates, named ``<preset>-<mode>``.
    """
    base, _, suffix = name.partition("-")
    if suffix:
        if suffix not in CONTENT_MODES or content not in (DEFAULT_CONTENT, suffix):
            raise ConfigError(f"unknown synthetic preset {name!r}; expected <preset>[-<{'|'.join(CONTENT_MODES)}>]")
        content = suffix
    try:
        cfg = PRESETS[base]
    except KeyError:
        raise ConfigError(
            f"unknown synthetic preset {name!r}; expected one of {', '.join(PRESETS)}"
        ) from None
    if content == DEFAULT_CONTENT:
        return cfg
    if content not in CONTENT_MODES:
        raise ConfigError(f"unknown content mode {content!r}; expected one of {', '.join(CONTENT_MODES)}")
    return replace(cfg, name=f"{base}-{content}", content=content, near_duplicate_share=HARD_MODE_DUPLICATE_SHARE)


def with_overrides(cfg: WorldConfig, overrides: dict[str, Any]) -> WorldConfig:
    """``cfg`` with WorldConfig fields replaced; ``story.<name>`` keys replace Story constants."""
    story = {k.removeprefix("story."): v for k, v in overrides.items() if k.startswith("story.")}
    top = {k: v for k, v in overrides.items() if not k.startswith("story.")}
    try:
        return replace(cfg, **top, story=replace(cfg.story, **story))
    except TypeError as e:  # an unknown field
        raise ConfigError(f"world overrides {sorted(overrides)}: {e}") from None


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """["taste_weight=3", "story.content_hidden_dims=8"] → {key: int or float} (bench command lines)."""
    pairs = [kv.split("=", 1) for kv in items]
    return {k: int(v) if v.lstrip("-").isdigit() else float(v) for k, v in pairs}


def resolve(name_or_config: str | WorldConfig, seed: int | None) -> WorldConfig:
    cfg = preset(name_or_config) if isinstance(name_or_config, str) else name_or_config
    if not isinstance(cfg, WorldConfig):
        raise ConfigError(f"expected a preset name or a WorldConfig, got {type(name_or_config).__name__}")
    if seed is not None:
        cfg = replace(cfg, seed=int(seed))
    return cfg
