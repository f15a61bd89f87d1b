"""The one place that loads a partition for serving: its trained model, ID table and vocabulary.

The model is the one ``recommender`` trained for this grid cell on the current data, ID table and
``[train]``/``[split]`` settings: the folder ``ArtifactLayout.model_dir`` names by
``artifacts.run_fingerprint`` (what ``stages.train_cell`` trains into and ``stages.evaluate_cell``
reads), never "the newest folder". Loading goes through ``checkpoints.load_recommender``, so a model
trained on another ID table is refused exactly as training refuses it (``IdTableMismatchError``).
The ``Recommender`` only sees the ``PartitionBundle`` returned here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from . import checkpoints, features
from . import semantic_ids as sid
from . import stages
from . import content_init
from .artifacts import ArtifactLayout, run_fingerprint
from .config import SemidConfig
from .errors import SemidError
from .schema import TRACK_CATALOG
from .schemes import GridCell
from .serving import PartitionBundle
from .warehouse import connect, get_meta, table_columns, table_exists


def _require_model(mdir: Path, cell: GridCell) -> Path:
    if not (mdir / checkpoints.MODEL).exists():
        raise SemidError(
            f"no trained model for {cell.partition_key} on the current data, ID table and settings "
            f"(expected {mdir}): materialize `recommender` for this partition first"
        )
    return mdir


def find_model_dir(*, warehouse: str | Path, layout: ArtifactLayout, cell: GridCell, cfg: SemidConfig) -> Path:
    """The folder ``recommender`` trained this cell into, from the warehouse meta and the ID-table
    hash alone (no split loading); ``SemidError`` when it holds no model."""
    with connect(warehouse, read_only=True) as con:
        dataset_fp = get_meta(con, "dataset_fingerprint")
        _, id_hash = sid.read_semantic_ids(con, cell.scheme)
        content_fp = (features.content_fingerprint(con)
                      if content_init.uses_content(cell.scheme, cfg.train) else None)
    fp = run_fingerprint(dataset_fingerprint=dataset_fp, id_table_hash=id_hash, cell=cell,
                         train=cfg.train, split=cfg.split, max_tie_embeddings=cfg.semantic_ids.max_tie_embeddings,
                         content_hash=content_fp)
    return _require_model(layout.model_dir(cell, fp), cell)


def read_catalog(con) -> pd.DataFrame | None:
    """track_id, artist_id, title of the catalogue (the columns it has), for display and checks."""
    if not table_exists(con, TRACK_CATALOG):
        return None
    cols = [c for c in ("track_id", "artist_id", "title") if c in table_columns(con, TRACK_CATALOG)]
    return con.execute(f"SELECT {', '.join(cols)} FROM {TRACK_CATALOG} ORDER BY track_id").df()


def load_partition(*, warehouse: str | Path, layout: ArtifactLayout, cell: GridCell | str, cfg: SemidConfig,
                   model_dir: str | Path | None = None) -> PartitionBundle:
    """Model + vocabulary + cold-start counts + artists of one grid cell, checked against its ID table.

    ``model_dir`` overrides the fingerprint folder (``semid serve --model-dir``); the ID-table
    check still applies to it."""
    cell = cell if isinstance(cell, GridCell) else GridCell.parse(cell)
    inputs = stages.load_training_inputs(str(warehouse), cell.scheme, cfg)
    with connect(warehouse, read_only=True) as con:
        catalog = read_catalog(con)
    mdir = _require_model(Path(model_dir) if model_dir else inputs.model_dir(layout, cell, cfg), cell)
    splits = inputs.splits
    model = checkpoints.load_recommender(mdir, splits_vocab=splits.vocab, id_table=inputs.id_table,
                                       id_table_hash=inputs.id_table_hash)
    config = json.loads((mdir / checkpoints.CONFIG).read_text())
    return PartitionBundle(
        partition_key=cell.partition_key, model=model, vocab=splits.vocab,
        train_track_counts=splits.train_track_counts, track_artist=splits.track_artist,
        id_table_hash=inputs.id_table_hash, model_dir=str(mdir), config=config, catalog=catalog,
        dataset_fingerprint=inputs.dataset_fingerprint,
        extra={"kind": splits.kind, "max_ts": str(splits.cutoffs.get("max_ts"))},
    )


def random_bundle(*, n_tracks: int, k: int = 1024, levels: int = 4, hidden: int = 64, n_artists: int = 0,
                  cold_share: float = 0.1, seed: int = 0, max_len: int = 50, with_bias: bool = False,
                  with_prior: bool = False) -> PartitionBundle:
    """An untrained partition of a synthetic catalogue (random codes, random weights): benchmarks and
    tests of the serving path at any catalogue size, without training anything."""
    import numpy as np
    import torch

    from .config import TrainConfig
    from .model import SASRec, build_track_encoder
    from .schemes import IdScheme
    from .vocab import TrackVocab

    rng = np.random.default_rng(seed)
    track_ids = np.array([f"t{i:07d}" for i in range(n_tracks)], dtype=object)
    codes = rng.integers(0, k, size=(n_tracks, levels))
    table = pd.DataFrame({"track_id": track_ids, **{f"c{j + 1}": codes[:, j] for j in range(levels)}})
    table["tie"] = table.groupby([f"c{j + 1}" for j in range(levels)]).cumcount()
    torch.manual_seed(seed)
    cfg = TrainConfig(max_len=max_len)
    enc = build_track_encoder(scheme=IdScheme(family="v1", k=k), hidden=hidden, n_tracks=n_tracks, track_ids=track_ids,
                              id_table=table, with_bias=with_bias)
    if with_bias:  # random, not zero: a test then sees whether the scorer adds them
        with torch.no_grad():
            enc.bias.normal_()
    model = SASRec(encoder=enc, hidden=hidden, layers=cfg.layers, heads=cfg.heads, max_len=cfg.max_len,
                   dropout=cfg.dropout, prior_tokens=n_tracks + 1 if with_prior else 0).eval()
    if with_prior:  # a random popularity prior and weight: a test then sees whether the scorer adds it
        model.set_prior(np.r_[0.0, rng.normal(size=n_tracks)], 0.7)
    counts = np.r_[0, (rng.random(n_tracks) >= cold_share).astype(np.int64)]
    artist = np.r_[0, rng.integers(1, n_artists + 1, size=n_tracks)] if n_artists else None
    return PartitionBundle(
        partition_key=f"{hidden}|v1-k{k}", model=model, vocab=TrackVocab(track_ids), train_track_counts=counts,
        track_artist=artist, id_table_hash=None, model_dir="(random)", config={"hidden": hidden, "k": k},
        catalog=None, dataset_fingerprint=None,
    )
