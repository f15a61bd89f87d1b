"""A trained model's folder, read back: ``load_recommender`` (the best weights, checked against
the ID table and vocabulary they were trained with). ``train`` writes the folder:

    config.json    the run's description (``run_config``): scheme, h, fields, hashes
    model.pt       the best (validation AUC) weights, a state_dict (after the final fit, its
                   weights; with the popularity prior, its z and w as buffers)
    checkpoint.pt  the last epoch's full state, for resume (``train``)

Nothing is pickled: only state_dicts, tensors and plain containers, read with ``weights_only=True``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .config import TrainConfig, train_identity
from .errors import IdTableMismatchError, SemidError
from .model import SASRec, TrackEncoder, semantic_fields
from .schemes import IdScheme
from .splits import Splits
from .vocab import TrackVocab

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
CONFIG = "config.json"


def prior_tokens(state: dict) -> int:
    """Rows of a saved model's popularity prior (``SASRec(prior_tokens=...)``); 0 = none. The weights
    say it, not config.json: a model saved before the switch existed has none."""
    z = state.get("prior_logit")
    return 0 if z is None else int(z.numel())


def affinity_dims(state: dict) -> int:
    """Columns of a saved model's content-affinity rows (``SASRec(affinity_dims=...)``); 0 = none."""
    table = state.get("affinity_table")
    return 0 if table is None else int(table.shape[1])


def memory_tokens(state: dict) -> int:
    """Rows of a saved model's listener-memory artist map (``SASRec(memory_tokens=...)``); 0 = none."""
    artist = state.get("memory_artist")
    return 0 if artist is None else int(artist.numel())


def load_recommender(out_dir: Path, *, splits_vocab: TrackVocab, id_table: pd.DataFrame | None,
                     id_table_hash: str | None, device: str = "cpu") -> SASRec:
    """The best model of ``out_dir`` (eval mode). Refuses a semantic-ID table other than its own."""
    out_dir = Path(out_dir)
    config = json.loads((out_dir / CONFIG).read_text())
    if config.get("id_table_hash") != id_table_hash:
        raise IdTableMismatchError(
            f"model in {out_dir} was trained on semantic-ID table {config.get('id_table_hash')!r} "
            f"but was given table {id_table_hash!r}; retrain it or pass the table it was trained on"
        )
    if config["vocab_size"] != splits_vocab.n_tracks or config.get("vocab_fingerprint") != splits_vocab.fingerprint():
        raise SemidError(
            f"model in {out_dir} was trained on a {config['vocab_size']}-track vocabulary "
            f"({config.get('vocab_fingerprint', '?')[:12]}) but the splits have {splits_vocab.n_tracks} "
            f"({splits_vocab.fingerprint()[:12]}): the data set changed since training"
        )
    cfg = TrainConfig(**config["train"])
    hidden = config["hidden"]
    n_tok = splits_vocab.n_tokens
    fields = {name: (np.zeros(n_tok, dtype=np.int64), size) for name, size in config["fields"]}
    state = torch.load(out_dir / MODEL, map_location="cpu", weights_only=True)
    # the weights say whether there are item biases: a model saved before the switch existed has none,
    # while its config.json (no item_bias key) would read as the new default (on)
    encoder = TrackEncoder(fields=fields, hidden=hidden, with_bias="encoder.bias" in state)  # codes: state_dict
    model = SASRec(encoder=encoder, hidden=hidden, layers=cfg.layers, heads=cfg.heads, max_len=cfg.max_len,
                   dropout=cfg.dropout, attention_dropout=cfg.attention_dropout, use_sequence=cfg.use_sequence,
                   prior_tokens=prior_tokens(state),
                   affinity_dims=affinity_dims(state), memory_tokens=memory_tokens(state),
                   personal_taste="taste_weight" in state)
    model.load_state_dict(state)
    scheme = IdScheme.parse(config["scheme"])
    if not scheme.is_id and id_table is not None:  # the hash is a claim: check the codes themselves
        sem, _ = semantic_fields(id_table, splits_vocab.track_ids, k=scheme.k,
                                 max_tie_embeddings=config.get("max_tie_embeddings"))
        have = model.encoder.field_codes()
        for name, (codes, size) in sem.items():
            if name not in have or not torch.equal(have[name], torch.as_tensor(codes)):
                raise IdTableMismatchError(
                    f"model in {out_dir} (ID table {config.get('id_table_hash')!r}): the given table "
                    f"{id_table_hash!r} assigns different {name} codes than the ones the model was trained with"
                )
    return model.to(device).eval()


def run_config(*, scheme: IdScheme, hidden: int, splits: Splits, id_table_hash: str | None,
               cfg: TrainConfig, encoder: TrackEncoder, max_tie_embeddings: int | None = None,
               content_hash: str | None = None) -> dict:
    """The JSON-able description written to config.json (a resume only continues an identical one)."""
    return {
        "scheme": scheme.key,
        "hidden": hidden,
        "train": train_identity(cfg),
        "vocab_size": splits.vocab.n_tracks,
        "vocab_fingerprint": splits.vocab.fingerprint(),
        "id_table_hash": id_table_hash,
        "kind": splits.kind,
        "fields": [[name, encoder.field_sizes[name]] for name in encoder.field_names],
        "max_tie_embeddings": max_tie_embeddings,  # load_recommender re-derives the codes with it
        "content_hash": content_hash,  # the content the tables were initialised from (content_init)
        "data": {"train_sequences": len(splits.train), "train_events": splits.n_train_events,
                 "val_strata": len(splits.val), "val_events": len(splits.val.events)},
    }
