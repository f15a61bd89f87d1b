"""Train one grid partition as an external process: ``python -m semid_workers.train_cell``, or under
torchrun for data-parallel training (``[train] processes`` > 1), launched by the ``recommender``
asset through Dagster Pipes (``dg.PipesSubprocessClient``; see :func:`launch_command`).

Pipes extras (set by the asset): ``partition_key`` ("<h>|<scheme>"), ``warehouse`` (DuckDB
file), ``artifacts`` (artifact root), ``config`` (a semid.toml path or None = the default lookup),
``device`` (cpu | cuda) and ``threads`` (torch threads of the whole job, shared by the ranks).

Rank 0 opens Pipes: it streams progress with ``pipes.log`` and reports the materialization
(metadata + data version) when training ends. The other ranks only READ the Pipes context (its
extras) and never open the message channel, so Dagster sees one writer.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from dagster_pipes import PipesDefaultContextLoader, PipesEnvVarParamsLoader, open_dagster_pipes

from semid_pipeline import distributed, stages
from semid_pipeline.artifacts import ArtifactLayout
from semid_pipeline.config import load_config
from semid_pipeline.report import png_data_uri
from semid_pipeline.report_plots import plot_training_curve
from semid_pipeline.report_tables import head_markdown
from semid_pipeline.resources_usage import PeakMemory, stage_peak_rss
from semid_pipeline.schemes import GridCell

ENTRY = "semid_workers.train_cell"


def launch_command(processes: int, *, python: str = sys.executable) -> list[str]:
    """The command line the asset runs: plain python for 1 process (torchrun's agent and
    rendezvous only add start-up time there), torchrun on this host for N > 1."""
    if processes <= 1:
        return [python, "-m", ENTRY]
    return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", "-m", ENTRY]


def materialization(trained: stages.TrainedCell, cell: GridCell, mem: PeakMemory | None = None
                    ) -> tuple[dict[str, dict], str]:
    """The recommender's metadata (Pipes' typed raw values) and data version for one trained cell;
    ``mem``: the worker's peak RSS while it trained (``resources_usage.stage_peak_rss``)."""
    result, out_dir = trained.result, trained.model_dir
    params = result.parameter_counts
    png = plot_training_curve(result.history, out_dir / "training_curve.png", title=f"{cell.scheme}, h={cell.h}")

    def v(value: Any, kind: str) -> dict:
        return {"raw_value": value, "type": kind}

    metadata = {
        "model_dir": v(str(out_dir), "path"),
        "params/total": v(int(params["total"]), "int"),
        "params/track_representation": v(int(params["track_representation"]), "int"),
        "best_epoch": v(int(result.best_epoch), "int"),
        "best_val_auc": v(float(result.best_val_auc), "float"),
        **({"prior_weight": v(float(result.prior["weight"]), "float"),
            "affinity_weights": v([float(a) for a in result.prior.get("affinity", (0.0, 0.0))], "json"),
            "memory_weights": v([float(a) for a in result.prior.get("memory", (0.0, 0.0))], "json"),
            "taste_weight": v(float(result.prior.get("taste") or 0.0), "float")}
           if result.prior else {}),
        "wall_seconds": v(float(result.wall_seconds), "float"),
        "events_per_s": v(float(result.events_per_s), "float"),
        "training_curve": v(head_markdown(pd.DataFrame(result.history)), "md"),
        "training_curve_plot": v(f"![training curve]({png_data_uri(png)})", "md"),
        "training_curve_png": v(str(png), "path"),
        "config": v(result.config, "json"),
        "id_table_hash": v(trained.id_table_hash, "text"),
    }
    if mem is not None:
        metadata["peak_rss_mb"] = v(round(float(mem.peak_rss_mb), 1), "float")
        metadata["peak_rss_method"] = v(mem.method, "text")
    return metadata, trained.fingerprint[:16]


def train(extras: dict, log) -> tuple[stages.TrainedCell, GridCell]:
    """One partition through the core, on this rank."""
    import torch

    cfg = load_config(extras.get("config"))
    threads = int(extras.get("threads", 0))
    if threads > 0:  # the job's threads, split over the ranks of this host
        torch.set_num_threads(max(1, threads // cfg.train.processes))
    cell = GridCell.parse(extras["partition_key"])
    trained = stages.train_cell(warehouse=extras["warehouse"], layout=ArtifactLayout(root=Path(extras["artifacts"])),
                                cell=cell, cfg=cfg, device=extras.get("device", "cpu"), log=log)
    return trained, cell


def _extras_read_only() -> dict:
    """The Pipes extras without opening Pipes (ranks > 0): the context file Dagster wrote."""
    params = PipesEnvVarParamsLoader().load_context_params()
    with PipesDefaultContextLoader().load_context(params) as data:
        return dict(data.get("extras") or {})


def main() -> None:
    if int(os.environ.get("RANK", "0")) != 0:
        train(_extras_read_only(), log=lambda _m: None)
    else:
        with open_dagster_pipes() as pipes:
            with stage_peak_rss() as mem:
                trained, cell = train(dict(pipes.extras), log=pipes.log.info)
            metadata, version = materialization(trained, cell, mem)
            pipes.report_asset_materialization(metadata=metadata, data_version=version)
    distributed.shutdown(distributed.from_env())


if __name__ == "__main__":
    main()
