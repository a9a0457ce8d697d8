"""Seldon Core v1 as the opt-in serving backend (the original tutorial's): the operator, its Istio
gateway, and per model the SeldonDeployment (Triton, KEDA on Triton's backlog) and the route to it.

Everything here is written for what seldon-core-operator 1.17.1 does with the objects
(docs/architecture.md, "Seldon Core", lists each behaviour with its file and line; tests/components/test_seldon.py and
test_seldon_rollout_contract.py state them as invariants):

- The operator creates its own VirtualService only once a replica is Ready, which a model scaled
  to zero never is: the stack owns the route instead (`istio.enabled: false`), to the predictor
  Service the operator creates at once.
- The predictor runs with `seldon.io/no-engine`: no executor container in front of Triton, so
  no second queue, no 500m CPU ceiling, and no copy of the predictor (kedaSpec included) in the
  pod template; an autoscaling change restarts nothing.
- Triton's arguments are all given: the operator keeps them verbatim, and adds none, once there
  are any.
- The componentSpec is named, so every name the operator derives fits and is never hashed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_kubernetes as k8s

from components import naming
from components.cold_start import held, interceptor_destination
from components.k8s import BASELINE, custom_resource, helm_release, namespace
from components.mesh import GATEWAY_SELECTOR
from components.mesh import NAMESPACE as MESH_NAMESPACE
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
from components.versions import (
    SELDON_INITIALIZER_LIMITS,
    SELDON_INITIALIZER_REQUESTS,
    SELDON_LAST_APACHE_VERSION,
    TRITON_IMAGE,
    TRITON_IMAGE_UID,
)
from modelrepo.triton import METRICS_PORT, READY_PATH

if TYPE_CHECKING:
    from components.model_plan import ModelPlan

NAMESPACE = "seldon-system"
POD_LABEL = "seldon-deployment-id"
"""The operator's label on every pod of a SeldonDeployment."""
GATEWAY = "seldon-gateway"
RCLONE_SECRET = "seldon-rclone-irsa"
NO_ENGINE = "seldon.io/no-engine"

# Triton's ports in a Seldon pod: the chart's predictiveUnit defaults, declared on the container
# so they don't depend on chart values (the operator takes a declared `http`/`grpc` port as the
# unit's endpoint, defaults.go:94-102, then rewrites the container's ports to exactly these two,
# seldondeployment_prepackaged_servers.go:172-183, 245-247).
HTTP_PORT = 9000
GRPC_PORT = 9500
MODEL_REPOSITORY = "/mnt/models"
"""Where the operator's storage initializer puts the model (model_initializer_injector.go:34)."""
TRITON_BINARY = "/opt/tritonserver/bin/tritonserver"
LIVE_PATH = "/v2/health/live"
STARTUP_PERIOD_SECONDS = 10
# The V2 API a client may reach through the route: health, and this model's metadata, readiness
# and inference. Triton's repository API (load/unload, explicit model control), logging, trace
# and shared-memory endpoints stay inside the pod, as they did behind Seldon's executor.
GRPC_METHODS = ("ServerLive", "ServerReady", "ServerMetadata", "ModelReady", "ModelMetadata",
                "ModelInfer", "ModelStreamInfer")
GRPC_SERVICE = "inference.GRPCInferenceService"


def seldon_values() -> dict[str, Any]:
    init_cpu, init_memory = SELDON_INITIALIZER_REQUESTS
    init_cpu_limit, init_memory_limit = SELDON_INITIALIZER_LIMITS
    return {
        # The stack owns each model's route (`seldon_route`): the operator's VirtualService would
        # appear only once a replica is Ready (seldondeployment_controller.go:2128-2135).
        "istio": {"enabled": False},
        # kedaSpec is ignored without it (seldondeployment_controller.go:2103).
        "keda": {"enabled": True},
        # The admission webhook's certificate from cert-manager, renewed before it expires; the
        # chart's own is generated once per render, for 365 days (templates/webhook.yaml:3-4).
        "certManager": {"enabled": True},
        # The chart offers no nodeSelector: the operator has no GPU toleration, so the GPU
        # taint keeps it on the system nodes.
        "manager": {"cpuRequest": "100m", "memoryRequest": "200Mi", "cpuLimit": "500m",
                    "memoryLimit": "300Mi"},
        # Explicit, so the schedulability rules count what the pods get.
        "storageInitializer": {"cpuRequest": f"{init_cpu}m", "memoryRequest": f"{init_memory}Mi",
                               "cpuLimit": f"{init_cpu_limit}m",
                               "memoryLimit": f"{init_memory_limit}Mi"},
    }


def gateway(mesh_namespace: str) -> dict[str, Any]:
    """The Istio Gateway the models' Seldon routes attach to (the chart doesn't create it)."""
    return {
        "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": {"name": GATEWAY, "namespace": mesh_namespace},
        "spec": {"selector": {"istio": GATEWAY_SELECTOR},
                 "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                              "hosts": ["*"]}]},
    }


def rclone_env(region: str) -> dict[str, str]:
    """rclone with env_auth and no keys uses the AWS SDK chain: IRSA's web-identity token.
    The region must be given: rclone otherwise assumes us-east-1."""
    return {"RCLONE_CONFIG_S3_TYPE": "s3", "RCLONE_CONFIG_S3_PROVIDER": "AWS",
            "RCLONE_CONFIG_S3_ENV_AUTH": "true", "RCLONE_CONFIG_S3_REGION": region}


def triton_args(plan: ModelPlan) -> list[str]:
    """Triton's whole command line. The operator keeps a declared container's args verbatim and
    adds its own only when there are none (seldondeployment_prepackaged_servers.go:230-232), so
    everything is here: its own defaults (binary, ports, the initializer's folder,
    prepackaged_servers.go:142-154) without `--strict-model-config=false`, then what the KServe
    path passes too."""
    return [TRITON_BINARY, f"--http-port={HTTP_PORT}", f"--grpc-port={GRPC_PORT}",
            f"--model-repository={MODEL_REPOSITORY}", *triton_model_args(plan)]


def _http_probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": HTTP_PORT}, "periodSeconds": period,
            "failureThreshold": failures}


def triton_container(plan: ModelPlan) -> dict[str, Any]:
    """The Triton container, named after the graph node so the operator fills it in rather than
    adding its own (seldondeployment_prepackaged_servers.go:138-139, 225-247)."""
    load_budget = plan.config.ready_timeout_minutes * 60 // STARTUP_PERIOD_SECONDS
    return {
        "name": plan.name,
        "image": f"{TRITON_IMAGE}:{plan.triton_image_tag}",
        "args": triton_args(plan),
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
                  {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"}],
        # Without probes the operator installs TCP ones (liveness from 60 s on,
        # seldondeployment_controller.go:821-834), and Triton opens its port only once the model
        # has loaded: a model that loads for longer than that is killed before it ever serves.
        # Ready = Triton's ready endpoint; the startup probe gives the load as long as
        # `pulumi up` waits for it.
        "readinessProbe": _http_probe(READY_PATH, 5, 3),
        "livenessProbe": _http_probe(LIVE_PATH, 10, 3),
        "startupProbe": _http_probe(LIVE_PATH, STARTUP_PERIOD_SECONDS, load_budget),
        # Keep serving while the gateway learns the pod is going (the operator would sleep
        # 10 s, seldondeployment_controller.go:837-839). An exec sleep: the operator's
        # Kubernetes 1.24 types have no `sleep` handler, and would drop it.
        "lifecycle": {"preStop": {"exec": {"command": ["/bin/sh", "-c",
                                                       f"sleep {DRAIN_SECONDS}"]}}},
        "securityContext": {"allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}},
        "resources": model_resources(plan),
    }


def pod_security() -> dict[str, Any]:
    """Kept verbatim by the operator (it sets its own default only when there is none,
    seldondeployment_controller.go:1036-1039), for every container of the pod: Triton, and the
    storage initializer, which gets no securityContext of its own (model_initializer_injector.go:
    220-241). fsGroup makes the projected IRSA token and the model folder readable to both."""
    return {"runAsNonRoot": True, "runAsUser": TRITON_IMAGE_UID, "runAsGroup": TRITON_IMAGE_UID,
            "fsGroup": TRITON_IMAGE_UID, "seccompProfile": {"type": "RuntimeDefault"}}


def _kedaspec(plan: ModelPlan) -> dict[str, Any]:
    config = plan.config
    return {
        "pollingInterval": config.polling_seconds,
        # 1 -> 0 after a period of activity (keda v2.20.2
        # pkg/scaling/executor/scale_scaledobjects.go:212-213).
        "cooldownPeriod": config.cooldown_seconds,
        "minReplicaCount": config.min_replicas,
        "maxReplicaCount": config.max_replicas,
        # N -> 1 and scale-out pacing: the HPA's behaviour, which KEDA copies onto the HPA it
        # creates (controllers/keda/hpa.go:79-84, 169); the operator copies `advanced` onto the
        # ScaledObject (seldondeployment_controller.go:169-193).
        "advanced": {"horizontalPodAutoscalerConfig": {"behavior": hpa_behavior(config)}},
        "triggers": [{"type": "prometheus", "metadata": {
            "serverAddress": PROMETHEUS_URL, "query": query, "threshold": threshold}}
            for query, threshold in keda_triggers(plan)],
    }


def _hpaspec(plan: ModelPlan) -> dict[str, Any]:
    config = plan.config
    # No behaviour in 1.17.1's hpaSpec: the config refuses scaling windows other than the HPA's
    # defaults with it (components/config/rules/models.py, `seldon_hpa_has_no_behaviour`).
    return {"minReplicas": max(config.min_replicas, 1), "maxReplicas": config.max_replicas,
            "metricsv2": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": config.target_cpu_utilization}}}]}


AUTOSCALING_KEYS = ("kedaSpec", "hpaSpec", "replicas")
"""Fields of a componentSpec that reach the ScaledObject/HPA or the Deployment's replica count,
never the pod template (seldondeployment_controller.go:514-527, 1028): changing them rolls
nothing, so they stay out of the revision."""


def pod_template_digest(spec: dict[str, Any], labels: dict[str, str]) -> str:
    """The revision of a SeldonDeployment's pods: everything that reaches their template, the
    labels the componentSpec puts on them included, the autoscaling fields excluded."""
    pods = {**spec, "predictors": [
        {**predictor, "componentSpecs": [
            {k: v for k, v in component.items() if k not in AUTOSCALING_KEYS}
            for component in predictor["componentSpecs"]]}
        for predictor in spec["predictors"]]}
    return revision({}, labels, pods)


def seldon_deployment(plan: ModelPlan, bucket: str, track: str = STABLE) -> dict[str, Any]:
    """The model's SeldonDeployment (machinelearning.seldon.io/v1, seldon-core-operator 1.17.1):
    one predictor, one Triton node, no executor."""
    config = plan.config
    labels = plan.track_labels(track)
    pod_spec = {
        **gpu_placement(plan),
        "securityContext": pod_security(),
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "containers": [triton_container(plan)],
    }
    component: dict[str, Any] = {
        # Names the Deployment, ScaledObject and KEDA's HPA (components/naming.py); the labels
        # go onto the pods (seldondeployment_controller.go:1046-1052), where the readiness
        # budget and the PodMonitor select them.
        "metadata": {"name": naming.SELDON_COMPONENT, "labels": labels,
                     # The operator copies the componentSpec's annotations onto the pods
                     # (seldondeployment_controller.go:1029-1034 at v1.17.1).
                     "annotations": loading_protection(plan)},
        "spec": pod_spec,
    }
    if config.autoscaler == "keda":
        component["kedaSpec"] = _kedaspec(plan)
    else:
        component["hpaSpec"] = _hpaspec(plan)
    spec = {
        "protocol": "v2",
        "predictors": [{
            "name": naming.SELDON_PREDICTOR,
            # No executor: one node, so Seldon's graph orchestration has nothing to do
            # (seldondeployment_controller.go:469, 558-579; validation allows it for a
            # single-node graph only, seldondeployment_webhook.go:274-278).
            "annotations": {NO_ENGINE: "true"},
            "graph": {
                "name": plan.name,
                "implementation": "TRITON_SERVER",
                "modelUri": plan.storage_uri(bucket, plan.version),
                "envSecretRefName": RCLONE_SECRET,
                "serviceAccountName": plan.service_account,
            },
            "componentSpecs": [component],
        }],
    }
    component["metadata"]["labels"] = {
        **labels, naming.REVISION_LABEL: pod_template_digest(spec, labels)}
    return {
        "apiVersion": "machinelearning.seldon.io/v1", "kind": "SeldonDeployment",
        "metadata": {"name": plan.name, "namespace": plan.namespace,
                     "labels": dict(component["metadata"]["labels"])},
        "spec": spec,
    }


def client_prefix(plan: ModelPlan) -> str:
    """The path Seldon's clients use for a model: the operator's own route's prefix
    (seldondeployment_controller.go:277), kept for the original tutorial's clients."""
    return f"/seldon/{plan.namespace}/{plan.name}/"


def _http_route(name: str, match: dict[str, str], rewrite: str,
                destination: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "match": [{"uri": match}], "rewrite": {"uri": rewrite},
            "route": [destination]}


def _http_destination(plan: ModelPlan, host: str) -> dict[str, Any]:
    """Triton's HTTP port on the predictor Service, or, for a model that may be at zero
    replicas, the KEDA HTTP add-on's interceptor, which holds the request until the predictor has
    a Ready endpoint (components/cold_start.py). The gateway still rewrites the path: the
    interceptor forwards path and Host as it receives them (kedacore/http-add-on v0.15.0
    interceptor/handler/upstream.go:112-116; its target URL has no path,
    interceptor/middleware/routing.go:118-133)."""
    track = plan.track(STABLE)
    if held(plan, track):
        return interceptor_destination(plan, track.name)
    return {"destination": {"host": host, "port": {"number": HTTP_PORT}}}


def seldon_route(plan: ModelPlan, gateway_ref: str) -> dict[str, Any]:
    """The model's route on Seldon's gateway, owned by the stack: it exists from the first
    `pulumi up`, whether or not a replica is Ready, and targets the predictor Service, which the
    operator creates on its first reconcile (seldondeployment_controller.go:2088). The
    VirtualService has the operator's name for it, so an old one is never shadowed silently.
    HTTP to a model that may be at zero replicas goes through the interceptor; gRPC always goes
    straight to the predictor (`Seldon.grpc_direct_while_held`)."""
    prefix = client_prefix(plan)
    host = f"{naming.seldon_predictor_service(plan.name)}.{plan.namespace}.svc.cluster.local"
    model = f"v2/models/{plan.name}"
    to = _http_destination(plan, host)
    http = [
        # Istio replaces the matched prefix (or the whole path of an exact match) with the
        # rewrite: /seldon/<ns>/<model>/v2/models/<model>/infer -> /v2/models/<model>/infer.
        _http_route("model", {"prefix": f"{prefix}{model}/"}, f"/{model}/", to),
        _http_route("model-metadata", {"exact": f"{prefix}{model}"}, f"/{model}", to),
        _http_route("live", {"exact": f"{prefix}v2/health/live"}, LIVE_PATH, to),
        _http_route("ready", {"exact": f"{prefix}v2/health/ready"}, READY_PATH, to),
        # gRPC as the operator routed it: by the `seldon` and `namespace` headers, straight to
        # the predictor: while no replica is Ready the gateway answers UNAVAILABLE, which gRPC
        # clients treat as retryable, and its request count wakes the model.
        {"name": "grpc",
         "match": [{"uri": {"regex": f"/{GRPC_SERVICE.replace('.', '[.]')}/"
                                     f"({'|'.join(GRPC_METHODS)})"},
                    "headers": {"seldon": {"exact": plan.name},
                                "namespace": {"exact": plan.namespace}}}],
         "route": [{"destination": {"host": host, "port": {"number": GRPC_PORT}}}]},
    ]
    return {
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": plan.name, "namespace": plan.namespace,
                     "labels": {naming.MODEL_LABEL: plan.name}},
        "spec": {"hosts": ["*"], "gateways": [gateway_ref], "http": http},
    }


@dataclass
class SeldonCoreArgs:
    version: str
    mesh_namespace: str
    mesh_crds: pulumi.Resource
    cert_manager: pulumi.Resource
    """Its CRDs (the chart's Issuer and Certificate) and cainjector (the webhook's CA bundle)."""
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)


class SeldonCore(pulumi.ComponentResource):
    def __init__(self, name: str, args: SeldonCoreArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:seldon:SeldonCore", name, None, opts)
        if args.version != SELDON_LAST_APACHE_VERSION:
            pulumi.log.warn(f"seldon-core-operator {args.version}: the SeldonDeployments are "
                            f"written for what {SELDON_LAST_APACHE_VERSION}'s operator does with "
                            "them (docs/architecture.md, \"Seldon Core\"); that is not verified "
                            "for this version", self)
        ns = namespace(self, name, NAMESPACE, pod_security=BASELINE)
        self.gateway_ref = f"{args.mesh_namespace}/{GATEWAY}"
        custom_resource(self, f"{name}-gateway", gateway(args.mesh_namespace), [args.mesh_crds])
        self.release = helm_release(self, name, "seldon-core-operator", name="seldon-core",
                                    namespace=ns.metadata.name, values=seldon_values(),
                                    depends_on=[args.cert_manager, *args.depends_on],
                                    version=args.version)
        self.register_outputs({"release": self.release.status})


class Seldon(ServingBackend):
    """One SeldonDeployment per model (no canary), named `<model>`; the stack's route on
    Seldon's gateway, by the path Seldon's clients use."""

    name = "seldon"
    pod_label = POD_LABEL
    # Triton itself, with no executor in front of it.
    serving_ports = (HTTP_PORT, GRPC_PORT)
    # The route never changes, and must exist while no replica is Ready (scale to zero).
    route_waits_for_ready = False
    # HTTP to a model that may be at zero replicas is held by the interceptor while it wakes;
    # gRPC is not (docs/gpu-capacity.md, "Holding requests while a model wakes"): the
    # interceptor's route forwards to one port of the Service, Triton's HTTP one.
    holds_requests_while_waking = True
    grpc_direct_while_held = True
    http_service_port = HTTP_PORT
    http_container_port = HTTP_PORT

    def install_runtime(self, name: str, args: RuntimeArgs,
                        opts: pulumi.ResourceOptions) -> pulumi.Resource:
        return SeldonCore(
            name,
            SeldonCoreArgs(version=args.settings.seldon.version,
                           mesh_namespace=args.mesh_namespace, mesh_crds=args.mesh_crds,
                           cert_manager=args.cert_manager,
                           depends_on=[*args.depends_on, args.mesh_control_plane]),
            opts,
        ).release

    def server(self, plan: ModelPlan, bucket: str, track: str = STABLE) -> dict[str, Any]:
        return seldon_deployment(plan, bucket, track)

    def server_resource_name(self, name: str, track: str) -> str:
        # The name earlier releases gave it, so an upgrade updates it in place (a new name would
        # create `<model>` again).
        return f"{name}-seldondeployment"

    def budget_name(self, plan: ModelPlan, track: str) -> str:
        return naming.seldon_budget(plan.name, track)

    def gateway(self, plan: ModelPlan) -> str:
        return f"{MESH_NAMESPACE}/{GATEWAY}"

    def route(self, plan: ModelPlan, gateway: str) -> dict[str, Any]:
        return seldon_route(plan, gateway)

    def pod_pattern(self, plan: ModelPlan, track: str | None = None) -> str:
        # One Deployment, named by the operator (components/naming.py), whatever the track.
        return f"{naming.seldon_pod_prefix(plan.name)}.*"

    def service(self, plan: ModelPlan, track: str = STABLE) -> str:
        return naming.seldon_predictor_service(plan.name)

    def metrics_endpoint(self, plan: ModelPlan) -> dict[str, Any]:
        # Seldon replaces the Triton container's ports with its own: keep that container's
        # declared http port as the target, then point the address at Triton's 8002.
        return {"port": "http", "path": "/metrics", "interval": "15s", "relabelings": [
            {"sourceLabels": ["__meta_kubernetes_pod_container_name"], "regex": plan.name,
             "action": "keep"},
            {"sourceLabels": ["__meta_kubernetes_pod_ip"], "regex": "(.+)",
             "targetLabel": "__address__", "replacement": f"$1:{METRICS_PORT}",
             "action": "replace"},
        ]}

    def client_address(self, plan: ModelPlan, address: str) -> tuple[str, str]:
        # Seldon's clients address a model by path on its gateway (hosts `*`):
        # /seldon/<namespace>/<model>/v2/...
        return f"{address}{client_prefix(plan).rstrip('/')}", address

    def namespace_objects(self, scope: pulumi.Resource, name: str, namespace: pulumi.Input[str],
                          region: str) -> list[pulumi.Resource]:
        # rclone's settings for the storage initializer: which provider and region, and "take
        # credentials from the environment" (IRSA). No keys.
        return [k8s.core.v1.Secret(
            f"{name}-rclone", metadata={"name": RCLONE_SECRET, "namespace": namespace},
            type="Opaque", string_data=rclone_env(region),
            opts=pulumi.ResourceOptions(parent=scope))]


SELDON = Seldon()
