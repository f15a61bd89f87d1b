"""The training pod of a production deployment: a ``PipesK8sClient`` that fills in the pod.

The recommender asset calls ``pipes_client.run(context=..., command=..., env=..., extras=...)``
the same way locally (``PipesSubprocessClient``) and in production (this client). Here the pod gets
the configured image, the shared data volume (warehouse + artifacts, mounted at the same path as in
the run pod) and the resources of the asset's ``dagster-k8s/config`` op tag (``GPU_TRAINING_TAGS``:
one ``nvidia.com/gpu``), so the GPU request is stated once, on the asset. ``cwd`` (a local path)
is replaced by the image's working directory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from dagster_k8s import PipesK8sClient

from .environments import K8S_CONFIG_TAG

VOLUME = "semid-data"


def _k8s_config(op_tags: Mapping[str, Any]) -> dict:
    """The ``dagster-k8s/config`` op tag (Dagster stores a dict tag as its JSON string)."""
    tag = op_tags.get(K8S_CONFIG_TAG) or {}
    return json.loads(tag) if isinstance(tag, str) else dict(tag)


def container_resources(op_tags: Mapping[str, Any]) -> dict:
    return dict((_k8s_config(op_tags).get("container_config") or {}).get("resources") or {})


def pod_spec_config(op_tags: Mapping[str, Any]) -> dict:
    return dict(_k8s_config(op_tags).get("pod_spec_config") or {})


class TrainingPodClient(PipesK8sClient):
    def __init__(self, *, image: str, volume_claim: str, mount_path: str, namespace: str | None = None,
                 working_dir: str = "/app", env: Mapping[str, str] | None = None, **kwargs):
        super().__init__(env=dict(env or {}), load_incluster_config=kwargs.pop("load_incluster_config", True), **kwargs)
        self.image, self.namespace, self.working_dir = image, namespace, working_dir
        self.volume_claim, self.mount_path = volume_claim, mount_path

    def pod_spec(self, op_tags: Mapping[str, Any]) -> dict:
        """The training pod's spec: image, volume, working dir, and the op tag's resources / tolerations."""
        container = {
            "name": "training",
            "image": self.image,
            "working_dir": self.working_dir,
            "resources": container_resources(op_tags),
            "volume_mounts": [{"name": VOLUME, "mount_path": self.mount_path}],
        }
        return {
            **pod_spec_config(op_tags),
            "restart_policy": "Never",
            "containers": [container],
            "volumes": [{"name": VOLUME, "persistent_volume_claim": {"claim_name": self.volume_claim}}],
        }

    def run(self, *, context, command: str | Sequence[str], extras=None, env: Mapping[str, str] | None = None,
            cwd: str | None = None, **kwargs):  # noqa: ARG002 (cwd: a local path, meaningless in the pod)
        return super().run(context=context, command=command, extras=extras, env=env, image=self.image,
                           namespace=self.namespace, base_pod_spec=self.pod_spec(context.op_def.tags), **kwargs)
