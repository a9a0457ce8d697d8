"""components/node_group.py and components/gpu_node_groups.py: hardened nodes, GPU pools that
cluster-autoscaler can grow from zero."""

from __future__ import annotations

import json

import pytest

from components.versions import GPU_INSTANCE_TYPES
from tests.harness import evaluate, set_path, stack_config

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
ASG_TAG = "aws:autoscaling/tag:Tag"
TEMPLATE = "k8s.io/cluster-autoscaler/node-template"


def engine(stack):
    capacity = json.loads(stack_config(stack).get("mlserve:gpuCapacity", "{}"))
    return capacity.get("engine", "karpenter")


def gpu_groups(graph):
    """The stack's GPU pools that are managed node groups (gpuCapacity.engine nodeGroups; with
    Karpenter they are NodePools, tests/components/test_karpenter.py)."""
    if engine(graph.stack) != "nodeGroups":
        return []
    return json.loads(stack_config(graph.stack)["mlserve:gpuNodeGroups"])


@pytest.fixture(scope="module")
def dev_on_node_groups():
    graph = evaluate("dev", config=set_path(stack_config("dev"), "gpuCapacity.engine",
                                            "nodeGroups"))
    assert graph.error is None, graph.error
    return graph


def test_node_groups_are_the_gpu_pools_of_node_group_stacks_only(graph):
    gpu = [g for g in graph.of_type(NODE_GROUP) if g.name.startswith("gpu-")]
    assert len(gpu) == len(gpu_groups(graph))


def launch_template_of(graph, node_group):
    (urn,) = node_group.property_dependencies["launchTemplate"]
    return graph.by_urn(urn)


def asg_tags_of(graph, node_group):
    component = graph.by_urn(node_group.parent)
    return {t.inputs["tag"]["key"]: t for t in graph.children(component) if t.type == ASG_TAG}


def test_every_node_requires_imdsv2_with_hop_limit_one(graph):
    for template in graph.of_type(LAUNCH_TEMPLATE):
        assert template.inputs["metadataOptions"] == {
            "httpEndpoint": "enabled", "httpTokens": "required", "httpPutResponseHopLimit": 1,
            "instanceMetadataTags": "disabled"}


def test_every_volume_is_encrypted_gp3(graph):
    for template in graph.of_type(LAUNCH_TEMPLATE):
        for mapping in template.inputs["blockDeviceMappings"]:
            assert mapping["ebs"]["encrypted"] == "true"
            assert mapping["ebs"]["volumeType"] == "gp3"


def test_node_groups_use_their_launch_template_and_no_ssh(graph):
    for group in graph.of_type(NODE_GROUP):
        template = launch_template_of(graph, group)
        assert template.type == LAUNCH_TEMPLATE
        assert "remoteAccess" not in group.inputs
        assert group.inputs["nodeRepairConfig"] == {"enabled": True}


def test_node_repair_follows_node_health_config():
    config = set_path(stack_config("prod"), "gpuCapacity.nodeHealth.autoRepair", False)
    graph = evaluate("prod", config=config)
    assert graph.error is None, graph.error
    repair = {g.name: g.inputs["nodeRepairConfig"] for g in graph.of_type(NODE_GROUP)}
    assert repair.pop("cluster-system-ng") == {"enabled": True}
    assert repair and all(r == {"enabled": False} for r in repair.values())


def test_instance_tags_carry_the_stack_tags(graph):
    for template in graph.of_type(LAUNCH_TEMPLATE):
        kinds = {spec["resourceType"]: spec["tags"] for spec in template.inputs["tagSpecifications"]}
        assert set(kinds) == {"instance", "volume", "network-interface"}
        for tags in kinds.values():
            assert tags["mlserve:stack"] == graph.stack
            assert tags["managed-by"] == "pulumi"


def test_desired_size_is_left_to_the_autoscaler(graph):
    for group in graph.of_type(NODE_GROUP):
        assert group.ignore_changes == ["scalingConfig.desiredSize"]


def test_system_group_is_on_demand_cpu_and_untainted(graph):
    system = graph.one(NODE_GROUP, "cluster-system-ng")
    assert system.inputs["capacityType"] == "ON_DEMAND"
    assert system.inputs["amiType"] == "AL2023_x86_64_STANDARD"
    assert system.inputs["labels"] == {"mlserve.io/pool": "system"}
    assert system.inputs["taints"] == []
    assert not any(t.split(".")[0] in {x.split(".")[0] for x in GPU_INSTANCE_TYPES}
                   for t in system.inputs["instanceTypes"])


def test_gpu_groups_match_config(graph):
    for group in gpu_groups(graph):
        node_group = graph.one(NODE_GROUP, f"gpu-{group['name']}-ng")
        assert node_group.inputs["instanceTypes"] == group["instanceTypes"]
        assert node_group.inputs["capacityType"] == group.get("capacityType", "ON_DEMAND")
        assert node_group.inputs["amiType"] == group.get("amiType", "AL2023_x86_64_NVIDIA")
        scaling = node_group.inputs["scalingConfig"]
        assert (scaling["minSize"], scaling["maxSize"]) == (group["minSize"], group["maxSize"])
        volume = launch_template_of(graph, node_group).inputs["blockDeviceMappings"][-1]
        assert volume["ebs"]["volumeSize"] == group.get("diskSizeGib", 200)


def test_dev_gpus_are_spot_and_scale_to_zero(dev_on_node_groups):
    group = dev_on_node_groups.one(NODE_GROUP, "gpu-t4-spot-ng")
    assert group.inputs["capacityType"] == "SPOT"
    assert group.inputs["scalingConfig"]["minSize"] == 0


def test_prod_gpus_are_on_demand(prod):
    gpu = [g for g in prod.of_type(NODE_GROUP) if g.name.startswith("gpu-")]
    assert gpu and all(g.inputs["capacityType"] == "ON_DEMAND" for g in gpu)


def test_gpu_nodes_are_tainted_and_labelled(graph):
    for group in gpu_groups(graph):
        node_group = graph.one(NODE_GROUP, f"gpu-{group['name']}-ng")
        assert node_group.inputs["taints"] == [
            {"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
        labels = node_group.inputs["labels"]
        assert labels["nvidia.com/gpu.present"] == "true"
        assert labels["k8s.amazonaws.com/accelerator"] == GPU_INSTANCE_TYPES[
            group["instanceTypes"][0]][1]
        assert labels["mlserve.io/pool"] == group["name"]


def test_gpu_asgs_describe_the_node_template_for_scale_from_zero(graph):
    for group in gpu_groups(graph):
        node_group = graph.one(NODE_GROUP, f"gpu-{group['name']}-ng")
        tags = asg_tags_of(graph, node_group)
        gpus = GPU_INSTANCE_TYPES[group["instanceTypes"][0]][0]
        values = {key: tag.inputs["tag"]["value"] for key, tag in tags.items()}
        assert values[f"{TEMPLATE}/resources/nvidia.com/gpu"] == str(gpus)
        assert values[f"{TEMPLATE}/taint/nvidia.com/gpu"] == "true:NoSchedule"
        for label, value in node_group.inputs["labels"].items():
            assert values[f"{TEMPLATE}/label/{label}"] == value
        for tag in tags.values():
            assert tag.inputs["autoscalingGroupName"].startswith("eks-gpu-")
            assert tag.inputs["tag"]["propagateAtLaunch"] is False
            assert node_group.urn in tag.dependencies


def test_bottlerocket_images_go_to_the_data_volume(prod):
    node_group = prod.one(NODE_GROUP, "gpu-l4-ng")
    assert node_group.inputs["labels"]["mlserve.io/ami-family"] == "bottlerocket"
    devices = [m["deviceName"] for m in launch_template_of(prod, node_group)
               .inputs["blockDeviceMappings"]]
    assert devices == ["/dev/xvda", "/dev/xvdb"]
    al2023 = prod.one(NODE_GROUP, "gpu-a10g-ng")
    assert [m["deviceName"] for m in launch_template_of(prod, al2023)
            .inputs["blockDeviceMappings"]] == ["/dev/xvda"]


@pytest.mark.parametrize("stack", ["dev_on_node_groups", "prod"])
def test_gpu_groups_join_after_the_system_nodes(stack, request):
    graph = request.getfixturevalue(stack)
    assert [g for g in graph.of_type(NODE_GROUP) if g.name.startswith("gpu-")]
    system = graph.one(NODE_GROUP, "cluster-system-ng")
    for group in graph.of_type(NODE_GROUP):
        if group.name.startswith("gpu-"):
            assert graph.waits_for(group, system)
