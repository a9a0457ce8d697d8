"""What watches one served model, whatever serves it: the PodMonitor that scrapes Triton, the
plaintext exception Prometheus needs on the metrics port, the SLO alerts and the Grafana
dashboard (queries in components/promql.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_kubernetes as k8s

from components.cold_start import held
from components.k8s import custom_resource
from components.monitoring import DASHBOARD_LABEL
from components.monitoring import NAMESPACE as MONITORING_NAMESPACE
from components.promql import alert_expressions, dashboard_queries
from modelrepo.triton import METRICS_PORT

if TYPE_CHECKING:
    from components.model_plan import ModelPlan


def pod_monitor(plan: ModelPlan) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
        "metadata": {"name": f"{plan.name}-triton", "namespace": plan.namespace},
        "spec": {"selector": {"matchLabels": plan.pod_labels},
                 "podMetricsEndpoints": [plan.backend.metrics_endpoint(plan)]},
    }


def metrics_port_permissive(plan: ModelPlan) -> dict[str, Any]:
    """Prometheus isn't in the mesh: plaintext is allowed on the metrics port. Where the KEDA
    HTTP add-on's interceptor holds the model's requests while it wakes, also on the HTTP port:
    the interceptor reaches it past its sidecar (components/cold_start.py, "Why the interceptor
    dials the model past its sidecar"). The NetworkPolicy still admits only the gateway, the
    interceptor and Prometheus. One policy per model: Istio applies only the oldest of several
    workload policies that select the same pods."""
    ports = [METRICS_PORT, *([plan.backend.http_container_port] if any(
        held(plan, track) for track in plan.tracks) else [])]
    return {
        "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": f"{plan.name}-metrics", "namespace": plan.namespace},
        "spec": {"selector": {"matchLabels": plan.pod_labels},
                 "mtls": {"mode": "STRICT"},
                 "portLevelMtls": {str(port): {"mode": "PERMISSIVE"} for port in ports}},
    }


def prometheus_rule(plan: ModelPlan) -> dict[str, Any]:
    expressions = alert_expressions(plan)
    summaries = {
        "ModelErrorRateHigh": f"{plan.name}: more than {plan.config.max_error_rate:.2%} of "
                              "requests fail",
        "ModelLatencyP95AboveSLO": f"{plan.name}: p95 latency above {plan.config.slo_p95_ms} ms",
        "ModelPodsPendingForGPU": f"{plan.name}: pods pending (no GPU node has room; check "
                                  "cluster-autoscaler and the pool's maxSize)",
    }
    severities = {"ModelErrorRateHigh": "critical", "ModelLatencyP95AboveSLO": "warning",
                  "ModelPodsPendingForGPU": "warning"}
    durations = {"ModelErrorRateHigh": "5m", "ModelLatencyP95AboveSLO": "10m",
                 "ModelPodsPendingForGPU": "15m"}
    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
        "metadata": {"name": f"{plan.name}-slo", "namespace": plan.namespace},
        "spec": {"groups": [{"name": f"mlserve-{plan.name}", "rules": [
            {"alert": alert, "expr": expr, "for": durations[alert],
             "labels": {"severity": severities[alert], "model": plan.name},
             "annotations": {"summary": summaries[alert]}}
            for alert, expr in expressions.items()]}]},
    }


def dashboard(plan: ModelPlan) -> dict[str, Any]:
    panels = []
    for index, (title, expr) in enumerate(dashboard_queries(plan).items()):
        panels.append({
            "id": index + 1, "type": "timeseries", "title": title,
            "datasource": {"type": "prometheus", "uid": "prometheus"},
            "gridPos": {"h": 8, "w": 8, "x": (index % 3) * 8, "y": (index // 3) * 8},
            "targets": [{"refId": "A", "expr": expr, "legendFormat": title}],
        })
    return {"uid": f"mlserve-{plan.name}", "title": f"Model {plan.name}",
            "tags": ["mlserve", "triton"], "timezone": "utc", "schemaVersion": 39,
            "time": {"from": "now-1h", "to": "now"}, "refresh": "30s", "panels": panels}


def watch_model(scope: pulumi.Resource, name: str, plan: ModelPlan,
                depends_on: Sequence[pulumi.Resource], monitoring: pulumi.Resource) -> None:
    """Scraping, alerts and dashboard of one model, under `scope`. The monitoring objects need
    the monitoring stack's CRDs and namespace (`monitoring`, its release)."""
    custom_resource(scope, f"{name}-pod-monitor", pod_monitor(plan), [*depends_on, monitoring])
    custom_resource(scope, f"{name}-metrics-mtls", metrics_port_permissive(plan), depends_on)
    custom_resource(scope, f"{name}-alerts", prometheus_rule(plan), [*depends_on, monitoring])
    k8s.core.v1.ConfigMap(
        f"{name}-dashboard",
        metadata={"name": f"mlserve-model-{plan.name}", "namespace": MONITORING_NAMESPACE,
                  "labels": {DASHBOARD_LABEL: "1"}},
        data={f"mlserve-{plan.name}.json": json.dumps(dashboard(plan), indent=1,
                                                      sort_keys=True)},
        opts=pulumi.ResourceOptions(parent=scope, depends_on=[monitoring]))
