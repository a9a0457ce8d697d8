"""The EKS cluster: control plane, access, identity, system nodes, add-ons and the one Kubernetes
provider every Kubernetes resource of the stack uses."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.config.cluster import ClusterConfig
from components.config.nodes import SystemNodeGroupConfig
from components.iam import (
    IrsaRole,
    IrsaRoleArgs,
    aws_managed_policy,
    partition_of,
    service_trust_policy,
)
from components.k8s import SYSTEM_NODE_SELECTOR, SYSTEM_POOL
from components.node_group import NodeGroup, NodeGroupArgs
from components.versions import EKS_ADDON_VERSIONS

# Installed before any node joins: nodes need the CNI and kube-proxy to become Ready.
ADDONS_BEFORE_NODES = ("vpc-cni", "kube-proxy", "eks-pod-identity-agent")
# Their pods need somewhere to run.
ADDONS_AFTER_NODES = ("coredns", "aws-ebs-csi-driver")
# The VPC CNI enforces NetworkPolicy only when asked to; without it the model servers'
# policies would be silently ignored.
ADDON_CONFIGURATION = {"vpc-cni": json.dumps({"enableNetworkPolicy": "true"})}

ADMIN_ACCESS_POLICY = "AmazonEKSClusterAdminPolicy"
# The preview principal refreshes every Kubernetes object the stack manages, and two kinds of them
# live in Secrets: the stack's own Secrets, and every Helm release's state (pulumi-kubernetes reads
# a Release through Helm's storage driver, "secret" by default: provider/pkg/provider/provider.go
# helmDriver, helm_release.go Read). AmazonEKSViewPolicy excludes Secrets, so refresh would fail
# on them; AmazonEKSAdminViewPolicy (get/list/watch on every resource, Secrets included) is the
# narrowest EKS access policy that works. It can't write: with server-side apply, a preview's
# dry-run patches that RBAC forbids fall back to a client-side diff (provider.go Create/Update:
# "unable to compute Server-side dry-run and defaulting to client-side").
PREVIEW_ACCESS_POLICY = "AmazonEKSAdminViewPolicy"


def kubeconfig(cluster_name: str, endpoint: str, certificate_authority: str, region: str) -> str:
    """A kubeconfig that gets a fresh token from `aws eks get-token` on every use (no secrets)."""
    return json.dumps({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": {
            "server": endpoint, "certificate-authority-data": certificate_authority}}],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name,
                                                        "user": cluster_name}}],
        "current-context": cluster_name,
        "users": [{"name": cluster_name, "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "aws",
            "args": ["eks", "get-token", "--cluster-name", cluster_name, "--region", region,
                     "--output", "json"],
            "interactiveMode": "Never",
        }}}],
    }, indent=2)


def _principal_slug(arn: str) -> str:
    # Stable per principal (not per list position), so removing one admin touches only its entry.
    short = re.sub(r"[^a-z0-9]+", "-", arn.rsplit("/", 1)[-1].lower()).strip("-")[:40]
    return f"{short}-{hashlib.sha256(arn.encode()).hexdigest()[:6]}"


@dataclass
class ClusterArgs:
    cluster_name: str
    config: ClusterConfig
    system_nodes: SystemNodeGroupConfig
    region: str
    private_subnet_ids: pulumi.Input[Sequence[str]]
    instance_tags: Mapping[str, str] = field(default_factory=dict)


class Cluster(pulumi.ComponentResource):
    eks: aws.eks.Cluster
    node_role: aws.iam.Role
    oidc_provider: aws.iam.OpenIdConnectProvider
    system_nodes: NodeGroup
    provider: k8s.Provider

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:cluster:Cluster", name, None, opts)
        config = args.config
        child = pulumi.ResourceOptions(parent=self)
        partition = partition_of(self)

        role = aws.iam.Role(f"{name}-role", opts=child, description="EKS control plane",
                            assume_role_policy=service_trust_policy("eks.amazonaws.com",
                                                                    tag_session=True))
        role_policy = aws.iam.RolePolicyAttachment(
            f"{name}-role-cluster-policy", role=role.name, opts=child,
            policy_arn=aws_managed_policy(partition, "AmazonEKSClusterPolicy"))

        secrets_key = aws.kms.Key(
            f"{name}-secrets-key", description=f"EKS secrets envelope encryption for "
            f"{args.cluster_name}", enable_key_rotation=True, deletion_window_in_days=30,
            opts=child)
        # Created before the cluster so EKS writes into a group with a retention, not an
        # unbounded one it would create itself.
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs", name=f"/aws/eks/{args.cluster_name}/cluster",
            retention_in_days=config.log_retention_days, opts=child)

        self.eks = aws.eks.Cluster(
            f"{name}-eks",
            name=args.cluster_name,
            version=config.version,
            role_arn=role.arn,
            vpc_config={
                "subnet_ids": args.private_subnet_ids,
                "endpoint_private_access": True,
                "endpoint_public_access": bool(config.public_access_cidrs),
                "public_access_cidrs": list(config.public_access_cidrs) or None,
            },
            # Access entries only: the aws-auth ConfigMap is deprecated, and nobody gets admin
            # just for having created the cluster.
            access_config={"authentication_mode": "API",
                           "bootstrap_cluster_creator_admin_permissions": False},
            encryption_config={"resources": ["secrets"], "provider": {"key_arn": secrets_key.arn}},
            enabled_cluster_log_types=list(config.log_types),
            upgrade_policy={"support_type": "STANDARD"},
            deletion_protection=config.deletion_protection,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy, log_group]),
        )
        issuer = self.eks.identities.apply(_oidc_issuer)
        self.oidc_provider = aws.iam.OpenIdConnectProvider(
            f"{name}-oidc", url=issuer, client_id_lists=["sts.amazonaws.com"], opts=child)

        admin_policies = self._admin_access(name, args, partition)
        self.node_role = self._node_role(name, partition)
        addon_roles = self._addon_roles(name, partition, issuer)

        before_nodes = [self._addon(name, addon, config, addon_roles.get(addon), [])
                        for addon in ADDONS_BEFORE_NODES]
        system = args.system_nodes
        self.system_nodes = NodeGroup(
            f"{name}-{SYSTEM_POOL}",
            NodeGroupArgs(
                cluster_name=self.eks.name,
                node_role_arn=self.node_role.arn,
                subnet_ids=args.private_subnet_ids,
                instance_types=system.instance_types,
                ami_type="AL2023_x86_64_STANDARD",
                capacity_type="ON_DEMAND",
                min_size=system.min_size,
                max_size=system.max_size,
                desired_size=system.min_size if system.desired_size is None
                else system.desired_size,
                disk_size_gib=system.disk_size_gib,
                labels=dict(SYSTEM_NODE_SELECTOR),
                instance_tags=args.instance_tags,
                depends_on=[*self._node_role_policies, *before_nodes],
            ),
            child,
        )
        after_nodes = [self._addon(name, addon, config, addon_roles.get(addon),
                                   [self.system_nodes])
                       for addon in ADDONS_AFTER_NODES]

        # Outputs that reach Kubernetes wait for admin access, so a consumer never races it.
        access_ready = pulumi.Output.all(*[p.id for p in admin_policies])
        self.kubeconfig: pulumi.Output[str] = pulumi.Output.secret(pulumi.Output.all(
            self.eks.name, self.eks.endpoint, self.eks.certificate_authority.data, access_ready,
        ).apply(lambda v: kubeconfig(v[0], v[1], v[2], args.region)))

        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            # A stable identity: a changed kubeconfig must not look like a new cluster and
            # replace every Kubernetes resource.
            cluster_identifier=args.cluster_name,
            enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*admin_policies, self.system_nodes, *before_nodes, *after_nodes],
            ),
        )
        self.oidc_provider_arn: pulumi.Output[str] = self.oidc_provider.arn
        self.oidc_issuer_url: pulumi.Output[str] = self.oidc_provider.url.apply(
            lambda url: url if url.startswith("https://") else f"https://{url}")
        self.register_outputs({
            "clusterName": self.eks.name,
            "endpoint": self.eks.endpoint,
            "kubeconfig": self.kubeconfig,
            "oidcProviderArn": self.oidc_provider_arn,
            "nodeRoleArn": self.node_role.arn,
            "systemNodeGroupName": self.system_nodes.name_output,
        })

    def _admin_access(self, name: str, args: ClusterArgs,
                      partition: pulumi.Output[str]) -> list[aws.eks.AccessPolicyAssociation]:
        """Access entries: cluster-admin for the admins (the identity that runs `pulumi up` among
        them), read-only for the preview principals (CI's `pulumi preview --refresh`).
        Everything Kubernetes waits for all of them."""
        config = args.config
        return [*(self._access_entry(name, "admin", arn, ADMIN_ACCESS_POLICY, partition)
                  for arn in config.admin_principal_arns),
                *(self._access_entry(name, "preview", arn, PREVIEW_ACCESS_POLICY, partition)
                  for arn in config.preview_principal_arns)]

    def _access_entry(self, name: str, role: str, arn: str, policy: str,
                      partition: pulumi.Output[str]) -> aws.eks.AccessPolicyAssociation:
        slug = _principal_slug(arn)
        entry = aws.eks.AccessEntry(
            f"{name}-{role}-{slug}", cluster_name=self.eks.name, principal_arn=arn,
            type="STANDARD", opts=pulumi.ResourceOptions(parent=self))
        return aws.eks.AccessPolicyAssociation(
            f"{name}-{role}-{slug}", cluster_name=self.eks.name, principal_arn=arn,
            policy_arn=pulumi.Output.concat("arn:", partition,
                                            f":eks::aws:cluster-access-policy/{policy}"),
            access_scope={"type": "cluster"},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[entry]))

    def _node_role(self, name: str, partition: pulumi.Output[str]) -> aws.iam.Role:
        """The role every node runs as. The CNI's permissions live on its own IRSA role instead."""
        role = aws.iam.Role(f"{name}-node-role", description="EKS worker nodes",
                            assume_role_policy=service_trust_policy("ec2.amazonaws.com"),
                            opts=pulumi.ResourceOptions(parent=self))
        self._node_role_policies = [
            aws.iam.RolePolicyAttachment(
                f"{name}-node-role-{policy}", role=role.name,
                policy_arn=aws_managed_policy(partition, policy),
                opts=pulumi.ResourceOptions(parent=self))
            # SSM instead of SSH for break-glass access to a node.
            for policy in ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly",
                           "AmazonSSMManagedInstanceCore")
        ]
        return role

    def _addon_roles(self, name: str, partition: pulumi.Output[str],
                     issuer: pulumi.Output[str]) -> dict[str, pulumi.Output[str]]:
        roles = {}
        for addon, namespace, service_account, policy in (
            ("vpc-cni", "kube-system", "aws-node", "AmazonEKS_CNI_Policy"),
            ("aws-ebs-csi-driver", "kube-system", "ebs-csi-controller-sa",
             "service-role/AmazonEBSCSIDriverPolicy"),
        ):
            role = IrsaRole(
                f"{name}-{addon}",
                IrsaRoleArgs(oidc_provider_arn=self.oidc_provider.arn, oidc_issuer_url=issuer,
                             namespace=namespace, service_account=service_account,
                             managed_policy_arns={policy.rsplit("/", 1)[-1]:
                                                  aws_managed_policy(partition, policy)}),
                pulumi.ResourceOptions(parent=self),
            )
            roles[addon] = role.role_arn
        return roles

    def _addon(self, name: str, addon: str, config: ClusterConfig,
               role_arn: pulumi.Output[str] | None,
               depends_on: list[pulumi.Resource]) -> aws.eks.Addon:
        # Pinned per Kubernetes minor, never "AWS's default today": the drift check stays clean.
        version = config.addon_versions.get(addon) or EKS_ADDON_VERSIONS[config.version][addon]
        return aws.eks.Addon(
            f"{name}-{addon}",
            cluster_name=self.eks.name,
            addon_name=addon,
            addon_version=version,
            service_account_role_arn=role_arn,
            configuration_values=ADDON_CONFIGURATION.get(addon),
            # The stack owns these add-ons' configuration; hand edits are overwritten.
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
        )


def _oidc_issuer(identities: Sequence[aws.eks.outputs.ClusterIdentity]) -> str:
    """The cluster's OIDC issuer URL (EKS reports one identity with one OIDC issuer)."""
    oidcs = identities[0].oidcs if identities else None
    if not oidcs or not oidcs[0].issuer:
        raise ValueError("EKS reported no OIDC issuer for the cluster")
    return oidcs[0].issuer
