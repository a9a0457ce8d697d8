"""components/node_health.py: the EKS node monitoring agent on every node (GPU nodes included),
auto-repair on both engines, and alerts on GPU faults and GPU nodes that are not Ready —
evaluated by Prometheus's own `promtool test rules` on synthetic series."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess

import jsonschema
import pytest
import yaml

from components.k8s import GPU_TOLERATION
from components.node_health import ADDON, FATAL_XIDS, alert_rules, prometheus_rule
from components.versions import EKS_ADDON_VERSIONS
from tests.components.test_k8s import releases
from tests.crd_schema import UPSTREAM
from tests.harness import ROOT_DIR, evaluate, missing_tool, set_path, stack_config

AGENT = UPSTREAM / "eks-node-monitoring-agent-1.7.0"
DCGM_COUNTERS = UPSTREAM / "dcgm-exporter-4.8.2" / "default-counters.csv"
PROMTOOL = ROOT_DIR / "build" / "promtool" / "usr" / "bin" / "promtool"
ADDON_TYPE = "aws:eks/addon:Addon"


def agent(graph):
    return graph.one(ADDON_TYPE, f"node-health-{ADDON}")


def test_agent_is_pinned_and_runs_after_the_system_nodes(graph):
    addon = agent(graph)
    assert addon.inputs["addonName"] == ADDON
    assert addon.inputs["addonVersion"] == EKS_ADDON_VERSIONS["1.35"][ADDON]
    assert graph.waits_for(addon, graph.one("aws:eks/nodeGroup:NodeGroup", "cluster-system-ng"))


def test_agent_configuration_is_valid_for_the_addon_and_reaches_gpu_nodes(graph):
    configuration = json.loads(agent(graph).inputs["configurationValues"])
    schema = json.loads((AGENT / "configuration.schema.json").read_text())
    jsonschema.validate(configuration, schema)
    # The chart's default would keep the DCGM agent off every tainted GPU node.
    defaults = yaml.safe_load((AGENT / "values.yaml").read_text())
    assert defaults["dcgmAgent"]["tolerations"] == []
    assert configuration["dcgmAgent"]["tolerations"] == [GPU_TOLERATION]
    assert {"operator": "Exists"} in defaults["nodeAgent"]["tolerations"]


def test_an_invalid_configuration_is_caught():
    schema = json.loads((AGENT / "configuration.schema.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"dcgmAgent": {"toleration": []}}, schema)


def test_repair_is_on_for_both_engines(dev, prod):
    values = releases(dev)["karpenter"].inputs["values"]
    assert values["settings"]["featureGates"]["nodeRepair"] is True
    gpu = [g for g in prod.of_type("aws:eks/nodeGroup:NodeGroup") if g.name.startswith("gpu-")]
    assert gpu and all(g.inputs["nodeRepairConfig"] == {"enabled": True} for g in gpu)


def test_node_health_switches():
    config = set_path(stack_config("dev"), "gpuCapacity.nodeHealth",
                      {"monitoringAgent": False, "autoRepair": False})
    graph = evaluate("dev", config=config)
    assert graph.error is None, graph.error
    assert not [a for a in graph.of_type(ADDON_TYPE) if a.inputs["addonName"] == ADDON]
    values = releases(graph)["karpenter"].inputs["values"]
    assert values["settings"]["featureGates"]["nodeRepair"] is False
    # The alerts stay: they need only Prometheus.
    assert graph.one("kubernetes:monitoring.coreos.com/v1:PrometheusRule", "node-health-alerts")


def test_alerts_live_with_prometheus_and_wait_for_its_crds(graph):
    rule = graph.one("kubernetes:monitoring.coreos.com/v1:PrometheusRule", "node-health-alerts")
    assert rule.inputs["metadata"]["namespace"] == "monitoring"
    assert graph.waits_for(rule, releases(graph)["kps"])
    alerts = {r["alert"]: r for r in rule.inputs["spec"]["groups"][0]["rules"]}
    assert set(alerts) == set(alert_rules())
    assert all(r["labels"]["severity"] in ("warning", "critical") for r in alerts.values())


def test_every_dcgm_metric_read_is_collected_by_default():
    enabled = {row[0].strip() for row in csv.reader(DCGM_COUNTERS.read_text().splitlines())
               if row and not row[0].startswith("#")}
    for rule in alert_rules().values():
        for metric in set(re.findall(r"\bDCGM_\w+", rule["expr"])):
            assert metric in enabled, metric


# ---- the alerts, evaluated by promtool ----------------------------------------------------------

GPU = 'DCGM_FI_DEV_XID_ERRORS{gpu="0",UUID="GPU-1",modelName="NVIDIA A10G",Hostname="ip-10-0-1-1"}'
GPU2 = 'DCGM_FI_DEV_XID_ERRORS{gpu="0",UUID="GPU-2",modelName="NVIDIA A10G",Hostname="ip-10-0-1-2"}'
READY = 'kube_node_status_condition{{node="{node}",condition="Ready",status="true"}}'
HARDWARE = ('kube_node_status_condition{{node="{node}",condition="AcceleratedHardwareReady",'
            'status="false"}}')
CAPACITY = 'kube_node_status_capacity{{node="{node}",resource="nvidia_com_gpu"}}'
CPU_CAPACITY = 'kube_node_status_capacity{{node="{node}",resource="cpu"}}'


def _labels(alert: str, node: str | None = None, **series: str) -> dict:
    rule = alert_rules()[alert]
    labels = {"severity": rule["severity"], "component": "gpu-node", **series}
    if node is not None:
        labels["node"] = node
    return labels


def _expected(alert: str, node: str | None = None, value: str = "1", **series: str) -> dict:
    """An alert as promtool reports it: its labels and its summary, rendered."""
    labels = _labels(alert, node, **series)
    summary = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)],
                     alert_rules()[alert]["summary"]).replace("{{ $value }}", value)
    return {"exp_labels": labels, "exp_annotations": {"summary": summary}}


def promtool_tests() -> dict:
    gpu_labels = {"gpu": "0", "UUID": "GPU-1", "modelName": "NVIDIA A10G",
                  "Hostname": "ip-10-0-1-1"}
    gpu2_labels = {**gpu_labels, "UUID": "GPU-2", "Hostname": "ip-10-0-1-2"}
    return {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [
            # GPU-1: Xid 79 (fell off the bus) at minute 2; GPU-2: Xid 13 (an application's
            # graphics exception) at minute 2.
            {"series": GPU, "values": "0 0 79 79 79 79 79 79 79 79"},
            {"series": GPU2, "values": "0 0 13 13 13 13 13 13 13 13"},
            # gpu-a stops being Ready at minute 1; cpu-a (no GPU) too; gpu-b stays Ready
            # but its hardware goes bad at minute 1.
            {"series": READY.format(node="gpu-a"), "values": "1 0 0 0 0 0 0 0 0 0"},
            {"series": CAPACITY.format(node="gpu-a"), "values": "1x10"},
            {"series": READY.format(node="cpu-a"), "values": "1 0 0 0 0 0 0 0 0 0"},
            {"series": CPU_CAPACITY.format(node="cpu-a"), "values": "4x10"},
            {"series": READY.format(node="gpu-b"), "values": "1x10"},
            {"series": CAPACITY.format(node="gpu-b"), "values": "1x10"},
            {"series": HARDWARE.format(node="gpu-b"), "values": "0 1 1 1 1 1 1 1 1 1"},
        ],
        "alert_rule_test": [
            {"eval_time": "1m", "alertname": "GpuXidError", "exp_alerts": []},
            {"eval_time": "3m", "alertname": "GpuXidErrorFatal",
             "exp_alerts": [_expected("GpuXidErrorFatal", value="79", **gpu_labels)]},
            {"eval_time": "3m", "alertname": "GpuXidError", "exp_alerts": [
                _expected("GpuXidError", value="79", **gpu_labels),
                _expected("GpuXidError", value="13", **gpu2_labels)]},
            # Not yet for 5 minutes.
            {"eval_time": "4m", "alertname": "GpuNodeNotReady", "exp_alerts": []},
            {"eval_time": "7m", "alertname": "GpuNodeNotReady",
             "exp_alerts": [_expected("GpuNodeNotReady", "gpu-a")]},
            {"eval_time": "7m", "alertname": "GpuNodeHardwareNotReady",
             "exp_alerts": [_expected("GpuNodeHardwareNotReady", "gpu-b")]},
        ],
    }]}


def _promtool_rule_file(tmp_path):
    rules = tmp_path / "rules.yaml"
    # The PrometheusRule's groups are a Prometheus rule file as the operator writes it.
    rules.write_text(yaml.safe_dump({"groups": prometheus_rule("monitoring")["spec"]["groups"]}))
    return rules


@pytest.fixture
def promtool():
    if not PROMTOOL.exists() and not shutil.which("promtool"):
        missing_tool("promtool not installed (make test unpacks Debian's prometheus package)")
    return str(PROMTOOL if PROMTOOL.exists() else shutil.which("promtool"))


def test_rules_pass_promtools_own_check(promtool, tmp_path):
    rules = _promtool_rule_file(tmp_path)
    result = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_fire_on_gpu_faults_and_only_on_gpu_nodes(promtool, tmp_path):
    _promtool_rule_file(tmp_path)
    tests = tmp_path / "tests.yaml"
    tests.write_text(yaml.safe_dump(promtool_tests()))
    result = subprocess.run([promtool, "test", "rules", str(tests)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_expectation_fails_promtool(promtool, tmp_path):
    """Not vacuous: a CPU node's NotReady expected as a GPU alert makes promtool fail."""
    _promtool_rule_file(tmp_path)
    spec = promtool_tests()
    spec["tests"][0]["alert_rule_test"] = [
        {"eval_time": "7m", "alertname": "GpuNodeNotReady", "exp_alerts": [
            _expected("GpuNodeNotReady", "gpu-a"), _expected("GpuNodeNotReady", "cpu-a")]}]
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(spec))
    result = subprocess.run([promtool, "test", "rules", "tests.yaml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0


def test_fatal_xids_are_a_subset_of_what_pages():
    assert 79 in FATAL_XIDS and 13 not in FATAL_XIDS


def test_karpenter_metrics_are_scraped_where_it_runs(dev, prod):
    (monitor,) = [r for r in dev.of_type("kubernetes:monitoring.coreos.com/v1:ServiceMonitor")
                  if r.name == "node-health-karpenter-metrics"]
    spec = monitor.inputs["spec"]
    assert spec["namespaceSelector"] == {"matchNames": ["kube-system"]}
    assert spec["endpoints"] == [{"port": "http-metrics", "path": "/metrics"}]
    assert dev.waits_for(monitor, releases(dev)["karpenter"])
    assert not [r for r in prod.resources if r.name == "node-health-karpenter-metrics"]
