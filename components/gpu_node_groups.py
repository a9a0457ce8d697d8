"""GPU node groups, one managed node group per configured pool, tainted so only GPU work lands."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi

from components.config.nodes import GpuNodeGroupConfig
from components.k8s import POOL_LABEL
from components.node_group import NodeGroup, NodeGroupArgs, Taint

GPU_TAINT = Taint(key="nvidia.com/gpu", value="true", effect="NO_SCHEDULE")
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
ACCELERATOR_LABEL = "k8s.amazonaws.com/accelerator"
# The platform layer decides per node whether to install the NVIDIA device plugin (AL2023 needs
# it; Bottlerocket NVIDIA ships its own), so the AMI family is a label.
AMI_FAMILY_LABEL = "mlserve.io/ami-family"


def gpu_labels(group: GpuNodeGroupConfig) -> dict[str, str]:
    return {
        GPU_PRESENT_LABEL: "true",
        ACCELERATOR_LABEL: group.accelerator,
        POOL_LABEL: group.name,
        AMI_FAMILY_LABEL: group.ami_type.split("_", 1)[0].lower(),
    }


@dataclass
class GpuNodeGroupsArgs:
    groups: Sequence[GpuNodeGroupConfig]
    cluster_name: pulumi.Input[str]
    node_role_arn: pulumi.Input[str]
    subnet_ids: pulumi.Input[Sequence[str]]
    instance_tags: Mapping[str, str] = field(default_factory=dict)
    node_repair: bool = True
    depends_on: Sequence[pulumi.Resource] = ()


class GpuNodeGroups(pulumi.ComponentResource):
    groups: dict[str, NodeGroup]

    def __init__(self, name: str, args: GpuNodeGroupsArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:gpu_node_groups:GpuNodeGroups", name, None, opts)
        self.groups = {
            group.name: NodeGroup(
                f"{name}-{group.name}",
                NodeGroupArgs(
                    cluster_name=args.cluster_name,
                    node_role_arn=args.node_role_arn,
                    subnet_ids=args.subnet_ids,
                    instance_types=group.instance_types,
                    ami_type=group.ami_type,
                    capacity_type=group.capacity_type,
                    min_size=group.min_size,
                    max_size=group.max_size,
                    desired_size=group.min_size if group.desired_size is None
                    else group.desired_size,
                    disk_size_gib=group.disk_size_gib,
                    labels=gpu_labels(group),
                    taints=[GPU_TAINT],
                    autoscaler_resources={"nvidia.com/gpu": str(group.gpus_per_node)},
                    instance_tags=args.instance_tags,
                    node_repair=args.node_repair,
                    depends_on=args.depends_on,
                ),
                pulumi.ResourceOptions(parent=self),
            )
            for group in args.groups
        }
        self.node_group_names: pulumi.Output[dict[str, str]] = pulumi.Output.all(
            **{pool: group.name_output for pool, group in self.groups.items()}
        )
        self.register_outputs({"nodeGroupNames": self.node_group_names})
