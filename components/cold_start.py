"""Holding requests while a model wakes: the KEDA HTTP add-on's interceptor sits between
the ingress gateway and every track that may be at zero replicas, holds each request until the
track has a Ready endpoint, for the model's cold-start budget, and past it hands the request to a
small nginx that answers 503 with `Retry-After` (docs/gpu-capacity.md, "Holding requests while a
model wakes"; every upstream behaviour relied on is cited there with its file and line).

- The add-on (chart `keda-add-ons-http` 0.15.0, kedacore/http-add-on v0.15.0) is installed in its
  own namespace, where the interceptor gets an Istio sidecar for what comes in (the gateway
  speaks mutual TLS to it) but dials the model past it, by the Service's cluster IP; the model's
  pods accept plaintext on their HTTP port for it (components/model_observability.py). Why:
  "Why the interceptor dials the model past its sidecar" below.
- The gateway sends a held track's share of the model's requests to the interceptor's proxy
  Service and sets the Host to the track's predictor Service's cluster name (an Istio per-
  destination `headers.request.set`, which becomes that weighted cluster's host rewrite); the
  track's InterceptorRoute matches that Host.
- The backend's controller (KServe, or Seldon's operator) keeps owning the track's ScaledObject:
  its wake-up trigger reads the interceptor's own request metrics for the track's route
  (components/promql.py), which Prometheus scrapes here; on Seldon, gRPC still goes straight to
  the model and wakes it through the gateway's trigger.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_kubernetes as k8s

from components.k8s import (
    PRIVILEGED,
    SYSTEM_NODE_SELECTOR,
    custom_resource,
    helm_release,
    resources,
)
from components.k8s import namespace as make_namespace
from components.versions import COLD_START_FALLBACK_IMAGE, COLD_START_FALLBACK_UID

if TYPE_CHECKING:
    from components.model_plan import ModelPlan, Track

NAMESPACE = "keda-http"
RELEASE = "http-add-on"
CHART_NAME = "keda-add-ons-http"
"""The chart names its objects `{{ .Chart.Name }}-…`, whatever the release is called."""
INTERCEPTOR = f"{CHART_NAME}-interceptor"
"""The interceptor's Deployment and container (templates/interceptor/deployment.yaml)."""
INTERCEPTOR_PROXY_SERVICE = f"{CHART_NAME}-interceptor-proxy"
INTERCEPTOR_PROXY_PORT = 8080
"""values.yaml interceptor.proxy.port; the Service's port too (service-proxy.yaml)."""
INTERCEPTOR_ADMIN_PORT_NAME = "admin"
INTERCEPTOR_METRICS_PORT = 2223
"""The interceptor's Prometheus endpoint, /metrics (pkg/observability/config.go:10, the
`OTEL_PROM_EXPORTER_PORT` default; interceptor/main.go:334-343). The chart declares no container
port for it."""
INTERCEPTOR_POD_LABELS = {"app.kubernetes.io/component": "interceptor",
                          "app.kubernetes.io/name": "http-add-on"}
INTERCEPTOR_UID = 65532
"""The add-on's images are static Go binaries (ko, .ko.yaml); any unprivileged uid runs them. Set
for the operator and scaler too: the chart sets one for every pod."""

SIDECAR_INJECT = "sidecar.istio.io/inject"
NO_SIDECAR = {SIDECAR_INJECT: "false"}
EXCLUDE_OUTBOUND_PORTS = "traffic.sidecar.istio.io/excludeOutboundPorts"
"""Istio's injector passes it to istio-iptables as `-o`: connections to these ports skip the
sidecar (istio 1.30.3 manifests/charts/istio-control/istio-discovery/files/
injection-template.yaml:116-120)."""
PROXY_CONFIG = "proxy.istio.io/config"
HOLD_UNTIL_PROXY_STARTS = '{"holdApplicationUntilProxyStarts": true}'
"""The interceptor's first watches and requests wait for its sidecar (injection-template.yaml:
71-73; pkg/kube/inject/webhook.go:785 reads the annotation)."""

# Why the interceptor dials the model past its sidecar. The interceptor releases every held
# request the moment the track's EndpointSlice shows a ready endpoint
# (pkg/k8s/ready_endpoints_cache.go:82-85, 122-128; interceptor/middleware/endpoint_resolver.go
# :101) and covers the gap until kube-proxy has programmed that endpoint by redialling a refused
# connection every 50 ms (interceptor/proxy.go:43, pkg/net/dial_context.go:14-58). Through a
# sidecar that retry never runs: Envoy's outbound listener accepts every connection, and until
# istiod has pushed the new endpoint (debounced by at least 100 ms, istio 1.30.3
# pilot/pkg/features/tuning.go:78-96) Envoy answers the held requests itself with 503 "no
# healthy upstream" before any upstream attempt, which the route's retries (Istio's default,
# pilot/pkg/networking/core/route/retry/retry.go:36-37) are not for. Past the sidecar, its own
# dial retry covers it, and the cost is plaintext on one in-cluster hop, which the namespace's
# NetworkPolicy limits to the gateway, the interceptor and Prometheus.

FALLBACK = "cold-start-fallback"
FALLBACK_PORT = 8080
"""Not a port of any predictor Service (80, 8002): the interceptor's sidecar must find no route for
the model's Host on it (docs/gpu-capacity.md), see `fallback_objects`."""
FALLBACK_LABELS = {"app.kubernetes.io/name": FALLBACK}
RETRY_AFTER_SECONDS = 30
"""At least one polling cycle of the model's scaler (KServe's ScaledObject polls at KEDA's
default, 30 s; Seldon's every `pollingSeconds`, 15 by default): a retry sooner than that finds the
model as it was. Short against a cold start of minutes."""
ROUTE_API_VERSION = "http.keda.sh/v1beta1"


def held(plan: ModelPlan, track: Track) -> bool:
    """Whether the interceptor holds this track's requests while it wakes: a track that may be at
    zero replicas, on a backend whose route can send it there."""
    return track.min_replicas == 0 and plan.backend.holds_requests_while_waking


def held_tracks(plans: Iterable[ModelPlan]) -> list[tuple[ModelPlan, Track]]:
    return [(plan, track) for plan in plans for track in plan.tracks if held(plan, track)]


def service_host(plan: ModelPlan, track: str) -> str:
    """The cluster name of a track's Service: the Host the gateway sets on a held track's requests,
    which the track's InterceptorRoute matches and the interceptor's sidecar routes by."""
    return f"{plan.backend.service(plan, track)}.{plan.namespace}.svc.cluster.local"


def route_name(plan: ModelPlan, track: str) -> str:
    """The track's InterceptorRoute: the interceptor's metrics carry it as `route_name`."""
    return plan.backend.service(plan, track)


def interceptor_destination(plan: ModelPlan, track: str) -> dict[str, Any]:
    """The gateway's destination for a held track: the interceptor, with the Host its route
    matches. Per destination, so a weighted split between tracks keeps each track's own Host."""
    return {"destination": {"host": f"{INTERCEPTOR_PROXY_SERVICE}.{NAMESPACE}.svc.cluster.local",
                            "port": {"number": INTERCEPTOR_PROXY_PORT}},
            "headers": {"request": {"set": {"host": service_host(plan, track)}}}}


def interceptor_route(plan: ModelPlan, track: str) -> dict[str, Any]:
    """The InterceptorRoute (http.keda.sh/v1beta1) of a held track: hold for the cold-start
    budget, then the fallback."""
    budget = plan.config.cold_start_budget_seconds
    return {
        "apiVersion": ROUTE_API_VERSION, "kind": "InterceptorRoute",
        "metadata": {"name": route_name(plan, track), "namespace": plan.namespace,
                     "labels": plan.track_labels(track)},
        "spec": {
            "target": {"service": plan.backend.service(plan, track),
                       "port": plan.backend.http_service_port},
            "rules": [{"hosts": [service_host(plan, track)]}],
            # Held requests wait here; unset, the add-on's global default (none) would hold them
            # until the client gives up.
            "timeouts": {"readiness": f"{budget}s"},
            "coldStart": {"fallback": {"service": {"name": FALLBACK, "port": FALLBACK_PORT}}},
            # Required by the CRD, read only by the add-on's own external scaler, which no
            # ScaledObject of the stack uses: the backend's own ScaledObject scales the track.
            "scalingMetric": {"concurrency": {
                "targetValue": plan.config.target_pending_requests}},
        },
    }


def fallback_nginx_conf(plans: Sequence[ModelPlan], *, listen: str = str(FALLBACK_PORT),
                        runtime_dir: str = "/tmp") -> str:
    """The fallback's whole nginx.conf: 503 with Retry-After for every request, and a short body
    naming the model and its budget (by the Host the gateway set). `listen` and `runtime_dir`
    differ only where the tests run it on loopback."""
    hosts = "".join(
        f'        "{service_host(plan, track.name)}" '
        f'"{plan.name} did not become ready within its cold-start budget of '
        f'{plan.config.cold_start_budget_seconds} s";\n'
        for plan, track in held_tracks(plans))
    return f"""# The answer past a model's cold-start budget (components/cold_start.py).
daemon off;
worker_processes 1;
pid {runtime_dir}/nginx.pid;
error_log stderr warn;
events {{
    worker_connections 1024;
}}
http {{
    client_body_temp_path {runtime_dir}/client_temp;
    proxy_temp_path {runtime_dir}/proxy_temp;
    fastcgi_temp_path {runtime_dir}/fastcgi_temp;
    uwsgi_temp_path {runtime_dir}/uwsgi_temp;
    scgi_temp_path {runtime_dir}/scgi_temp;
    access_log /dev/stdout;
    server_tokens off;
    default_type text/plain;
    # Service names run to 63 characters and more with the namespace: nginx's default buckets
    # (64 bytes) refuse the map at start.
    map_hash_bucket_size 256;
    map $host $waking {{
        default "the model did not become ready within its cold-start budget";
{hosts}    }}
    server {{
        listen {listen};
        location = /healthz {{
            return 200 "ok\\n";
        }}
        location / {{
            add_header Retry-After {RETRY_AFTER_SECONDS} always;
            return 503 "$waking; it is still starting, retry in {RETRY_AFTER_SECONDS} s\\n";
        }}
    }}
}}
"""


def fallback_objects(plans: Sequence[ModelPlan], namespace: str,
                     high_availability: bool) -> list[dict[str, Any]]:
    """The fallback's ConfigMap, Deployment, Service and NetworkPolicy, in the model namespace
    (the InterceptorRoute's fallback Service is looked up in the route's namespace,
    interceptor/middleware/routing.go:70-79)."""
    conf = fallback_nginx_conf(plans)
    replicas = 2 if high_availability else 1
    pod: dict[str, Any] = {
        # No sidecar: the interceptor's sidecar reaches it as plain HTTP (the request's Host is
        # the model's Service, which no route of this port names: Istio passes it through).
        "metadata": {"labels": {**FALLBACK_LABELS, **NO_SIDECAR}},
        "spec": {
            "automountServiceAccountToken": False,
            "nodeSelector": SYSTEM_NODE_SELECTOR,
            "securityContext": {"runAsNonRoot": True, "runAsUser": COLD_START_FALLBACK_UID,
                                "runAsGroup": COLD_START_FALLBACK_UID,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "nginx", "image": COLD_START_FALLBACK_IMAGE,
                # nginx itself, not the image's entrypoint scripts (they rewrite files under
                # /etc/nginx, which is read-only here).
                "command": ["nginx"],
                "args": ["-e", "stderr", "-c", "/etc/cold-start/nginx.conf"],
                "ports": [{"name": "http", "containerPort": FALLBACK_PORT, "protocol": "TCP"}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": FALLBACK_PORT},
                                   "periodSeconds": 10},
                "resources": resources("10m", "16Mi", cpu_limit="200m", memory_limit="64Mi"),
                "securityContext": {"allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "conf", "mountPath": "/etc/cold-start",
                                  "readOnly": True},
                                 {"name": "tmp", "mountPath": "/tmp"}],
            }],
            "volumes": [{"name": "conf", "configMap": {"name": FALLBACK}},
                        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}],
        },
    }
    metadata = {"name": FALLBACK, "namespace": namespace, "labels": FALLBACK_LABELS}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata,
         "data": {"nginx.conf": conf}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata,
         "spec": {"replicas": replicas, "selector": {"matchLabels": FALLBACK_LABELS},
                  "template": {**pod, "metadata": {
                      **pod["metadata"],
                      # A new config rolls the pods (nginx reads it at start).
                      "annotations": {"mlserve.io/config-digest": _digest(conf)}}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": metadata,
         "spec": {"selector": FALLBACK_LABELS,
                  "ports": [{"name": "http", "port": FALLBACK_PORT, "targetPort": "http",
                             "protocol": "TCP"}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": metadata,
         "spec": {"podSelector": {"matchLabels": FALLBACK_LABELS}, "policyTypes": ["Ingress"],
                  "ingress": [{"from": [interceptor_peer()],
                               "ports": [{"protocol": "TCP", "port": FALLBACK_PORT}]}]}},
    ]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def interceptor_peer() -> dict[str, Any]:
    """A NetworkPolicy peer: the interceptor's pods."""
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}},
            "podSelector": {"matchLabels": INTERCEPTOR_POD_LABELS}}


def target_ports(plans: Iterable[ModelPlan]) -> list[int]:
    """The Service ports the interceptor forwards held requests to."""
    return sorted({plan.backend.http_service_port for plan, _ in held_tracks(plans)})


def http_add_on_values(high_availability: bool, model_ports: Sequence[int]) -> dict[str, Any]:
    replicas = 2 if high_availability else 1
    return {
        "operator": {"nodeSelector": SYSTEM_NODE_SELECTOR,
                     "resources": resources("50m", "64Mi", cpu_limit="500m",
                                            memory_limit="256Mi"),
                     "podAnnotations": NO_SIDECAR},
        "scaler": {"replicas": replicas, "nodeSelector": SYSTEM_NODE_SELECTOR,
                   "resources": resources("50m", "64Mi", cpu_limit="500m", memory_limit="256Mi"),
                   "podAnnotations": NO_SIDECAR},
        "interceptor": {
            # The request path of every held model: two at least where availability matters
            # (the chart scales the fleet on its own ScaledObject between min and max), and a
            # budget that lets a drain take one at a time.
            "replicas": {"min": replicas, "max": 10},
            "pdb": {"enabled": True, "maxUnavailable": 1},
            "nodeSelector": SYSTEM_NODE_SELECTOR,
            "resources": resources("100m", "64Mi", memory_limit="256Mi"),
            # Istio then speaks HTTP to it from the gateway (no protocol sniffing).
            "proxy": {"appProtocol": "http"},
            # A sidecar for what comes in from the gateway (mutual TLS); requests to the models'
            # Service ports go past it, so the interceptor's dial retry covers a new endpoint
            # (above, "Why the interceptor dials the model past its sidecar").
            "podAnnotations": {SIDECAR_INJECT: "true", PROXY_CONFIG: HOLD_UNTIL_PROXY_STARTS,
                               EXCLUDE_OUTBOUND_PORTS: ",".join(map(str, model_ports))},
        },
        # Every pod and container of the chart (templates/*/deployment.yaml use these when no
        # per-component value is set): the chart's own defaults plus a non-root uid and the
        # runtime's seccomp profile, which `restricted` asks for.
        "podSecurityContext": {"runAsNonRoot": True, "runAsUser": INTERCEPTOR_UID,
                               "runAsGroup": INTERCEPTOR_UID,
                               "seccompProfile": {"type": "RuntimeDefault"}},
        "securityContext": {"allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}, "privileged": False,
                            "readOnlyRootFilesystem": True,
                            "seccompProfile": {"type": "RuntimeDefault"}},
    }


def interceptor_pod_monitor() -> dict[str, Any]:
    """Scrapes the interceptor's request metrics (route_name, route_namespace). Its port 2223 is
    not a declared container port: select the declared admin port of the interceptor container,
    then point the address at 2223."""
    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
        "metadata": {"name": "keda-http-interceptor", "namespace": NAMESPACE},
        "spec": {"selector": {"matchLabels": INTERCEPTOR_POD_LABELS},
                 "podMetricsEndpoints": [{
                     "port": INTERCEPTOR_ADMIN_PORT_NAME, "path": "/metrics", "interval": "15s",
                     "relabelings": [
                         {"sourceLabels": ["__meta_kubernetes_pod_container_name"],
                          "regex": INTERCEPTOR, "action": "keep"},
                         {"sourceLabels": ["__meta_kubernetes_pod_ip"], "regex": "(.+)",
                          "targetLabel": "__address__",
                          "replacement": f"$1:{INTERCEPTOR_METRICS_PORT}", "action": "replace"},
                     ]}]},
    }


@dataclass
class ColdStartArgs:
    high_availability: bool
    model_ports: Sequence[int]
    """The Service ports held requests are forwarded to (`target_ports`)."""
    keda: pulumi.Resource
    """KEDA's release: the chart's interceptor ScaledObject needs its CRDs and operator."""
    mesh_control_plane: pulumi.Resource
    """istiod: its webhook injects the interceptor's sidecar."""
    monitoring: pulumi.Resource | None = None
    """The monitoring stack's release (the PodMonitor's CRD); None: nothing scrapes the
    interceptor, and nothing could wake a held model (the config requires monitoring)."""
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)


class ColdStart(pulumi.ComponentResource):
    """The KEDA HTTP add-on, in its own meshed namespace, and what scrapes its interceptor."""

    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: ColdStartArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:cold_start:ColdStart", name, None, opts)
        # Sidecars are injected here (the interceptor's; the operator and scaler opt out). The
        # injected istio-init container needs NET_ADMIN/NET_RAW, which `baseline` refuses.
        ns = make_namespace(self, name, NAMESPACE, pod_security=PRIVILEGED,
                            labels={"istio-injection": "enabled"},
                            depends_on=[args.mesh_control_plane])
        self.release = helm_release(
            self, name, "keda-http-add-on", name=RELEASE, namespace=ns.metadata.name,
            values=http_add_on_values(args.high_availability, args.model_ports),
            depends_on=[args.keda, args.mesh_control_plane, *args.depends_on])
        if args.monitoring is not None:
            custom_resource(self, f"{name}-interceptor-monitor", interceptor_pod_monitor(),
                            [self.release, args.monitoring])
        self.register_outputs({"namespace": ns.metadata.name, "release": self.release.status})
