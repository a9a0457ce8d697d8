"""components/k8s.py and every platform part together: pinned releases on the one provider,
controllers on system nodes with requests, schemas of every object the stack creates."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.k8s import GPU_TOLERATION, SYSTEM_NODE_SELECTOR
from components.versions import CHARTS
from tests.harness import STACKS, evaluate, set_path, stack_config
from tests.kserve_schema import validate_inference_service
from tests.kube_schemas import (
    is_core,
    is_karpenter,
    is_kserve,
    manifests,
    validate_core,
    validate_custom,
)

RELEASE = "kubernetes:helm.sh/v3:Release"
# Releases that run no pods of their own (CRDs, runtime definitions).
NO_PODS = {"kserve-crd", "istio-base", "kserve-runtime-configs", "karpenter-crd"}
# The only releases meant for GPU nodes.
GPU_DAEMONS = {"nvidia-device-plugin", "dcgm-exporter"}
# Release name -> the chart it must install.
EXPECTED_CHARTS = {
    "cert-manager": "cert-manager", "istio-base": "istio-base", "istiod": "istiod",
    "istio-ingressgateway": "istio-gateway",
    "aws-load-balancer-controller": "aws-load-balancer-controller",
    "kserve-crd": "kserve-crd", "kserve": "kserve-resources",
    "kserve-runtime-configs": "kserve-runtime-configs", "keda": "keda",
    "kps": "kube-prometheus-stack", "nvidia-device-plugin": "nvidia-device-plugin",
    "dcgm-exporter": "dcgm-exporter", "metrics-server": "metrics-server",
    "cluster-autoscaler": "cluster-autoscaler",
}
# Only where GPU pools run on Karpenter (gpuCapacity.engine karpenter).
KARPENTER_CHARTS = {"karpenter-crd": "karpenter-crd", "karpenter": "karpenter"}
# Only where a model may be at zero replicas (KServe): the interceptor holds its requests.
COLD_START_CHARTS = {"http-add-on": "keda-http-add-on"}


def expected_charts(graph):
    on_karpenter = bool(graph.of_type("mlserve:karpenter:Karpenter"))
    holds = bool(graph.of_type("mlserve:cold_start:ColdStart"))
    return {**EXPECTED_CHARTS, **(KARPENTER_CHARTS if on_karpenter else {}),
            **(COLD_START_CHARTS if holds else {})}


def releases(graph):
    return {r.inputs["name"]: r for r in graph.of_type(RELEASE)}


def find(values: Any, key: str) -> list[Any]:
    """Every value stored under `key`, anywhere in a nested values tree."""
    found = []
    if isinstance(values, dict):
        for k, v in values.items():
            if k == key:
                found.append(v)
            found.extend(find(v, key))
    elif isinstance(values, list):
        for item in values:
            found.extend(find(item, key))
    return found


def requirement_blocks(resources: Any) -> list[dict[str, Any]]:
    """`resources` blocks, also when a chart keys them per component (KEDA)."""
    if not isinstance(resources, dict):
        return []
    if "requests" in resources:
        # A volume claim's `resources` ask for storage, not compute.
        return [] if "storage" in resources["requests"] else [resources]
    return [b for v in resources.values() for b in requirement_blocks(v)]


def test_full_platform_by_default(graph):
    assert set(releases(graph)) == set(expected_charts(graph))
    assert bool(graph.of_type("mlserve:karpenter:Karpenter")) is (graph.stack != "prod")
    # dev serves a model at minReplicas 0
    assert bool(graph.of_type("mlserve:cold_start:ColdStart")) is (graph.stack == "dev")


def test_every_release_is_pinned_named_and_namespaced(graph):
    for name, release in releases(graph).items():
        chart = CHARTS[expected_charts(graph)[name]]
        assert release.inputs["chart"] == chart.chart
        assert release.inputs["version"] == chart.version
        assert release.inputs.get("repositoryOpts", {}).get("repo") == chart.repository
        assert release.inputs["namespace"], name
        assert release.inputs["atomic"] is True and release.inputs["cleanupOnFail"] is True
        assert release.inputs["createNamespace"] is False


def test_namespaces_of_releases_are_created_by_the_stack(graph):
    created = {o["metadata"]["name"] for o in manifests(graph) if o["kind"] == "Namespace"}
    assert {r.inputs["namespace"] for r in graph.of_type(RELEASE)} <= created | {"kube-system"}


def test_every_kubernetes_resource_uses_the_clusters_provider(graph):
    provider = graph.one("pulumi:providers:kubernetes").urn
    kube = [r for r in graph.resources if r.custom and r.type.startswith("kubernetes:")]
    assert kube and {r.provider for r in kube} == {provider}


def test_everything_kubernetes_waits_for_access_and_system_nodes(graph):
    system = graph.one("aws:eks/nodeGroup:NodeGroup", "cluster-system-ng")
    associations = graph.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    for res in (r for r in graph.resources if r.custom and r.type.startswith("kubernetes:")):
        provider = graph.by_urn(res.provider)
        assert graph.waits_for(provider, system)
        assert all(graph.waits_for(provider, a) for a in associations)


def test_controllers_run_on_system_nodes_only(graph):
    groups = {g.name: g.inputs["labels"] for g in graph.of_type("aws:eks/nodeGroup:NodeGroup")}
    system_labels = groups.pop("cluster-system-ng")
    # GPU capacity is node groups or Karpenter NodePools (the labels their nodes get).
    groups |= {p.name: p.inputs["spec"]["template"]["metadata"]["labels"]
               for p in graph.of_type("kubernetes:karpenter.sh/v1:NodePool")}
    # The selector picks the system nodes and nothing else: an empty selector, or one a GPU pool
    # also carries, would let controllers take GPU nodes (and keep them from scaling to zero).
    assert SYSTEM_NODE_SELECTOR and SYSTEM_NODE_SELECTOR.items() <= system_labels.items()
    assert groups, "the stack has GPU pools to keep controllers off"
    for group, labels in groups.items():
        assert not SYSTEM_NODE_SELECTOR.items() <= labels.items(), f"{group} is selected too"
    for name, release in releases(graph).items():
        values = release.inputs["values"]
        selectors = find(values, "nodeSelector")
        tolerations = [t for ts in find(values, "tolerations") for t in ts]
        if name in GPU_DAEMONS:
            assert GPU_TOLERATION in tolerations
            continue
        assert GPU_TOLERATION not in tolerations, name
        if name in NO_PODS:
            continue
        assert selectors, f"{name} has no nodeSelector"
        assert all(s == SYSTEM_NODE_SELECTOR for s in selectors), (name, selectors)


def test_every_workload_has_resource_requests(graph):
    for name, release in releases(graph).items():
        if name in NO_PODS:
            continue
        blocks = [b for r in find(release.inputs["values"], "resources")
                  for b in requirement_blocks(r)]
        assert blocks, f"{name} sets no resource requests"
        for block in blocks:
            assert set(block["requests"]) >= {"cpu", "memory"}, name
            assert "memory" in block["limits"], name
            # Set explicitly: a limit left out keeps the chart's own (Helm merges values).
            assert "cpu" in block["limits"], name


def test_high_availability_in_prod_only(dev, prod):
    for graph, ha in ((dev, False), (prod, True)):
        values = {n: r.inputs["values"] for n, r in releases(graph).items()}
        assert values["cert-manager"]["replicaCount"] == (2 if ha else 1)
        assert values["cert-manager"]["podDisruptionBudget"]["enabled"] is ha
        assert values["istiod"]["autoscaleMin"] == (2 if ha else 1)
        assert bool(values["istio-ingressgateway"]["podDisruptionBudget"]) is ha
        assert values["keda"]["operator"]["replicaCount"] == (2 if ha else 1)
        assert bool(values["keda"]["podDisruptionBudget"]["operator"]) is ha
        assert values["metrics-server"]["podDisruptionBudget"]["enabled"] is ha
        assert values["aws-load-balancer-controller"]["replicaCount"] == (2 if ha else 1)
        assert values["kps"]["prometheus"]["prometheusSpec"]["replicas"] == (2 if ha else 1)


@pytest.mark.parametrize("stack", STACKS)
def test_core_objects_validate_against_kubernetes_schemas(stack, request):
    graph = request.getfixturevalue(stack)
    version = graph.one("aws:eks/cluster:Cluster").inputs["version"]
    core = [o for o in manifests(graph) if is_core(o)]
    assert {o["kind"] for o in core} >= {"Namespace", "StorageClass", "IngressClass", "Secret"}
    problems = {f"{o['kind']}/{o['metadata']['name']}": validate_core(o, version) for o in core}
    assert not {k: v for k, v in problems.items() if v}, problems


@pytest.mark.parametrize("stack", STACKS)
def test_custom_resources_validate_against_published_schemas(stack, request):
    graph = request.getfixturevalue(stack)
    custom = [o for o in manifests(graph) if not is_core(o) and not is_kserve(o)
              and not is_karpenter(o)]
    assert {o["kind"] for o in custom} >= {"PeerAuthentication", "PodMonitor", "PrometheusRule"}
    errors = validate_custom(custom)
    assert errors == [None] * len(custom), list(zip([o["kind"] for o in custom], errors, strict=True))


@pytest.mark.parametrize("stack", STACKS)
def test_inference_services_validate_against_kserves_generated_models(stack, request):
    graph = request.getfixturevalue(stack)
    services = [o for o in manifests(graph) if is_kserve(o)]
    assert services
    for service in services:
        assert validate_inference_service(service) == [], service["metadata"]["name"]


def test_schema_validation_catches_bad_objects():
    """The validators themselves reject what the API server would."""
    bad_namespace = {"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": "x", "lables": {}}}
    assert "lables" in validate_core(bad_namespace, "1.35")
    bad_peer = {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                "metadata": {"name": "default"}, "spec": {"mtls": {"mode": "STRICTLY"}}}
    unknown = {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "x"}}
    errors = validate_custom([bad_peer, unknown])
    assert "mode" in errors[0] and "no schema" in errors[1]
    bad_isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                "metadata": {"name": "m"},
                "spec": {"predictor": {"minReplica": 1, "model": {"runtime": 3,
                         "ports": [{"containerPort": "x"}]}}}}
    found = validate_inference_service(bad_isvc)
    assert any("minReplica: unknown field" in e for e in found)
    assert any("runtime: expected str" in e for e in found)
    assert any("containerPort" in e for e in found)


def test_parts_can_be_switched_off():
    config = set_path(stack_config("dev"), "modelServing.backend", "none")
    config = set_path(config, "gpuCapacity.engine", "nodeGroups")
    for part in ("kserve", "keda", "metricsServer", "clusterAutoscaler", "dcgmExporter",
                 "nvidiaDevicePlugin"):
        config = set_path(config, f"platform.{part}.enabled", False)
    graph = evaluate("dev", config=config)
    assert graph.error is None, graph.error
    assert set(releases(graph)) == {"cert-manager", "istio-base", "istiod",
                                    "istio-ingressgateway", "aws-load-balancer-controller", "kps"}
    assert "modelNamespace" not in graph.exports


def test_values_are_plain_json(graph):
    for release in graph.of_type(RELEASE):
        json.dumps(release.inputs["values"])  # no unresolved outputs or objects
