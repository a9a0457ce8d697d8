"""components/karpenter.py and gpu_capacity.py: Karpenter as the GPU pools' engine — its identity,
interruption queue, discovery tags, the pools as EC2NodeClass/NodePools valid against Karpenter
1.14.1's own CRDs, and the order `pulumi destroy` takes them down in."""

from __future__ import annotations

import copy
import json
import re

import pytest
import yaml

from components.config.gpu_capacity import GpuCapacityConfig
from components.config.nodes import GpuNodeGroupConfig
from components.gpu_capacity import ec2_node_class, node_pools
from components.k8s import SYSTEM_NODE_SELECTOR
from components.karpenter import (
    DISCOVERY_TAG,
    INLINE_POLICY_LIMIT,
    INTERRUPTION_EVENTS,
    NAMESPACE,
    SERVICE_ACCOUNT,
)
from components.versions import CHARTS, KARPENTER_AMI_ALIASES
from tests.components.test_k8s import releases
from tests.components.test_seldon import _key_paths
from tests.crd_schema import UPSTREAM, crd_errors
from tests.harness import evaluate, set_path, stack_config

KARPENTER = UPSTREAM / "karpenter-1.14.1"
NODE_POOL_SCHEMA = KARPENTER / "nodepool-v1.schema.json"
NODE_CLASS_SCHEMA = KARPENTER / "ec2nodeclass-v1.schema.json"
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
KARPENTER_STACKS = ("dev", "staging")


@pytest.fixture(params=KARPENTER_STACKS)
def kgraph(request):
    return request.getfixturevalue(request.param)


def obj(res):
    return copy.deepcopy({k: res.inputs[k] for k in ("apiVersion", "kind", "metadata", "spec")})


def pools_config(stack):
    return json.loads(stack_config(stack)["mlserve:gpuNodeGroups"])


def policy(graph, name):
    return json.loads(graph.one("aws:iam/rolePolicy:RolePolicy", name).inputs["policy"])


# ---- the objects, against Karpenter's own CRDs ------------------------------------------------

def test_pools_validate_against_the_v1_14_1_crds(kgraph):
    pools, classes = kgraph.of_type(NODE_POOL), kgraph.of_type(NODE_CLASS)
    assert pools and classes
    for res in pools:
        assert crd_errors(obj(res), NODE_POOL_SCHEMA) == [], res.name
    for res in classes:
        assert crd_errors(obj(res), NODE_CLASS_SCHEMA) == [], res.name


def _bottlerocket_stack():
    config = set_path(stack_config("staging"), "gpuNodeGroups[0].amiType",
                      "BOTTLEROCKET_x86_64_NVIDIA")
    return set_path(config, "gpuCapacity.karpenter.pools",
                    {"a10g": {"capacityTypes": ["on-demand", "spot"], "expireAfter": "Never",
                              "consolidationPolicy": "WhenEmptyOrUnderutilized",
                              "disruptionBudget": "20%", "volumeThroughputMibps": 1000,
                              "volumeIops": 4000}})


def test_variants_validate_and_bottlerocket_keeps_images_on_their_own_volume():
    graph = evaluate("staging", config=_bottlerocket_stack())
    assert graph.error is None, graph.error
    for res in graph.of_type(NODE_POOL):
        assert crd_errors(obj(res), NODE_POOL_SCHEMA) == [], res.name
    (node_class,) = graph.of_type(NODE_CLASS)
    assert crd_errors(obj(node_class), NODE_CLASS_SCHEMA) == []
    spec = node_class.inputs["spec"]
    assert spec["amiSelectorTerms"] == [{"alias": KARPENTER_AMI_ALIASES[
        "BOTTLEROCKET_x86_64_NVIDIA"]}]
    os_volume, images = spec["blockDeviceMappings"]
    assert (os_volume["deviceName"], os_volume["rootVolume"]) == ("/dev/xvda", True)
    assert (images["deviceName"], images["rootVolume"]) == ("/dev/xvdb", False)
    assert images["ebs"]["throughput"] == 1000 and images["ebs"]["iops"] == 4000
    # on-demand first here: it is weighted highest.
    weights = {r.inputs["metadata"]["name"]: r.inputs["spec"]["weight"]
               for r in graph.of_type(NODE_POOL)}
    assert weights["a10g-on-demand"] > weights["a10g-spot"]


def test_a_field_the_crd_would_prune_is_caught(dev):
    body = obj(dev.of_type(NODE_POOL)[0])
    body["spec"]["template"]["spec"]["taint"] = []
    assert any("taint" in e for e in crd_errors(body, NODE_POOL_SCHEMA))
    node_class = obj(dev.one(NODE_CLASS))
    node_class["spec"]["metadataOptions"]["httpPutResponseHopLimit"] = 0
    assert crd_errors(node_class, NODE_CLASS_SCHEMA)


def test_labels_and_requirements_pass_the_crds_cel_rules(kgraph):
    """The CEL rules JSON Schema can't run (karpenter.sh_nodepools.yaml x-kubernetes-validations):
    no label of the karpenter.sh domain but the two allowed, and every `In` has values."""
    for res in kgraph.of_type(NODE_POOL):
        template = res.inputs["spec"]["template"]
        for key in template["metadata"]["labels"]:
            domain = re.match(r"^([^/]+)", key).group(1)
            assert not domain.endswith("karpenter.sh"), key
        for requirement in template["spec"]["requirements"]:
            assert requirement["operator"] != "In" or requirement["values"], requirement


# ---- what each pool asks of Karpenter ---------------------------------------------------------

def test_node_class_is_hardened(kgraph):
    for res in kgraph.of_type(NODE_CLASS):
        spec = res.inputs["spec"]
        assert spec["metadataOptions"] == {"httpEndpoint": "enabled",
                                           "httpProtocolIPv6": "disabled",
                                           "httpPutResponseHopLimit": 1,
                                           "httpTokens": "required"}
        assert spec["blockDeviceMappings"]
        for mapping in spec["blockDeviceMappings"]:
            assert mapping["ebs"]["encrypted"] is True
            assert mapping["ebs"]["volumeType"] == "gp3"
        # Pinned, never @latest (a new AMI would roll every GPU node as drift).
        (term,) = spec["amiSelectorTerms"]
        assert "@latest" not in term["alias"] and term["alias"] in KARPENTER_AMI_ALIASES.values()


def test_node_class_uses_karpenters_own_role_by_name(kgraph):
    role = kgraph.one("aws:iam/role:Role", "karpenter-node-role")
    component = kgraph.one("mlserve:karpenter:Karpenter")
    role_name = kgraph.registered_outputs[component.urn]["nodeRoleName"]
    for res in kgraph.of_type(NODE_CLASS):
        assert res.inputs["spec"]["role"] == role_name
        assert not res.inputs["spec"]["role"].startswith("arn:")
    assert json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Principal"] == {
        "Service": "ec2.amazonaws.com"}
    entry = kgraph.one("aws:eks/accessEntry:AccessEntry", "karpenter-node-access")
    assert entry.inputs["type"] == "EC2_LINUX"
    attached = {r.inputs["policyArn"].rsplit("/", 1)[-1]
                for r in kgraph.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                if r.name.startswith("karpenter-node-role-")}
    assert attached == {"AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly",
                        "AmazonSSMManagedInstanceCore"}


def test_node_pools_follow_the_pool_config(kgraph):
    for pool in pools_config(kgraph.stack):
        bodies = {r.inputs["metadata"]["name"]: r.inputs["spec"]
                  for r in kgraph.of_type(NODE_POOL)
                  if r.inputs["spec"]["template"]["spec"]["nodeClassRef"]["name"] == pool["name"]}
        assert bodies
        for name, spec in bodies.items():
            template = spec["template"]
            requirements = {r["key"]: r["values"] for r in template["spec"]["requirements"]}
            assert requirements["node.kubernetes.io/instance-type"] == pool["instanceTypes"]
            assert requirements["karpenter.sh/capacity-type"] == [name.removeprefix(
                f"{pool['name']}-")]
            assert template["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "true",
                                                   "effect": "NoSchedule"}]
            labels = template["metadata"]["labels"]
            assert labels["mlserve.io/pool"] == pool["name"]
            assert labels["nvidia.com/gpu.present"] == "true"
            assert spec["limits"] == {"nvidia.com/gpu": str(pool["maxSize"])}  # 1 GPU a node
            assert spec["disruption"]["budgets"] == [{"nodes": "1"}]
            assert template["spec"]["expireAfter"] == "720h"
            # A terminationGracePeriod would let drift and expiry evict past the models'
            # PodDisruptionBudgets once it elapsed.
            assert "terminationGracePeriod" not in template["spec"]


def test_capacity_types_fall_back_in_the_configured_order(dev):
    weights = {r.inputs["metadata"]["name"]: r.inputs["spec"]["weight"]
               for r in dev.of_type(NODE_POOL)}
    assert weights["t4-spot-spot"] > weights["t4-spot-on-demand"]
    assert set(weights) == {"t4-spot-spot", "t4-spot-on-demand"}


def test_one_node_pool_per_capacity_type_from_the_pool_default():
    capacity = GpuCapacityConfig()
    pool = GpuNodeGroupConfig.model_validate(
        {"name": "p", "instanceTypes": ["g5.12xlarge", "g5.24xlarge"], "capacityType": "SPOT",
         "maxSize": 3})
    (only,) = node_pools(pool, capacity)
    assert only["metadata"]["name"] == "p-spot"
    assert only["spec"]["limits"] == {"nvidia.com/gpu": "12"}  # 3 nodes x 4 GPUs
    node_class = ec2_node_class(pool, capacity, cluster_name="c", node_role_name="r", tags={})
    assert node_class["spec"]["subnetSelectorTerms"] == [{"tags": {DISCOVERY_TAG: "c"}}]


def test_update_waits_for_karpenter_to_accept_each_object(kgraph):
    for res in [*kgraph.of_type(NODE_POOL), *kgraph.of_type(NODE_CLASS)]:
        assert res.inputs["metadata"]["annotations"] == {"pulumi.com/waitFor": "condition=Ready"}


# ---- the controller ---------------------------------------------------------------------------

# Maps whose keys are the user's (the chart passes them through whole).
FREE_FORM = {("nodeSelector",), ("controller", "resources")}


def test_every_chart_value_set_is_a_key_of_the_chart(kgraph):
    """Helm ignores a key the chart doesn't know: each one the stack sets must exist upstream."""
    upstream = yaml.safe_load((KARPENTER / "values.yaml").read_text())
    values = releases(kgraph)["karpenter"].inputs["values"]
    for path in _key_paths(values):
        node = upstream
        for depth, key in enumerate(path):
            if path[:depth] in FREE_FORM:
                assert isinstance(node, dict)
                break
            assert isinstance(node, dict) and key in node, f"{'.'.join(path)} is not a chart value"
            node = node[key]


def test_controller_runs_on_system_nodes_knows_its_cluster_region_and_queue(kgraph):
    release = releases(kgraph)["karpenter"]
    values = release.inputs["values"]
    assert release.inputs["chart"] == CHARTS["karpenter"].chart
    assert release.inputs["version"] == "1.14.1" and release.inputs["namespace"] == NAMESPACE
    assert values["settings"]["clusterName"] == kgraph.exports["clusterName"]
    queue = kgraph.one("aws:sqs/queue:Queue", "karpenter-interruption")
    assert values["settings"]["interruptionQueue"] == queue.inputs["name"]
    assert values["controller"]["env"] == [{"name": "AWS_REGION", "value": "us-west-2"}]
    assert values["nodeSelector"] == SYSTEM_NODE_SELECTOR
    # The chart's own affinity keeps it off the nodes it manages: not overridden.
    assert "affinity" not in values
    upstream = yaml.safe_load((KARPENTER / "values.yaml").read_text())
    terms = upstream["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"] == [
        {"key": "karpenter.sh/nodepool", "operator": "DoesNotExist"}]
    assert values["settings"]["featureGates"] == {"nodeRepair": True}
    assert values["serviceAccount"]["name"] == SERVICE_ACCOUNT


def test_crds_come_from_their_own_chart_first(kgraph):
    crds, controller = releases(kgraph)["karpenter-crd"], releases(kgraph)["karpenter"]
    assert crds.inputs["chart"] == CHARTS["karpenter-crd"].chart
    assert crds.inputs["version"] == controller.inputs["version"]
    assert kgraph.waits_for(controller, crds)


def test_controller_identity_is_a_pod_identity_for_its_service_account(kgraph):
    association = kgraph.one("aws:eks/podIdentityAssociation:PodIdentityAssociation",
                             "karpenter-controller")
    assert (association.inputs["namespace"], association.inputs["serviceAccount"]) == (
        NAMESPACE, SERVICE_ACCOUNT)
    role = kgraph.one("aws:iam/role:Role", "karpenter-controller")
    (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert sorted(statement["Action"]) == ["sts:AssumeRole", "sts:TagSession"]


def test_controller_permissions_are_the_documented_least_privilege(kgraph):
    cluster = kgraph.exports["clusterName"]
    documents = {name: policy(kgraph, f"karpenter-controller-{name}") for name in (
        "node-lifecycle", "iam-integration", "eks-integration", "interruption",
        "resource-discovery")}
    size = sum(len(r.inputs["policy"]) for r in kgraph.of_type("aws:iam/rolePolicy:RolePolicy")
               if r.name.startswith("karpenter-controller-"))
    assert size < INLINE_POLICY_LIMIT
    statements = [s for d in documents.values() for s in d["Statement"]]
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) \
            else [statement["Action"]]
        writes = [a for a in actions if not a.split(":")[1].startswith(
            ("Describe", "Get", "List", "Receive"))]
        if writes and statement["Resource"] == "*":
            pytest.fail(f"unscoped write {writes}")
        # Every EC2 write needs this cluster's ownership tag.
        if any(a.startswith("ec2:") for a in writes) and "Condition" in statement:
            text = json.dumps(statement["Condition"])
            assert f"kubernetes.io/cluster/{cluster}" in text, statement["Sid"]
    by_sid = {s["Sid"]: s for s in statements}
    component = kgraph.one("mlserve:karpenter:Karpenter")
    node_role = kgraph.registered_outputs[component.urn]["nodeRoleName"]
    # PassRole for Karpenter's node role only, and only to EC2.
    assert by_sid["AllowPassingInstanceRole"]["Resource"] == \
        f"arn:aws:iam::123456789012:role/{node_role}"
    queue_arn = by_sid["AllowInterruptionQueueActions"]["Resource"]
    assert queue_arn.startswith("arn:aws:sqs:us-west-2:")
    assert by_sid["AllowAPIServerEndpointDiscovery"]["Resource"] == \
        f"arn:aws:eks:us-west-2:123456789012:cluster/{cluster}"
    assert by_sid["AllowRegionalReadActions"]["Condition"] == {
        "StringEquals": {"aws:RequestedRegion": "us-west-2"}}


def test_interruption_queue_and_its_rules(kgraph):
    queue = kgraph.one("aws:sqs/queue:Queue", "karpenter-interruption")
    assert queue.inputs["sqsManagedSseEnabled"] is True
    assert queue.inputs["messageRetentionSeconds"] == 300
    statements = json.loads(kgraph.one("aws:sqs/queuePolicy:QueuePolicy",
                                       "karpenter-interruption").inputs["policy"])["Statement"]
    deny = next(s for s in statements if s.get("Sid") == "DenyHTTP")
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    patterns = {r.name.removeprefix("karpenter-"): json.loads(r.inputs["eventPattern"])
                for r in kgraph.of_type("aws:cloudwatch/eventRule:EventRule")
                if r.name.startswith("karpenter-")}
    assert patterns == INTERRUPTION_EVENTS
    targets = [t for t in kgraph.of_type("aws:cloudwatch/eventTarget:EventTarget")
               if t.name.startswith("karpenter-")]
    assert len(targets) == len(INTERRUPTION_EVENTS)
    assert all(t.inputs["arn"] == queue_arn for t in targets
               for queue_arn in [statements[0]["Resource"]])


def test_subnets_and_cluster_security_group_carry_the_discovery_tag(kgraph):
    tags = [t for t in kgraph.of_type("aws:ec2/tag:Tag") if t.inputs["key"] == DISCOVERY_TAG]
    subnets = {s.urn for s in kgraph.of_type("aws:ec2/subnet:Subnet")
               if s.name.startswith("network-private-")}
    assert len(tags) == len(subnets) + 1
    assert all(t.inputs["value"] == kgraph.exports["clusterName"] for t in tags)
    assert set(kgraph.exports["privateSubnetIds"]) == {
        t.inputs["resourceId"] for t in tags if "subnet" in t.name}
    (group,) = [t for t in tags if t.name == "karpenter-discovery-cluster-sg"]
    cluster = kgraph.one("aws:eks/cluster:Cluster")
    assert group.inputs["resourceId"].startswith("sg-")
    assert cluster.urn in group.dependencies


# ---- destroy order ----------------------------------------------------------------------------

def test_destroy_takes_models_then_pools_then_classes_then_controller_then_aws(kgraph):
    release = releases(kgraph)["karpenter"]
    for pool in kgraph.of_type(NODE_POOL):
        (node_class,) = [c for c in kgraph.of_type(NODE_CLASS) if c.inputs["metadata"][
            "name"] == pool.inputs["spec"]["template"]["spec"]["nodeClassRef"]["name"]]
        assert kgraph.waits_for(pool, node_class)
        assert kgraph.waits_for(node_class, release)
        # Deleting it waits for its nodes to drain and terminate.
        assert node_class.custom_timeouts == {"delete": "30m"}
    for kind in ("aws:iam/rolePolicy:RolePolicy", "aws:sqs/queue:Queue",
                 "aws:eks/accessEntry:AccessEntry",
                 "aws:eks/podIdentityAssociation:PodIdentityAssociation",
                 "aws:cloudwatch/eventTarget:EventTarget"):
        for res in kgraph.of_type(kind):
            if res.name.startswith("karpenter-"):
                assert kgraph.waits_for(release, res), res.name
    for tag in kgraph.of_type("aws:ec2/tag:Tag"):
        if tag.name.startswith("karpenter-discovery-subnet"):
            assert kgraph.waits_for(release, tag)
    # Subnets outlive the tags, so the VPC goes last.
    pools = kgraph.one("mlserve:gpu_capacity:KarpenterGpuPools")
    for service in kgraph.of_type("kubernetes:serving.kserve.io/v1beta1:InferenceService"):
        assert kgraph.waits_for(service, pools)


# ---- engine choice and its rules --------------------------------------------------------------

def test_node_groups_engine_creates_no_karpenter(prod):
    assert not prod.of_type(NODE_POOL) and "karpenter" not in releases(prod)
    assert prod.of_type("aws:eks/nodeGroup:NodeGroup")


def test_karpenter_engine_creates_no_gpu_node_groups(kgraph):
    groups = [g.name for g in kgraph.of_type("aws:eks/nodeGroup:NodeGroup")]
    assert groups == ["cluster-system-ng"]
    assert "gpuNodeGroupNames" not in kgraph.exports
    assert kgraph.exports["gpuNodePools"]


@pytest.mark.parametrize(("changes", "expected"), [
    ({"gpuNodeGroups[0].minSize": 1},
     "mlserve:gpuNodeGroups[0].minSize: must be 0 with gpuCapacity.engine karpenter"),
    ({"gpuNodeGroups[0].desiredSize": 1},
     "mlserve:gpuNodeGroups[0].desiredSize: must be 0 with gpuCapacity.engine karpenter"),
    ({"gpuCapacity.karpenter.pools": {"nope": {}}},
     "mlserve:gpuCapacity.karpenter.pools.nope: must name one of gpuNodeGroups ['t4-spot']"),
    ({"gpuCapacity.karpenter.pools.t4-spot": {"volumeThroughputMibps": 1000,
                                              "volumeIops": 3000}},
     "mlserve:gpuCapacity.karpenter.pools.t4-spot.volumeThroughputMibps: gp3 allows at most "
     "volumeIops/4 = 750 MiB/s, got 1000"),
    ({"gpuCapacity.karpenter.pools.t4-spot.capacityTypes": ["spot", "spot"]},
     "mlserve:gpuCapacity.karpenter.pools.t4-spot.capacityTypes: must not repeat"),
    ({"gpuCapacity.karpenter.pools.t4-spot.expireAfter": "30d"},
     "mlserve:gpuCapacity.karpenter.pools.t4-spot.expireAfter: must match"),
    ({"gpuCapacity.engine": "fargate"},
     "mlserve:gpuCapacity.engine: must be 'karpenter' or 'nodeGroups'"),
])
def test_karpenter_config_errors(changes, expected):
    from tests.components.test_config import rejected
    error = rejected("dev", changes)
    assert any(line.startswith(expected) for line in error.problems), error.problems


def test_prod_refuses_spot_for_model_pools_on_karpenter():
    from tests.components.test_config import rejected
    config_changes = {"gpuCapacity.engine": "karpenter", "gpuNodeGroups[0].minSize": 0,
                      "gpuCapacity.karpenter.pools": {"a10g": {"capacityTypes": ["on-demand",
                                                                                 "spot"]}}}
    error = rejected("prod", config_changes)
    assert any(line.startswith("mlserve:gpuCapacity.karpenter.pools.a10g.capacityTypes: pool "
                               "'a10g' serves models: spot is not allowed in prod")
               for line in error.problems), error.problems


# ---- model pods while they load ---------------------------------------------------------------

def test_model_pods_are_not_disrupted_while_they_load(graph):
    """The InferenceService's annotations reach its pods (kserve v0.20.0 predictor.go, filtered
    by ServiceAnnotationDisallowedList only); the duration is each model's ready timeout."""
    models = json.loads(stack_config(graph.stack)["mlserve:modelServing"])["models"]
    services = graph.of_type("kubernetes:serving.kserve.io/v1beta1:InferenceService")
    assert services
    for service in services:
        model = service.inputs["metadata"]["labels"]["mlserve.io/model"]
        minutes = models.get(model, {}).get("readyTimeoutMinutes", 30)
        assert service.inputs["metadata"]["annotations"]["karpenter.sh/do-not-disrupt"] == \
            f"{minutes}m"


def test_seldon_model_pods_are_not_disrupted_while_they_load_either():
    """Seldon Core 1.17.1 copies the componentSpec's metadata annotations onto the Deployment's
    pod template (operator/controllers/seldondeployment_controller.go:1029-1034)."""
    config = set_path(stack_config("dev"), "modelServing.backend", "seldon")
    config = set_path(config, "modelServing.models.cifar10.readyTimeoutMinutes", 17)
    graph = evaluate("dev", config=config)
    assert graph.error is None, graph.error
    (sdep,) = graph.of_type("kubernetes:machinelearning.seldon.io/v1:SeldonDeployment")
    (component,) = sdep.inputs["spec"]["predictors"][0]["componentSpecs"]
    assert component["metadata"]["annotations"] == {"karpenter.sh/do-not-disrupt": "17m"}
