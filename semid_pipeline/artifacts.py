"""Where every artifact lives: one definition of each path under the artifacts root.

    features/<sha256(dataset)[:12]>/           fitted feature transform of a data set
    semantic_ids/<scheme>/                     codebooks / config of one ID scheme + provenance.json
    models/<scheme>__h<h>/<fingerprint[:12]>/  model.pt, checkpoint.pt, config.json, training_curve.png
    evaluations/<dataset_fp[:12]>/<h>_<scheme>.json   one evaluation record per grid cell
    baselines/<dataset_fp[:12]>.json           model-free baselines of a data set (computed once)
    report/                                    report.html, summary.md and the figures

Stages ask the store for a folder or file instead of joining path pieces themselves, so the
evaluation finds exactly the model the recommender wrote, and a layout change is one edit here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .config import SplitConfig, TrainConfig, train_identity
from .fileutil import atomic_write_json, read_json
from .schemes import GridCell, IdScheme

PROVENANCE = "provenance.json"
TRANSFORM_FILE = "transform.json"


def run_fingerprint(*, dataset_fingerprint: str, id_table_hash: str, cell: GridCell, train: TrainConfig,
                    split: SplitConfig, max_tie_embeddings: int | None = None,
                    content_hash: str | None = None) -> str:
    """Same data + same ID table + same config (tie-table cap included) + the same content the
    tables start from (``[train] content_init``) → same folder, so a re-run resumes its checkpoint."""
    ident = {"data": dataset_fingerprint, "ids": id_table_hash, "scheme": cell.scheme.key, "h": cell.h,
             "train": train_identity(train), "split": asdict(split), "max_tie_embeddings": max_tie_embeddings}
    if content_hash is not None:
        ident["content"] = content_hash
    payload = json.dumps(ident, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class ArtifactLayout:
    """The artifact folder tree rooted at ``root``; folders are created when asked for."""

    root: Path

    def _dir(self, *parts: str) -> Path:
        p = Path(self.root).joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p

    def feature_transform_dir(self, dataset: str) -> Path:
        """The fitted feature transform of a data set (keyed by its base fingerprint, or its spec)."""
        return self._dir("features", hashlib.sha256(str(dataset).encode()).hexdigest()[:12])

    def has_feature_transform(self, dataset: str) -> bool:
        return (self.feature_transform_dir(dataset) / TRANSFORM_FILE).exists()

    def text_embeddings_dir(self) -> Path:
        """Sentence-embedding cache of the text encoder (``.npz`` per content hash, shared by data sets)."""
        return self._dir("text_embeddings")

    def semantic_ids_dir(self, scheme: IdScheme) -> Path:
        """Codebooks + provenance of a scheme's ID table (a variant shares its ``codes_scheme``'s)."""
        return self._dir("semantic_ids", scheme.codes_scheme.key)

    def read_provenance(self, scheme: IdScheme) -> dict:
        """What the scheme's ID table was built from (``{}`` before the first build)."""
        return read_json(self.semantic_ids_dir(scheme) / PROVENANCE, default={})

    def write_provenance(self, scheme: IdScheme, *, dataset: str, base_fingerprint: str | None,
                         content_hash: str) -> Path:
        return atomic_write_json(self.semantic_ids_dir(scheme) / PROVENANCE,
                                 {"dataset": dataset, "dataset_base_fingerprint": base_fingerprint,
                                  "content_hash": content_hash}, indent=None)

    def model_dir(self, cell: GridCell, fingerprint: str) -> Path:
        return self._dir("models", f"{cell.scheme.key}__h{cell.h}", fingerprint[:12])

    def evaluations_dir(self, dataset_fingerprint: str) -> Path:
        return self._dir("evaluations", dataset_fingerprint[:12])

    def evaluation_record(self, dataset_fingerprint: str, cell: GridCell) -> Path:
        return self.evaluations_dir(dataset_fingerprint) / f"{cell.file_name}.json"

    def baselines_file(self, data_key: str) -> Path:
        """The model-free baselines of one data set + split + evaluation settings (``data_key``, a hash)."""
        return self._dir("baselines") / f"{data_key[:12]}.json"

    def ceilings_file(self, data_key: str) -> Path:
        """A synthetic world's oracle and learnable ceilings on that data's test pairs (same key)."""
        return self._dir("ceilings") / f"{data_key[:12]}.json"

    def diagnostics_record(self, dataset_fingerprint: str) -> Path:
        """The report's diagnostic models' results on that data (``stages.diagnostics_record``): in a
        folder of the evaluations, so it is not read as a partition's record."""
        return self.evaluations_dir(dataset_fingerprint) / "diagnostics" / "record.json"

    def diagnostics_model_dir(self, key: str, scheme: str, h: int, *, shuffled: bool) -> Path:
        """One diagnostic model's checkpoints, under a folder per data + settings key (a hash)."""
        return self._dir("diagnostics") / key[:12] / f"{scheme}__h{h}" / ("shuffled" if shuffled else "bias")

    def report_dir(self) -> Path:
        return self._dir("report")
