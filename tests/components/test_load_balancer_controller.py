"""components/load_balancer_controller.py: the controller, its official policy, its IRSA role."""

from __future__ import annotations

import json

from components.load_balancer_controller import POLICY_FILE, controller_policy
from tests.components.test_k8s import releases


def irsa_subjects(graph, component_name):
    role = graph.one("aws:iam/role:Role", f"{component_name}-irsa-role")
    (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    conditions = statement["Condition"]["StringEquals"]
    return [v for k, v in conditions.items() if k.endswith(":sub")], role


def test_values_set_cluster_region_and_vpc_explicitly(graph):
    values = releases(graph)["aws-load-balancer-controller"].inputs["values"]
    assert values["clusterName"] == graph.exports["clusterName"]
    assert values["region"] == "us-west-2"
    assert values["vpcId"] == graph.exports["vpcId"]
    assert values["enableServiceMutatorWebhook"] is False


def test_irsa_role_trusts_exactly_the_controllers_service_account(graph):
    values = releases(graph)["aws-load-balancer-controller"].inputs["values"]
    subjects, role = irsa_subjects(graph, "lb-controller")
    account = values["serviceAccount"]
    assert subjects == [f"system:serviceaccount:kube-system:{account['name']}"]
    assert account["create"] is True
    assert account["annotations"]["eks.amazonaws.com/role-arn"].startswith(
        "arn:aws:iam::123456789012:role/lb-controller-irsa-role")


def test_irsa_role_carries_the_official_policy(graph):
    policy = graph.one("aws:iam/rolePolicy:RolePolicy", "lb-controller-irsa-policy")
    assert json.loads(policy.inputs["policy"]) == json.loads(POLICY_FILE.read_text())


def test_policy_follows_the_partition():
    china = json.loads(controller_policy("aws-cn"))
    resources = [r for s in china["Statement"]
                 for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
                 if r != "*"]
    assert resources and all(r.startswith("arn:aws-cn:") for r in resources)
