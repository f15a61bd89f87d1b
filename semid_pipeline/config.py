"""Configuration: the data-set spec, the experiment grid and per-stage settings (frozen dataclasses).

Everything an operator can change without code lives in ``semid.toml`` at the repository root
(or the file named by ``SEMID_CONFIG``); the data set and warehouse come from ``SEMID_DATASET``
and ``SEMID_WAREHOUSE`` (or the Dagster resource config).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT / "data"
DEFAULT_ARTIFACT_DIR = REPO_ROOT / "artifacts"
DEFAULT_WAREHOUSE = DEFAULT_DATA_DIR / "warehouse.duckdb"
DEFAULT_CONFIG_FILE = REPO_ROOT / "semid.toml"

SYNTHETIC_PRESETS = ("tiny", "demo", "bench")
SYNTHETIC_FORMATS = ("users", "sessions")


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed ``SEMID_DATASET`` value.

    ``synthetic[:preset][:format]``  the embedded synthetic world (preset tiny|demo|bench,
                                     format users (per-user files, default) | sessions (MSSD files))
    ``mssd:<folder or file>[,<file>...]``  Spotify MSSD ``log_*.csv[.gz]`` + ``tf_*.csv[.gz]``
    ``events:<events file>[,<tracks file>]``  per-user events (CSV/Parquet) + optional tracks file
    """

    kind: str  # "synthetic" | "mssd" | "events"
    preset: str = "demo"
    format: str = "users"
    paths: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """Canonical string form (stored with the tables so data sets never mix)."""
        if self.kind == "synthetic":
            return f"synthetic:{self.preset}:{self.format}"
        return f"{self.kind}:" + ",".join(self.paths)


def parse_dataset_spec(spec: str | None) -> DatasetSpec:
    spec = (spec or "synthetic").strip()
    kind, _, rest = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "synthetic":
        parts = [p for p in rest.split(":") if p] if rest else []
        preset = parts[0] if parts else "demo"
        fmt = parts[1] if len(parts) > 1 else "users"
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
        return DatasetSpec(kind="synthetic", preset=preset, format=fmt)
    if kind in ("mssd", "events"):
        paths = tuple(p.strip() for p in rest.split(",") if p.strip())
        if not paths:
            raise ConfigError(f"SEMID_DATASET={spec!r}: {kind}: needs at least one path after the colon")
        if kind == "events" and len(paths) > 2:
            raise ConfigError(
                f"SEMID_DATASET={spec!r}: events: takes <events file>[,<tracks file>], got {len(paths)} paths"
            )
        return DatasetSpec(kind=kind, paths=paths)
    raise ConfigError(
        f"SEMID_DATASET={spec!r}: expected synthetic[:tiny|demo|bench], mssd:<folder or files> "
        "or events:<events file>[,<tracks file>]"
    )


@dataclass(frozen=True)
class IngestConfig:
    """How raw feedback becomes labelled events."""

    context_filter: str = "radio"  # MSSD context_type to keep, or "all"
    skip_definition: str = "skip_2"  # MSSD column that marks a negative
    rating_threshold: float | None = None  # per-user ratings: >= threshold is positive
    neutral_band: float = 0.0  # ratings within +-band of the threshold are dropped
    min_feature_coverage: float = 0.95  # share of event tracks that must have content features


@dataclass(frozen=True)
class RQVAEConfig:
    levels: int = 4
    hidden: tuple[int, ...] = (128, 64)
    latent_dim: int = 32
    beta: float = 0.25
    epochs: int = 12
    batch_size: int = 1024
    lr: float = 1e-3
    kmeans_sample: int = 20000
    kmeans_iters: int = 20
    dead_code_patience: int = 50  # steps a code may go unused before it is re-seeded
    seed: int = 0


@dataclass(frozen=True)
class SemanticIdConfig:
    schemes: dict[str, tuple[int, ...]] = field(
        default_factory=lambda: {"v0": (64, 1024), "v1": (64, 256, 1024), "rqkmeans": (1024,)}
    )
    levels: int = 4
    seed: int = 0
    min_level1_utilization: float = 0.9  # collapse guard, applied when k <= tracks/4
    rqvae: RQVAEConfig = RQVAEConfig()

    def partition_keys(self) -> list[str]:
        return [f"{s}-k{k}" for s, ks in self.schemes.items() for k in ks]


@dataclass(frozen=True)
class SplitConfig:
    test_days: int = 14
    val_days: int = 14
    max_session_len: int = 20
    max_user_history: int = 400
    max_lookback_days: int = 365


@dataclass(frozen=True)
class TrainConfig:
    layers: int = 2
    heads: int = 2
    dropout: float = 0.3  # validation sweep (issue 10): 0.3 + weight_decay 0.05 beat 0.1 + 0.01 on both worlds
    max_len: int = 50  # training window (tokens) per sequence AND the evaluation input length
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    epochs: int = 12  # a cap: early stopping (patience, on validation AUC) ends training (best epochs seen: 2-7)
    patience: int = 2
    sampled_negatives: int = 4
    song_decomposition: bool = False
    seed: int = 0
    # --- recommender quality switches (issue 10; defaults chosen on validation AUC, see README)
    item_bias: bool = True  # one scalar per code (track / codeword / tie / artist / genre), summed
    negative_weight: float = 1.0  # weight of the sampled-catalogue-negative BCE term (0 = none)
    use_sequence: bool = True  # False: bias-only diagnostic (no transformer, score = bias)
    bias_lr_scale: float = 1.0  # learning rate of the item biases = lr × this


@dataclass(frozen=True)
class GridConfig:
    hidden_sizes: tuple[int, ...] = (32, 64, 128)
    include_id_baseline: bool = True

    def model_schemes(self, semantic: SemanticIdConfig) -> list[str]:
        keys = semantic.partition_keys()
        return (["id"] if self.include_id_baseline else []) + keys


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


@dataclass(frozen=True)
class SemidConfig:
    ingest: IngestConfig = IngestConfig()
    semantic_ids: SemanticIdConfig = SemanticIdConfig()
    split: SplitConfig = SplitConfig()
    train: TrainConfig = TrainConfig()
    grid: GridConfig = GridConfig()
    production: ProductionConfig = ProductionConfig()
    eval: EvalConfig = EvalConfig()
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
