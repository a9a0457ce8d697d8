"""components/cluster.py: control plane, access entries, identity, add-ons, the Kubernetes provider."""

from __future__ import annotations

import json
import re

from components.versions import (
    ADDON_VERSION_PATTERN,
    EKS_ADDON_VERSIONS,
    EKS_ADDONS,
    SUPPORTED_KUBERNETES_VERSIONS,
)
from tests.harness import evaluate, set_path, stack_config

EKS = "aws:eks/cluster:Cluster"
ADDON = "aws:eks/addon:Addon"
ENTRY = "aws:eks/accessEntry:AccessEntry"
ASSOCIATION = "aws:eks/accessPolicyAssociation:AccessPolicyAssociation"
K8S_PROVIDER = "pulumi:providers:kubernetes"


def test_api_authentication_without_creator_admin(graph):
    access = graph.one(EKS).inputs["accessConfig"]
    assert access == {"authenticationMode": "API", "bootstrapClusterCreatorAdminPermissions": False}


def test_secrets_are_envelope_encrypted_with_a_rotated_key(graph):
    eks = graph.one(EKS)
    key = graph.one("aws:kms/key:Key", "cluster-secrets-key")
    assert eks.inputs["encryptionConfig"]["resources"] == ["secrets"]
    assert eks.property_dependencies["encryptionConfig"] == [key.urn]
    assert key.inputs["enableKeyRotation"] is True


def test_control_plane_logs_go_to_a_group_with_retention(graph):
    eks = graph.one(EKS)
    assert {"api", "audit", "authenticator"} <= set(eks.inputs["enabledClusterLogTypes"])
    group = graph.one("aws:cloudwatch/logGroup:LogGroup", "cluster-logs")
    assert group.inputs["name"] == f"/aws/eks/{eks.inputs['name']}/cluster"
    assert group.inputs["retentionInDays"] > 0
    assert group.urn in eks.explicit_dependencies


def test_endpoint_private_and_public_only_from_allowlist(dev, prod):
    for graph in (dev, prod):
        vpc = graph.one(EKS).inputs["vpcConfig"]
        assert vpc["endpointPrivateAccess"] is True
        assert vpc["endpointPublicAccess"] is True
    assert prod.one(EKS).inputs["vpcConfig"]["publicAccessCidrs"] == ["198.51.100.0/24",
                                                                      "203.0.113.0/24"]


def test_empty_allowlist_means_private_endpoint_only():
    graph = evaluate("staging", config=set_path(stack_config("staging"),
                                                "cluster.publicAccessCidrs", []))
    vpc = graph.one(EKS).inputs["vpcConfig"]
    assert vpc["endpointPublicAccess"] is False
    assert "publicAccessCidrs" not in vpc


def test_control_plane_runs_in_private_subnets(graph):
    private = {s.urn for s in graph.of_type("aws:ec2/subnet:Subnet") if "-private-" in s.name}
    assert set(graph.one(EKS).property_dependencies["vpcConfig"]) == private


def test_control_plane_role_trusts_only_eks(graph):
    role = graph.one("aws:iam/role:Role", "cluster-role")
    trust = json.loads(role.inputs["assumeRolePolicy"])
    assert [s["Principal"] for s in trust["Statement"]] == [{"Service": "eks.amazonaws.com"}]
    attachment = graph.one("aws:iam/rolePolicyAttachment:RolePolicyAttachment",
                           "cluster-role-cluster-policy")
    assert attachment.inputs["policyArn"] == "arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"


def _access(graph, principals: set[str], policy: str) -> None:
    entries = [e for e in graph.of_type(ENTRY) if e.inputs["principalArn"] in principals]
    assert {e.inputs["principalArn"] for e in entries} == principals
    assert all(e.inputs["type"] == "STANDARD" for e in entries)
    associations = [a for a in graph.of_type(ASSOCIATION)
                    if a.inputs["principalArn"] in principals]
    assert {a.inputs["principalArn"] for a in associations} == principals
    for association in associations:
        assert association.inputs["policyArn"] == (
            f"arn:aws:eks::aws:cluster-access-policy/{policy}")
        assert association.inputs["accessScope"] == {"type": "cluster"}
        entry = next(e for e in entries if e.inputs["principalArn"] ==
                     association.inputs["principalArn"])
        assert entry.urn in association.dependencies


def test_every_admin_gets_cluster_admin_and_every_preview_principal_read_only(graph):
    cluster = json.loads(stack_config(graph.stack)["mlserve:cluster"])
    admins, previews = set(cluster["adminPrincipalArns"]), set(cluster["previewPrincipalArns"])
    assert admins and previews
    people = [e for e in graph.of_type(ENTRY) if e.inputs["type"] == "STANDARD"]
    assert {e.inputs["principalArn"] for e in people} == admins | previews
    # The only other entry: Karpenter's nodes join with theirs (components/karpenter.py).
    assert [e.name for e in graph.of_type(ENTRY) if e not in people] == (
        [] if graph.stack == "prod" else ["karpenter-node-access"])
    _access(graph, admins, "AmazonEKSClusterAdminPolicy")
    # Read-only, Secrets included: refresh reads Helm releases' state (cluster.py says why).
    _access(graph, previews, "AmazonEKSAdminViewPolicy")


def test_removing_one_admin_leaves_the_others_untouched(prod):
    kept = "arn:aws:iam::777788889999:role/mlserve-deployer"
    graph = evaluate("prod", config=set_path(stack_config("prod"), "cluster.adminPrincipalArns",
                                             [kept]))
    before = {e.name for e in prod.of_type(ENTRY) if e.inputs["principalArn"] == kept
              or "preview" in e.name}
    assert {e.name for e in graph.of_type(ENTRY)} == before


def test_oidc_provider_for_irsa(graph):
    oidc = graph.one("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert oidc.inputs["clientIdLists"] == ["sts.amazonaws.com"]
    assert oidc.inputs["url"].startswith("https://oidc.eks.")
    assert oidc.property_dependencies["url"] == [graph.one(EKS).urn]


def test_addons_pinned_per_kubernetes_minor(graph):
    """Pinned, never "AWS's default today": the nightly drift check stays clean."""
    addons = {a.inputs["addonName"]: a for a in graph.of_type(ADDON)}
    assert set(addons) == set(EKS_ADDONS)
    # The pins of the cluster's own minor (kube-proxy must match it), whatever the stack runs.
    minor = graph.one(EKS).inputs["version"]
    for name, addon in addons.items():
        assert addon.inputs["addonVersion"] == EKS_ADDON_VERSIONS[minor][name]
    assert not [i for i in graph.invokes if i.token == "aws:eks/getAddonVersion:getAddonVersion"]


def test_the_addon_table_covers_every_supported_minor_in_eks_format():
    assert set(EKS_ADDON_VERSIONS) == set(SUPPORTED_KUBERNETES_VERSIONS)
    for minor, table in EKS_ADDON_VERSIONS.items():
        assert set(table) == set(EKS_ADDONS), minor
        for addon, version in table.items():
            assert re.fullmatch(ADDON_VERSION_PATTERN, version), (minor, addon, version)
        # kube-proxy follows the cluster's minor.
        assert table["kube-proxy"].startswith(f"v{minor}."), minor


def test_addons_follow_the_cluster_version():
    graph = evaluate("dev", config=set_path(stack_config("dev"), "cluster.version", "1.33"))
    proxy = next(a for a in graph.of_type(ADDON) if a.inputs["addonName"] == "kube-proxy")
    assert proxy.inputs["addonVersion"] == EKS_ADDON_VERSIONS["1.33"]["kube-proxy"]


def test_pinned_addon_version_wins():
    graph = evaluate("dev", config=set_path(stack_config("dev"), "cluster.addonVersions",
                                            {"coredns": "v1.12.4-eksbuild.1"}))
    coredns = next(a for a in graph.of_type(ADDON) if a.inputs["addonName"] == "coredns")
    assert coredns.inputs["addonVersion"] == "v1.12.4-eksbuild.1"


def test_addons_with_aws_permissions_use_their_own_irsa_roles(graph):
    addons = {a.inputs["addonName"]: a for a in graph.of_type(ADDON)}
    for addon, service_account, policy in (
        ("vpc-cni", "aws-node", "AmazonEKS_CNI_Policy"),
        ("aws-ebs-csi-driver", "ebs-csi-controller-sa", "service-role/AmazonEBSCSIDriverPolicy"),
    ):
        role = graph.one("aws:iam/role:Role", f"cluster-{addon}-role")
        assert addons[addon].inputs["serviceAccountRoleArn"].startswith(
            "arn:aws:iam::123456789012:role/cluster-" + addon)
        assert role.urn in addons[addon].property_dependencies["serviceAccountRoleArn"]
        condition = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Condition"]
        subjects = [v for k, v in condition["StringEquals"].items() if k.endswith(":sub")]
        assert subjects == [f"system:serviceaccount:kube-system:{service_account}"]
        attachments = [a.inputs["policyArn"] for a in graph.children(graph.ancestors(role)[0])
                       if a.type == "aws:iam/rolePolicyAttachment:RolePolicyAttachment"]
        assert attachments == [f"arn:aws:iam::aws:policy/{policy}"]


def test_node_role_has_no_cni_permissions(graph):
    node_policies = [a.inputs["policyArn"] for a in
                     graph.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                     if a.name.startswith("cluster-node-role-")]
    assert sorted(p.rsplit("/", 1)[-1] for p in node_policies) == [
        "AmazonEC2ContainerRegistryPullOnly", "AmazonEKSWorkerNodePolicy",
        "AmazonSSMManagedInstanceCore"]


def test_networking_addons_precede_nodes_and_dns_follows_them(graph):
    system = graph.one("aws:eks/nodeGroup:NodeGroup", "cluster-system-ng")
    addons = {a.inputs["addonName"]: a for a in graph.of_type(ADDON)}
    for before in ("vpc-cni", "kube-proxy", "eks-pod-identity-agent"):
        assert graph.waits_for(system, addons[before])
    for after in ("coredns", "aws-ebs-csi-driver"):
        assert graph.waits_for(addons[after], system)


def test_kubeconfig_uses_aws_eks_get_token_and_is_secret(graph):
    assert "kubeconfig" in graph.secret_exports
    kubeconfig = json.loads(graph.exports["kubeconfig"])
    exec_ = kubeconfig["users"][0]["user"]["exec"]
    assert exec_["command"] == "aws"
    assert exec_["args"][:2] == ["eks", "get-token"]
    assert exec_["args"][exec_["args"].index("--cluster-name") + 1] == graph.exports["clusterName"]
    assert "token" not in json.dumps(kubeconfig["users"][0]["user"]).replace("get-token", "")
    assert kubeconfig["clusters"][0]["cluster"]["server"] == graph.exports["clusterEndpoint"]


def test_one_kubernetes_provider_that_waits_for_access_and_system_nodes(graph):
    provider = graph.one(K8S_PROVIDER)
    eks = graph.one(EKS)
    assert "kubeconfig" in provider.secret_inputs
    assert provider.inputs["clusterIdentifier"] == eks.inputs["name"]
    assert json.loads(provider.inputs["kubeconfig"])["current-context"] == eks.inputs["name"]
    for association in graph.of_type(ASSOCIATION):
        assert association.urn in provider.dependencies
    assert graph.waits_for(provider, graph.one("aws:eks/nodeGroup:NodeGroup", "cluster-system-ng"))
    coredns = next(a for a in graph.of_type(ADDON) if a.inputs["addonName"] == "coredns")
    assert graph.waits_for(provider, coredns)


def test_default_kubernetes_and_aws_providers_are_disabled():
    import yaml

    from tests.harness import ROOT_DIR

    project = yaml.safe_load((ROOT_DIR / "Pulumi.yaml").read_text())
    disabled = project["config"]["pulumi:disable-default-providers"]
    assert "kubernetes" in disabled and "aws" in disabled


def test_prod_cluster_has_deletion_protection(prod, dev):
    assert prod.one(EKS).inputs["deletionProtection"] is True
    assert dev.one(EKS).inputs["deletionProtection"] is False


def test_standard_support_only(graph):
    assert graph.one(EKS).inputs["upgradePolicy"] == {"supportType": "STANDARD"}
    assert graph.one(EKS).inputs["version"] in SUPPORTED_KUBERNETES_VERSIONS
