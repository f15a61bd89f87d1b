"""Issue 11's done-when on the pipeline's own path: a metadata-only synthetic world through
``stages.build_content_features`` + ``stages.build_semantic_ids`` (balanced last level on and off).

Why a separate script from ``bench_ids_parts.metadata_part``: that one measures encoders and
assignments on a generated catalogue; this one ingests ``synthetic:<preset>:users:metadata`` and
goes through the stage functions the assets call, so it checks what the pipeline materializes.

    .venv/bin/python bench/check_metadata_mode.py [--dataset synthetic:demo:users:metadata] [--scheme v1-k256]
        [--tracks 24000]   # the preset's world with more tracks (and artists in proportion)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from semid_pipeline import stages, synthetic as syn  # noqa: E402
from semid_pipeline.artifacts import ArtifactLayout  # noqa: E402
from semid_pipeline.config import load_config, parse_dataset_spec  # noqa: E402
from semid_pipeline.datasets import ingest_dataset  # noqa: E402
from semid_pipeline.ingest import ingest_events  # noqa: E402
from semid_pipeline.warehouse import connect  # noqa: E402


def _ingest(spec: str, tracks: int | None, *, warehouse: str, data_dir: Path, cfg) -> None:
    """The data set ``spec``; with ``tracks``, its preset world resized to that many tracks."""
    ds = parse_dataset_spec(spec)
    if tracks is None:
        ingest_dataset(ds, warehouse=warehouse, cfg=cfg, data_dir=data_dir)
        return
    base = syn.preset(ds.preset)
    world = replace(base, name=f"{base.name}-{tracks}", n_tracks=tracks,
                    n_artists=max(base.n_genres, base.n_artists * tracks // base.n_tracks))
    manifest = syn.write_world(world, data_dir / world.name, formats=("users",))
    with connect(warehouse) as con:
        ingest_events(con, [Path(manifest.users_events)], [Path(manifest.users_tracks)], dataset_key=ds.key, cfg=cfg)
from semid_pipeline.schemes import IdScheme  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="synthetic:demo:users:metadata")
    ap.add_argument("--scheme", default="v1-k256")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tracks", type=int, default=None)
    ap.add_argument("--text-encoder", default=None, help="override [features] text_encoder (e.g. hashed)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config()
    if args.text_encoder:
        cfg = replace(cfg, features=replace(cfg.features, text_encoder=args.text_encoder))
    scheme = IdScheme.parse(args.scheme)
    with tempfile.TemporaryDirectory() as tmp:
        wh, layout = str(Path(tmp) / "wh.duckdb"), ArtifactLayout(root=Path(tmp) / "artifacts")
        t = time.perf_counter()
        _ingest(args.dataset, args.tracks, warehouse=wh, data_dir=Path(tmp) / "data", cfg=cfg.ingest)
        built = stages.build_content_features(warehouse=wh, layout=layout, refit=False, cfg=cfg.features)
        r = built.result
        print(f"{args.dataset}: {r.n_tracks} tracks × {r.dim} dims in {time.perf_counter() - t:.0f}s; "
              f"text: {r.text_note} ({r.text_embedded} strings embedded)", flush=True)
        for on in (True, False):
            run = replace(cfg, semantic_ids=replace(cfg.semantic_ids, balanced_last_level=on))
            t = time.perf_counter()
            ids = stages.build_semantic_ids(warehouse=wh, layout=layout, scheme=scheme, cfg=run, refit=True, log=lambda s: None)
            m = ids.metrics
            print(f"{scheme.key} balanced={on}: unique-tuple share {m['unique_tuple_share']:.4f}, max tie {m['max_tie']}, "
                  f"share in groups > 2 {m['share_in_groups_over_2']:.4f}, tie-table rows {m['tie_table_rows']} "
                  f"({time.perf_counter() - t:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
