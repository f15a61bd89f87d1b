"""Which resources a deployment gets: one map per environment, chosen by ``SEMID_ENV``.

``local`` (default): training runs as a subprocess of the step (``dg.PipesSubprocessClient``; torchrun
inside it). ``production``: training runs in its own Kubernetes pod (:class:`TrainingPodClient`, a
``PipesK8sClient``), on the image, namespace and shared volume named by environment variables:

    SEMID_IMAGE          image of the training pod (the code location's own image)  [semid:latest]
    SEMID_K8S_NAMESPACE  namespace of the training pods                               [the run's own]
    SEMID_DATA_PVC       ReadWriteMany claim holding the warehouse and artifacts      [semid-data]
    SEMID_DATA_MOUNT     where the claim is mounted, in run pods and training pods    [/data]

The warehouse and artifact locations are the same ``SEMID_WAREHOUSE`` / ``SEMID_ARTIFACTS`` as
locally (paths under the mount, or an ``md:`` MotherDuck connection string for the warehouse);
``deploy/README.md`` explains the cluster side. Building a map contacts nothing: the Kubernetes
client loads its configuration only when a training pod is launched.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from .compute import ComputeResource
from .dataset import DatasetResource
from .storage import ArtifactStore, DuckDBWarehouse

ENV_VAR = "SEMID_ENV"
ENVIRONMENTS = ("local", "production")
PIPES_CLIENT = "pipes_client"  # the resource key the recommender asset launches training with

K8S_CONFIG_TAG = "dagster-k8s/config"
GPU_TRAINING_TAGS: dict[str, Any] = {  # op tags of the recommender asset: its pod asks for one GPU
    K8S_CONFIG_TAG: {
        "container_config": {
            "resources": {
                "requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
                "limits": {"memory": "32Gi", "nvidia.com/gpu": "1"},
            }
        },
        "pod_spec_config": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
    }
}


def current_environment() -> str:
    env = os.environ.get(ENV_VAR, "local")
    if env not in ENVIRONMENTS:
        raise ValueError(f"{ENV_VAR}={env!r}: expected one of {', '.join(ENVIRONMENTS)}")
    return env


def _pipes_client(env: str):
    if env == "local":
        return dg.PipesSubprocessClient()
    from .k8s import TrainingPodClient  # dagster-k8s is imported only where it is used

    return TrainingPodClient(
        image=os.environ.get("SEMID_IMAGE", "semid:latest"),
        namespace=os.environ.get("SEMID_K8S_NAMESPACE") or None,
        volume_claim=os.environ.get("SEMID_DATA_PVC", "semid-data"),
        mount_path=os.environ.get("SEMID_DATA_MOUNT", "/data"),
        env={k: os.environ[k] for k in FORWARDED_ENV if k in os.environ},
    )


# Settings the training pod needs to find the same data, config and code path as the run.
FORWARDED_ENV = ("SEMID_WAREHOUSE", "SEMID_ARTIFACTS", "SEMID_CONFIG", "SEMID_DATASET", "SEMID_DATA_DIR",
                 "motherduck_token")


def resources_for(env: str | None = None) -> dict:
    """The resource map of ``env`` (default: ``SEMID_ENV``, else ``local``)."""
    env = env or current_environment()
    if env not in ENVIRONMENTS:
        raise ValueError(f"environment {env!r}: expected one of {', '.join(ENVIRONMENTS)}")
    return {
        "warehouse": DuckDBWarehouse(),
        "artifacts": ArtifactStore(),
        "dataset": DatasetResource(),
        "compute": ComputeResource(),
        PIPES_CLIENT: _pipes_client(env),
    }
