"""GPU pools on Karpenter: per pool (gpuNodeGroups[]) one EC2NodeClass and one NodePool per
capacity type, in the configured fallback order.

How each object behaves in Karpenter v1.14.1 (aws/karpenter-provider-aws, with its core
kubernetes-sigs/karpenter), and what the stack relies on (README, "GPU capacity"):

- Fallback order. With several capacity types in one NodePool Karpenter chooses by its own fixed
  order (reserved, then spot, then on-demand: docs/concepts/nodepools.md:276), not ours. So each
  capacity type gets a NodePool of its own with a `weight`, the first in `capacityTypes` weighted
  highest: the scheduler tries NodePools by descending weight (concepts/scheduling.md, "Weighted
  NodePools"), and when a launch fails for lack of capacity the offering is marked unavailable
  for 3 minutes (pkg/providers/instance/instance.go:632-641, pkg/cache/cache.go:31), so the next
  round falls through to the next NodePool.
- The GPU limit. `spec.limits["nvidia.com/gpu"]` caps what each NodePool may launch: maxSize
  nodes' worth of GPUs. Each capacity type has that cap (a NodePool can't share a limit), which is
  what the account's quotas are per capacity type too (`make preflight`).
- Disruption. Consolidation, drift and emptiness are voluntary: they respect the NodePool's
  `budgets` and never pick a node whose pods a PodDisruptionBudget blocks. Each model track has
  one (components/inference_service.py `readiness_budget`, `minAvailable: floor - 1`): eviction is
  allowed only while at least `minReplicas` pods are Ready, so no serving node is taken while a
  model is below its floor. No `terminationGracePeriod` is set: with one, drift and the drain of
  an expired node would evict past those budgets once it elapses.
- Expiration (`expireAfter`) is forceful (not rate-limited by budgets), but its drain still
  evicts through the PodDisruptionBudgets, since no terminationGracePeriod bounds it.
- Node repair (feature gate NodeRepair) replaces a node whose condition stays bad:
  AcceleratedHardwareReady False for 10 minutes (set by the EKS node monitoring agent on GPU
  faults such as Xid errors), Ready False/Unknown for 30 (pkg/cloudprovider/cloudprovider.go
  RepairPolicies, lines 305-345), at most 20 % of a NodePool's nodes at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.config.gpu_capacity import GpuCapacityConfig, karpenter_capacity_types
from components.config.nodes import GpuNodeGroupConfig
from components.gpu_node_groups import GPU_TAINT, gpu_labels
from components.karpenter import DISCOVERY_TAG
from components.versions import KARPENTER_AMI_ALIASES

GPU_RESOURCE = "nvidia.com/gpu"
NODE_CLASS_DELETE_TIMEOUT = "30m"
NODE_POOL_API = "karpenter.sh/v1"
NODE_CLASS_API = "karpenter.k8s.aws/v1"
# Highest weight for the first capacity type; Karpenter accepts weights 1-100.
TOP_WEIGHT = 100
WEIGHT_STEP = 10
# `pulumi up` waits until Karpenter has resolved each object (the EC2NodeClass: its AMI alias,
# subnets, security groups and instance profile; the NodePool: its node class is Ready), so a
# class that could never launch a node fails the update instead of leaving models Pending.
WAIT_FOR = {"pulumi.com/waitFor": "condition=Ready"}
# Bottlerocket keeps the OS on a small volume and images on a second one; AL2023 has one volume.
BOTTLEROCKET_OS_VOLUME_GIB = 4
IMAGE_VOLUME = {"BOTTLEROCKET": "/dev/xvdb", "AL2023": "/dev/xvda"}


def node_pool_name(pool: str, capacity_type: str) -> str:
    return f"{pool}-{capacity_type}"


def _volume(device: str, size_gib: int, *, throughput: int | None = None,
            iops: int | None = None) -> dict[str, Any]:
    ebs: dict[str, Any] = {"volumeSize": f"{size_gib}Gi", "volumeType": "gp3", "encrypted": True,
                           "deleteOnTermination": True}
    if throughput is not None:
        ebs["throughput"] = throughput
    if iops is not None:
        ebs["iops"] = iops
    return {"deviceName": device, "rootVolume": device == "/dev/xvda", "ebs": ebs}


def ec2_node_class(pool: GpuNodeGroupConfig, capacity: GpuCapacityConfig, *, cluster_name: str,
                   node_role_name: str, tags: Mapping[str, str]) -> dict[str, Any]:
    """The EC2NodeClass of one pool: pinned NVIDIA AMI, IMDSv2 only with hop limit 1 (pods can't
    reach the node's credentials), encrypted gp3 sized and provisioned for multi-GB image
    pulls."""
    settings = capacity.karpenter.pool(pool.name)
    family = pool.ami_type.split("_", 1)[0]
    volumes = [_volume(IMAGE_VOLUME[family], pool.disk_size_gib,
                       throughput=settings.volume_throughput_mibps, iops=settings.volume_iops)]
    if family == "BOTTLEROCKET":
        volumes.insert(0, _volume("/dev/xvda", BOTTLEROCKET_OS_VOLUME_GIB))
    discovery = [{"tags": {DISCOVERY_TAG: cluster_name}}]
    return {
        "apiVersion": NODE_CLASS_API,
        "kind": "EC2NodeClass",
        "metadata": {"name": pool.name, "annotations": dict(WAIT_FOR)},
        "spec": {
            # The role's name, not its ARN: Karpenter creates the instance profile from it.
            "role": node_role_name,
            "amiSelectorTerms": [{"alias": KARPENTER_AMI_ALIASES[pool.ami_type]}],
            "subnetSelectorTerms": discovery,
            "securityGroupSelectorTerms": discovery,
            "metadataOptions": {"httpEndpoint": "enabled", "httpProtocolIPv6": "disabled",
                                "httpPutResponseHopLimit": 1, "httpTokens": "required"},
            "blockDeviceMappings": volumes,
            "tags": dict(tags),
        },
    }


def node_pools(pool: GpuNodeGroupConfig, capacity: GpuCapacityConfig) -> list[dict[str, Any]]:
    """One NodePool per capacity type of the pool, weighted in fallback order."""
    settings = capacity.karpenter.pool(pool.name)
    gpu_limit = pool.max_size * pool.gpus_per_node
    pools = []
    for rank, capacity_type in enumerate(
            karpenter_capacity_types(capacity, pool.name, pool.capacity_type)):
        pools.append({
            "apiVersion": NODE_POOL_API,
            "kind": "NodePool",
            "metadata": {"name": node_pool_name(pool.name, capacity_type),
                         "annotations": dict(WAIT_FOR)},
            "spec": {
                "weight": TOP_WEIGHT - rank * WEIGHT_STEP,
                "limits": {GPU_RESOURCE: str(gpu_limit)},
                "disruption": {
                    "consolidationPolicy": settings.consolidation_policy,
                    "consolidateAfter": settings.consolidate_after,
                    "budgets": [{"nodes": settings.disruption_budget}],
                },
                "template": {
                    "metadata": {"labels": gpu_labels(pool)},
                    "spec": {
                        "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass",
                                         "name": pool.name},
                        "taints": [{"key": GPU_TAINT.key, "value": GPU_TAINT.value,
                                    "effect": GPU_TAINT.kubernetes_effect}],
                        "requirements": [
                            {"key": "node.kubernetes.io/instance-type", "operator": "In",
                             "values": list(pool.instance_types)},
                            {"key": "karpenter.sh/capacity-type", "operator": "In",
                             "values": [capacity_type]},
                            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
                            {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
                        ],
                        "expireAfter": settings.expire_after,
                    },
                },
            },
        })
    return pools


@dataclass
class KarpenterGpuPoolsArgs:
    pools: Sequence[GpuNodeGroupConfig]
    capacity: GpuCapacityConfig
    cluster_name: str
    node_role_name: pulumi.Input[str]
    controller: pulumi.Resource
    """The Karpenter release (it installs the CRDs' controller and must outlive the pools)."""
    crds: pulumi.Resource
    instance_tags: Mapping[str, str] = field(default_factory=dict)


class KarpenterGpuPools(pulumi.ComponentResource):
    """The GPU pools as Karpenter objects. On destroy, NodePools go first, then the
    EC2NodeClasses (whose finalizer waits for their nodes), then the controller."""

    def __init__(self, name: str, args: KarpenterGpuPoolsArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:gpu_capacity:KarpenterGpuPools", name, None, opts)
        names: dict[str, list[str]] = {}
        for pool in args.pools:
            node_class = k8s.apiextensions.CustomResource(
                f"{name}-{pool.name}-nodeclass", **_node_class_kwargs(pool, args),
                # Its deletion waits on the finalizer until every node it launched has drained
                # and terminated: longer than the provider's default 10 minutes.
                opts=pulumi.ResourceOptions(parent=self,
                                            depends_on=[args.controller, args.crds],
                                            custom_timeouts=pulumi.CustomTimeouts(
                                                delete=NODE_CLASS_DELETE_TIMEOUT)),
            )
            names[pool.name] = []
            for body in node_pools(pool, args.capacity):
                k8s.apiextensions.CustomResource(
                    f"{name}-{body['metadata']['name']}",
                    api_version=body["apiVersion"], kind=body["kind"],
                    metadata=body["metadata"], spec=body["spec"],
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[node_class]),
                )
                names[pool.name].append(body["metadata"]["name"])
        self.node_pool_names = names
        self.register_outputs({"nodePools": names})


def _node_class_kwargs(pool: GpuNodeGroupConfig, args: KarpenterGpuPoolsArgs) -> dict[str, Any]:
    body = ec2_node_class(pool, args.capacity, cluster_name=args.cluster_name,
                          node_role_name="", tags=args.instance_tags)
    spec = pulumi.Output.from_input(args.node_role_name).apply(
        lambda role: {**body["spec"], "role": role})
    return {"api_version": body["apiVersion"], "kind": body["kind"],
            "metadata": body["metadata"], "spec": spec}
