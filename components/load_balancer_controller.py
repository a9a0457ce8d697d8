"""AWS Load Balancer Controller: turns the Istio gateway Service into an NLB (and back, on destroy)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

from components.iam import IrsaRole, IrsaRoleArgs, partition_of
from components.k8s import SYSTEM_NODE_SELECTOR, helm_release, resources

NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "aws-load-balancer-controller"
POLICY_FILE = Path(__file__).parent / "policies" / "aws-load-balancer-controller-v3.5.0.json"


def controller_policy(partition: str) -> str:
    policy = json.loads(POLICY_FILE.read_text().replace('"arn:aws:', f'"arn:{partition}:'))
    return json.dumps(policy, separators=(",", ":"))


def load_balancer_controller_values(*, cluster_name: str, region: str, vpc_id: str,
                                    role_arn: str, high_availability: bool) -> dict[str, Any]:
    return {
        # Set explicitly: with IMDS hop limit 1 the controller can't discover them itself.
        "clusterName": cluster_name,
        "region": region,
        "vpcId": vpc_id,
        "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT,
                           "annotations": {"eks.amazonaws.com/role-arn": role_arn}},
        "replicaCount": 2 if high_availability else 1,
        "podDisruptionBudget": {"maxUnavailable": 1} if high_availability else {},
        "nodeSelector": SYSTEM_NODE_SELECTOR,
        "resources": resources("50m", "128Mi", memory_limit="256Mi"),
        # Only Services that ask for it (our annotated gateway) get a load balancer from this
        # controller; it must not take over every LoadBalancer Service in the cluster.
        "enableServiceMutatorWebhook": False,
        "createIngressClassResource": False,
    }


@dataclass
class LoadBalancerControllerArgs:
    cluster_name: str
    region: str
    vpc_id: pulumi.Input[str]
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer_url: pulumi.Input[str]
    high_availability: bool
    network: pulumi.Resource | None = None
    """The VPC the load balancers live in: it must outlive the controller, so that on destroy the
    controller removes its NLBs before subnets, gateways and the VPC go."""


class LoadBalancerController(pulumi.ComponentResource):
    def __init__(self, name: str, args: LoadBalancerControllerArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:load_balancer_controller:LoadBalancerController", name, None,
                         opts)
        role = IrsaRole(
            f"{name}-irsa",
            IrsaRoleArgs(oidc_provider_arn=args.oidc_provider_arn,
                         oidc_issuer_url=args.oidc_issuer_url, namespace=NAMESPACE,
                         service_account=SERVICE_ACCOUNT,
                         inline_policy=partition_of(self).apply(controller_policy)),
            pulumi.ResourceOptions(parent=self),
        )
        values = pulumi.Output.all(args.vpc_id, role.role_arn).apply(
            lambda v: load_balancer_controller_values(
                cluster_name=args.cluster_name, region=args.region, vpc_id=v[0], role_arn=v[1],
                high_availability=args.high_availability))
        self.release = helm_release(self, name, "aws-load-balancer-controller",
                                    name="aws-load-balancer-controller", namespace=NAMESPACE,
                                    values=values,
                                    depends_on=[args.network] if args.network else [])
        self.register_outputs({"roleArn": role.role_arn, "release": self.release.status})
