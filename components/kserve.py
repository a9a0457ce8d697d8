"""KServe as the serving backend (the default): per track one InferenceService with a fixed
identity, Standard mode, on the serving platform's Triton runtime (components/serving_platform.py),
routed by the stack's VirtualService on the models' Gateway.

How a version change drops no request (docs/architecture.md, "Rollouts"; every upstream behaviour relied on is
listed there with its file and line):

- Each track is one InferenceService with a fixed name (`<model>-stable`, `<model>-canary`) and no
  `predictor.name`, so its Deployment, Service and KEDA ScaledObject keep their names across
  versions. A new version patches the Deployment's pod template: Kubernetes rolls it with
  `maxUnavailable: 0`, `maxSurge: 1`, stopping an old pod only once a new one passes its
  readiness probe (Triton's ready endpoint: the model is loaded). KServe's clean-up of "orphaned"
  predictors never fires, and nothing is left behind.
- `pulumi up` waits, per track, on a readiness budget (components/inference_service.py): the
  InferenceService's own Ready can't serve, as in Standard mode it stays True all through a
  rolling update and its observedGeneration is the Deployment's.
- The VirtualService waits for those budgets, so traffic moves to a new canary only once it is
  Ready.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pulumi

from components import naming
from components.cold_start import held, interceptor_destination, service_host
from components.model_pods import (
    DRAIN_SECONDS,
    TERMINATION_GRACE_SECONDS,
    gpu_placement,
    hpa_behavior,
    loading_protection,
    model_resources,
    revision,
    triton_model_args,
)
from components.monitoring import PROMETHEUS_URL
from components.naming import STABLE
from components.promql import keda_triggers
from components.serving_backend import RuntimeArgs, ServingBackend
from components.serving_platform import MODELS_GATEWAY, TRITON_RUNTIME
from components.versions import TRITON_IMAGE_UID
from modelrepo.triton import HTTP_PORT, METRICS_PORT, READY_PATH

if TYPE_CHECKING:
    from components.model_plan import ModelPlan, Track

ISVC_LABEL = "serving.kserve.io/inferenceservice"
GRPC_PORT = 9000  # KServe's Triton runtime: --grpc-port=9000
PREDICTOR_SERVICE_PORT = 80
"""The port of a predictor's Service in Standard mode (to the container's first port, HTTP)."""

# Set on each track's Deployment through the InferenceService (kserve v0.20.0
# deployment_reconciler.go createRawDefaultDeployment: a user strategy replaces the default).
ROLLING_UPDATE = {"type": "RollingUpdate",
                  "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
# Fields of a predictor that reach the Deployment's spec or the autoscaler, not its pod template:
# changing them starts no rollout, so they are left out of the revision.
_NOT_IN_POD_TEMPLATE = ("minReplicas", "maxReplicas", "autoScaling", "deploymentStrategy")


def model_host(model: str, namespace: str, domain: str) -> str:
    """KServe's default domain template: {name}-{namespace}.{ingress domain}."""
    return f"{model}-{namespace}.{domain}"


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


def _placement(plan: ModelPlan) -> dict[str, Any]:
    return {
        "serviceAccountName": plan.service_account,
        **gpu_placement(plan),
        # Triton's own user: runAsNonRoot alone fails at pod start (the image runs as root).
        # KServe's storage-initializer image runs as uid 1000 too, so the model files it writes
        # are Triton's; Istio's containers set their own users.
        "securityContext": {"runAsNonRoot": True, "runAsUser": TRITON_IMAGE_UID,
                            "runAsGroup": TRITON_IMAGE_UID,
                            "seccompProfile": {"type": "RuntimeDefault"}},
    }


def _external(query: str, target: str) -> dict[str, Any]:
    return {"type": "External", "external": {
        "metric": {"backend": "prometheus", "serverAddress": PROMETHEUS_URL, "query": query},
        # KServe passes only the value on; KEDA's Prometheus scaler treats it as a target
        # per replica (AverageValue).
        "target": {"type": "Value", "value": target},
    }}


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
        # KServe copies them onto the pods (below).
        **loading_protection(plan),
    }
    labels = plan.track_labels(track)
    # KServe copies the InferenceService's labels and annotations onto the pods (kserve v0.20.0
    # predictor.go buildObjectMeta).
    pod_fields = {k: v for k, v in predictor.items() if k not in _NOT_IN_POD_TEMPLATE}
    labels[naming.REVISION_LABEL] = revision(annotations, labels, pod_fields)
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": naming.inference_service(plan.name, track),
                     "namespace": plan.namespace, "labels": labels, "annotations": annotations},
        "spec": {"predictor": predictor},
    }


def client_paths(model: str) -> list[dict[str, dict[str, str]]]:
    """What a client may ask of the model's Triton through the gateway: health, this model's
    metadata and readiness, and inference (V2 HTTP). Triton's repository API (load/unload a
    model), logging and trace settings and shared-memory registration answer on the same port;
    the gateway returns 404 for them (Istio answers a request no route matches with 404), as
    the Seldon route does."""
    return [{"uri": {"prefix": f"/v2/models/{model}/"}},
            {"uri": {"exact": f"/v2/models/{model}"}},
            {"uri": {"exact": "/v2/health/live"}},
            {"uri": {"exact": "/v2/health/ready"}}]


def _destination(plan: ModelPlan, track: Track) -> dict[str, Any]:
    """A track's Service, or, for a track that may be at zero replicas, the KEDA HTTP add-on's
    interceptor, which holds the request until the track is Ready (components/cold_start.py)."""
    if held(plan, track):
        return interceptor_destination(plan, track.name)
    return {"destination": {"host": service_host(plan, track.name),
                            "port": {"number": PREDICTOR_SERVICE_PORT}}}


def virtual_service(plan: ModelPlan, gateway: str) -> dict[str, Any]:
    """The model's route at the ingress gateway: its client paths to every track's Service by
    its share of the requests (the stable one alone, or split with the canary)."""
    routes = [{**_destination(plan, t), "weight": t.percent} for t in plan.tracks]
    return {
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": plan.name, "namespace": plan.namespace},
        "spec": {"hosts": [plan.ingress_host], "gateways": [gateway],
                 "http": [{"name": "model", "match": client_paths(plan.name),
                           "route": routes}]},
    }


class KServe(ServingBackend):
    """Per track an InferenceService named `<model>-<track>`; the stack's route splits the
    model's Host between the tracks' predictor Services."""

    name = "kserve"
    pod_label = ISVC_LABEL
    serving_ports = (HTTP_PORT, GRPC_PORT)
    route_waits_for_ready = True
    http_service_port = PREDICTOR_SERVICE_PORT
    http_container_port = HTTP_PORT
    holds_requests_while_waking = True

    def install_runtime(self, name: str, args: RuntimeArgs,
                        opts: pulumi.ResourceOptions) -> pulumi.Resource:
        # Installed with the serving platform (its Triton ServingRuntime).
        return args.kserve_runtimes

    def server(self, plan: ModelPlan, bucket: str, track: str = STABLE) -> dict[str, Any]:
        return inference_service(plan, bucket, track)

    def server_resource_name(self, name: str, track: str) -> str:
        return f"{name}-{track}"

    def budget_name(self, plan: ModelPlan, track: str) -> str:
        return naming.inference_service(plan.name, track)

    def gateway(self, plan: ModelPlan) -> str:
        return f"{plan.namespace}/{MODELS_GATEWAY}"

    def route(self, plan: ModelPlan, gateway: str) -> dict[str, Any]:
        return virtual_service(plan, gateway)

    def pod_pattern(self, plan: ModelPlan, track: str | None = None) -> str:
        tracks = track if track is not None else f"({'|'.join(naming.TRACKS)})"
        return f"{naming.pod_prefix(naming.inference_service(plan.name, tracks))}.*"

    def service(self, plan: ModelPlan, track: str = STABLE) -> str:
        return naming.predictor(naming.inference_service(plan.name, track))

    def metrics_endpoint(self, plan: ModelPlan) -> dict[str, Any]:
        return {"port": "metrics", "path": "/metrics", "interval": "15s"}

    def client_address(self, plan: ModelPlan, address: str) -> tuple[str, str]:
        # By Host on the models' Gateway (KServe's domain template).
        return address, plan.ingress_host


KSERVE = KServe()
