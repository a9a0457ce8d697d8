"""components/seldon.py: the opt-in Seldon Core backend."""

from __future__ import annotations

import json

import pytest

from components.versions import TRITON_IMAGE, TRITON_IMAGE_TAG
from tests.components.test_k8s import releases
from tests.harness import evaluate, set_path, stack_config
from tests.kube_schemas import is_core, manifests, validate_core, validate_custom

SDEP = "kubernetes:machinelearning.seldon.io/v1:SeldonDeployment"


def seldon_stack(stack="dev", **changes):
    config = set_path(stack_config(stack), "modelServing.backend", "seldon")
    for path, value in changes.items():
        config = set_path(config, path, value)
    return config


@pytest.fixture(scope="module")
def seldon():
    graph = evaluate("dev", config=seldon_stack())
    assert graph.error is None, graph.error
    return graph


def sdep(graph):
    (found,) = graph.of_type(SDEP)
    return found


def test_operator_is_the_last_apache_release_with_istio_and_keda(seldon):
    release = releases(seldon)["seldon-core"]
    assert release.inputs["version"] == "1.17.1"
    assert release.inputs["chart"] == "seldon-core-operator"
    values = release.inputs["values"]
    assert values["istio"] == {"enabled": True, "gateway": "istio-system/seldon-gateway"}
    assert values["keda"] == {"enabled": True}
    assert not seldon.of_type("kubernetes:serving.kserve.io/v1beta1:InferenceService")


def test_business_source_licence_needs_explicit_acceptance():
    refused = evaluate("dev", config=seldon_stack(**{"modelServing.seldon.version": "1.18.0"}))
    assert "is under the Business Source License 1.1" in str(refused.error)
    assert refused.resources == []
    accepted = evaluate("dev", config=seldon_stack(**{
        "modelServing.seldon.version": "1.18.0",
        "modelServing.seldon.acceptBusinessSourceLicense": True}))
    assert releases(accepted)["seldon-core"].inputs["version"] == "1.18.0"


def test_seldon_deployment_serves_triton_from_the_uploaded_uri(seldon):
    spec = sdep(seldon).inputs["spec"]
    assert spec["protocol"] == "v2"
    (predictor,) = spec["predictors"]
    graph = predictor["graph"]
    assert graph["implementation"] == "TRITON_SERVER"
    assert graph["modelUri"] == seldon.exports["modelStorageUris"]["cifar10"]
    assert graph["serviceAccountName"] == "model-server"
    (component,) = predictor["componentSpecs"]
    pod = component["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true", "mlserve.io/pool": "t4-spot"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    (container,) = pod["containers"]
    assert container["name"] == graph["name"]
    assert container["image"] == f"{TRITON_IMAGE}:{TRITON_IMAGE_TAG}"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_keda_on_tritons_backlog_with_polling_and_cooldown_from_config(seldon):
    keda = sdep(seldon).inputs["spec"]["predictors"][0]["componentSpecs"][0]["kedaSpec"]
    assert keda["pollingInterval"] == 15 and keda["cooldownPeriod"] == 120
    assert (keda["minReplicaCount"], keda["maxReplicaCount"]) == (0, 2)
    trigger, wake = keda["triggers"]  # dev scales to zero: the gateway's demand wakes it
    assert 'destination_service_name="cifar10-default"' in wake["metadata"]["query"]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["threshold"] == "4"
    assert trigger["metadata"]["query"].startswith("sum(nv_inference_pending_request_count{")
    assert 'pod=~"cifar10-default-0-.*"' in trigger["metadata"]["query"]


def test_hpa_variant():
    graph = evaluate("staging", config=seldon_stack(
        "staging", **{"modelServing.models.cifar10.autoscaler": "hpa"}))
    component = sdep(graph).inputs["spec"]["predictors"][0]["componentSpecs"][0]
    assert "kedaSpec" not in component
    assert component["hpaSpec"]["metricsv2"][0]["resource"]["name"] == "cpu"


def test_s3_through_irsa_only(seldon):
    (secret,) = [s for s in seldon.of_type("kubernetes:core/v1:Secret")
                 if s.inputs["metadata"]["name"] == "seldon-rclone-irsa"]
    env = secret.inputs["stringData"]
    assert env["RCLONE_CONFIG_S3_ENV_AUTH"] == "true"
    assert env["RCLONE_CONFIG_S3_REGION"] == "us-west-2"
    assert not any("KEY" in key for key in env)
    (account,) = seldon.of_type("kubernetes:core/v1:ServiceAccount")
    assert account.inputs["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == \
        seldon.exports["modelReaderRoleArn"]


def test_ordering(seldon):
    deployment = sdep(seldon)
    rel = releases(seldon)
    for name in ("seldon-core", "keda"):
        assert seldon.waits_for(deployment, rel[name])
    assert seldon.waits_for(rel["seldon-core"], rel["istiod"])
    for obj in seldon.of_type("aws:s3/bucketObjectv2:BucketObjectv2"):
        assert seldon.waits_for(deployment, obj)


def test_metrics_scraped_from_tritons_port(seldon):
    (monitor,) = [r for r in seldon.resources if r.type.endswith(":PodMonitor")
                  and r.inputs["metadata"]["name"] == "cifar10-triton"]
    (endpoint,) = monitor.inputs["spec"]["podMetricsEndpoints"]
    assert monitor.inputs["spec"]["selector"] == {"matchLabels": {"seldon-deployment-id":
                                                                  "cifar10"}}
    assert endpoint["relabelings"][-1]["replacement"] == "$1:8002"


def test_route_and_outputs(seldon):
    endpoint = seldon.exports["models"]["cifar10"]
    assert "/seldon/models/cifar10/v2/models/cifar10/infer" in endpoint["url"]
    gateway = [r for r in seldon.resources if r.type.endswith(":Gateway")][0]
    assert gateway.inputs["spec"]["selector"] == {"istio": "ingressgateway"}


def test_objects_validate_against_schemas(seldon):
    objects = manifests(seldon)
    core = [o for o in objects if is_core(o)]
    assert all(validate_core(o, "1.35") is None for o in core), [validate_core(o, "1.35")
                                                                 for o in core]
    custom = [o for o in objects if not is_core(o) and o["kind"] != "SeldonDeployment"
              and not o["apiVersion"].startswith("serving.kserve.io")]
    assert {"Gateway", "PodMonitor", "PrometheusRule"} <= {o["kind"] for o in custom}
    assert validate_custom(custom) == [None] * len(custom)


def test_canary_needs_kserve():
    graph = evaluate("staging", config=seldon_stack("staging", **{
        "modelServing.models.cifar10.canary": {"percent": 10, "version": "0" * 20}}))
    assert "canary: needs backend kserve" in str(graph.error)
    assert json.dumps(graph.resources) == "[]"
