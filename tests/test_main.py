"""The whole program, per stack file: it evaluates, and the graph has the project-wide properties."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from tests.harness import ROOT_DIR, STACKS, evaluate, set_path, stack_config

EXPORTS = {"vpcId", "privateSubnetIds", "publicSubnetIds", "clusterName", "clusterEndpoint",
           "kubeconfig", "oidcProviderArn", "modelBucketName", "modelReaderRoleArn",
           "systemNodeGroupName", "prometheusUrl", "grafanaAdminPassword",
           "grafanaPortForward", "modelNamespace", "modelVersions", "modelStorageUris", "models"}
AWS_PROVIDER = "pulumi:providers:aws"


def test_every_stack_file_is_shipped():
    assert {p.name for p in ROOT_DIR.glob("Pulumi.*.yaml")} >= {
        f"Pulumi.{s}.yaml" for s in (*STACKS, "local")}


def test_stack_evaluates_with_all_outputs(graph):
    assert graph.error is None
    # Only stacks with an SNS alert topic (prod) export it.
    # The GPU pools: node group names (engine nodeGroups, prod) or NodePool names (karpenter).
    pools_export = "gpuNodeGroupNames" if graph.stack == "prod" else "gpuNodePools"
    assert set(graph.exports) - {"alertTopicArn"} == EXPORTS | {pools_export}
    assert ("alertTopicArn" in graph.exports) is (graph.stack == "prod")
    assert graph.exports["clusterName"] == f"mlserve-{graph.stack}"
    assert graph.exports["vpcId"].startswith("vpc-")
    assert len(graph.exports["privateSubnetIds"]) >= 2
    assert graph.exports["modelReaderRoleArn"].startswith("arn:aws:iam::")
    pools = json.loads(json.dumps(graph.exports[pools_export]))
    if pools_export == "gpuNodeGroupNames":
        assert pools and all(name.startswith("gpu-") for name in pools.values())
    else:
        assert pools and all(names and all(n.startswith(f"{pool}-") for n in names)
                             for pool, names in pools.items())


def test_every_aws_resource_and_lookup_uses_the_stack_provider(graph):
    (provider,) = graph.of_type(AWS_PROVIDER)
    aws_resources = [r for r in graph.resources if r.custom and r.type.startswith("aws:")]
    assert aws_resources
    assert {r.provider for r in aws_resources} == {provider.urn}
    assert graph.invokes and {i.provider for i in graph.invokes} == {provider.urn}


def default_tags(graph):
    # Provider inputs travel as JSON strings.
    return json.loads(graph.one(AWS_PROVIDER).inputs["defaultTags"])["tags"]


def test_provider_region_and_default_tags(graph):
    assert graph.one(AWS_PROVIDER).inputs["region"] == "us-west-2"
    tags = default_tags(graph)
    assert tags["mlserve:stack"] == graph.stack
    assert tags["mlserve:environment"] == graph.stack
    assert tags["managed-by"] == "pulumi"
    assert tags["team"] == "ml-platform"


def test_stack_tags_cannot_override_ownership_tags():
    graph = evaluate("dev", {"mlserve:tags": {"mlserve:stack": "prod", "team": "x"}})
    tags = default_tags(graph)
    assert tags["mlserve:stack"] == "dev" and tags["team"] == "x"


def test_every_component_registers_its_outputs(graph):
    components = [r for r in graph.resources if not r.custom]
    assert {c.type for c in components} >= {
        "mlserve:network:Network", "mlserve:cluster:Cluster", "mlserve:node_group:NodeGroup",
        "mlserve:model_store:ModelStore",
        "mlserve:iam:IrsaRole", "mlserve:storage:Storage", "mlserve:cert_manager:CertManager",
        "mlserve:load_balancer_controller:LoadBalancerController", "mlserve:mesh:Mesh",
        "mlserve:serving_platform:ServingPlatform", "mlserve:monitoring:Monitoring",
        "mlserve:autoscaling:Autoscaling", "mlserve:cluster_autoscaler:ClusterAutoscaler",
        "mlserve:gpu_stack:GpuStack", "mlserve:model_repository:ModelRepository",
        "mlserve:model_serving:ModelServing", "mlserve:inference_service:InferenceService"}
    assert {c.type for c in components} >= (
        {"mlserve:gpu_node_groups:GpuNodeGroups"} if graph.stack == "prod" else
        {"mlserve:karpenter:Karpenter", "mlserve:gpu_capacity:KarpenterGpuPools"})
    for component in components:
        assert component.urn in graph.registered_outputs, f"{component.type} {component.name}"
        assert graph.registered_outputs[component.urn], f"{component.name} registered no outputs"


def test_component_type_tokens_name_their_module(graph):
    for component in (r for r in graph.resources if not r.custom):
        package, module, type_name = component.type.split(":")
        assert package == "mlserve"
        source = ROOT_DIR / "components" / f"{module}.py"
        assert f"class {type_name}(pulumi.ComponentResource)" in source.read_text()


def test_every_resource_belongs_to_a_component_and_is_named_after_it(graph):
    urns = {r.urn for r in graph.resources}
    for res in graph.resources:
        if res.parent not in urns:  # directly under the stack: components and the AWS provider
            assert not res.custom or res.type == AWS_PROVIDER, f"{res.type} {res.name}"
            continue
        parent = graph.by_urn(res.parent)
        assert not parent.custom
        assert res.name.startswith(f"{parent.name}-"), f"{res.name} under {parent.name}"


def test_evaluation_is_deterministic():
    for stack in (*STACKS, "local"):
        assert evaluate(stack).canonical() == evaluate(stack).canonical()


# ---- __main__.py as the parts list: each stack file wires the parts its config asks for -----

# Where the platform stands (components/foundation.py), by cluster.mode, as (name, type).
FOUNDATION_PARTS = {
    "eks": {("aws", AWS_PROVIDER), ("network", "mlserve:network:Network"),
            ("cluster", "mlserve:cluster:Cluster"),
            ("cluster-autoscaler", "mlserve:cluster_autoscaler:ClusterAutoscaler"),
            ("lb-controller", "mlserve:load_balancer_controller:LoadBalancerController"),
            ("storage", "mlserve:storage:Storage"), ("models", "mlserve:model_store:ModelStore"),
            ("model-repo", "mlserve:model_repository:ModelRepository")},
    "existing": {("cluster", "mlserve:existing_cluster:ExistingCluster"),
                 ("object-store", "mlserve:object_store:ObjectStore"),
                 ("model-upload", "mlserve:model_upload:ModelUpload")},
}
PLATFORM_PARTS = {("cert-manager", "mlserve:cert_manager:CertManager"),
                  ("mesh", "mlserve:mesh:Mesh"), ("monitoring", "mlserve:monitoring:Monitoring"),
                  ("autoscaling", "mlserve:autoscaling:Autoscaling"),
                  ("serving", "mlserve:serving_platform:ServingPlatform"),
                  ("model-serving", "mlserve:model_serving:ModelServing")}
GPU_DAEMONS = ("gpu-stack", "mlserve:gpu_stack:GpuStack")
# Where a model may be at zero replicas (KServe): the KEDA HTTP add-on holds its requests.
COLD_START = ("cold-start", "mlserve:cold_start:ColdStart")
# The GPU capacity engine (gpuCapacity.engine) of each shipped stack on EKS, and GPU node health.
GPU_ENGINES = {
    "karpenter": {("karpenter", "mlserve:karpenter:Karpenter"),
                  ("gpu", "mlserve:gpu_capacity:KarpenterGpuPools")},
    "nodeGroups": {("gpu", "mlserve:gpu_node_groups:GpuNodeGroups")},
}
NODE_HEALTH = ("node-health", "mlserve:node_health:NodeHealth")
SHIPPED = {"dev": "eks", "staging": "eks", "prod": "eks", "local": "existing"}
ENGINES = {"dev": "karpenter", "staging": "karpenter", "prod": "nodeGroups"}


def top_level_parts(graph):
    urns = {r.urn for r in graph.resources}
    return {(r.name, r.type) for r in graph.resources if r.parent not in urns}


@pytest.mark.parametrize(("stack", "mode"), SHIPPED.items())
def test_each_stack_file_wires_its_foundation_and_the_platform(stack, mode):
    graph = evaluate(stack)
    assert graph.error is None, graph.error
    # GPU daemons only where the stack owns GPU nodes (local turns both daemons off).
    daemons = {GPU_DAEMONS} if mode == "eks" else set()
    gpu = (GPU_ENGINES[ENGINES[stack]] | {NODE_HEALTH}) if mode == "eks" else set()
    cold_start = {COLD_START} if stack == "dev" else set()  # the one with a model at minReplicas 0
    assert top_level_parts(graph) == (FOUNDATION_PARTS[mode] | PLATFORM_PARTS | daemons | gpu
                                      | cold_start)


def test_the_seldon_backend_adds_its_runtime_and_nothing_else(dev):
    seldon = evaluate("dev", config=set_path(stack_config("dev"), "modelServing.backend",
                                             "seldon"))
    # The interceptor holds HTTP to a Seldon model at zero replicas too (dev).
    assert COLD_START in top_level_parts(seldon)
    assert top_level_parts(seldon) == top_level_parts(dev) | {
        ("seldon", "mlserve:seldon:SeldonCore")}


def test_backend_none_serves_nothing_but_keeps_the_versions():
    graph = evaluate("dev", {"mlserve:modelServing": {"backend": "none"}})
    assert graph.error is None, graph.error
    parts = top_level_parts(graph)
    assert ("model-serving", "mlserve:model_serving:ModelServing") not in parts
    assert ("model-repo", "mlserve:model_repository:ModelRepository") in parts
    assert "models" not in graph.exports and graph.exports["modelStorageUris"]


@pytest.mark.parametrize("stack", SHIPPED)
def test_models_wait_for_runtime_bucket_identity_model_files_and_keda(stack):
    graph = evaluate(stack)
    server = next(r for r in graph.resources if r.custom and r.type.endswith(":InferenceService"))
    releases = {r.name: r for r in graph.of_type("kubernetes:helm.sh/v3:Release")}
    must_exist_first = [releases["serving-kserve-runtime-configs"], releases["autoscaling-keda"],
                        graph.named("model-serving-sa")]
    if SHIPPED[stack] == "eks":
        must_exist_first += [graph.named("models-reader"), graph.named("model-repo")]
    else:
        must_exist_first += [graph.named("model-upload"),
                             graph.named("model-serving-s3-credentials")]
    for part in must_exist_first:
        assert graph.waits_for(server, part), part.name


@pytest.mark.parametrize("stack", SHIPPED)
def test_gpu_daemons_wait_for_the_gpu_capacity(stack):
    graph = evaluate(stack)
    daemons = [r for r in graph.of_type("kubernetes:helm.sh/v3:Release")
               if r.name.startswith("gpu-stack-")]
    assert bool(daemons) is (SHIPPED[stack] == "eks")
    for daemon in daemons:
        assert graph.waits_for(daemon, graph.named("gpu")), daemon.name


def test_only_the_picker_names_a_backend():
    """A serving backend is an object (components/serving_backend.py): outside the picker
    (components/backends.py) nothing compares `modelServing.backend` with a backend's name.
    The config's validation rules (components/config/, not globbed below) read the raw
    setting."""
    names = ("kserve", "seldon")
    for path in [ROOT_DIR / "__main__.py", *sorted((ROOT_DIR / "components").glob("*.py"))]:
        if path.name == "backends.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                literals = [c.value for c in (node.left, *node.comparators)
                            if isinstance(c, ast.Constant)]
                assert not set(literals) & set(names), f"{path.name}:{node.lineno}"


@pytest.mark.parametrize("stack", STACKS)
def test_config_is_validated_before_anything_is_registered(stack):
    graph = evaluate(stack, {"mlserve:gpuNodeGroups": [{"name": "x", "instanceTypes": ["m5.large"],
                                                        "minSize": 3, "maxSize": 1}]})
    assert graph.error is not None and graph.resources == [] and graph.invokes == []


def test_components_all_live_in_components(graph):
    modules = {Path(p).stem for p in (ROOT_DIR / "components").glob("*.py")}
    for component in (r for r in graph.resources if not r.custom):
        assert component.type.split(":")[1] in modules
