"""components/monitoring.py and components/storage.py."""

from __future__ import annotations

import pytest

from components.config import ConfigError
from tests.components.test_k8s import releases
from tests.harness import encode_config_value, evaluate, stack_config


def kps(graph):
    return releases(graph)["kps"].inputs["values"]


def test_predictable_prometheus_address(graph):
    assert kps(graph)["fullnameOverride"] == "kps"
    assert releases(graph)["kps"].inputs["namespace"] == "monitoring"
    assert graph.exports["prometheusUrl"] == \
        "http://kps-prometheus.monitoring.svc.cluster.local:9090"


def test_monitors_and_rules_from_every_namespace(graph):
    spec = kps(graph)["prometheus"]["prometheusSpec"]
    for key in ("podMonitorSelectorNilUsesHelmValues", "serviceMonitorSelectorNilUsesHelmValues",
                "ruleSelectorNilUsesHelmValues"):
        assert spec[key] is False


def test_retention_and_persistent_gp3_storage(graph):
    spec = kps(graph)["prometheus"]["prometheusSpec"]
    assert spec["retention"] == "15d"
    claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
    assert claim["storageClassName"] == "gp3"
    assert claim["resources"]["requests"]["storage"] == "50Gi"


def test_gp3_is_the_encrypted_default_class(graph):
    gp3 = graph.one("kubernetes:storage.k8s.io/v1:StorageClass")
    assert gp3.inputs["metadata"]["annotations"] == {
        "storageclass.kubernetes.io/is-default-class": "true"}
    assert gp3.inputs["provisioner"] == "ebs.csi.aws.com"
    assert gp3.inputs["parameters"]["type"] == "gp3"
    assert gp3.inputs["parameters"]["encrypted"] == "true"
    assert gp3.inputs["volumeBindingMode"] == "WaitForFirstConsumer"
    assert graph.waits_for(releases(graph)["kps"], gp3)


def test_grafana_password_is_a_secret_never_a_value(graph):
    grafana = kps(graph)["grafana"]
    assert "adminPassword" not in grafana
    assert grafana["admin"]["existingSecret"] == "grafana-admin"
    secret = graph.one("kubernetes:core/v1:Secret")
    assert secret.inputs["metadata"]["name"] == "grafana-admin"
    assert "stringData" in secret.secret_inputs
    assert graph.waits_for(releases(graph)["kps"], secret)
    assert "grafanaAdminPassword" in graph.secret_exports
    password = graph.one("random:index/randomPassword:RandomPassword")
    assert password.inputs["length"] >= 32


def test_grafana_password_from_a_secret_config_value():
    config = stack_config("dev")
    config["mlserve:grafanaAdminPassword"] = "s3cret-from-config"
    graph = evaluate("dev", config=config, secret_keys=["mlserve:grafanaAdminPassword"])
    assert graph.error is None, graph.error
    assert graph.of_type("random:index/randomPassword:RandomPassword") == []
    assert graph.exports["grafanaAdminPassword"] == "s3cret-from-config"
    assert "grafanaAdminPassword" in graph.secret_exports


def test_plain_text_grafana_password_is_refused():
    graph = evaluate("dev", {"mlserve:grafanaAdminPassword": encode_config_value("oops")})
    assert isinstance(graph.error, ConfigError)
    assert "mlserve:grafanaAdminPassword: must be set with `pulumi config set --secret`" in \
        graph.error.problems[0]
    assert graph.resources == []


@pytest.mark.parametrize("part", ["kubeControllerManager", "kubeScheduler", "kubeEtcd"])
def test_unreachable_eks_control_plane_targets_are_not_scraped(graph, part):
    assert kps(graph)[part] == {"enabled": False}


def test_dashboards_sidecar_watches_all_namespaces(graph):
    dashboards = kps(graph)["grafana"]["sidecar"]["dashboards"]
    assert dashboards == {"enabled": True, "label": "grafana_dashboard", "labelValue": "1",
                          "searchNamespace": "ALL"}
    assert graph.exports["grafanaPortForward"] == \
        "kubectl -n monitoring port-forward svc/kps-grafana 3000:80"
