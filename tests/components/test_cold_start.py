"""components/cold_start.py: a model at zero replicas holds its (HTTP) requests while it wakes.

Each test states one behaviour of the pinned upstream code the design relies on
(docs/gpu-capacity.md, "Holding requests while a model wakes", cites the file and line) as an
invariant of what the stack emits; the fallback's nginx.conf is served by a real nginx on loopback.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import cold_start
from components.cold_start import (
    FALLBACK,
    FALLBACK_PORT,
    INTERCEPTOR,
    INTERCEPTOR_METRICS_PORT,
    NAMESPACE,
    RETRY_AFTER_SECONDS,
    fallback_nginx_conf,
)
from components.config.errors import ConfigError
from components.config.runtime import _decode
from components.config.serving import COLD_START_BUDGET_MAX_SECONDS
from components.kserve import PREDICTOR_SERVICE_PORT
from components.promql import demand_query, held_demand_query
from components.versions import CHARTS, COLD_START_FALLBACK_IMAGE, COLD_START_FALLBACK_UID
from tests import istio_route
from tests.components.test_inference_service import CIFAR10, OLD, isvc, of_kind
from tests.crd_schema import UPSTREAM, crd_errors
from tests.harness import ROOT_DIR, evaluate, missing_tool, set_path, stack_config
from tools.models.serve import free_port

ADD_ON = UPSTREAM / "keda-http-add-on-0.15.0"
ROUTE_SCHEMA = ADD_ON / "interceptorroute-v1beta1.schema.json"
ROUTE = "kubernetes:http.keda.sh/v1beta1:InterceptorRoute"
RELEASE = "kubernetes:helm.sh/v3:Release"
NGINX = ROOT_DIR / "build" / "nginx" / "usr" / "sbin" / "nginx"
# Chart values that are Kubernetes objects the templates pass through whole (toYaml): compared as
# a whole, not key by key.
OBJECT_VALUES = {"resources", "nodeSelector", "podAnnotations", "securityContext",
                 "podSecurityContext"}


def upstream_values() -> dict[str, Any]:
    return yaml.safe_load((ADD_ON / "values.yaml").read_text())


def release(graph, name="http-add-on"):
    (found,) = [r for r in graph.of_type(RELEASE) if r.inputs["name"] == name]
    return found


def routes(graph):
    return graph.of_type(ROUTE)


def obj(res) -> dict[str, Any]:
    return copy.deepcopy({k: res.inputs[k] for k in ("apiVersion", "kind", "metadata", "spec")})


def virtual_service(graph):
    (route,) = of_kind(graph, "VirtualService")
    return route


def named(graph, type_, name):
    (found,) = [r for r in graph.of_type(type_) if r.inputs["metadata"]["name"] == name]
    return found


# ---- the add-on: pinned, named, next to KEDA, values the chart knows ---------------------------

def _value_paths(values, upstream, prefix=()):
    for key, value in values.items():
        path = (*prefix, key)
        assert isinstance(upstream, dict) and key in upstream, f"{'.'.join(path)} is not a value"
        if isinstance(value, dict) and key not in OBJECT_VALUES:
            yield from _value_paths(value, upstream[key], path)
        else:
            yield path, value, upstream[key]


def test_every_chart_value_set_is_a_key_of_the_chart(dev):
    """Helm ignores a key the chart doesn't know: each one the stack sets must exist upstream."""
    values = release(dev).inputs["values"]
    paths = list(_value_paths(values, upstream_values()))
    assert paths
    for path, value, default in paths:
        assert default is None or type(value) is type(default), (path, value, default)


def test_the_add_on_is_the_pinned_chart_in_its_own_meshed_namespace(dev):
    add_on = release(dev)
    chart = CHARTS["keda-http-add-on"]
    assert (add_on.inputs["chart"], add_on.inputs["version"]) == ("keda-add-ons-http", "0.15.0")
    assert add_on.inputs["repositoryOpts"]["repo"] == chart.repository
    assert add_on.inputs["namespace"] == NAMESPACE
    (ns,) = [r for r in dev.of_type("kubernetes:core/v1:Namespace")
             if r.inputs["metadata"]["name"] == NAMESPACE]
    labels = ns.inputs["metadata"]["labels"]
    # The interceptor's sidecar is injected (its istio-init needs more than `baseline`).
    assert labels["istio-injection"] == "enabled"
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    # After KEDA (the chart's interceptor ScaledObject) and istiod (the injection webhook).
    assert dev.waits_for(add_on, release(dev, "keda"))
    assert dev.waits_for(add_on, release(dev, "istiod"))
    assert dev.waits_for(ns, release(dev, "istiod"))


def test_only_the_interceptor_joins_the_mesh_and_every_pod_runs_unprivileged(dev):
    values = release(dev).inputs["values"]
    annotations = values["interceptor"]["podAnnotations"]
    assert annotations["sidecar.istio.io/inject"] == "true"
    assert json.loads(annotations["proxy.istio.io/config"]) == {
        "holdApplicationUntilProxyStarts": True}
    for component in ("operator", "scaler"):
        assert values[component]["podAnnotations"] == {"sidecar.istio.io/inject": "false"}
    pod, container = values["podSecurityContext"], values["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert container["readOnlyRootFilesystem"] is True
    for component in ("operator", "scaler", "interceptor"):
        limits = values[component]["resources"]["limits"]
        assert limits["memory"] and limits["cpu"], component


def test_the_interceptor_reaches_each_held_track_past_its_sidecar(dev):
    """cold_start.py, "Why the interceptor dials the model past its sidecar": the add-on's dial
    retry only runs where Envoy doesn't accept the connection first. So every port a held track's
    InterceptorRoute targets skips the interceptor's sidecar, and the pods behind it accept that
    plaintext on the container port the Service port leads to (KServe v0.20.0
    service_reconciler.go:119-147: port 80 -> the first container port), from the interceptor
    only."""
    from modelrepo.triton import HTTP_PORT

    excluded = release(dev).inputs["values"]["interceptor"]["podAnnotations"][
        "traffic.sidecar.istio.io/excludeOutboundPorts"]
    (route,) = routes(dev)
    assert excluded.split(",") == [str(route.inputs["spec"]["target"]["port"])] == ["80"]
    server = isvc(dev)["spec"]["predictor"]["model"]
    assert server["ports"][0]["containerPort"] == HTTP_PORT
    (peer_auth,) = [r for r in of_kind(dev, "PeerAuthentication")
                    if r.inputs["metadata"].get("name") == "cifar10-metrics"]
    assert peer_auth.inputs["spec"]["mtls"] == {"mode": "STRICT"}
    assert peer_auth.inputs["spec"]["portLevelMtls"][str(HTTP_PORT)] == {"mode": "PERMISSIVE"}
    (policy,) = [r for r in of_kind(dev, "NetworkPolicy")
                 if r.inputs["metadata"]["name"] == "model-servers"]
    admitted = [rule for rule in policy.inputs["spec"]["ingress"]
                if {"protocol": "TCP", "port": HTTP_PORT} in rule["ports"]]
    assert admitted and all(
        all(peer.get("namespaceSelector", {}).get("matchLabels", {}).get(
            "kubernetes.io/metadata.name") in {NAMESPACE, "istio-system"} for peer in rule["from"])
        for rule in admitted)


def test_on_seldon_too_the_interceptor_reaches_the_model_past_its_sidecar():
    """The same invariant on Seldon, whose predictor Service port is its container port."""
    from components.seldon import HTTP_PORT as SELDON_HTTP_PORT

    graph = evaluate("dev", config=set_path(stack_config("dev"), "modelServing.backend", "seldon"))
    assert graph.error is None, graph.error
    excluded = release(graph).inputs["values"]["interceptor"]["podAnnotations"][
        "traffic.sidecar.istio.io/excludeOutboundPorts"]
    (route,) = routes(graph)
    assert excluded == str(route.inputs["spec"]["target"]["port"]) == str(SELDON_HTTP_PORT)
    (peer_auth,) = [r for r in of_kind(graph, "PeerAuthentication")
                    if r.inputs["metadata"].get("name") == "cifar10-metrics"]
    assert peer_auth.inputs["spec"]["portLevelMtls"][str(SELDON_HTTP_PORT)] == {
        "mode": "PERMISSIVE"}


def test_a_model_with_a_replica_keeps_its_http_port_mutual_tls_only(staging):
    (peer_auth,) = [r for r in of_kind(staging, "PeerAuthentication")
                    if r.inputs["metadata"].get("name") == "cifar10-metrics"]
    assert list(peer_auth.inputs["spec"]["portLevelMtls"]) == ["8002"]


def test_staging_and_prod_install_no_add_on(staging, prod):
    """Their models keep a replica: nothing to hold."""
    for graph in (staging, prod):
        assert not graph.of_type("mlserve:cold_start:ColdStart") and not routes(graph)


# ---- the InterceptorRoute ---------------------------------------------------------------------

def test_each_held_track_has_a_route_valid_against_the_v0_15_0_crd(dev):
    (route,) = routes(dev)
    assert crd_errors(obj(route), ROUTE_SCHEMA) == []
    spec = route.inputs["spec"]
    # The CRD's CEL rules, which the JSON schema does not evaluate.
    for service in (spec["target"], spec["coldStart"]["fallback"]["service"]):
        assert ("port" in service) != ("portName" in service), service
    assert "fallback" in spec["coldStart"] or "placeholder" in spec["coldStart"]
    assert "concurrency" in spec["scalingMetric"] or "requestRate" in spec["scalingMetric"]


def test_the_schema_refuses_what_the_api_server_would_prune():
    route = cold_start.interceptor_route(_dev_plan(), "stable")
    assert crd_errors(route, ROUTE_SCHEMA) == []
    route["spec"]["timeouts"]["readyness"] = "1s"
    assert any("readyness" in e for e in crd_errors(route, ROUTE_SCHEMA))


def test_the_route_waits_for_the_release_that_installs_its_crd(dev):
    (route,) = routes(dev)
    assert dev.waits_for(route, release(dev))
    # ... and for the fallback it names, and the gateway's route for it.
    assert dev.waits_for(route, named(dev, "kubernetes:apps/v1:Deployment", FALLBACK))
    assert dev.waits_for(route, named(dev, "kubernetes:core/v1:Service", FALLBACK))
    assert dev.waits_for(virtual_service(dev), route)
    provider = dev.one("pulumi:providers:kubernetes").urn
    assert route.provider == provider


def test_the_route_holds_for_the_budget_and_then_falls_back(dev):
    """endpoint_resolver.go:47-51 reads `timeouts.readiness` as the wait; past it, with a
    fallback service, the request goes there (82-93); without one, or with a request deadline
    that ends first, the answer is 504 (66-88). A placeholder would answer at once instead of
    holding (placeholder.go:52-57)."""
    (route,) = routes(dev)
    spec = route.inputs["spec"]
    budget = _dev_plan().config.cold_start_budget_seconds
    assert spec["timeouts"] == {"readiness": f"{budget}s"}  # no `request` deadline
    assert re.fullmatch(r"\d+s", spec["timeouts"]["readiness"])  # a Go duration
    assert spec["coldStart"] == {"fallback": {"service": {"name": FALLBACK,
                                                          "port": FALLBACK_PORT}}}
    assert budget <= COLD_START_BUDGET_MAX_SECONDS < 350  # the NLB's idle timeout


def test_the_route_targets_the_service_the_gateway_would(dev, staging):
    """Where the interceptor forwards (`<service>.<namespace>:<port>`, routing.go:118-133) is
    the Service and port the gateway routes a warm track to."""
    (route,) = routes(dev)
    spec = route.inputs["spec"]
    (warm,) = virtual_service(staging).inputs["spec"]["http"][0]["route"]
    assert warm["destination"]["host"] == (f"{spec['target']['service']}."
                                           f"{route.inputs['metadata']['namespace']}"
                                           ".svc.cluster.local")
    assert warm["destination"]["port"]["number"] == spec["target"]["port"] \
        == PREDICTOR_SERVICE_PORT


# ---- the gateway's route to the interceptor ---------------------------------------------------

def interceptor_key(host: str) -> str:
    """The interceptor's routing host: the request's Host without its port (pkg/routing/table.go
    Route, 187-200, and stripPort, pkg/routing/key.go:101-109)."""
    return host.rsplit(":", 1)[0] if re.search(r":\d+$", host) else host


def test_the_gateway_sends_a_held_track_to_the_interceptor_with_the_host_its_route_matches(dev):
    upstream = upstream_values()["interceptor"]["proxy"]
    spec = virtual_service(dev).inputs["spec"]
    (route,) = routes(dev)
    for path in ("/v2/models/cifar10/infer", "/v2/health/ready"):
        routed = istio_route.route(spec["http"], path)
        assert routed is not None
    (destination,) = spec["http"][0]["route"]
    # The chart's proxy Service: `{{ .Chart.Name }}-{{ .Values.interceptor.proxy.service }}`.
    assert destination["destination"] == {
        "host": f"keda-add-ons-http-{upstream['service']}.{NAMESPACE}.svc.cluster.local",
        "port": {"number": upstream["port"]}}
    # Istio turns a destination's `headers.request.set.host` into that cluster's host rewrite
    # (pilot/pkg/networking/core/route/route.go:725-734, 765-769).
    host = destination["headers"]["request"]["set"]["host"]
    assert [interceptor_key(host)] == route.inputs["spec"]["rules"][0]["hosts"]
    assert list(route.inputs["spec"]["rules"][0]) == ["hosts"]  # no path or header condition
    # No route timeout: Istio then sets none (route.go:1336-1341), and its proxies keep an idle
    # stream open (listener_builder.go:371): the interceptor's budget alone ends the wait.
    assert "timeout" not in spec["http"][0]


def test_a_canary_split_keeps_each_tracks_own_destination():
    """A held stable track next to a canary with a replica: the weights stay, only the held
    track goes through the interceptor, with its own Host."""
    config = set_path(stack_config("dev"), "modelServing.models.cifar10.version", OLD)
    graph = evaluate("dev", config=set_path(config, "modelServing.models.cifar10.canary",
                                            {"percent": 20}))
    assert graph.error is None, graph.error
    stable, canary = virtual_service(graph).inputs["spec"]["http"][0]["route"]
    assert (stable["weight"], canary["weight"]) == (80, 20)
    assert stable["headers"]["request"]["set"]["host"] == \
        "cifar10-stable-predictor.models.svc.cluster.local"
    assert canary == {"destination": {"host": "cifar10-canary-predictor.models.svc.cluster.local",
                                      "port": {"number": 80}}, "weight": 20}
    assert [r.inputs["metadata"]["name"] for r in routes(graph)] == ["cifar10-stable-predictor"]
    assert isvc(graph, "cifar10-canary")["metadata"]["labels"]["mlserve.io/version"] == CIFAR10


def test_model_pods_accept_the_interceptor(dev):
    (policy,) = [p for p in dev.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
                 if p.inputs["metadata"]["name"] == "model-servers"]
    (serving,) = [rule for rule in policy.inputs["spec"]["ingress"]
                  if any(p["namespaceSelector"]["matchLabels"].get(
                      "kubernetes.io/metadata.name") == NAMESPACE for p in rule["from"])]
    assert {p["port"] for p in serving["ports"]} >= {8080}  # Triton's HTTP port behind :80


# ---- waking up: KServe's ScaledObject reads the interceptor's metrics --------------------------

def test_the_wake_up_trigger_reads_the_interceptors_metrics_for_the_route(dev):
    """interceptor_request_concurrency{route_name, route_namespace} rises before the wait
    (interceptor/middleware/counting.go:36-52, in front of the endpoint resolver, proxy.go:
    78-87); the names are the OTel instruments' (interceptor/metrics/instruments.go:18-25,
    prometheus_test.go:54-56, 121-122)."""
    (route,) = routes(dev)
    metrics = isvc(dev)["spec"]["predictor"]["autoScaling"]["metrics"]
    queries = [m["external"]["metric"]["query"] for m in metrics]
    wake = [q for q in queries if "interceptor_" in q]
    assert len(wake) == 1
    meta = route.inputs["metadata"]
    labels = dict(re.findall(r'(route_\w+)="([^"]*)"', wake[0]))
    assert labels == {"route_name": meta["name"], "route_namespace": meta["namespace"]}
    assert "interceptor_request_concurrency{" in wake[0]
    assert "interceptor_request_count_total{" in wake[0]
    assert wake[0] == held_demand_query(_dev_plan(), "stable")


def test_the_dashboard_shows_held_requests_and_the_503s_past_the_budget(dev, staging):
    def queries(graph):
        (board,) = [r for r in graph.of_type("kubernetes:core/v1:ConfigMap")
                    if r.inputs["metadata"]["name"] == "mlserve-model-cifar10"]
        panels = json.loads(next(iter(board.inputs["data"].values())))["panels"]
        return {p["title"]: p["targets"][0]["expr"] for p in panels}

    (route,) = routes(dev)
    held = queries(dev)["Requests held or in flight at the interceptor"]
    assert f'route_name=~"{route.inputs["metadata"]["name"]}"' in held
    assert 'code="503"' in queries(dev)["503 answers through the interceptor (/s)"]
    assert not any("interceptor" in q for q in queries(staging).values())


def test_prometheus_scrapes_the_interceptor_on_its_metrics_port(dev):
    monitor = named(dev, "kubernetes:monitoring.coreos.com/v1:PodMonitor",
                    "keda-http-interceptor")
    spec = monitor.inputs["spec"]
    assert monitor.inputs["metadata"]["namespace"] == NAMESPACE
    assert spec["selector"]["matchLabels"] == {"app.kubernetes.io/component": "interceptor",
                                               "app.kubernetes.io/name": "http-add-on"}
    (endpoint,) = spec["podMetricsEndpoints"]
    # A declared port of the interceptor container (admin), then the undeclared 2223.
    assert endpoint["port"] == "admin" and endpoint["path"] == "/metrics"
    keep, address = endpoint["relabelings"]
    assert keep == {"sourceLabels": ["__meta_kubernetes_pod_container_name"],
                    "regex": INTERCEPTOR, "action": "keep"}
    assert address["replacement"] == f"$1:{INTERCEPTOR_METRICS_PORT}"
    assert dev.waits_for(monitor, release(dev, "kps"))


# ---- the fallback: 503 with Retry-After --------------------------------------------------------

def _dev_plan(config: dict[str, str] | None = None):
    """The dev stack's one model (or that of `config`, the dev stack's changed), planned the way
    the program plans it."""
    from components import stack_inputs

    config = stack_config("dev") if config is None else config
    raw = {k.split(":", 1)[1]: _decode(v) for k, v in config.items()
           if k.startswith("mlserve:")}
    inputs, problems = stack_inputs.check(raw, [], ROOT_DIR)
    assert inputs is not None, problems
    (plan,) = inputs.plans
    return plan


def test_the_fallback_is_pinned_unprivileged_and_reached_only_by_the_interceptor(dev):
    deployment = named(dev, "kubernetes:apps/v1:Deployment", FALLBACK).inputs
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["image"] == COLD_START_FALLBACK_IMAGE
    assert re.search(r":\d+\.\d+\.\d+-", COLD_START_FALLBACK_IMAGE)  # a version, not latest
    assert pod["spec"]["securityContext"]["runAsUser"] == COLD_START_FALLBACK_UID
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # Not in the mesh: the interceptor's sidecar passes a request whose Host is the model's
    # Service through as plain HTTP (docs/gpu-capacity.md).
    assert pod["metadata"]["labels"]["sidecar.istio.io/inject"] == "false"
    (port,) = container["ports"]
    service = named(dev, "kubernetes:core/v1:Service", FALLBACK).inputs["spec"]
    (service_port,) = service["ports"]
    assert service_port["targetPort"] == port["name"] and port["containerPort"] == FALLBACK_PORT
    # A predictor Service's ports: 80 to the first container port, then each further one as
    # itself (kserve v0.20.0 service_reconciler.go:119-147), i.e. Triton's metrics port.
    predictor_ports = {PREDICTOR_SERVICE_PORT} | {
        p["containerPort"] for p in isvc(dev)["spec"]["predictor"]["model"]["ports"][1:]}
    assert predictor_ports == {80, 8002}
    assert service_port["port"] == FALLBACK_PORT and FALLBACK_PORT not in predictor_ports
    config = named(dev, "kubernetes:core/v1:ConfigMap", FALLBACK).inputs["data"]["nginx.conf"]
    assert pod["metadata"]["annotations"]["mlserve.io/config-digest"] == \
        hashlib.sha256(config.encode()).hexdigest()[:16]
    policy = named(dev, "kubernetes:networking.k8s.io/v1:NetworkPolicy", FALLBACK).inputs["spec"]
    assert policy["ingress"] == [{"from": [cold_start.interceptor_peer()],
                                  "ports": [{"protocol": "TCP", "port": FALLBACK_PORT}]}]


@pytest.fixture
def nginx():
    binary = NGINX if NGINX.exists() else shutil.which("nginx")
    if binary is None:
        missing_tool("nginx not available (make nginx unpacks Debian's under build/)")
    return str(binary)


def _serve(nginx: str, conf: str, workdir: Path) -> subprocess.Popen[bytes]:
    (workdir / "nginx.conf").write_text(conf)
    return subprocess.Popen([nginx, "-e", "stderr", "-p", str(workdir), "-c",
                             str(workdir / "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _get(url: str, host: str) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


@pytest.mark.server
def test_the_fallback_answers_503_with_retry_after_naming_the_model(dev, nginx, tmp_path):
    """The ConfigMap's nginx.conf itself, on loopback: only the listen address and the runtime
    directory differ from the pod's."""
    deployed = named(dev, "kubernetes:core/v1:ConfigMap", FALLBACK).inputs["data"]["nginx.conf"]
    assert deployed == fallback_nginx_conf([_dev_plan()])
    port = free_port()
    conf, listens = re.subn(rf"(?m)^(\s*)listen {FALLBACK_PORT};$", rf"\1listen 127.0.0.1:{port};",
                            deployed)
    assert listens == 1
    assert conf.count(" /tmp/") == 6  # the pid file and five temp paths
    conf = conf.replace(" /tmp/", f" {tmp_path}/")
    assert conf == fallback_nginx_conf([_dev_plan()], listen=f"127.0.0.1:{port}",
                                       runtime_dir=str(tmp_path))
    server = _serve(nginx, conf, tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                status, _, _ = _get(f"{base}/healthz", "x")
                break
            except OSError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
        assert status == 200
        host = "cifar10-stable-predictor.models.svc.cluster.local"
        for path in ("/v2/models/cifar10/infer", "/v2/health/ready"):
            status, headers, body = _get(f"{base}{path}", host)
            assert status == 503
            assert headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
            assert body == ("cifar10 did not become ready within its cold-start budget of 240 s; "
                            f"it is still starting, retry in {RETRY_AFTER_SECONDS} s\n")
        status, headers, body = _get(f"{base}/v2/models/other/infer", "other.example.com")
        assert (status, headers["Retry-After"]) == (503, str(RETRY_AFTER_SECONDS))
        assert body.startswith("the model did not become ready within its cold-start budget")
    finally:
        server.terminate()
        server.wait(timeout=10)


# ---- configuration -----------------------------------------------------------------------------

@pytest.mark.parametrize("budget", [5, COLD_START_BUDGET_MAX_SECONDS + 1, "soon"])
def test_a_budget_out_of_bounds_is_a_config_error_naming_the_key(budget):
    graph = evaluate("dev", config=set_path(
        stack_config("dev"), "modelServing.models.cifar10.coldStartBudgetSeconds", budget))
    assert isinstance(graph.error, ConfigError)
    assert "modelServing.models.cifar10.coldStartBudgetSeconds" in str(graph.error)
    assert graph.resources == []


def test_the_budget_reaches_the_route_and_the_fallbacks_answer():
    graph = evaluate("dev", config=set_path(
        stack_config("dev"), "modelServing.models.cifar10.coldStartBudgetSeconds", 90))
    assert graph.error is None, graph.error
    (route,) = routes(graph)
    assert route.inputs["spec"]["timeouts"]["readiness"] == "90s"
    conf = named(graph, "kubernetes:core/v1:ConfigMap", FALLBACK).inputs["data"]["nginx.conf"]
    assert "cold-start budget of 90 s" in conf


def test_seldon_holds_http_and_wakes_on_both_the_interceptor_and_the_gateway():
    """Seldon's route sends HTTP (path prefixes, rewritten at the gateway) to the interceptor,
    which forwards path and Host as received (interceptor/handler/upstream.go:112-116) to
    Triton's HTTP port on the predictor Service; gRPC (by headers) still goes straight to the
    predictor, so both the interceptor's metrics and the gateway's wake the model."""
    config = set_path(stack_config("dev"), "modelServing.backend", "seldon")
    graph = evaluate("dev", config=config)
    assert graph.error is None, graph.error
    plan = _dev_plan(config)
    (route,) = routes(graph)
    spec = route.inputs["spec"]
    host = "cifar10-default.models.svc.cluster.local"
    assert route.inputs["metadata"]["name"] == "cifar10-default"
    assert spec["target"] == {"service": "cifar10-default", "port": 9000}
    assert spec["rules"] == [{"hosts": [host]}]
    assert crd_errors(obj(route), ROUTE_SCHEMA) == []
    http = virtual_service(graph).inputs["spec"]["http"]
    infer = istio_route.route(http, "/seldon/models/cifar10/v2/models/cifar10/infer")
    assert infer is not None and infer.path == "/v2/models/cifar10/infer"
    assert (infer.host, infer.port) == (f"{cold_start.INTERCEPTOR_PROXY_SERVICE}.{NAMESPACE}"
                                        ".svc.cluster.local", cold_start.INTERCEPTOR_PROXY_PORT)
    assert infer.authority == host
    grpc = istio_route.route(http, "/inference.GRPCInferenceService/ModelInfer",
                             {"seldon": "cifar10", "namespace": "models"})
    assert grpc is not None and (grpc.host, grpc.port, grpc.authority) == (host, 9500, None)
    # The fallback's port is no port of the predictor Service (Triton's 9000 and 9500).
    assert FALLBACK_PORT not in {9000, 9500}
    assert named(graph, "kubernetes:core/v1:Service", FALLBACK)
    conf = named(graph, "kubernetes:core/v1:ConfigMap", FALLBACK).inputs["data"]["nginx.conf"]
    assert f'"{host}" "cifar10 did not become ready' in conf
    (sdep,) = graph.of_type("kubernetes:machinelearning.seldon.io/v1:SeldonDeployment")
    triggers = [t["metadata"]["query"] for t in
                sdep.inputs["spec"]["predictors"][0]["componentSpecs"][0]["kedaSpec"]["triggers"]]
    assert held_demand_query(plan, "stable") in triggers
    assert demand_query(plan) in triggers
    # The gateway's metrics are still scraped (gRPC wakes it), and the interceptor's.
    for monitor in ("istio-ingressgateway", "keda-http-interceptor"):
        assert named(graph, "kubernetes:monitoring.coreos.com/v1:PodMonitor", monitor)
    assert graph.waits_for(virtual_service(graph), route)
