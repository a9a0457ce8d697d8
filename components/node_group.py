"""One EKS managed node group with a hardened launch template.

Used for the system group (controllers) and for every GPU group.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

# Where each AMI family keeps container images: Bottlerocket has a small OS volume (xvda) and a
# data volume (xvdb) for images; AL2023 keeps everything on its root volume.
_IMAGE_VOLUME = {"BOTTLEROCKET": "/dev/xvdb", "AL2023": "/dev/xvda"}
_BOTTLEROCKET_OS_VOLUME_GIB = 4

AUTOSCALER_TEMPLATE_PREFIX = "k8s.io/cluster-autoscaler/node-template"


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str  # NO_SCHEDULE | NO_EXECUTE | PREFER_NO_SCHEDULE

    @property
    def kubernetes_effect(self) -> str:
        return {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute",
                "PREFER_NO_SCHEDULE": "PreferNoSchedule"}[self.effect]


@dataclass
class NodeGroupArgs:
    cluster_name: pulumi.Input[str]
    node_role_arn: pulumi.Input[str]
    subnet_ids: pulumi.Input[Sequence[str]]
    instance_types: Sequence[str]
    ami_type: str
    capacity_type: str
    min_size: int
    max_size: int
    desired_size: int
    disk_size_gib: int
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: Sequence[Taint] = ()
    autoscaler_resources: Mapping[str, str] = field(default_factory=dict)
    """Extended resources (e.g. nvidia.com/gpu) cluster-autoscaler must assume when at zero nodes."""
    instance_tags: Mapping[str, str] = field(default_factory=dict)
    """Tags for instances and volumes, which the provider's default tags don't reach."""
    node_repair: bool = True
    """EKS node auto repair: replace nodes whose health conditions stay bad."""
    depends_on: Sequence[pulumi.Resource] = ()


def autoscaler_template_tags(args: NodeGroupArgs) -> dict[str, str]:
    """ASG tags that let cluster-autoscaler build a node template for a group scaled to zero.

    EKS doesn't copy node-group labels and taints to the Auto Scaling group, so without these the
    autoscaler can't know a pending GPU pod would fit a new node.
    """
    tags = {f"{AUTOSCALER_TEMPLATE_PREFIX}/label/{k}": v for k, v in args.labels.items()}
    tags.update({f"{AUTOSCALER_TEMPLATE_PREFIX}/taint/{t.key}": f"{t.value}:{t.kubernetes_effect}"
                 for t in args.taints})
    tags.update({f"{AUTOSCALER_TEMPLATE_PREFIX}/resources/{k}": v
                 for k, v in args.autoscaler_resources.items()})
    return dict(sorted(tags.items()))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


class NodeGroup(pulumi.ComponentResource):
    node_group: aws.eks.NodeGroup

    def __init__(self, name: str, args: NodeGroupArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:node_group:NodeGroup", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        family = args.ami_type.split("_", 1)[0]
        volumes: list[aws.ec2.LaunchTemplateBlockDeviceMappingArgsDict] = [{
            "device_name": _IMAGE_VOLUME[family],
            "ebs": {"volume_size": args.disk_size_gib, "volume_type": "gp3", "encrypted": "true",
                    "delete_on_termination": "true"},
        }]
        if family == "BOTTLEROCKET":
            volumes.insert(0, {
                "device_name": "/dev/xvda",
                "ebs": {"volume_size": _BOTTLEROCKET_OS_VOLUME_GIB, "volume_type": "gp3",
                        "encrypted": "true", "delete_on_termination": "true"},
            })
        launch_template = aws.ec2.LaunchTemplate(
            f"{name}-lt",
            description=f"mlserve node group {name}",
            block_device_mappings=volumes,
            # IMDSv2 only, and a hop limit of 1 so pods can't reach the node's credentials.
            metadata_options={"http_endpoint": "enabled", "http_tokens": "required",
                              "http_put_response_hop_limit": 1,
                              "instance_metadata_tags": "disabled"},
            tag_specifications=[{"resource_type": kind, "tags": dict(args.instance_tags)}
                                for kind in ("instance", "volume", "network-interface")],
            update_default_version=True,
            opts=child,
        )
        self.node_group = aws.eks.NodeGroup(
            f"{name}-ng",
            cluster_name=args.cluster_name,
            node_role_arn=args.node_role_arn,
            subnet_ids=args.subnet_ids,
            ami_type=args.ami_type,
            capacity_type=args.capacity_type,
            instance_types=list(args.instance_types),
            labels=dict(args.labels),
            taints=[{"key": t.key, "value": t.value, "effect": t.effect} for t in args.taints],
            scaling_config={"min_size": args.min_size, "max_size": args.max_size,
                            "desired_size": args.desired_size},
            update_config={"max_unavailable": 1},
            node_repair_config={"enabled": args.node_repair},
            launch_template={"id": launch_template.id,
                             "version": launch_template.latest_version.apply(str)},
            # The autoscaler owns the node count once the group exists; `pulumi up` must not
            # scale it back to the configured starting size.
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on),
                                        ignore_changes=["scalingConfig.desiredSize"]),
        )
        asg_name = self.node_group.resources.apply(
            lambda resources: _first_autoscaling_group(resources).name
        )
        for key, value in autoscaler_template_tags(args).items():
            aws.autoscaling.Tag(
                f"{name}-asg-{_slug(key.removeprefix(AUTOSCALER_TEMPLATE_PREFIX))}",
                autoscaling_group_name=asg_name,
                tag={"key": key, "value": value, "propagate_at_launch": False},
                opts=child,
            )
        self.name_output: pulumi.Output[str] = self.node_group.node_group_name
        self.register_outputs({"nodeGroupName": self.name_output, "autoscalingGroupName": asg_name})


def _first_autoscaling_group(
    resources: Sequence[aws.eks.outputs.NodeGroupResource],
) -> aws.eks.outputs.NodeGroupResourceAutoscalingGroup:
    """The Auto Scaling group EKS created for a managed node group (there is exactly one)."""
    groups = resources[0].autoscaling_groups if resources else None
    if not groups:
        raise ValueError("EKS reported no Auto Scaling group for the node group")
    return groups[0]
