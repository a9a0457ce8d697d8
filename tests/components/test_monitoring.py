"""components/monitoring.py and components/storage.py."""

from __future__ import annotations

import json

import pytest

from components.config.errors import ConfigError
from tests.components.test_k8s import releases
from tests.harness import encode_config_value, evaluate, set_path, stack_config


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


# ---- alerts that reach someone -------------------------------------------------------------------

WEBHOOK_URL = "https://hooks.slack.example/services/T000/B000/not-a-real-token"


def alert_label_sets(graph) -> list[dict[str, str]]:
    """The label sets the model alerts fire with: each rule's labels plus its alertname (the
    expressions aggregate with sum/max, so no series label survives)."""
    found = []
    for rule in graph.of_type("kubernetes:monitoring.coreos.com/v1:PrometheusRule"):
        if rule.name == "node-health-alerts":  # not a model's (components/node_health.py)
            continue
        for group in rule.inputs["spec"]["groups"]:
            for alert in group["rules"]:
                found.append({"alertname": alert["alert"], **alert["labels"]})
    assert found and all({"severity", "model"} <= set(labels) for labels in found)
    return found


OTHER_ALERTS = [
    # (labels, receiver): the chart's always-firing Watchdog and info hints go nowhere; a
    # platform problem reaches the on-call like a model's.
    ({"alertname": "Watchdog", "severity": "none"}, "null"),
    ({"alertname": "InfoInhibitor", "severity": "none"}, "null"),
    ({"alertname": "CPUThrottlingHigh", "severity": "info", "namespace": "models"}, "null"),
    ({"alertname": "KubePodCrashLooping", "severity": "warning", "namespace": "istio-system"},
     "mlserve"),
    ({"alertname": "ModelErrorRateHigh", "severity": "info", "model": "cifar10"}, "null"),
    # GPU node health (components/node_health.py) pages like the rest.
    ({"alertname": "GpuXidErrorFatal", "severity": "critical", "component": "gpu-node",
      "Hostname": "ip-10-0-1-1"}, "mlserve"),
    ({"alertname": "GpuNodeNotReady", "severity": "critical", "component": "gpu-node",
      "node": "ip-10-0-1-1"}, "mlserve"),
    ({"alertname": "GpuXidError", "severity": "warning", "component": "gpu-node"}, "mlserve"),
]


def test_prod_routes_every_model_alert_to_its_receiver(prod):
    from tests.alertmanager import receivers, rendered_config

    config = rendered_config(kps(prod))
    for labels in alert_label_sets(prod):
        assert receivers(config, labels) == ["mlserve"], labels
    for labels, receiver in OTHER_ALERTS:
        assert receivers(config, labels) == [receiver], labels
    (target,) = [r for r in config["receivers"] if r["name"] == "mlserve"]
    topic = prod.exports["alertTopicArn"]
    assert target["sns_configs"] == [{"topic_arn": topic, "sigv4": {"region": "us-west-2"},
                                      "send_resolved": True,
                                      "subject": "[{{ .Status | toUpper }}] "
                                                 "{{ .CommonLabels.alertname }}"}]
    # The chart's inhibit rules and templates survive the merge.
    assert config["inhibit_rules"] and config["templates"]


def test_alerts_reach_sns_through_irsa_only(prod):
    values = kps(prod)["alertmanager"]
    role_arn = values["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"]
    role = prod.one("aws:iam/role:Role", "monitoring-alertmanager-role")
    assert role_arn == role.wire_outputs["arn"]
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Condition"]
    assert "system:serviceaccount:monitoring:kps-alertmanager" in trust["StringEquals"].values()
    policy = json.loads(prod.one("aws:iam/rolePolicy:RolePolicy",
                                 "monitoring-alertmanager-policy").inputs["policy"])
    assert policy["Statement"] == [{"Sid": "PublishAlerts", "Effect": "Allow",
                                    "Action": "sns:Publish",
                                    "Resource": prod.exports["alertTopicArn"]}]
    topic = prod.one("aws:sns/topic:Topic")
    assert topic.inputs["kmsMasterKeyId"] == "alias/aws/sns"


def test_without_receivers_alerts_stay_silent_outside_prod(dev):
    from tests.alertmanager import receivers, rendered_config

    config = rendered_config(kps(dev))
    assert config["route"]["receiver"] == "null"
    assert {receiver for labels in alert_label_sets(dev)
            for receiver in receivers(config, labels)} == {"null"}


@pytest.mark.parametrize("kind", ["slack", "webhook"])
def test_a_webhook_url_travels_in_a_secret_not_in_values(kind):
    config = set_path(stack_config("dev"), "platform.monitoring.alerts.webhook", kind)
    config["mlserve:alertWebhookUrl"] = WEBHOOK_URL
    graph = evaluate("dev", config=config, secret_keys=["mlserve:alertWebhookUrl"])
    assert graph.error is None, graph.error
    values = kps(graph)
    assert WEBHOOK_URL not in json.dumps(values)
    (secret,) = [s for s in graph.of_type("kubernetes:core/v1:Secret")
                 if s.inputs["metadata"]["name"] == "alertmanager-receivers"]
    assert secret.inputs["stringData"] == {"url": WEBHOOK_URL}
    assert "stringData" in secret.secret_inputs
    assert graph.waits_for(releases(graph)["kps"], secret)
    assert values["alertmanager"]["alertmanagerSpec"]["secrets"] == ["alertmanager-receivers"]
    (target,) = [r for r in values["alertmanager"]["config"]["receivers"]
                 if r["name"] == "mlserve"]
    mounted = "/etc/alertmanager/secrets/alertmanager-receivers/url"
    if kind == "slack":
        assert target["slack_configs"] == [{"api_url_file": mounted, "send_resolved": True}]
    else:
        assert target["webhook_configs"] == [{"url_file": mounted, "send_resolved": True}]


def test_amtool_agrees_with_the_routing_the_tests_rely_on(prod, tmp_path):
    """Alertmanager's own CLI evaluates the rendered route tree: it must send every alert where
    the port in tests/alertmanager.py says."""
    from tests.alertmanager import AMTOOL, amtool_receivers, receivers, rendered_config

    if not AMTOOL.exists():
        pytest.skip("amtool is not unpacked under build/ (make test fetches Debian's "
                    "prometheus-alertmanager; needs apt)")
    config = rendered_config(kps(prod))
    cases = [*alert_label_sets(prod), *(labels for labels, _ in OTHER_ALERTS)]
    for labels in cases:
        assert amtool_receivers(config, labels, tmp_path) == receivers(config, labels), labels


def test_the_routing_port_follows_alertmanagers_semantics():
    """First matching child wins unless it continues; no matching child: the parent; a missing
    label matches as ""; regexes are anchored."""
    from tests.alertmanager import Matcher, receivers

    config = {"route": {"receiver": "root", "routes": [
        {"receiver": "a", "matchers": ['team = "ml"'], "continue": True},
        {"receiver": "b", "matchers": ["team =~ m.*"]},
        {"receiver": "c", "matchers": ['team = "ml"']},
        {"receiver": "d", "matchers": ['missing = ""'], "routes": [
            {"receiver": "e", "matchers": ['x != "1"']}]},
    ]}}
    assert receivers(config, {"team": "ml"}) == ["a", "b"]
    assert receivers(config, {"team": "xml"}) == ["e"]
    assert receivers(config, {"team": "xml", "x": "1"}) == ["d"]
    assert receivers(config, {"team": "xml", "missing": "y"}) == ["root"]
    assert Matcher.parse('severity =~ "warning|info"').matches({"severity": "info"})
    assert not Matcher.parse("severity =~ warn").matches({"severity": "warning"})
