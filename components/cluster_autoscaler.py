"""cluster-autoscaler: grows GPU node groups from zero when model pods are pending, shrinks them
when GPUs sit idle."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.config.platform import ClusterAutoscalerConfig
from components.iam import IrsaRole, IrsaRoleArgs, partition_of, policy_document
from components.k8s import SYSTEM_NODE_SELECTOR, helm_release, resources

NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "cluster-autoscaler"


def autoscaler_policy(*, partition: str, region: str, account_id: str, cluster_name: str) -> str:
    """Read anything; change only the Auto Scaling groups EKS tagged as this cluster's own."""
    return policy_document(
        {"Sid": "Discover", "Effect": "Allow", "Resource": "*", "Action": [
            "autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeAutoScalingInstances",
            "autoscaling:DescribeLaunchConfigurations", "autoscaling:DescribeScalingActivities",
            "autoscaling:DescribeTags", "ec2:DescribeImages", "ec2:DescribeInstanceTypes",
            "ec2:DescribeLaunchTemplateVersions", "ec2:GetInstanceTypesFromInstanceRequirements"]},
        # Labels and taints of a managed node group at zero nodes.
        {"Sid": "DescribeOwnNodeGroups", "Effect": "Allow", "Action": "eks:DescribeNodegroup",
         "Resource": f"arn:{partition}:eks:{region}:{account_id}:nodegroup/{cluster_name}/*"},
        {"Sid": "ScaleOwnNodeGroups", "Effect": "Allow", "Resource": "*",
         "Action": ["autoscaling:SetDesiredCapacity",
                    "autoscaling:TerminateInstanceInAutoScalingGroup"],
         "Condition": {"StringEquals": {
             f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster_name}": "owned"}}},
    )


def cluster_autoscaler_values(*, cluster_name: str, region: str, role_arn: str,
                              config: ClusterAutoscalerConfig) -> dict[str, Any]:
    return {
        "cloudProvider": "aws",
        "awsRegion": region,
        # EKS tags managed node groups' ASGs with k8s.io/cluster-autoscaler/<cluster>=owned.
        "autoDiscovery": {"clusterName": cluster_name},
        "rbac": {"serviceAccount": {"create": True, "name": SERVICE_ACCOUNT,
                                    "annotations": {"eks.amazonaws.com/role-arn": role_arn}}},
        "extraArgs": {
            "balance-similar-node-groups": True,
            "expander": config.expander,
            "scale-down-unneeded-time": config.scale_down_unneeded_time,
            "scale-down-utilization-threshold": config.scale_down_utilization_threshold,
            # A GPU node's utilisation is its GPU requests alone: a node whose GPU is free goes,
            # whatever its CPU shows.
            "scale-down-gpu-utilization-threshold": config.scale_down_gpu_utilization_threshold,
            "skip-nodes-with-local-storage": False,
        },
        "nodeSelector": SYSTEM_NODE_SELECTOR,
        "resources": resources("100m", "300Mi", memory_limit="600Mi"),
    }


@dataclass
class ClusterAutoscalerArgs:
    cluster_name: str
    region: str
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer_url: pulumi.Input[str]
    config: ClusterAutoscalerConfig


class ClusterAutoscaler(pulumi.ComponentResource):
    def __init__(self, name: str, args: ClusterAutoscalerArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:cluster_autoscaler:ClusterAutoscaler", name, None, opts)
        account = aws.get_caller_identity_output(
            opts=pulumi.InvokeOutputOptions(parent=self)).account_id
        policy = pulumi.Output.all(partition_of(self), account).apply(
            lambda v: autoscaler_policy(partition=v[0], region=args.region, account_id=v[1],
                                        cluster_name=args.cluster_name))
        role = IrsaRole(
            f"{name}-irsa",
            IrsaRoleArgs(oidc_provider_arn=args.oidc_provider_arn,
                         oidc_issuer_url=args.oidc_issuer_url, namespace=NAMESPACE,
                         service_account=SERVICE_ACCOUNT, inline_policy=policy),
            pulumi.ResourceOptions(parent=self),
        )
        values = role.role_arn.apply(lambda arn: cluster_autoscaler_values(
            cluster_name=args.cluster_name, region=args.region, role_arn=arn, config=args.config))
        self.release = helm_release(self, name, "cluster-autoscaler", name="cluster-autoscaler",
                                    namespace=NAMESPACE, values=values)
        self.register_outputs({"roleArn": role.role_arn, "release": self.release.status})
