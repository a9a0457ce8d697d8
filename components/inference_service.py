"""One served model: on KServe a stable InferenceService with a fixed identity (and a canary
InferenceService next to it), on Seldon Core one SeldonDeployment (components/seldon.py); the
route to them, the readiness budgets `pulumi up` waits on, and what watches the model:
PodMonitor, alerts, a Grafana dashboard.

How a version change drops no request (README, "Rollouts"; every upstream behaviour relied on is
listed there with its file and line):

- Each track is one InferenceService with a fixed name (`<model>-stable`, `<model>-canary`) and no
  `predictor.name`, so its Deployment, Service and KEDA ScaledObject keep their names across
  versions. A new version patches the Deployment's pod template: Kubernetes rolls it with
  `maxUnavailable: 0`, `maxSurge: 1`, stopping an old pod only once a new one passes its
  readiness probe (Triton's ready endpoint: the model is loaded). KServe's clean-up of "orphaned"
  predictors never fires, and nothing is left behind.
- `pulumi up` waits, per track, on a PodDisruptionBudget selecting the pods of the track's current
  revision: with `minAvailable: floor - 1`, its `DisruptionAllowed` condition turns True once the
  floor of new pods is Ready. The InferenceService's own Ready can't serve: in Standard mode it
  stays True all through a rolling update and its observedGeneration is the Deployment's.
- The VirtualService depends on those budgets, so traffic moves to a new canary only once it is
  Ready; the engine deletes removed resources (a rolled-back or promoted canary) only after every
  update, so no route points at a deleted Service.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import naming
from components.config.serving import ServedModelConfig
from components.gpu_node_groups import GPU_PRESENT_LABEL
from components.k8s import GPU_TOLERATION, POOL_LABEL
from components.monitoring import DASHBOARD_LABEL, NAMESPACE as MONITORING_NAMESPACE
from components.monitoring import PROMETHEUS_URL
from components.naming import CANARY, STABLE
from components.serving_platform import TRITON_RUNTIME
from components.versions import TRITON_IMAGE_TAG, TRITON_IMAGE_UID
from modelrepo.layout import version_uri
from modelrepo.triton import HTTP_PORT, METRICS_ARGS, METRICS_PORT, READY_PATH

ISVC_LABEL = "serving.kserve.io/inferenceservice"
SELDON_LABEL = "seldon-deployment-id"

# Set on each track's Deployment through the InferenceService (kserve v0.20.0
# deployment_reconciler.go createRawDefaultDeployment: a user strategy replaces the default).
ROLLING_UPDATE = {"type": "RollingUpdate",
                  "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
DRAIN_SECONDS = 15
"""A stopping pod keeps serving this long, while the gateways learn it is gone."""
TERMINATION_GRACE_SECONDS = 60
"""Drain, then Triton's own wait for requests in flight (--exit-timeout-secs, 30 s)."""
WAIT_FOR = "pulumi.com/waitFor"
READY_CONDITION = "condition=DisruptionAllowed"
# Fields of a predictor that reach the Deployment's spec or the autoscaler, not its pod template:
# changing them starts no rollout, so they are left out of the revision.
_NOT_IN_POD_TEMPLATE = ("minReplicas", "maxReplicas", "autoScaling", "deploymentStrategy")


@dataclass(frozen=True)
class Track:
    """One InferenceService of a model: the stable version, or a canary next to it."""

    name: str
    version: str
    min_replicas: int
    max_replicas: int
    autoscaler: str
    """keda, hpa, or none (fixed replicas)."""
    percent: int
    """Share of the model's requests the route sends here."""


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
    def tracks(self) -> list[Track]:
        config, canary = self.config, self.config.canary
        with_canary = self.canary_version is not None and canary is not None
        tracks = [Track(STABLE, self.version, config.min_replicas, config.max_replicas,
                        config.autoscaler, 100 - canary.percent if with_canary else 100)]
        if with_canary:
            # Fixed replicas unless the canary may grow; then the model's autoscaler on the
            # canary's own pods (a ScaledObject with triggers of its own).
            autoscaler = config.autoscaler if canary.ceiling > canary.replicas else "none"
            tracks.append(Track(CANARY, self.canary_version, canary.replicas, canary.ceiling,
                                autoscaler, canary.percent))
        return tracks

    def track(self, name: str) -> Track:
        return next(t for t in self.tracks if t.name == name)

    @property
    def pod_labels(self) -> dict[str, str]:
        """Labels every server pod of the model carries, whatever its track or backend (KServe
        copies the InferenceService's labels onto its pods; Seldon's componentSpec carries them,
        components/seldon.py)."""
        return {naming.MODEL_LABEL: self.name}

    @property
    def pods(self) -> str:
        """PromQL matchers for all of this model's server pods."""
        return pod_selector(self.namespace, self.name, pod_pattern(self))


def pod_pattern(plan: ModelPlan, track: str | None = None) -> str:
    """Names of a model's server pods: one track's, every track's, or Seldon's (whose one
    Deployment is named by the operator, components/naming.py)."""
    if plan.backend == "seldon":
        return f"{naming.seldon_pod_prefix(plan.name)}.*"
    if track is not None:
        return f"{naming.pod_prefix(naming.inference_service(plan.name, track))}.*"
    tracks = "|".join(naming.TRACKS)
    return f"{naming.pod_prefix(naming.inference_service(plan.name, f'({tracks})'))}.*"


def pod_selector(namespace: str, model: str, pattern: str) -> str:
    """PromQL label matchers for pods of one model in one namespace."""
    return f'namespace="{namespace}",model="{model}",pod=~"{pattern}"'


def backlog_query(plan: ModelPlan, track: str = STABLE) -> str:
    """Requests waiting in Triton's queues on one track's pods: rises the moment traffic
    outgrows capacity, unlike a request rate averaged over a minute. During a rolling update the
    track's old and new pods share the prefix, so both count."""
    selector = pod_selector(plan.namespace, plan.name, pod_pattern(plan, track))
    return f"sum(nv_inference_pending_request_count{{{selector}}})"


def triton_model_args(plan: ModelPlan) -> list[str]:
    """What Triton is told about the model, on either backend: load this model only (the others
    of a repository are never touched, so one that fails to load can't take this server down),
    latency summaries for the SLO alert and dashboards, and on CPU the model's CPU config."""
    cpu_config = [] if plan.gpu_pool else ["--model-config-name=cpu"]
    return ["--model-control-mode=explicit", f"--load-model={plan.name}", *METRICS_ARGS,
            *cpu_config]


def model_resources(plan: ModelPlan) -> dict[str, Any]:
    """Requests equal to limits (CPU, memory, and the GPUs of a GPU model)."""
    gpus = {"nvidia.com/gpu": str(plan.config.gpus)} if plan.gpu_pool else {}
    amounts = {"cpu": plan.config.cpu, "memory": plan.config.memory, **gpus}
    return {"requests": dict(amounts), "limits": dict(amounts)}


def hpa_behavior(config: ServedModelConfig) -> dict[str, Any]:
    """The scaling windows the docs promise, as HPA behaviour: wait `scaleUpStabilizationSeconds`
    before scaling out again, `cooldownSeconds` before scaling in."""
    return {
        "scaleUp": {"stabilizationWindowSeconds": config.scale_up_stabilization_seconds},
        "scaleDown": {"stabilizationWindowSeconds": config.cooldown_seconds},
    }


def _model_spec(plan: ModelPlan, bucket: str, version: str) -> dict[str, Any]:
    return {
        "modelFormat": {"name": "triton"},
        "protocolVersion": "v2",
        "runtime": TRITON_RUNTIME,
        "runtimeVersion": plan.triton_image_tag,
        "storageUri": plan.storage_uri(bucket, version),
        # A version holds one model (modelrepo/registry.py); explicit mode loads exactly that one.
        "args": triton_model_args(plan),
        # The runtime declares no ports, and KServe builds the predictor Service from the first
        # one: HTTP first, then the metrics port so the PodMonitor can scrape it.
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        # Ready only once the model is loaded (Triton's --strict-readiness, on by default): a
        # rolling update stops an old pod only after a new one answers here.
        "readinessProbe": {"httpGet": {"path": READY_PATH, "port": HTTP_PORT},
                           "periodSeconds": 5, "failureThreshold": 3},
        # A stopping pod is taken out of the Service's endpoints at once, but the ingress
        # gateway learns it from istiod a moment later: keep serving meanwhile.
        "lifecycle": {"preStop": {"sleep": {"seconds": DRAIN_SECONDS}}},
        "resources": model_resources(plan),
    }


def gpu_placement(plan: ModelPlan) -> dict[str, Any]:
    """A GPU model's pods on its pool's nodes, tolerating their taint (nothing for CPU models)."""
    return {"nodeSelector": {GPU_PRESENT_LABEL: "true", POOL_LABEL: plan.gpu_pool},
            "tolerations": [GPU_TOLERATION]} if plan.gpu_pool else {}


def _placement(plan: ModelPlan) -> dict[str, Any]:
    gpu = gpu_placement(plan)
    return {
        "serviceAccountName": plan.service_account,
        **gpu,
        # Triton's own user: runAsNonRoot alone fails at pod start (the image runs as root).
        # KServe's storage-initializer image runs as uid 1000 too, so the model files it writes
        # are Triton's; Istio's containers set their own users.
        "securityContext": {"runAsNonRoot": True, "runAsUser": TRITON_IMAGE_UID,
                            "runAsGroup": TRITON_IMAGE_UID,
                            "seccompProfile": {"type": "RuntimeDefault"}},
    }


def serving_service(plan: ModelPlan, track: str = STABLE) -> str:
    """The Service the gateway sends a track's requests to."""
    if plan.backend == "seldon":
        return naming.seldon_predictor_service(plan.name)
    return naming.predictor(naming.inference_service(plan.name, track))


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


def keda_triggers(plan: ModelPlan, track: str = STABLE) -> list[tuple[str, str]]:
    """(Prometheus query, threshold) pairs KEDA scales a track on, for either backend: Triton's
    backlog on the track's own pods, plus the gateway's demand so a model scaled to zero wakes
    up."""
    triggers = [(backlog_query(plan, track), str(plan.config.target_pending_requests))]
    if plan.track(track).min_replicas == 0:
        triggers.append((demand_query(plan), "1"))
    return triggers


def _autoscaling(plan: ModelPlan, track: Track) -> dict[str, Any]:
    config = plan.config
    if track.autoscaler == "keda":
        metrics = [_external(query, threshold)
                   for query, threshold in keda_triggers(plan, track.name)]
    else:
        metrics = [{"type": "Resource", "resource": {
            "name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": config.target_cpu_utilization},
        }}]
    return {"metrics": metrics, "behavior": hpa_behavior(config)}


def revision(annotations: Mapping[str, str], labels: Mapping[str, str],
             predictor: Mapping[str, Any]) -> str:
    """Digest of what KServe puts into a track's pod template: the InferenceService's labels and
    annotations (copied onto the pods, kserve v0.20.0 predictor.go buildObjectMeta) and the
    predictor's pod-level fields. A new revision is a rolling update; the readiness budget
    selects its pods."""
    pod = {k: v for k, v in predictor.items() if k not in _NOT_IN_POD_TEMPLATE}
    body = json.dumps({"annotations": annotations, "labels": labels, "predictor": pod},
                      sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:12]


def inference_service(plan: ModelPlan, bucket: str, track: str = STABLE) -> dict[str, Any]:
    """One track's InferenceService (serving.kserve.io/v1beta1, KServe v0.20, Standard mode)."""
    spec = plan.track(track)
    predictor: dict[str, Any] = {
        **_placement(plan),
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "minReplicas": spec.min_replicas,
        "deploymentStrategy": ROLLING_UPDATE,
        "model": _model_spec(plan, bucket, spec.version),
    }
    if spec.autoscaler != "none":
        predictor["maxReplicas"] = spec.max_replicas
        predictor["autoScaling"] = _autoscaling(plan, spec)
    annotations = {
        # Compared as a string by KServe's validation: always explicit.
        "serving.kserve.io/deploymentMode": "Standard",
        # none: KServe sets the Deployment's replicas to minReplicas and creates no autoscaler
        # (deployment_reconciler.go createRawDefaultDeployment, hpa_reconciler.go).
        "serving.kserve.io/autoscalerClass": spec.autoscaler,
    }
    labels = {naming.MODEL_LABEL: plan.name, naming.TRACK_LABEL: track,
              naming.VERSION_LABEL: spec.version}
    labels[naming.REVISION_LABEL] = revision(annotations, labels, predictor)
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": naming.inference_service(plan.name, track),
                     "namespace": plan.namespace, "labels": labels, "annotations": annotations},
        "spec": {"predictor": predictor},
    }


def readiness_budget(plan: ModelPlan, service: Mapping[str, Any]) -> dict[str, Any] | None:
    """The PodDisruptionBudget of one track's current revision, which `pulumi up` waits on.

    `minAvailable: floor - 1` makes `DisruptionAllowed` True exactly when at least `floor` pods of
    the revision are Ready (kubernetes pkg/controller/disruption/disruption.go: with an integer
    minAvailable, disruptionsAllowed = currentHealthy - minAvailable, and the condition is True
    when that is > 0), and as a budget it lets a node drain take one replica below the floor at
    a time. None for a track with no floor (scale to zero), which has nothing to wait for.

    `service` is the track's InferenceService, or on Seldon its SeldonDeployment, whose pods
    carry the same labels (components/seldon.py).
    """
    labels = service["metadata"]["labels"]
    track = labels[naming.TRACK_LABEL]
    floor = plan.track(track).min_replicas
    if floor < 1:
        return None
    selector = {k: labels[k] for k in (naming.MODEL_LABEL, naming.TRACK_LABEL,
                                       naming.REVISION_LABEL)}
    return {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": naming.seldon_budget(plan.name, track) if plan.backend == "seldon"
                     else service["metadata"]["name"], "namespace": plan.namespace,
                     "labels": labels,
                     # The status is current when observedGeneration reaches the generation,
                     # which the provider checks before the condition (README, "Rollouts").
                     "annotations": {WAIT_FOR: READY_CONDITION}},
        "spec": {"minAvailable": floor - 1, "selector": {"matchLabels": selector}},
    }


def virtual_service(plan: ModelPlan, gateway: str) -> dict[str, Any]:
    """The model's route at the ingress gateway: every track's Service by its share of the
    requests (the stable one alone, or split with the canary)."""
    routes = [{"destination": {
        "host": f"{serving_service(plan, t.name)}.{plan.namespace}.svc.cluster.local",
        "port": {"number": 80}}, "weight": t.percent} for t in plan.tracks]
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
            f'pod=~"{pod_pattern(plan)}",phase="Pending"}}) > 0'),
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
                f'exported_pod=~"{pod_pattern(plan)}"')
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


def custom_resource(scope: pulumi.Resource, name: str, manifest: Mapping[str, Any],
                    depends_on: Sequence[pulumi.Resource],
                    spec: pulumi.Input[dict[str, Any]] | None = None,
                    metadata: pulumi.Input[dict[str, Any]] | None = None,
                    ) -> k8s.apiextensions.CustomResource:
    return k8s.apiextensions.CustomResource(
        name, api_version=manifest["apiVersion"], kind=manifest["kind"],
        metadata=manifest["metadata"] if metadata is None else metadata,
        spec=manifest["spec"] if spec is None else spec,
        opts=pulumi.ResourceOptions(parent=scope, depends_on=list(depends_on)))


def watch_model(scope: pulumi.Resource, name: str, plan: ModelPlan,
                depends_on: Sequence[pulumi.Resource],
                monitoring: pulumi.Resource | None) -> None:
    """Scraping, alerts and dashboard of one model, whatever serves it.

    The monitoring objects need the monitoring stack's CRDs and namespace: without it, nothing
    is created here.
    """
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
    gateway: str | None = None
    """namespace/name of the Istio Gateway the model's route binds to; None: no route."""
    server: Callable[[ModelPlan, str, str], dict[str, Any]] = inference_service
    """(plan, bucket, track) -> the track's server resource: KServe's InferenceService, or
    Seldon's SeldonDeployment."""
    route: Callable[[ModelPlan, str], dict[str, Any]] = virtual_service
    """(plan, gateway) -> the model's VirtualService."""
    route_waits_for_ready: bool = True
    """The route changes with the tracks (KServe's canary): it waits for every budget. Seldon's
    route never changes, and must exist while no replica is Ready (scale to zero): it waits for
    nothing but the server resource."""


class InferenceService(pulumi.ComponentResource):
    """One served model: its server resources, its route, and everything that watches it."""

    def __init__(self, name: str, args: InferenceServiceArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:inference_service:InferenceService", name, None, opts)
        plan = args.plan
        bucket = pulumi.Output.from_input(args.bucket)
        self._serve_tracks(name, args, bucket)
        watch_model(self, name, plan, args.depends_on, args.monitoring)
        self.register_outputs({"name": plan.name, "version": plan.version,
                               "canaryVersion": plan.canary_version})

    def _serve_tracks(self, name: str, args: InferenceServiceArgs,
                      bucket: pulumi.Output[str]) -> None:
        """One server resource per track, each with the budget `pulumi up` waits on, then the
        route, which (KServe) moves traffic only once every budget is satisfied."""
        plan = args.plan
        timeout = f"{plan.config.ready_timeout_minutes}m"
        servers: list[pulumi.Resource] = []
        budgets: list[pulumi.Resource] = []
        for track in plan.tracks:
            # The bucket name is only known at deploy time: it goes into the storage URIs, and
            # so into the revision label.
            manifest = bucket.apply(lambda b, t=track.name: args.server(plan, b, t))
            template = args.server(plan, "BUCKET", track.name)
            metadata = {**template["metadata"],
                        "labels": manifest.apply(lambda m: m["metadata"]["labels"])}
            # The SeldonDeployment keeps the resource name earlier releases gave it, so an
            # upgrade updates it in place (a new name would create `<model>` again).
            resource_name = (f"{name}-{track.name}" if template["kind"] == "InferenceService"
                             else f"{name}-{template['kind'].lower()}")
            server = custom_resource(self, resource_name, template, args.depends_on,
                                     spec=manifest.apply(lambda m: m["spec"]),
                                     metadata=metadata)
            servers.append(server)
            budget = readiness_budget(plan, template)
            if budget is None:
                continue
            live = manifest.apply(lambda m: readiness_budget(plan, m))
            budgets.append(k8s.policy.v1.PodDisruptionBudget(
                f"{name}-{track.name}-budget",
                metadata={**budget["metadata"],
                          "labels": live.apply(lambda b: b["metadata"]["labels"])},
                spec=live.apply(lambda b: b["spec"]),
                opts=pulumi.ResourceOptions(
                    parent=self, depends_on=[server],
                    custom_timeouts=pulumi.CustomTimeouts(create=timeout, update=timeout))))
        if args.gateway is not None:
            after = [*servers, *budgets] if args.route_waits_for_ready else servers
            custom_resource(self, f"{name}-route", args.route(plan, args.gateway),
                            [*args.depends_on, *after])
