"""The production (Kubernetes) configuration loads and builds the right pods; nothing is contacted."""


import json
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster_k8s import K8sRunLauncher, PipesK8sClient
from dagster_k8s.pipes import build_pod_body

from assets.definitions import build_defs
from resources.environments import GPU_TRAINING_TAGS, K8S_CONFIG_TAG, PIPES_CLIENT, resources_for
from resources.storage import ArtifactStore, DuckDBWarehouse

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"

# Dagster's and dagster-k8s's own Pipes code calls its deprecated / preview APIs (not ours)
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:dagster_k8s.pipes"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:dagster._core.pipes.context"),
    pytest.mark.filterwarnings("ignore:.*expected_writer_count.*"),
]


def _gpu_limit(tags) -> str:
    tag = tags[K8S_CONFIG_TAG]
    tag = json.loads(tag) if isinstance(tag, str) else tag
    return tag["container_config"]["resources"]["limits"]["nvidia.com/gpu"]


def test_production_definitions_launch_training_through_a_k8s_pipes_client(monkeypatch):
    monkeypatch.setenv("SEMID_IMAGE", "registry.example.com/semid:test")
    monkeypatch.setenv("SEMID_WAREHOUSE", "/data/warehouse.duckdb")
    defs = build_defs("production")
    dg.Definitions.validate_loadable(defs)
    job = defs.resolve_job_def("grid_job")  # every resource the job's steps need is there
    repo = defs.get_repository_def()
    with dg.build_resources({PIPES_CLIENT: repo.get_top_level_resources()[PIPES_CLIENT]}) as built:
        client = getattr(built, PIPES_CLIENT)  # the resource as a run's steps receive it
    assert isinstance(client, PipesK8sClient)
    recommender = repo.assets_defs_by_key[dg.AssetKey("recommender")]
    assert _gpu_limit(recommender.op.tags) == "1"
    assert job.graph.node_named("recommender").definition.tags[K8S_CONFIG_TAG] == recommender.op.tags[K8S_CONFIG_TAG]

    # The pod the client would create: image, GPU from the asset's tag, the shared volume, the
    # run's settings forwarded (built offline by dagster-k8s's own pod builder).
    pod = build_pod_body(pod_name="t", image=client.image, command=["python", "-m", "x"], env_vars=client.env,
                         base_pod_meta=None, base_pod_spec=client.pod_spec(recommender.op.tags))
    container = pod.spec.containers[0]
    assert container.image == "registry.example.com/semid:test"
    assert container.resources.limits["nvidia.com/gpu"] == "1"
    assert [(m.name, m.mount_path) for m in container.volume_mounts] == [("semid-data", "/data")]
    assert pod.spec.volumes[0].persistent_volume_claim.claim_name == "semid-data"
    assert {e.name: e.value for e in container.env}["SEMID_WAREHOUSE"] == "/data/warehouse.duckdb"
    assert pod.spec.tolerations[0].key == "nvidia.com/gpu"


def test_local_map_keeps_the_subprocess_client_and_unknown_environments_fail(monkeypatch):
    assert isinstance(resources_for("local")[PIPES_CLIENT], dg.PipesSubprocessClient)
    monkeypatch.setenv("SEMID_ENV", "staging")
    with pytest.raises(ValueError, match="SEMID_ENV='staging'"):
        resources_for()
    assert GPU_TRAINING_TAGS[K8S_CONFIG_TAG]["container_config"]["resources"]["requests"]["nvidia.com/gpu"] == "1"


def test_deploy_instance_yaml_parses_with_the_k8s_run_launcher_and_postgres(monkeypatch):
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config_schema

    for var in ("DAGSTER_PG_HOST", "DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
        monkeypatch.setenv(var, "x")  # the secrets the pods get; the schema resolves {env: ...}
    raw = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    schema = process_config(dagster_instance_config_schema(), raw)
    assert schema.success, schema.errors
    launcher = raw["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    checked = process_config(K8sRunLauncher.config_type(), launcher["config"])
    assert checked.success, checked.errors
    assert set(raw["storage"]) == {"postgres"}
    assert raw["concurrency"]["pools"]["default_limit"] == 1


def test_helm_values_name_the_same_launcher_and_production_environment():
    values = yaml.safe_load((DEPLOY / "helm-values.yaml").read_text())
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert {"name": "SEMID_ENV", "value": "production"} in deployment["env"]
    assert "assets.definitions" in deployment["dagsterApiGrpcArgs"]


def test_urls_and_motherduck_strings_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="mounted folder"):
        ArtifactStore(root="s3://bucket/artifacts").layout()
    with pytest.raises(ValueError, match="MotherDuck"):
        DuckDBWarehouse(path="md:semid").file


class _PodCreated(Exception):
    pass


def test_the_recommender_call_reaches_kubernetes_with_the_gpu_pod(monkeypatch):
    """``pipes_client.run(context=..., command=..., extras=...)`` (the recommender's call) on the
    production client creates one pod with the GPU; the Kubernetes API is a stub that records it."""
    import dagster_k8s.pipes as k8s_pipes

    from resources.k8s import TrainingPodClient

    created = []

    class CoreApi:
        def create_namespaced_pod(self, namespace, body):
            created.append((namespace, body))
            raise _PodCreated()

    monkeypatch.setattr(TrainingPodClient, "_load_k8s_config", lambda self: None)
    monkeypatch.setattr(k8s_pipes.DagsterKubernetesClient, "production_client",
                        staticmethod(lambda: type("Client", (), {"core_api": CoreApi()})()))

    @dg.asset(op_tags=GPU_TRAINING_TAGS)
    def trains(context: dg.AssetExecutionContext, pipes_client: dg.PipesSubprocessClient):  # as the recommender
        return pipes_client.run(context=context, command=["python", "-m", "semid_workers.train_cell"],
                                extras={"partition_key": "64|id"}).get_materialize_result()

    client = TrainingPodClient(image="semid:test", volume_claim="semid-data", mount_path="/data", namespace="semid")
    result = dg.materialize([trains], resources={PIPES_CLIENT: client}, raise_on_error=False)
    assert not result.success and len(created) == 1
    namespace, pod = created[0]
    container = pod.spec.containers[0]
    assert namespace == "semid" and container.image == "semid:test"
    assert container.command == ["python", "-m", "semid_workers.train_cell"]
    assert container.resources.limits["nvidia.com/gpu"] == "1"
    assert "DAGSTER_PIPES_CONTEXT" in {e.name for e in container.env}  # the Pipes bootstrap
