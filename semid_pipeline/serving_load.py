"""The one place that loads a partition for serving: its trained model, ID table and vocabulary.

Re-point this module when models move to an artifact store or ID tables get a scheme type; the
``Recommender`` only sees the ``PartitionBundle`` it returns. Loading goes through
``train.load_recommender``, so a model trained on another ID table is refused exactly as
training refuses it (``IdTableMismatchError``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from . import semantic_ids as sid
from . import splits as splits_mod
from . import train as train_mod
from .config import SplitConfig
from .errors import SemidError
from .schema import TRACK_CATALOG
from .serving import PartitionBundle
from .warehouse import connect, get_meta, table_columns, table_exists


def parse_grid_key(partition_key: str) -> tuple[str, int]:
    """"64|v1-k1024" → ("v1-k1024", 64) (Dagster orders the dimensions: h first)."""
    try:
        h, scheme = str(partition_key).split("|")
        return scheme, int(h)
    except ValueError:
        raise SemidError(f"partition {partition_key!r}: expected '<h>|<scheme>', e.g. '64|v1-k1024'") from None


def find_model_dir(artifacts_root: str | Path, scheme: str, h: int, *, dataset_fingerprint: str | None) -> Path:
    """The newest trained model folder of (scheme, h) for this data set (``models/<scheme>__h<h>/<fp>``).

    The folder name is the training fingerprint; its ``result.json`` names the data set it was
    trained on, so a model of an older data set is never picked.
    """
    base = Path(artifacts_root) / "models" / f"{scheme}__h{h}"
    found = []
    for d in sorted(base.glob("*")) if base.exists() else []:
        res, model = d / "result.json", d / train_mod.MODEL
        if not (res.exists() and model.exists()):
            continue
        if dataset_fingerprint is not None and json.loads(res.read_text()).get("dataset_fingerprint") != dataset_fingerprint:
            continue
        found.append((model.stat().st_mtime_ns, d))
    if not found:
        raise SemidError(
            f"no trained model for {h}|{scheme} on the current data set under {base}: "
            "materialize `recommender` for this partition first"
        )
    return max(found)[1]


def read_catalog(con) -> pd.DataFrame | None:
    """track_id, artist_id, title of the catalogue (the columns it has), for display and checks."""
    if not table_exists(con, TRACK_CATALOG):
        return None
    cols = [c for c in ("track_id", "artist_id", "title") if c in table_columns(con, TRACK_CATALOG)]
    return con.execute(f"SELECT {', '.join(cols)} FROM {TRACK_CATALOG} ORDER BY track_id").df()


def load_partition(*, warehouse: str | Path, artifacts_root: str | Path, partition_key: str,
                   split_cfg: SplitConfig, model_dir: str | Path | None = None) -> PartitionBundle:
    """Model + vocabulary + cold-start counts + artists of one grid partition, checked against its ID table."""
    scheme, h = parse_grid_key(partition_key)
    with connect(warehouse, read_only=True) as con:
        dataset_fp = get_meta(con, "dataset_fingerprint")
        splits = splits_mod.load_splits(con, split_cfg)
        id_table, id_hash = sid.read_semantic_ids(con, scheme)
        catalog = read_catalog(con)
    mdir = Path(model_dir) if model_dir else find_model_dir(artifacts_root, scheme, h, dataset_fingerprint=dataset_fp)
    model = train_mod.load_recommender(
        mdir, splits_vocab=splits.vocab, id_table=None if scheme == "id" else id_table, id_table_hash=id_hash
    )
    config = json.loads((mdir / train_mod.CONFIG).read_text())
    return PartitionBundle(
        partition_key=f"{h}|{scheme}", model=model, vocab=splits.vocab,
        train_track_counts=splits.train_track_counts, track_artist=splits.track_artist,
        id_table_hash=id_hash, model_dir=str(mdir), config=config, catalog=catalog,
        dataset_fingerprint=dataset_fp, extra={"kind": splits.kind, "max_ts": str(splits.cutoffs.get("max_ts"))},
    )


def random_bundle(*, n_tracks: int, k: int = 1024, levels: int = 4, hidden: int = 64, n_artists: int = 0,
                  cold_share: float = 0.1, seed: int = 0, max_len: int = 50) -> PartitionBundle:
    """An untrained partition of a synthetic catalogue (random codes, random weights): benchmarks and
    tests of the serving path at any catalogue size, without training anything."""
    import numpy as np
    import torch

    from .config import TrainConfig
    from .model import SASRec, build_track_encoder
    from .splits import TrackVocab

    rng = np.random.default_rng(seed)
    track_ids = np.array([f"t{i:07d}" for i in range(n_tracks)], dtype=object)
    codes = rng.integers(0, k, size=(n_tracks, levels))
    table = pd.DataFrame({"track_id": track_ids, **{f"c{j + 1}": codes[:, j] for j in range(levels)}})
    table["tie"] = table.groupby([f"c{j + 1}" for j in range(levels)]).cumcount()
    torch.manual_seed(seed)
    cfg = TrainConfig(max_len=max_len)
    enc = build_track_encoder(representation=f"v1-k{k}", hidden=hidden, n_tracks=n_tracks, track_ids=track_ids,
                              id_table=table)
    model = SASRec(encoder=enc, hidden=hidden, layers=cfg.layers, heads=cfg.heads, max_len=cfg.max_len,
                   dropout=cfg.dropout).eval()
    counts = np.r_[0, (rng.random(n_tracks) >= cold_share).astype(np.int64)]
    artist = np.r_[0, rng.integers(1, n_artists + 1, size=n_tracks)] if n_artists else None
    return PartitionBundle(
        partition_key=f"{hidden}|v1-k{k}", model=model, vocab=TrackVocab(track_ids), train_track_counts=counts,
        track_artist=artist, id_table_hash=None, model_dir="(random)", config={"hidden": hidden, "k": k},
        catalog=None, dataset_fingerprint=None,
    )
