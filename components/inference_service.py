"""One served model on KServe: the InferenceService (Triton on GPUs, KEDA on Triton's backlog,
optional canary) and what watches it: PodMonitor, alerts, a Grafana dashboard, a disruption budget.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.config import ServedModelConfig
from components.gpu_node_groups import GPU_PRESENT_LABEL
from components.k8s import GPU_TOLERATION, POOL_LABEL
from components.monitoring import DASHBOARD_LABEL, NAMESPACE as MONITORING_NAMESPACE
from components.monitoring import PROMETHEUS_URL
from components.serving_platform import TRITON_RUNTIME
from components.versions import TRITON_IMAGE_TAG
from tools.models.triton import HTTP_PORT, METRICS_ARGS, METRICS_PORT, READY_PATH
from tools.registry import version_uri

ISVC_LABEL = "serving.kserve.io/inferenceservice"
SELDON_LABEL = "seldon-deployment-id"
SELDON_PREDICTOR = "default"


def predictor_name(version: str) -> str:
    """KServe names the Deployment {isvc}-{predictor.name}-predictor: one per content hash, so a
    canary and its promotion reuse the same Deployment (no restart)."""
    return f"v-{version[:10]}"


def deployment_name(model: str, version: str) -> str:
    return f"{model}-{predictor_name(version)}-predictor"


def pod_pattern(model: str, version: str | None = None, backend: str = "kserve") -> str:
    """Names of one model's server pods: KServe's per-version Deployments, or Seldon's."""
    if backend == "seldon":
        return f"{model}-{SELDON_PREDICTOR}-0-.*"
    return f"{deployment_name(model, version)}-.*" if version else f"{model}-v-.*-predictor-.*"


def pod_selector(namespace: str, model: str, version: str | None = None,
                 backend: str = "kserve") -> str:
    """PromQL label matchers for one model's pods (all versions, or one)."""
    return (f'namespace="{namespace}",model="{model}",'
            f'pod=~"{pod_pattern(model, version, backend)}"')


def backlog_query(namespace: str, model: str, version: str, backend: str = "kserve") -> str:
    """Requests waiting in Triton's queues on the stable version's pods: rises the moment
    traffic outgrows capacity, unlike a request rate averaged over a minute."""
    selector = pod_selector(namespace, model, version, backend)
    return f"sum(nv_inference_pending_request_count{{{selector}}})"


@dataclass(frozen=True)
class ModelPlan:
    """Everything about one served model that is decided before registering resources."""

    name: str
    namespace: str
    service_account: str
    storage_prefix: str
    """The key prefix of model versions in the bucket (modelRepository.prefix)."""
    version: str
    config: ServedModelConfig
    gpu_pool: str | None
    """None: the model runs on CPU (gpus 0) with its configs/cpu.pbtxt."""
    canary_version: str | None = None
    example_request: dict[str, Any] = field(default_factory=dict)
    """A small valid V2 request body for this model (for the curl in the stack outputs)."""
    backend: str = "kserve"
    triton_image_tag: str = TRITON_IMAGE_TAG
    ingress_host: str = ""
    """The Host this model answers on at the ingress gateway (KServe backend)."""

    def storage_uri(self, bucket: str, version: str) -> str:
        return version_uri(bucket, self.storage_prefix, version)

    @property
    def pod_labels(self) -> dict[str, str]:
        return {SELDON_LABEL if self.backend == "seldon" else ISVC_LABEL: self.name}

    @property
    def pods(self) -> str:
        """PromQL matchers for all of this model's server pods."""
        return pod_selector(self.namespace, self.name, backend=self.backend)


def _model_spec(plan: ModelPlan, bucket: str, version: str) -> dict[str, Any]:
    gpus = {"nvidia.com/gpu": str(plan.config.gpus)} if plan.gpu_pool else {}
    cpu_config = [] if plan.gpu_pool else ["--model-config-name=cpu"]
    return {
        "modelFormat": {"name": "triton"},
        "protocolVersion": "v2",
        "runtime": TRITON_RUNTIME,
        "runtimeVersion": plan.triton_image_tag,
        "storageUri": plan.storage_uri(bucket, version),
        # A version holds one model (tools/registry.py); explicit mode loads exactly that one.
        "args": ["--model-control-mode=explicit", f"--load-model={plan.name}", *METRICS_ARGS,
                 *cpu_config],
        # The runtime declares no ports, and KServe builds the predictor Service from the first
        # one: HTTP first, then the metrics port so the PodMonitor can scrape it.
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": READY_PATH, "port": HTTP_PORT},
                           "periodSeconds": 5, "failureThreshold": 3},
        "resources": {
            "requests": {"cpu": plan.config.cpu, "memory": plan.config.memory, **gpus},
            "limits": {"cpu": plan.config.cpu, "memory": plan.config.memory, **gpus},
        },
    }


def _placement(plan: ModelPlan) -> dict[str, Any]:
    gpu = {"nodeSelector": {GPU_PRESENT_LABEL: "true", POOL_LABEL: plan.gpu_pool},
           "tolerations": [GPU_TOLERATION]} if plan.gpu_pool else {}
    return {
        "serviceAccountName": plan.service_account,
        **gpu,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    }


def serving_service(plan: ModelPlan) -> str:
    """The Service the gateway sends the model's requests to."""
    if plan.backend == "seldon":
        return f"{plan.name}-{SELDON_PREDICTOR}"
    return deployment_name(plan.name, plan.version)


def demand_query(plan: ModelPlan) -> str:
    """1 while the gateway sees requests for the model, else 0: exists with zero replicas (Triton's
    own metrics don't), so KEDA can wake a model scaled to zero. Capped at 1 so it never asks
    for more than one replica; the backlog decides beyond that."""
    return (f"clamp_max(sum(rate(istio_requests_total{{reporter=\"source\","
            f"destination_service_namespace=\"{plan.namespace}\","
            f"destination_service_name=\"{serving_service(plan)}\"}}[2m])), 1)")


def _external(query: str, target: str) -> dict[str, Any]:
    return {"type": "External", "external": {
        "metric": {"backend": "prometheus", "serverAddress": PROMETHEUS_URL, "query": query},
        # KServe passes only the value on; KEDA's Prometheus scaler treats it as a target
        # per replica (AverageValue).
        "target": {"type": "Value", "value": target},
    }}


def keda_triggers(plan: ModelPlan) -> list[tuple[str, str]]:
    """(Prometheus query, threshold) pairs KEDA scales on, for either backend: Triton's backlog,
    plus the gateway's demand so a model scaled to zero wakes up."""
    triggers = [(backlog_query(plan.namespace, plan.name, plan.version, plan.backend),
                 str(plan.config.target_pending_requests))]
    if plan.config.min_replicas == 0:
        triggers.append((demand_query(plan), "1"))
    return triggers


def _autoscaling(plan: ModelPlan) -> dict[str, Any]:
    config = plan.config
    if config.autoscaler == "keda":
        metrics = [_external(query, threshold) for query, threshold in keda_triggers(plan)]
    else:
        metrics = [{"type": "Resource", "resource": {
            "name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": config.target_cpu_utilization},
        }}]
    return {
        "metrics": metrics,
        "behavior": {
            "scaleUp": {"stabilizationWindowSeconds": config.scale_up_stabilization_seconds},
            "scaleDown": {"stabilizationWindowSeconds": config.cooldown_seconds},
        },
    }


def inference_service(plan: ModelPlan, bucket: str) -> dict[str, Any]:
    """The InferenceService manifest (serving.kserve.io/v1beta1, KServe v0.20)."""
    config = plan.config
    predictor = {
        "name": predictor_name(plan.version),
        **_placement(plan),
        "minReplicas": config.min_replicas,
        "maxReplicas": config.max_replicas,
        "autoScaling": _autoscaling(plan),
        "model": _model_spec(plan, bucket, plan.version),
    }
    spec: dict[str, Any] = {"predictor": predictor}
    if plan.canary_version is not None and config.canary is not None:
        # Standard-mode canary (v0.20): fixed replicas, no autoscaling. Promote by making its
        # version the main one (same predictor name: KServe keeps the Deployment); roll back by
        # removing it.
        spec["canary"] = [{
            "predictor": {
                "name": predictor_name(plan.canary_version),
                **_placement(plan),
                "minReplicas": config.canary.replicas,
                "model": _model_spec(plan, bucket, plan.canary_version),
            },
            "trafficPercent": config.canary.percent,
        }]
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": plan.name,
            "namespace": plan.namespace,
            "annotations": {
                # Compared as a string by KServe's validation: always explicit.
                "serving.kserve.io/deploymentMode": "Standard",
                "serving.kserve.io/autoscalerClass": config.autoscaler,
            },
        },
        "spec": spec,
    }


def virtual_service(plan: ModelPlan, gateway: str) -> dict[str, Any]:
    """The model's route at the ingress gateway: all traffic to the stable version, or split by
    weight with the canary (KServe v0.20's Standard mode sizes canary replicas but doesn't split
    traffic itself)."""
    def destination(version: str, weight: int) -> dict[str, Any]:
        service = deployment_name(plan.name, version)
        return {"destination": {"host": f"{service}.{plan.namespace}.svc.cluster.local",
                                "port": {"number": 80}}, "weight": weight}

    canary = plan.config.canary
    if plan.canary_version is not None and canary is not None:
        routes = [destination(plan.version, 100 - canary.percent),
                  destination(plan.canary_version, canary.percent)]
    else:
        routes = [destination(plan.version, 100)]
    return {
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": plan.name, "namespace": plan.namespace},
        "spec": {"hosts": [plan.ingress_host], "gateways": [gateway],
                 "http": [{"route": routes}]},
    }


def pod_monitor(plan: ModelPlan) -> dict[str, Any]:
    endpoint: dict[str, Any] = {"port": "metrics", "path": "/metrics", "interval": "15s"}
    if plan.backend == "seldon":
        # Seldon replaces the Triton container's ports with its own: keep that container's
        # declared http port as the target, then point the address at Triton's 8002.
        endpoint = {"port": "http", "path": "/metrics", "interval": "15s", "relabelings": [
            {"sourceLabels": ["__meta_kubernetes_pod_container_name"], "regex": plan.name,
             "action": "keep"},
            {"sourceLabels": ["__meta_kubernetes_pod_ip"], "regex": "(.+)",
             "targetLabel": "__address__", "replacement": f"$1:{METRICS_PORT}",
             "action": "replace"},
        ]}
    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
        "metadata": {"name": f"{plan.name}-triton", "namespace": plan.namespace},
        "spec": {"selector": {"matchLabels": plan.pod_labels},
                 "podMetricsEndpoints": [endpoint]},
    }


def metrics_port_permissive(plan: ModelPlan) -> dict[str, Any]:
    """Prometheus isn't in the mesh: plaintext is allowed on the metrics port only."""
    return {
        "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": f"{plan.name}-metrics", "namespace": plan.namespace},
        "spec": {"selector": {"matchLabels": plan.pod_labels},
                 "mtls": {"mode": "STRICT"},
                 "portLevelMtls": {str(METRICS_PORT): {"mode": "PERMISSIVE"}}},
    }


def alert_expressions(plan: ModelPlan) -> dict[str, str]:
    pods = plan.pods
    return {
        "ModelErrorRateHigh": (
            f"sum(rate(nv_inference_request_failure{{{pods}}}[5m])) / "
            f"clamp_min(sum(rate(nv_inference_request_success{{{pods}}}[5m])) + "
            f"sum(rate(nv_inference_request_failure{{{pods}}}[5m])), 1e-9) "
            f"> {plan.config.max_error_rate}"),
        "ModelLatencyP95AboveSLO": (
            f'max(nv_inference_request_summary_us{{{pods},quantile="0.95"}}) / 1000 '
            f"> {plan.config.slo_p95_ms}"),
        "ModelPodsPendingForGPU": (
            f'sum(kube_pod_status_phase{{namespace="{plan.namespace}",'
            f'pod=~"{pod_pattern(plan.name, backend=plan.backend)}",phase="Pending"}}) > 0'),
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


def dashboard_queries(plan: ModelPlan) -> dict[str, str]:
    pods = plan.pods
    gpu_pods = (f'exported_namespace="{plan.namespace}",'
                f'exported_pod=~"{pod_pattern(plan.name, backend=plan.backend)}"')
    return {
        "Requests/s": f"sum(rate(nv_inference_request_success{{{pods}}}[1m]))",
        "Failures/s": f"sum(rate(nv_inference_request_failure{{{pods}}}[1m]))",
        "p50 latency (ms)": f'max(nv_inference_request_summary_us{{{pods},quantile="0.5"}}) / 1000',
        "p95 latency (ms)": f'max(nv_inference_request_summary_us{{{pods},quantile="0.95"}})'
                            " / 1000",
        "p99 latency (ms)": f'max(nv_inference_request_summary_us{{{pods},quantile="0.99"}})'
                            " / 1000",
        "Queue time per request (ms)": (
            f"sum(rate(nv_inference_queue_duration_us{{{pods}}}[1m])) / "
            f"clamp_min(sum(rate(nv_inference_request_success{{{pods}}}[1m])), 1e-9) / 1000"),
        "Pending requests": f"sum(nv_inference_pending_request_count{{{pods}}})",
        "Batch size (inferences per execution)": (
            f"sum(rate(nv_inference_count{{{pods}}}[1m])) / "
            f"clamp_min(sum(rate(nv_inference_exec_count{{{pods}}}[1m])), 1e-9)"),
        "Replicas": f'count(nv_inference_count{{{pods}}})',
        "GPU utilisation (%)": f"avg(DCGM_FI_DEV_GPU_UTIL{{{gpu_pods}}})",
        "GPU memory used (MiB)": f"sum(DCGM_FI_DEV_FB_USED{{{gpu_pods}}})",
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


def disruption_budget(plan: ModelPlan) -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": plan.name, "namespace": plan.namespace},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": plan.pod_labels}}}


def custom_resource(scope: pulumi.Resource, name: str, manifest: dict[str, Any],
                    depends_on: Sequence[pulumi.Resource],
                    spec: pulumi.Input[dict[str, Any]] | None = None,
                    ) -> k8s.apiextensions.CustomResource:
    return k8s.apiextensions.CustomResource(
        name, api_version=manifest["apiVersion"], kind=manifest["kind"],
        metadata=manifest["metadata"], spec=manifest["spec"] if spec is None else spec,
        opts=pulumi.ResourceOptions(parent=scope, depends_on=list(depends_on)))


def watch_model(scope: pulumi.Resource, name: str, plan: ModelPlan,
                depends_on: Sequence[pulumi.Resource],
                monitoring: pulumi.Resource | None) -> None:
    """Scraping, alerts, dashboard and disruption budget of one model, whatever serves it.

    The monitoring objects need the monitoring stack's CRDs and namespace: without it, only the
    disruption budget is created.
    """
    if plan.config.min_replicas >= 2:
        budget = disruption_budget(plan)
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb", metadata=budget["metadata"], spec=budget["spec"],
            opts=pulumi.ResourceOptions(parent=scope, depends_on=list(depends_on)))
    if monitoring is None:
        return
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


@dataclass
class InferenceServiceArgs:
    plan: ModelPlan
    bucket: pulumi.Input[str]
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)
    """The runtime release, the reader role, the uploaded objects, KEDA: all before the model."""
    monitoring: pulumi.Resource | None = None
    manifest: Callable[[ModelPlan, str], dict[str, Any]] = inference_service
    """What serves the model: KServe's InferenceService, or Seldon's SeldonDeployment."""
    gateway: str | None = None
    """namespace/name of the Istio Gateway to route the model's host on (KServe)."""


class InferenceService(pulumi.ComponentResource):
    """One served model: its server resource and everything that watches it."""

    def __init__(self, name: str, args: InferenceServiceArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:inference_service:InferenceService", name, None, opts)
        plan, build = args.plan, args.manifest
        # The bucket name is only known at deploy time: it goes into the spec's storage URIs.
        template = build(plan, "BUCKET")
        spec = pulumi.Output.from_input(args.bucket).apply(
            lambda bucket: build(plan, bucket)["spec"])
        self.server = custom_resource(self, f"{name}-{template['kind'].lower()}", template,
                                      args.depends_on, spec=spec)
        if args.gateway is not None:
            custom_resource(self, f"{name}-route", virtual_service(plan, args.gateway),
                            args.depends_on)
        watch_model(self, name, plan, args.depends_on, args.monitoring)
        self.register_outputs({"name": plan.name, "version": plan.version,
                               "canaryVersion": plan.canary_version})
