"""components/cluster_autoscaler.py: discovery, GPU-aware scale-down, least-privilege IRSA."""

from __future__ import annotations

import json

from tests.components.test_k8s import releases
from tests.components.test_load_balancer_controller import irsa_subjects


def values(graph):
    return releases(graph)["cluster-autoscaler"].inputs["values"]


def test_discovers_this_clusters_groups(graph):
    v = values(graph)
    assert v["cloudProvider"] == "aws"
    assert v["awsRegion"] == "us-west-2"
    assert v["autoDiscovery"] == {"clusterName": graph.exports["clusterName"]}


def test_balances_and_scales_down_on_gpu_requests(graph):
    args = values(graph)["extraArgs"]
    assert args["balance-similar-node-groups"] is True
    assert args["expander"] == "least-waste"
    assert 0 < args["scale-down-gpu-utilization-threshold"] <= 1
    assert args["scale-down-unneeded-time"] == "10m"


def test_irsa_trust_and_service_account_match(graph):
    subjects, _ = irsa_subjects(graph, "cluster-autoscaler")
    account = values(graph)["rbac"]["serviceAccount"]
    assert subjects == [f"system:serviceaccount:kube-system:{account['name']}"]
    assert account["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")


def test_can_only_change_this_clusters_groups(graph):
    cluster = graph.exports["clusterName"]
    policy = json.loads(graph.one("aws:iam/rolePolicy:RolePolicy",
                                  "cluster-autoscaler-irsa-policy").inputs["policy"])
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    scale = by_sid["ScaleOwnNodeGroups"]
    assert sorted(scale["Action"]) == ["autoscaling:SetDesiredCapacity",
                                       "autoscaling:TerminateInstanceInAutoScalingGroup"]
    assert scale["Condition"] == {"StringEquals": {
        f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster}": "owned"}}
    assert by_sid["DescribeOwnNodeGroups"]["Resource"] == \
        f"arn:aws:eks:us-west-2:123456789012:nodegroup/{cluster}/*"
    writes = [a for s in policy["Statement"] if s["Sid"] != "ScaleOwnNodeGroups"
              for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
              if not a.split(":")[1].startswith(("Describe", "Get"))]
    assert writes == []
