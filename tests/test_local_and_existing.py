"""Stacks on a cluster the stack doesn't create: the local (kind + MinIO) stack and an existing
EKS cluster with an existing bucket. No AWS resources at all; the same serving objects."""

from __future__ import annotations

import json
import os

import pytest

from tests.deploy_probe import EXISTING_BUCKET, existing_cluster_and_bucket
from tests.harness import evaluate, set_path, stack_config
from tests.kserve_schema import validate_inference_service
from tests.kube_schemas import is_core, is_kserve, manifests, validate_core, validate_custom

SERVING_KINDS = {"InferenceService", "VirtualService", "Gateway", "PodMonitor", "PrometheusRule",
                 "NetworkPolicy", "ServiceAccount", "PeerAuthentication"}
ROLE = EXISTING_BUCKET["readerRoleArn"]


@pytest.fixture(scope="module")
def local():
    graph = evaluate("local")
    assert graph.error is None, graph.error
    return graph


@pytest.fixture(scope="module")
def existing_eks():
    graph = evaluate("dev", config=existing_cluster_and_bucket())
    assert graph.error is None, graph.error
    return graph


def kinds(graph):
    return {r.type.rsplit(":", 1)[-1] for r in graph.resources if r.type.startswith("kubernetes:")}


def isvc(graph):
    (found,) = [r for r in graph.resources if r.type.endswith(":InferenceService") and r.custom]
    return found.inputs


@pytest.mark.parametrize("name", ["local", "existing_eks"])
def test_no_aws_resources_at_all(name, request):
    graph = request.getfixturevalue(name)
    assert not [r for r in graph.resources if r.type.startswith(("aws:", "pulumi:providers:aws"))]
    assert not graph.invokes


@pytest.mark.parametrize("name", ["local", "existing_eks"])
def test_same_serving_objects_as_an_eks_stack(name, request, dev):
    graph = request.getfixturevalue(name)
    assert kinds(graph) >= SERVING_KINDS
    assert kinds(dev) >= SERVING_KINDS


def test_kubernetes_provider_from_the_given_kubeconfig(local):
    (provider,) = local.of_type("pulumi:providers:kubernetes")
    assert provider.inputs["kubeconfig"] == os.path.expanduser("~/.kube/config")
    assert provider.inputs["context"] == "kind-mlserve"
    assert provider.inputs["clusterIdentifier"] == "existing:kind-mlserve"
    kube = [r for r in local.resources if r.custom and r.type.startswith("kubernetes:")]
    assert {r.provider for r in kube} == {provider.urn}


def test_local_serves_on_cpu_with_the_cpu_config(local):
    predictor = isvc(local)["spec"]["predictor"]
    assert "nodeSelector" not in predictor and "tolerations" not in predictor
    model = predictor["model"]
    assert "--model-config-name=cpu" in model["args"]
    assert "nvidia.com/gpu" not in model["resources"]["limits"]
    assert model["storageUri"] == local.exports["modelStorageUris"]["cifar10"]
    assert validate_inference_service({k: isvc(local)[k] for k in
                                       ("apiVersion", "kind", "metadata", "spec")}) == []


def test_local_uses_minio_with_generated_keys(local):
    releases = {r.inputs["name"]: r for r in local.of_type("kubernetes:helm.sh/v3:Release")}
    assert {"minio", "istio-ingressgateway", "kserve", "keda", "kps"} <= set(releases)
    assert not {"aws-load-balancer-controller", "cluster-autoscaler",
                "nvidia-device-plugin"} & set(releases)
    values = releases["minio"].inputs["values"]
    assert values["mode"] == "standalone" and values["existingSecret"] == "minio-root"
    assert values["service"] == {"type": "NodePort", "port": "9000", "nodePort": 30900}
    assert values["buckets"][0]["name"] == "models"
    assert values["users"] == []  # no chart-default console user
    (upload,) = local.of_type("pulumi-python:dynamic:Resource")
    assert upload.inputs["endpoint"] == "http://localhost:30900"
    assert upload.inputs["bucket"] == "models"
    assert upload.inputs["version"] == local.exports["modelVersions"]["cifar10"]
    assert upload.inputs["action"] == "publish" and upload.inputs["model"] == "cifar10"
    assert {"access_key_id", "secret_access_key"} <= set(upload.secret_inputs)
    assert local.waits_for(upload, releases["minio"])


def test_local_model_pods_read_minio_with_the_keys_secret(local):
    """KServe takes the keys from the Secret the account lists, and the endpoint settings from
    that Secret's annotations (service-account annotations count only with IRSA)."""
    (account,) = local.of_type("kubernetes:core/v1:ServiceAccount")
    assert not account.inputs["metadata"].get("annotations")
    assert account.inputs["secrets"] == [{"name": "model-store-credentials"}]
    (keys,) = [s for s in local.of_type("kubernetes:core/v1:Secret")
               if s.inputs["metadata"]["name"] == "model-store-credentials"]
    annotations = keys.inputs["metadata"]["annotations"]
    assert annotations["serving.kserve.io/s3-endpoint"] == "minio.minio.svc.cluster.local:9000"
    assert annotations["serving.kserve.io/s3-usehttps"] == "0"
    assert "stringData" in keys.secret_inputs


def test_minio_endpoint_defaults_to_its_in_cluster_service():
    config = set_path(stack_config("local"), "modelBucket", {
        "mode": "s3Compatible", "name": "models", "endpoint": "http://localhost:30900"})
    graph = evaluate("local", config=config)
    (keys,) = [s for s in graph.of_type("kubernetes:core/v1:Secret")
               if s.inputs["metadata"]["name"] == "model-store-credentials"]
    assert keys.inputs["metadata"]["annotations"]["serving.kserve.io/s3-endpoint"] == \
        "minio.minio.svc.cluster.local:9000"


def test_local_gateway_is_a_node_port_without_aws_annotations(local):
    gateway = [r for r in local.of_type("kubernetes:helm.sh/v3:Release")
               if r.inputs["name"] == "istio-ingressgateway"][0]
    service = gateway.inputs["values"]["service"]
    assert service["type"] == "NodePort" and "annotations" not in service
    assert {"name": "http2", "port": 80, "protocol": "TCP", "targetPort": 80,
            "nodePort": 30080} in service["ports"]
    assert local.exports["models"]["cifar10"]["url"] == \
        "http://localhost:30080/v2/models/cifar10/infer"


def test_local_prometheus_uses_the_default_storage_class(local):
    kps = [r for r in local.of_type("kubernetes:helm.sh/v3:Release")
           if r.inputs["name"] == "kps"][0]
    claim = kps.inputs["values"]["prometheus"]["prometheusSpec"]["storageSpec"][
        "volumeClaimTemplate"]["spec"]
    assert "storageClassName" not in claim
    assert claim["resources"]["requests"]["storage"] == "10Gi"


@pytest.mark.parametrize("name", ["local", "existing_eks"])
def test_objects_validate_against_schemas(name, request):
    graph = request.getfixturevalue(name)
    objects = manifests(graph)
    assert [validate_core(o, "1.35") for o in objects if is_core(o)] == \
        [None] * len([o for o in objects if is_core(o)])
    custom = [o for o in objects if not is_core(o) and not is_kserve(o)]
    assert validate_custom(custom) == [None] * len(custom)


def test_existing_eks_uses_the_given_bucket_and_role(existing_eks):
    (account,) = existing_eks.of_type("kubernetes:core/v1:ServiceAccount")
    assert account.inputs["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == ROLE
    (upload,) = existing_eks.of_type("pulumi-python:dynamic:Resource")
    assert upload.inputs["bucket"] == "team-models" and upload.inputs.get("endpoint") is None
    assert isvc(existing_eks)["spec"]["predictor"]["nodeSelector"]["mlserve.io/pool"] == "t4-spot"
    assert existing_eks.exports["modelStorageUris"]["cifar10"].startswith("s3://team-models/models/")


def test_existing_cluster_rules():
    config = set_path(stack_config("local"), "platform.clusterAutoscaler.enabled", True)
    assert "platform.clusterAutoscaler.enabled: needs cluster.mode eks" in str(
        evaluate("local", config=config).error)
    config = set_path(stack_config("local"), "modelBucket.mode", "create")
    assert "modelBucket.mode: create needs cluster.mode eks" in str(
        evaluate("local", config=config).error)
    config = set_path(stack_config("local"), "modelServing.models.cifar10.gpus", 1)
    assert "no gpuNodeGroups to run on" in str(evaluate("local", config=config).error)


def test_cpu_serving_needs_the_cpu_config(tmp_path):
    import shutil

    from tests.harness import ROOT_DIR

    copy = tmp_path / "repo"
    shutil.copytree(ROOT_DIR / "model_repo", copy)
    shutil.rmtree(copy / "cifar10" / "configs")
    config = set_path(stack_config("local"), "modelRepository.path", str(copy))
    error = evaluate("local", config=config).error
    assert "serving on CPU needs" in str(error) and "configs/cpu.pbtxt" in str(error)


def test_outputs_json_serialisable(local):
    json.dumps(local.exports)

