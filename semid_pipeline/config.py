"""Configuration: the data-set spec, the experiment grid and per-stage settings (frozen dataclasses).

Everything an operator can change without code lives in ``semid.toml`` at the repository root (or the
file ``SEMID_CONFIG`` names); the data set and warehouse: ``SEMID_DATASET``, ``SEMID_WAREHOUSE`` (or resources).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .no_content import POLICIES as WITHOUT_CONTENT_POLICIES
from .schemes import IdScheme, scheme_keys
from .synthetic.presets import CONTENT_MODES as SYNTHETIC_CONTENT_MODES
from .synthetic.presets import DEFAULT_CONTENT as SYNTHETIC_DEFAULT_CONTENT
from .synthetic.presets import FORMATS as SYNTHETIC_FORMATS
from .synthetic.presets import PRESET_NAMES as SYNTHETIC_PRESETS

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT / "data"
DEFAULT_ARTIFACT_DIR = REPO_ROOT / "artifacts"
DEFAULT_WAREHOUSE = DEFAULT_DATA_DIR / "warehouse.duckdb"
DEFAULT_CONFIG_FILE = REPO_ROOT / "semid.toml"


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed ``SEMID_DATASET`` value.

    ``synthetic[:preset][:format][:content]``  the embedded synthetic world (preset tiny|demo|bench|large,
                                     format users (per-user files, default) | sessions (MSSD files),
                                     content audio (default) | metadata | genreflags, users only)
    ``mssd:<folder or file>[,<file>...]``  Spotify MSSD ``log_*.csv[.gz]`` + ``tf_*.csv[.gz]``
    ``events:<events file>[,<tracks file>]``  per-user events (CSV/Parquet) + optional tracks file
    ``spotify-history:<folder or files>``  Spotify "extended streaming history" JSON exports
                                     (one sub-folder per listener, or one listener's export)
    """

    kind: str  # "synthetic" | "mssd" | "events" | "spotify-history"
    preset: str = "demo"
    format: str = "users"
    paths: tuple[str, ...] = ()
    # synthetic content mode (see semid_pipeline.synthetic); a mode's world is the preset
    # ``<preset>-<content>`` (e.g. ``demo-metadata``), so ``preset`` names the world to write
    content: str = SYNTHETIC_DEFAULT_CONTENT

    @property
    def key(self) -> str:
        """Canonical string form (stored with the tables so data sets never mix)."""
        if self.kind == "synthetic":
            if self.content == SYNTHETIC_DEFAULT_CONTENT:
                return f"synthetic:{self.preset}:{self.format}"
            base = self.preset.removesuffix(f"-{self.content}")
            return f"synthetic:{base}:{self.format}:{self.content}"
        return f"{self.kind}:" + ",".join(self.paths)

    @property
    def mssd_format(self) -> bool:  # MSSD session logs: ``mssd:`` files, or a synthetic world written in that format
        return self.kind == "mssd" or (self.kind == "synthetic" and self.format == "sessions")


def parse_dataset_spec(spec: str | None) -> DatasetSpec:
    spec = (spec or "synthetic").strip()
    kind, _, rest = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "synthetic":
        parts = [p for p in rest.split(":") if p] if rest else []
        preset = parts[0] if parts else "demo"
        fmt = parts[1] if len(parts) > 1 else "users"
        content = parts[2] if len(parts) > 2 else SYNTHETIC_DEFAULT_CONTENT
        if len(parts) > 3 or content not in SYNTHETIC_CONTENT_MODES:
            raise ConfigError(
                f"SEMID_DATASET={spec!r}: expected synthetic[:preset][:format][:content] with content one of "
                f"{', '.join(SYNTHETIC_CONTENT_MODES)}"
            )
        if preset not in SYNTHETIC_PRESETS:
            raise ConfigError(
                f"SEMID_DATASET={spec!r}: unknown synthetic preset {preset!r}; "
                f"expected one of {', '.join(SYNTHETIC_PRESETS)}"
            )
        if fmt not in SYNTHETIC_FORMATS:
            raise ConfigError(
                f"SEMID_DATASET={spec!r}: unknown synthetic format {fmt!r}; "
                f"expected one of {', '.join(SYNTHETIC_FORMATS)}"
            )
        if content != SYNTHETIC_DEFAULT_CONTENT and fmt != "users":
            raise ConfigError(
                f"SEMID_DATASET={spec!r}: content mode {content!r} exists for the users format only "
                "(MSSD track files always carry audio features)"
            )
        world = preset if content == SYNTHETIC_DEFAULT_CONTENT else f"{preset}-{content}"
        return DatasetSpec(kind="synthetic", preset=world, format=fmt, content=content)
    if kind in ("mssd", "events", "spotify-history"):
        paths = tuple(p.strip() for p in rest.split(",") if p.strip())
        if not paths:
            raise ConfigError(f"SEMID_DATASET={spec!r}: {kind}: needs at least one path after the colon")
        if kind == "events" and len(paths) > 2:
            raise ConfigError(
                f"SEMID_DATASET={spec!r}: events: takes <events file>[,<tracks file>], got {len(paths)} paths"
            )
        return DatasetSpec(kind=kind, paths=paths)
    raise ConfigError(f"SEMID_DATASET={spec!r}: expected synthetic[:{'|'.join(SYNTHETIC_PRESETS)}], mssd:<folder or files>, "
                      "events:<events file>[,<tracks file>] or spotify-history:<folder or files>")


@dataclass(frozen=True)
class IngestConfig:
    """How raw feedback becomes labelled events."""

    context_filter: str = "radio"  # MSSD context_type to keep, or "all"
    skip_definition: str = "skip_2"  # MSSD column that marks a negative
    rating_threshold: float | None = None  # per-user ratings: >= threshold is positive
    neutral_band: float = 0.0  # ratings within +-band of the threshold are dropped
    min_feature_coverage: float = 0.95  # share of event tracks that must have content features
    timestamp_unit: str = "auto"  # epoch numbers: "s", "ms", or "auto" (|value| >= 1e11 → milliseconds)
    min_date: str = "1990-01-01"  # events before this date (or after today + 1 day) are rejected
    on_duplicate: str = "error"  # repeated (user, track, timestamp) events: "error" or "drop" (keep the first)
    # per-user data: evaluate by "user" (one stratum per listener) or "session" (a new session after a
    # gap of more than session_gap_minutes, and every session_max_events events, as in the paper)
    stratum: str = "user"
    session_gap_minutes: float = 30.0
    session_max_events: int = 20
    # Spotify history labels: negative = skipped, or < spotify_min_ms_played ms and reason_end in spotify_short_reasons;
    # positive = reason_end in spotify_positive_reasons, not negative; other plays are dropped, counted by reason
    spotify_min_ms_played: int = 30000
    spotify_short_reasons: tuple[str, ...] = ("fwdbtn", "backbtn", "endplay")
    spotify_positive_reasons: tuple[str, ...] = ("trackdone",)


@dataclass(frozen=True)
class RQVAEConfig:
    """How an RQ-VAE trains; its depth and seed: ``[semantic_ids] levels`` / ``seed`` (shared by every family)."""

    hidden: tuple[int, ...] = (128, 64)
    latent_dim: int = 32
    beta: float = 0.25
    epochs: int = 12
    batch_size: int = 1024
    lr: float = 1e-3
    kmeans_sample: int = 20000
    kmeans_iters: int = 20
    dead_code_patience: int = 50  # steps a code may go unused before it is re-seeded


@dataclass(frozen=True)
class SemanticIdConfig:
    schemes: dict[str, tuple[int, ...]] = field(
        default_factory=lambda: {"v0": (64, 1024), "v1": (64, 256, 1024), "rqkmeans": (1024,)}
    )
    levels: int = 4
    seed: int = 0
    min_level1_utilization: float = 0.9  # collapse guard, applied when k <= tracks/4
    rqvae: RQVAEConfig = RQVAEConfig()
    # collision-aware IDs (balanced.py): last level = nearest code still free under the prefix
    balanced_last_level: bool = True  # v1 + rqkmeans; false = the paper's exact greedy method
    max_tie_embeddings: int = 16  # rows of the model's tie table; ties >= cap-1 share the last row
    min_unique_tuple_share: float = 0.9  # quality gate, applied when k^L >= 10 x tracks
    max_tie_limit: int = 15  # quality gate on the largest tie value
    without_content: str = "random"  # event tracks without content features: random | error (no_content.py)

    def __post_init__(self) -> None:
        if self.without_content not in WITHOUT_CONTENT_POLICIES:
            raise ConfigError(f"[semantic_ids] without_content = {self.without_content!r}: expected one of "
                              f"{', '.join(WITHOUT_CONTENT_POLICIES)}")

    def partition_keys(self) -> list[str]:
        return scheme_keys(self.schemes, include_id=False)


@dataclass(frozen=True)
class FeaturesConfig:
    """Content encoders (``features.py``, ``text_encoder.py``); recorded in the transform artifact."""

    # auto (= minilm-static when the model package is installed, else hashed) | minilm | minilm-static | hashed | none
    text_encoder: str = "auto"
    text_columns: tuple[str, ...] = ("title", "artist", "artist_id", "genre", "genre_id", "album")  # those present
    text_with_audio: bool = False  # also add the text block when the catalogue has numeric/audio content
    text_dim: int = 64  # principal components kept of the concatenated per-column sentence embeddings
    text_weight: float = 1.0  # per-block scaling: mean variance per text dimension
    batch_size: int = 256  # strings per forward pass of the text encoder


@dataclass(frozen=True)
class SplitConfig:
    test_days: float = 14  # fractions of a day allowed (0.25 = 6 hours): ``periods``
    val_days: float = 14  # 0: no validation period (no early stopping, no chosen weights)
    max_session_len: int = 20
    max_user_history: int = 400
    max_lookback_days: int = 365

    def __post_init__(self) -> None:
        for name, v, zero_ok in (("test_days", self.test_days, False), ("val_days", self.val_days, True)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1e5 or (v == 0 and not zero_ok):
                raise ConfigError(f"[split] {name} = {v!r}: expected days {'>= 0' if zero_ok else '> 0'} (0.25 = 6 hours)")


@dataclass(frozen=True)
class TrainConfig:
    layers: int = 2
    heads: int = 2
    dropout: float = 0.3  # validation sweep (issue 10): 0.3 + weight_decay 0.05 beat 0.1 + 0.01 on both worlds
    # dropout on the attention probabilities (None = ``dropout``, as until 2026-12-04). 0: the same
    # validation AUC (users h=64/128, sessions h=64; README) and 1.0-1.4x the events/s at max_len 50,
    # 2.5x at 400 (the (B, heads, T, T) dropout mask was ~40% of a training step)
    attention_dropout: float | None = 0.0
    max_len: int = 50  # training window (tokens) per sequence AND the evaluation input length
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    epochs: int = 30  # a cap: early stopping (patience, on validation AUC) ends training (demo: best epochs 2-17)
    patience: int = 2
    sampled_negatives: int = 4
    song_decomposition: bool = False
    seed: int = 0
    # --- recommender quality switches (issue 10; defaults chosen on validation AUC, see README)
    item_bias: bool = True  # one scalar per code (track / codeword / tie / artist / genre), summed
    negative_weight: float = 1.0  # weight of the sampled-catalogue-negative BCE term (0 = none)
    # negatives drawn ∝ (training plays + 1)^this, logQ-corrected (0 = uniform)
    negative_popularity: float = 0.0
    # the hidden state at t learns to score each of the next `horizon` events of its window (mean BCE
    # per position), as evaluation scores a whole later period from one state; 1 = next event only
    horizon: int = 1
    use_sequence: bool = True  # False: bias-only diagnostic (no transformer, score = bias)
    bias_lr_scale: float = 1.0  # learning rate of the item biases = lr × this
    # id / content-derived semantic-ID tables start at the content features' principal components
    # (ridge backfitting: Σ codewords ≈ PCs; v0, the random control, stays random); the fitted track
    # vectors start with RMS content_init_std per coordinate (random init: 0.02)
    content_init: bool = True  # validation AUC, h=64: id +0.023 / +0.012 / +0.017, v1-k1024 +0.009 / +0.005 / +0.013 (users / sessions / genre flags)
    content_init_std: float = 0.08
    # L2-SP: each step pulls the content-initialised tables back toward their start,
    # table -= lr · content_anchor · (table − table at init) (0 = off; only with content_init)
    content_anchor: float = 0.0
    # after early stopping, this many more epochs from the best weights over the training data
    # extended through the validation period (windows.through_validation): the model that is tested
    # and served has seen the most recent data, as the fitted GBDT baseline has (0 = off). Chosen
    # with the validation period as the test (sweep --nested): 0 / 1 / 2 / 3 → mean +0 / +0.007 /
    # +0.009 / +0.011 AUC over id and v1-k1024 on both demo worlds; 2: most of the gain, 2 epochs more
    final_fit_epochs: int = 2
    # score += w · z(track): the Beta-smoothed positive rate of the track in the training data as a
    # logit (``track_prior``; w learned, z a per-track statistic, leave-sequence-out while training)
    popularity_prior: bool = True
    # with the prior: z is each track's effect in a logistic model with one effect per listener /
    # session and one per track (``track_prior.track_effects``: the rate adjusted for who played it)
    # instead of the smoothed rate itself
    prior_adjusted: bool = True
    # with the prior: the weight search also tries z with each track shrunk toward what its play count
    # predicts (a line in log(1 + plays) fitted on the data, ``track_prior.plays_target``) instead of
    # toward 0, and keeps it where validation ranks better. Off: it lifts sparse per-user catalogues
    # (+0.004 / +0.010 test AUC) but cost the sessions demo up to 0.006 on test (README)
    prior_by_plays: bool = False
    # with the prior: w · (z + ρ · z_recent), z_recent the track's rate over the last this many days
    # before the scored period as its deviation from z (``track_prior.recent_logits``; ρ chosen with w;
    # 0 = off)
    recent_prior_days: int = 14
    # score += a₊ · cos(content(track), liked history) − a₋ · cos(…, disliked history), content as the
    # track's ID fields say it (``content_affinity``; a chosen on validation with w; never for v0)
    content_affinity: bool = True
    # score += r_t · m(track) + r_a · m(artist): the listener's own earlier feedback on this track / its
    # artist in the input ((likes − dislikes) / (plays + 1); ``listener_memory``; r chosen with w)
    listener_memory: bool = True
    # with the content affinity: score += b · û(track) · β(listener), β a per-listener ridge-logistic
    # fit of the input's feedback on its unit content vectors (``content_affinity.personal_tastes``;
    # b chosen with w)
    personal_taste: bool = True
    # --- data-parallel training (issue 14): torchrun processes per model; 1 = one process, as before
    processes: int = 1
    # deterministic torch kernels on CUDA too (CPU: always): the same seed, the same weights. false: CUDA's faster
    # non-deterministic kernels (two runs then differ in their AUCs' 4th-5th decimal; README, "On a GPU")
    deterministic: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.processes, int) or self.processes < 1:
            raise ConfigError(f"[train] processes must be an integer >= 1, got {self.processes!r}")


def train_identity(cfg: TrainConfig) -> dict:
    """``cfg`` as recorded in config.json and hashed into the run fingerprint. ``processes = 1``
    (the default) is left out, so one-process runs keep the folders and checkpoints they had
    before the key existed; N > 1 is recorded (dropout masks are drawn per rank: another run).
    Likewise the later switches while they are off: ``content_init`` (with its std),
    ``horizon = 1``, ``negative_popularity = 0``, ``content_anchor = 0``, ``final_fit_epochs = 0``,
    ``recent_prior_days = 0``, ``popularity_prior``, ``prior_adjusted``, ``prior_by_plays``, ``content_affinity``, ``listener_memory``, ``personal_taste``."""
    d = asdict(cfg)
    del d["deterministic"]  # how the kernels run, not what is trained: a run keeps its folder either way
    if d["processes"] == 1:
        del d["processes"]
    if d["attention_dropout"] is None:
        del d["attention_dropout"]
    if not d["content_init"]:  # off: the identity runs had before the switch existed
        del d["content_init"], d["content_init_std"]
    if d["horizon"] == 1:
        del d["horizon"]
    if d["negative_popularity"] == 0:
        del d["negative_popularity"]
    if d["content_anchor"] == 0:
        del d["content_anchor"]
    if d["final_fit_epochs"] == 0:
        del d["final_fit_epochs"]
    if not d["popularity_prior"]:
        del d["popularity_prior"]
    if d["recent_prior_days"] == 0:
        del d["recent_prior_days"]
    if not d["prior_adjusted"]:
        del d["prior_adjusted"]
    if not d["prior_by_plays"]:
        del d["prior_by_plays"]
    if not d["content_affinity"]:
        del d["content_affinity"]
    if not d["listener_memory"]:
        del d["listener_memory"]
    if not d["personal_taste"]:
        del d["personal_taste"]
    return d


@dataclass(frozen=True)
class GridConfig:
    hidden_sizes: tuple[int, ...] = (32, 64, 128)
    include_id_baseline: bool = True
    # extra rows that reuse a fitted scheme's table: ``hybrid-k<k>`` (per-track row + the v1-k<k>
    # codewords) and ``<scheme>+ag`` (song decomposition: + artist and genre fields)
    variants: tuple[str, ...] = ()
    # rows `make demo` trains at the [production] hidden size only, like the variants (which it always
    # trains there only): the alternative tokenizers that are not the paper's method; a backfill or
    # the UI fills the rest of the row
    demo_production_h_only: tuple[str, ...] = ()

    def model_schemes(self, semantic: SemanticIdConfig) -> list[str]:
        """Partition keys of the grid's ``scheme`` dimension: ``id`` (if included), every configured
        scheme, then the variants (each checked: its codes come from a scheme of the grid)."""
        base = scheme_keys(semantic.schemes, include_id=self.include_id_baseline)
        out = list(base)
        for key in self.variants:
            scheme = IdScheme.parse(key)
            if scheme.key in out:
                raise ConfigError(f"[grid] variants: {key!r} is already a row of the grid")
            if scheme.codes_scheme.key == scheme.key or scheme.codes_scheme.key not in base:
                raise ConfigError(
                    f"[grid] variants: {key!r} must reuse the table of a scheme in the grid "
                    f"({', '.join(base)}): e.g. hybrid-k<k> needs v1-k<k>, v1-k<k>+ag needs v1-k<k>"
                )
            out.append(scheme.key)
        return out


@dataclass(frozen=True)
class ProductionConfig:
    scheme: str = "v1-k1024"
    hidden: int = 64


@dataclass(frozen=True)
class EvalConfig:
    min_strata: int = 50
    bootstrap: int = 1000
    topk: int = 10
    seed: int = 0

    def __post_init__(self) -> None:  # the CI's resamples: 0 would leave every record without a CI
        if isinstance(self.bootstrap, bool) or not isinstance(self.bootstrap, int) or self.bootstrap < 1:
            raise ConfigError(f"[eval] bootstrap = {self.bootstrap!r}: expected an integer >= 1 (the CI's resamples)")


@dataclass(frozen=True)
class ServeConfig:
    """``[serve]``: the ``recommendations`` asset and ``semid serve`` (see ``serving``)."""

    n: int = 50  # list length of the recommendations table
    active_days: int = 28  # a listener is active with events in the last active_days of the data
    exclude_heard: bool = True
    exclude_skipped: bool = True
    include_cold_start: bool = True
    artist_cap: int = 3  # at most this many tracks per artist in a list (0 = no cap)
    max_n: int = 500  # largest n a request may ask for
    max_history: int = 2000  # most history entries a request may send


@dataclass(frozen=True)
class SemidConfig:
    ingest: IngestConfig = IngestConfig()
    semantic_ids: SemanticIdConfig = SemanticIdConfig()
    features: FeaturesConfig = FeaturesConfig()
    split: SplitConfig = SplitConfig()
    train: TrainConfig = TrainConfig()
    grid: GridConfig = GridConfig()
    production: ProductionConfig = ProductionConfig()
    eval: EvalConfig = EvalConfig()
    serve: ServeConfig = ServeConfig()
    landing_dir: str = str(DEFAULT_DATA_DIR / "landing")


def _build(cls: type, raw: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in known:
            raise ConfigError(f"{where}: unknown setting {name!r}; known: {', '.join(sorted(known))}")
        default = getattr(cls(), name)
        if hasattr(default, "__dataclass_fields__") and isinstance(value, dict):
            value = _build(type(default), value, f"{where}.{name}")
        elif isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        elif isinstance(default, dict) and isinstance(value, dict):
            value = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
        kwargs[name] = value
    return replace(cls(), **kwargs)


def load_config(path: str | os.PathLike | None = None) -> SemidConfig:
    """Read ``semid.toml`` (or ``SEMID_CONFIG``); missing file → defaults."""
    p = Path(path or os.environ.get("SEMID_CONFIG") or DEFAULT_CONFIG_FILE)
    if not p.exists():
        if path is not None or os.environ.get("SEMID_CONFIG"):
            raise ConfigError(f"config file {p} does not exist")
        return SemidConfig()
    try:
        raw = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from e
    return _build(SemidConfig, raw, str(p))


def dataset_from_env() -> str:
    return os.environ.get("SEMID_DATASET", "synthetic")


def warehouse_from_env() -> str:
    return os.environ.get("SEMID_WAREHOUSE", str(DEFAULT_WAREHOUSE))


def data_dir_from_env() -> str:
    return os.environ.get("SEMID_DATA_DIR", str(DEFAULT_DATA_DIR))


def artifacts_from_env() -> str:
    return os.environ.get("SEMID_ARTIFACTS", str(DEFAULT_ARTIFACT_DIR))


#: DuckDB's buffer-pool limit per warehouse connection (beyond it DuckDB spills to ``<file>.tmp``);
#: DuckDB's own default is 80% of the machine's RAM, which a million-track ingestion would take.
DEFAULT_DUCKDB_MEMORY_LIMIT = "3GB"


def duckdb_memory_limit_from_env() -> str:
    """``SEMID_DUCKDB_MEMORY_LIMIT`` (a DuckDB size such as ``2GB``) or the default above."""
    return os.environ.get("SEMID_DUCKDB_MEMORY_LIMIT", DEFAULT_DUCKDB_MEMORY_LIMIT)
