"""components/seldon.py: the opt-in Seldon Core backend, checked against what seldon-core-operator
1.17.1 does with what the stack renders (docs/architecture.md, "Seldon Core"; the operator's
behaviour across versions of a model is in test_seldon_rollout_contract.py)."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from components import naming, seldon
from components.cold_start import interceptor_peer
from components.config.capacity import pod_requests
from components.naming import STABLE
from components.promql import held_demand_query
from components.versions import (
    SELDON_INITIALIZER_REQUESTS,
    SIDECAR_REQUESTS,
    TRITON_IMAGE,
    TRITON_IMAGE_TAG,
)
from modelrepo.triton import METRICS_ARGS
from tests.components.test_k8s import releases
from tests.crd_schema import UPSTREAM, crd_errors
from tests.harness import evaluate, set_path, stack_config
from tests.istio_route import route as istio_route
from tests.kube_schemas import is_core, is_karpenter, manifests, validate_core, validate_custom

SDEP = "kubernetes:machinelearning.seldon.io/v1:SeldonDeployment"
ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
ROUTE = "kubernetes:networking.istio.io/v1:VirtualService"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
INTERCEPTOR_ROUTE = "kubernetes:http.keda.sh/v1beta1:InterceptorRoute"
CHART_VALUES = UPSTREAM / "seldon-core-operator-1.17.1" / "values.yaml"
STACKS = ("dev", "staging", "prod")
CPU_MODEL = {"gpus": 0, "minReplicas": 1, "maxReplicas": 2, "cpu": "1", "memory": "2Gi"}


def seldon_stack(stack="dev", **changes):
    config = set_path(stack_config(stack), "modelServing.backend", "seldon")
    for path, value in changes.items():
        config = set_path(config, path, value)
    return config


_graphs: dict[str, object] = {}


def seldon_graph(stack: str):
    if stack not in _graphs:
        graph = evaluate(stack, config=seldon_stack(stack))
        assert graph.error is None, graph.error
        _graphs[stack] = graph
    return _graphs[stack]


@pytest.fixture(scope="module")
def seldon_dev():
    return seldon_graph("dev")


@pytest.fixture(scope="module", params=STACKS)
def every_stack(request):
    return seldon_graph(request.param)


def seldon_plan():
    from tests.components.test_cold_start import _dev_plan

    return _dev_plan(seldon_stack("dev"))


def sdep(graph):
    (found,) = graph.of_type(SDEP)
    return found


def predictor(graph):
    (found,) = sdep(graph).inputs["spec"]["predictors"]
    return found


def component(graph):
    (found,) = predictor(graph)["componentSpecs"]
    return found


def triton(graph):
    (found,) = component(graph)["spec"]["containers"]
    return found


# ---- the operator and its chart ---------------------------------------------------------------

def test_operator_is_the_last_apache_release(seldon_dev):
    release = releases(seldon_dev)["seldon-core"]
    assert release.inputs["version"] == "1.17.1"
    assert release.inputs["chart"] == "seldon-core-operator"
    assert not seldon_dev.of_type(ISVC)


def _key_paths(values, prefix=()):
    for key, value in values.items():
        if isinstance(value, dict) and value:
            yield from _key_paths(value, (*prefix, key))
        else:
            yield (*prefix, key)


def test_every_chart_value_set_is_a_key_of_the_chart(seldon_dev):
    """Helm ignores a key the chart doesn't know: each one the stack sets must exist upstream."""
    upstream = yaml.safe_load(CHART_VALUES.read_text())
    values = releases(seldon_dev)["seldon-core"].inputs["values"]
    for path in _key_paths(values):
        node = upstream
        for key in path:
            assert isinstance(node, dict) and key in node, f"{'.'.join(path)} is not a chart value"
            node = node[key]
        leaf = values
        for key in path:
            leaf = leaf[key]
        assert node is None or type(leaf) is type(node), (path, leaf, node)


def test_the_operator_routes_nothing_and_scales_with_keda_and_cert_manager(seldon_dev):
    values = releases(seldon_dev)["seldon-core"].inputs["values"]
    # The stack owns the route; KEDA reads kedaSpec; cert-manager issues the webhook's certificate.
    assert values["istio"] == {"enabled": False}
    assert values["keda"] == {"enabled": True}
    assert values["certManager"] == {"enabled": True}
    cpu, memory = SELDON_INITIALIZER_REQUESTS
    assert values["storageInitializer"]["cpuRequest"] == f"{cpu}m"
    assert values["storageInitializer"]["memoryRequest"] == f"{memory}Mi"


def test_the_operator_waits_for_cert_manager_keda_and_istio(seldon_dev):
    rel = releases(seldon_dev)
    for name in ("cert-manager", "keda", "istiod"):
        assert seldon_dev.waits_for(rel["seldon-core"], rel[name]), name


def test_business_source_licence_needs_explicit_acceptance():
    refused = evaluate("dev", config=seldon_stack(**{"modelServing.seldon.version": "1.18.0"}))
    assert "is under the Business Source License 1.1" in str(refused.error)
    assert refused.resources == []
    accepted = evaluate("dev", config=seldon_stack(**{
        "modelServing.seldon.version": "1.18.0",
        "modelServing.seldon.acceptBusinessSourceLicense": True}))
    assert releases(accepted)["seldon-core"].inputs["version"] == "1.18.0"


# ---- the SeldonDeployment: schema, graph, names ------------------------------------------------

def test_seldon_deployments_validate_against_the_v1_17_1_crd(every_stack):
    """The CRD is structural with nothing preserved: a field it doesn't list would be pruned."""
    (obj,) = [o for o in manifests(every_stack) if o["kind"] == "SeldonDeployment"]
    assert crd_errors(obj) == []


@pytest.mark.parametrize("changes", [
    {"modelServing.models.cifar10.autoscaler": "hpa", "modelServing.models.cifar10.minReplicas": 1,
     "modelServing.models.cifar10.cooldownSeconds": 300},
    {"modelServing.models.cifar10": CPU_MODEL},
], ids=["hpa", "cpu"])
def test_variants_validate_against_the_crd(changes):
    graph = evaluate("dev", config=seldon_stack(**changes))
    assert graph.error is None, graph.error
    (obj,) = [o for o in manifests(graph) if o["kind"] == "SeldonDeployment"]
    assert crd_errors(obj) == []


def test_a_field_the_crd_would_prune_is_caught(seldon_dev):
    (obj,) = [json.loads(json.dumps(o)) for o in manifests(seldon_dev)
              if o["kind"] == "SeldonDeployment"]
    spec = obj["spec"]["predictors"][0]["componentSpecs"][0]
    spec["kedaSpec"]["initialCooldownPeriod"] = 60  # KEDA 2.20 has it; 1.17.1's types don't
    spec["spec"]["containers"][0]["lifecycle"] = {"preStop": {"sleep": {"seconds": 15}}}
    errors = crd_errors(obj)
    assert any("'initialCooldownPeriod' was unexpected" in e for e in errors), errors
    assert any("'sleep' was unexpected" in e for e in errors), errors


def test_one_triton_node_with_no_executor(every_stack):
    p = predictor(every_stack)
    assert p["name"] == naming.SELDON_PREDICTOR
    assert p["annotations"] == {seldon.NO_ENGINE: "true"}
    graph = p["graph"]
    assert graph["implementation"] == "TRITON_SERVER" and "children" not in graph
    assert graph["name"] == triton(every_stack)["name"] == "cifar10"
    assert graph["modelUri"] == every_stack.exports["modelStorageUris"]["cifar10"]
    assert graph["serviceAccountName"] == "model-server"
    assert graph["envSecretRefName"] == seldon.RCLONE_SECRET
    assert "svcOrchSpec" not in p


def test_the_component_is_named_so_no_name_is_hashed(every_stack):
    c = component(every_stack)
    assert c["metadata"]["name"] == naming.SELDON_COMPONENT
    model = sdep(every_stack).inputs["metadata"]["name"]
    assert naming.seldon_deployment(model) == f"{model}-default-0-triton"


def test_labels_on_the_seldon_deployment_and_its_pods(every_stack):
    metadata = sdep(every_stack).inputs["metadata"]
    pod_labels = component(every_stack)["metadata"]["labels"]
    assert metadata["labels"] == pod_labels
    assert pod_labels[naming.MODEL_LABEL] == "cifar10"
    assert pod_labels[naming.TRACK_LABEL] == naming.STABLE
    assert pod_labels[naming.VERSION_LABEL] == every_stack.exports["models"]["cifar10"]["version"]
    assert re.fullmatch(r"[0-9a-f]{12}", pod_labels[naming.REVISION_LABEL])


# ---- Triton's arguments, ports, probes, security ----------------------------------------------

BEHAVIOUR = re.compile(r"--(model-control-mode|load-model|metrics-config|model-config-name)=")


def test_triton_gets_its_whole_command_line(every_stack):
    args = triton(every_stack)["args"]
    assert args[:4] == ["/opt/tritonserver/bin/tritonserver", "--http-port=9000",
                        "--grpc-port=9500", "--model-repository=/mnt/models"]
    for flag in ("--model-control-mode=explicit", "--load-model=cifar10", *METRICS_ARGS):
        assert flag in args
    assert "--model-config-name=cpu" not in args  # a GPU model
    assert not any(a.startswith("--strict-model-config") for a in args)


def test_triton_is_told_what_the_kserve_path_tells_it(staging):
    """Parity: the same model behaviour flags on both backends, for the same plan."""
    (isvc,) = [r for r in staging.of_type(ISVC)]
    kserve = [a for a in isvc.inputs["spec"]["predictor"]["model"]["args"] if BEHAVIOUR.match(a)]
    ours = [a for a in triton(seldon_graph("staging"))["args"] if BEHAVIOUR.match(a)]
    assert ours == kserve and len(ours) == 2 + len(METRICS_ARGS)


def test_a_cpu_model_loads_its_cpu_config():
    graph = evaluate("dev", config=seldon_stack(**{"modelServing.models.cifar10": CPU_MODEL}))
    container = triton(graph)
    assert "--model-config-name=cpu" in container["args"]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert "nodeSelector" not in component(graph)["spec"]


def test_ports_probes_and_drain(every_stack):
    container = triton(every_stack)
    # Exactly what the operator rewrites them to (prepackaged_servers.go:172-183, 245-247).
    assert sorted((p["name"], p["containerPort"]) for p in container["ports"]) == \
        [("grpc", 9500), ("http", 9000)]
    # Set, so the operator's TCP probes (liveness after 60 s) are never installed.
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 9000}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 9000}
    startup = container["startupProbe"]
    assert startup["httpGet"] == {"path": "/v2/health/live", "port": 9000}
    # The model may load for as long as `pulumi up` waits for it (readyTimeoutMinutes, 30).
    assert startup["periodSeconds"] * startup["failureThreshold"] == 30 * 60
    assert container["lifecycle"]["preStop"]["exec"]["command"][-1] == "sleep 15"
    assert component(every_stack)["spec"]["terminationGracePeriodSeconds"] == 60
    assert container["image"] == f"{TRITON_IMAGE}:{TRITON_IMAGE_TAG}"


def test_everything_runs_as_tritons_non_root_user(every_stack):
    pod = component(every_stack)["spec"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 1000,
                                      "runAsGroup": 1000, "fsGroup": 1000,
                                      "seccompProfile": {"type": "RuntimeDefault"}}
    assert triton(every_stack)["securityContext"] == {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def test_gpu_placement(every_stack):
    pod = component(every_stack)["spec"]
    pool = {"dev": "t4-spot", "staging": "a10g", "prod": "a10g"}[every_stack.stack]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true", "mlserve.io/pool": pool}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert triton(every_stack)["resources"]["limits"]["nvidia.com/gpu"] == "1"


# ---- autoscaling ------------------------------------------------------------------------------

KEDASPEC_KEYS = {"pollingInterval", "cooldownPeriod", "minReplicaCount", "maxReplicaCount",
                 "idleReplicaCount", "advanced", "triggers", "fallback"}


def test_kedaspec_carries_the_documented_windows(every_stack):
    keda = component(every_stack)["kedaSpec"]
    model = json.loads(stack_config(every_stack.stack)["mlserve:modelServing"])["models"]["cifar10"]
    cooldown = model.get("cooldownSeconds", 300)
    assert set(keda) <= KEDASPEC_KEYS
    assert keda["pollingInterval"] == 15 and keda["cooldownPeriod"] == cooldown  # 1 -> 0
    assert (keda["minReplicaCount"], keda["maxReplicaCount"]) == \
        (model["minReplicas"], model["maxReplicas"])
    behavior = keda["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior == {"scaleUp": {"stabilizationWindowSeconds": 0},
                        "scaleDown": {"stabilizationWindowSeconds": cooldown}}  # N -> 1


def test_kedaspec_triggers_select_the_operators_pods(every_stack):
    keda = component(every_stack)["kedaSpec"]
    backlog, *wake = keda["triggers"]
    assert all(t["type"] == "prometheus" for t in keda["triggers"])  # never cpu/memory
    assert backlog["metadata"]["query"].startswith("sum(nv_inference_pending_request_count{")
    assert f'pod=~"{naming.seldon_pod_prefix("cifar10")}.*"' in backlog["metadata"]["query"]
    assert backlog["metadata"]["threshold"] == "4"
    (route,) = every_stack.of_type(ROUTE)
    grpc = next(e for e in route.inputs["spec"]["http"] if e["name"] == "grpc")
    destination = grpc["route"][0]["destination"]["host"]
    if every_stack.stack == "dev":
        # Scales to zero: HTTP is held at the interceptor, whose metrics for the route wake it;
        # gRPC goes straight to the predictor, where the gateway's count wakes it.
        held, gateway = wake
        service = destination.split(".")[0]
        assert service == naming.seldon_predictor_service("cifar10") == "cifar10-default"
        assert held["metadata"]["query"] == held_demand_query(seldon_plan(), STABLE)
        assert f'route_name="{service}"' in held["metadata"]["query"]
        assert f'destination_service_name="{service}"' in gateway["metadata"]["query"]
        assert 'reporter="source"' in gateway["metadata"]["query"]
        # Each capped at 1: together they only wake the model, the backlog decides beyond.
        assert all(t["metadata"]["query"].startswith("clamp_max(") and
                   t["metadata"]["threshold"] == "1" for t in wake)
    else:
        assert wake == []


def test_hpa_variant_has_no_behaviour_to_carry():
    graph = evaluate("staging", config=seldon_stack(
        "staging", **{"modelServing.models.cifar10.autoscaler": "hpa"}))
    c = component(graph)
    assert "kedaSpec" not in c
    assert c["hpaSpec"]["metricsv2"][0]["resource"]["name"] == "cpu"
    assert set(c["hpaSpec"]) == {"minReplicas", "maxReplicas", "metricsv2"}


@pytest.mark.parametrize(("key", "value"), [("cooldownSeconds", 120),
                                            ("scaleUpStabilizationSeconds", 30)])
def test_hpa_on_seldon_refuses_windows_it_cannot_honour(key, value):
    graph = evaluate("staging", config=seldon_stack("staging", **{
        "modelServing.models.cifar10.autoscaler": "hpa",
        f"modelServing.models.cifar10.{key}": value}))
    assert f"mlserve:modelServing.models.cifar10.{key}: must be " in str(graph.error)
    assert "hpaSpec has no scaling behaviour" in str(graph.error)
    assert graph.resources == []
    kserve = evaluate("staging", config=set_path(set_path(
        stack_config("staging"), "modelServing.models.cifar10.autoscaler", "hpa"),
        f"modelServing.models.cifar10.{key}", value))
    assert kserve.error is None  # KServe's HPA carries behaviour


# ---- names ------------------------------------------------------------------------------------

def test_names_are_the_operators():
    # Upstream's own vectors (operator/apis/machinelearning.seldon.io/v1/
    # seldondeployment_types_test.go:107-130, deploymentNameAsPrefix false).
    assert naming.seldon_deployment("s", "p", 0, "m") == "s-p-0-m"
    long_predictor = "C12345678912345678901234567890123456789012345678901234567890"
    assert naming.seldon_deployment("s", long_predictor, 0, "m") == \
        "seldon-10eb0f02cdc303e74043e57c1d8147ab"


def _pod_name(deployment: str, template_hash: str = "7d9f8b6c54", suffix: str = "x2k9q") -> str:
    """A pod of the Deployment: `<replicaset>-` cut to 58 characters, then 5 random ones
    (kubernetes apiserver storage/names/generate.go; the ReplicaSet is `<deployment>-<hash>`)."""
    return f"{deployment}-{template_hash}-"[:naming.GENERATED_PREFIX_MAX] + suffix


def test_every_allowed_name_fits_and_its_pods_match_the_pattern():
    longest = naming.longest_model_name("seldon")
    assert longest == naming.MAX_MODEL_NAME_LENGTH  # the same limit as on KServe
    for length in range(1, longest + 1):
        model = "m" * length
        deployment = naming.seldon_deployment(model)
        assert deployment == f"{model}-default-0-triton", "never hashed"
        assert len(naming.seldon_keda_hpa(model)) <= 63
        assert len(f"seldon-app-svc-{model}") <= 63
        pattern = naming.seldon_pod_prefix(model) + ".*"
        assert re.fullmatch(pattern, _pod_name(deployment))
        # ... and no pod of a model whose name merely starts the same.
        assert not re.fullmatch(pattern, _pod_name(naming.seldon_deployment(model + "x")))
    assert naming.name_problems("m" * (longest + 1), "seldon")


def test_yesterdays_names_broke_from_22_characters():
    """Without a component name the Deployment was `<m>-default-0-<m>`."""
    assert len(f"keda-hpa-{naming.seldon_deployment('m' * 22, component='m' * 22)}") == 64
    assert naming.seldon_deployment("m" * 27, component="m" * 27).startswith("seldon-")


def test_config_refuses_a_name_the_operator_would_break():
    name = "m" * (naming.longest_model_name("seldon") + 1)
    config = seldon_stack("staging")
    models = json.loads(config["mlserve:modelServing"])
    models["models"] = {name: models["models"]["cifar10"]}
    config["mlserve:modelServing"] = json.dumps(models)
    graph = evaluate("staging", config=config)
    assert f"model names may have at most {naming.longest_model_name('seldon')} characters on " \
           "seldon" in str(graph.error)
    assert "KEDA's HPA" in str(graph.error)


def test_pod_pattern_everywhere_is_the_operators(every_stack):
    pattern = f"{naming.seldon_pod_prefix('cifar10')}.*"
    (rule,) = [r for r in every_stack.resources if r.type.endswith(":PrometheusRule")
               and r.name != "node-health-alerts"]
    for alert in rule.inputs["spec"]["groups"][0]["rules"]:
        assert f'pod=~"{pattern}"' in alert["expr"], alert["alert"]
    (dashboard,) = [r for r in every_stack.resources if r.type == "kubernetes:core/v1:ConfigMap"
                    and r.inputs["metadata"]["name"] == "mlserve-model-cifar10"]
    panels = json.loads(next(iter(dashboard.inputs["data"].values())))["panels"]
    # Triton's panels select the operator's pods; the interceptor's (a model that may be at
    # zero replicas) its route, the predictor Service.
    pods = [p["targets"][0]["expr"] for p in panels if "interceptor" not in p["title"]]
    assert pods and all(pattern in expr for expr in pods)
    held = [p["targets"][0]["expr"] for p in panels if "interceptor" in p["title"]]
    assert len(held) == (2 if every_stack.stack == "dev" else 0)
    assert all('route_name=~"cifar10-default"' in expr for expr in held)


# ---- route and endpoint -----------------------------------------------------------------------

def test_the_route_exists_whatever_the_replicas(every_stack):
    (route,) = every_stack.of_type(ROUTE)
    spec = route.inputs["spec"]
    # Named like the operator's own route, so an old one can't shadow it silently (docs).
    assert route.inputs["metadata"]["name"] == "cifar10"
    assert spec["hosts"] == ["*"] and spec["gateways"] == ["istio-system/seldon-gateway"]
    host = "cifar10-default.models.svc.cluster.local"
    # Every request is for the predictor Service: straight, or (HTTP to a model that may be at
    # zero replicas) through the interceptor, with the Service as its Host.
    assert {d.get("headers", {}).get("request", {}).get("set", {}).get("host")
            or d["destination"]["host"] for r in spec["http"] for d in r["route"]} == {host}
    model = spec["http"][0]
    assert model["match"] == [{"uri": {"prefix": "/seldon/models/cifar10/v2/models/cifar10/"}}]
    assert model["rewrite"] == {"uri": "/v2/models/cifar10/"}
    # It waits for the SeldonDeployment, never for a Ready replica (no budget in dev at all).
    assert every_stack.waits_for(route, sdep(every_stack))
    assert not any(every_stack.waits_for(route, b) for b in every_stack.of_type(PDB))


def test_the_route_passes_the_v2_api_a_client_needs_and_nothing_else(seldon_dev):
    (route,) = seldon_dev.of_type(ROUTE)
    http = route.inputs["spec"]["http"]

    def routed(path: str, headers: dict | None = None) -> str | None:
        target = istio_route(http, path, headers)
        return target and target.path

    base = "/seldon/models/cifar10"
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/cifar10",
                 "/v2/models/cifar10/ready", "/v2/models/cifar10/infer",
                 "/v2/models/cifar10/versions/1/infer"):
        assert routed(base + path) == path
    for path in ("/v2/repository/models/cifar10/unload", "/v2/repository/index", "/v2/logging",
                 "/v2/models/cifar10x/infer", "/v2/systemsharedmemory/status"):
        assert routed(base + path) is None, path
    grpc = {"seldon": "cifar10", "namespace": "models"}
    assert routed("/inference.GRPCInferenceService/ModelInfer", grpc)
    assert routed("/inference.GRPCInferenceService/ModelInfer") is None  # headers required
    assert routed("/inference.GRPCInferenceService/RepositoryModelUnload", grpc) is None
    grpc_route = next(e for e in http if e["name"] == "grpc")
    assert grpc_route["route"] == [{"destination": {
        "host": "cifar10-default.models.svc.cluster.local", "port": {"number": 9500}}}]


def test_http_to_a_model_that_may_be_at_zero_is_held_grpc_is_not(every_stack):
    """The gateway rewrites the path, then sends HTTP to the interceptor with the predictor
    Service as Host; the interceptor forwards path and Host as received (http-add-on v0.15.0
    interceptor/handler/upstream.go:112-116) to `<service>.<namespace>:<port>` (routing.go:
    118-133), i.e. Triton's HTTP port on the predictor Service. gRPC stays direct: the route's
    target is one port, and the interceptor speaks HTTP/2 upstream only to a port whose
    appProtocol is `kubernetes.io/h2c` (upstream.go:147-172), which the operator never sets."""
    (route,) = every_stack.of_type(ROUTE)
    http = route.inputs["spec"]["http"]
    held = every_stack.stack == "dev"
    host = "cifar10-default.models.svc.cluster.local"
    for entry in http:
        (to,) = entry["route"]
        if entry["name"] == "grpc" or not held:
            assert to["destination"]["host"] == host and "headers" not in to
        else:
            assert to == {"destination": {
                "host": "keda-add-ons-http-interceptor-proxy.keda-http.svc.cluster.local",
                "port": {"number": 8080}}, "headers": {"request": {"set": {"host": host}}}}
            assert "rewrite" in entry and "timeout" not in entry
    intercepted = every_stack.of_type(INTERCEPTOR_ROUTE)
    if not held:
        assert intercepted == []
        return
    (intercepted_route,) = intercepted
    spec = intercepted_route.inputs["spec"]
    assert intercepted_route.inputs["metadata"]["namespace"] == "models"
    assert spec["target"] == {"service": "cifar10-default", "port": seldon.HTTP_PORT}
    assert spec["rules"] == [{"hosts": [host]}]
    # The fallback's port is no port of the predictor Service (the operator's Service has
    # Triton's http and grpc ports, docs/architecture.md): the interceptor's sidecar passes the
    # model's Host on it through to the fallback (docs/gpu-capacity.md).
    fallback = spec["coldStart"]["fallback"]["service"]
    assert fallback["port"] not in seldon.SELDON.serving_ports
    assert every_stack.waits_for(route, intercepted_route)


def test_endpoint_is_the_tutorials_client_url(every_stack):
    endpoint = every_stack.exports["models"]["cifar10"]
    address = endpoint["host"]
    assert endpoint["url"] == f"http://{address}/seldon/models/cifar10/v2/models/cifar10/infer"
    assert endpoint["curl"].startswith(f"curl -sS {endpoint['url']} ")


def test_the_gateway_is_the_ingress_gateway(seldon_dev):
    (gateway,) = [r for r in seldon_dev.resources if r.type.endswith(":Gateway")
                  and r.inputs["metadata"]["name"] == "seldon-gateway"]
    assert gateway.inputs["metadata"]["namespace"] == "istio-system"
    assert gateway.inputs["spec"]["selector"] == {"istio": "ingressgateway"}


# ---- readiness, disruption, network, scheduling -----------------------------------------------

def test_pulumi_up_waits_for_the_new_revision_where_there_is_a_floor(every_stack):
    budgets = every_stack.of_type(PDB)
    if every_stack.stack == "dev":
        assert budgets == []  # scale to zero: nothing to wait for (docs)
        return
    (budget,) = budgets
    labels = component(every_stack)["metadata"]["labels"]
    assert budget.inputs["metadata"]["name"] == "cifar10-stable"
    assert budget.inputs["metadata"]["annotations"] == {"pulumi.com/waitFor":
                                                        "condition=DisruptionAllowed"}
    assert budget.inputs["spec"]["selector"]["matchLabels"] == {
        k: labels[k] for k in (naming.MODEL_LABEL, naming.TRACK_LABEL, naming.REVISION_LABEL)}
    floor = {"staging": 1, "prod": 2}[every_stack.stack]
    assert budget.inputs["spec"]["minAvailable"] == floor - 1
    assert every_stack.waits_for(budget, sdep(every_stack))


def test_network_policy_opens_tritons_ports_only(seldon_dev):
    (policy,) = [p for p in seldon_dev.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
                 if p.inputs["metadata"]["name"] == "model-servers"]
    gateway_rule = policy.inputs["spec"]["ingress"][0]
    assert sorted(p["port"] for p in gateway_rule["ports"]) == [9000, 9500]
    # The gateway, and the interceptor that holds HTTP while the model wakes (dev).
    assert interceptor_peer() in gateway_rule["from"]


def test_the_storage_initializer_counts_in_the_pods_requests():
    from components.config.serving import ServedModelConfig

    small = ServedModelConfig.model_validate({"cpu": "50m", "memory": "64Mi"})
    cpu, memory = pod_requests(small, "seldon")
    assert (cpu, memory) == (SELDON_INITIALIZER_REQUESTS[0] + SIDECAR_REQUESTS[0],
                             SELDON_INITIALIZER_REQUESTS[1] + SIDECAR_REQUESTS[1])
    assert pod_requests(small, "kserve") == (50 + SIDECAR_REQUESTS[0], 64 + SIDECAR_REQUESTS[1])


def test_s3_through_irsa_only(seldon_dev):
    (secret,) = [s for s in seldon_dev.of_type("kubernetes:core/v1:Secret")
                 if s.inputs["metadata"]["name"] == "seldon-rclone-irsa"]
    env = secret.inputs["stringData"]
    assert env["RCLONE_CONFIG_S3_ENV_AUTH"] == "true"
    assert env["RCLONE_CONFIG_S3_REGION"] == "us-west-2"
    assert not any("KEY" in key for key in env)
    (account,) = seldon_dev.of_type("kubernetes:core/v1:ServiceAccount")
    assert account.inputs["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == \
        seldon_dev.exports["modelReaderRoleArn"]


def test_ordering(seldon_dev):
    deployment = sdep(seldon_dev)
    rel = releases(seldon_dev)
    for name in ("seldon-core", "keda"):
        assert seldon_dev.waits_for(deployment, rel[name])
    for obj in seldon_dev.of_type("aws:s3/bucketObjectv2:BucketObjectv2"):
        assert seldon_dev.waits_for(deployment, obj)


def test_metrics_scraped_from_tritons_port(seldon_dev):
    (monitor,) = [r for r in seldon_dev.resources if r.type.endswith(":PodMonitor")
                  and r.inputs["metadata"]["name"] == "cifar10-triton"]
    (endpoint,) = monitor.inputs["spec"]["podMetricsEndpoints"]
    assert monitor.inputs["spec"]["selector"] == {"matchLabels": {naming.MODEL_LABEL: "cifar10"}}
    assert endpoint["relabelings"][-1]["replacement"] == "$1:8002"


def test_objects_validate_against_schemas(every_stack):
    objects = manifests(every_stack)
    core = [o for o in objects if is_core(o)]
    assert [validate_core(o, "1.35") for o in core] == [None] * len(core)
    custom = [o for o in objects if not is_core(o) and o["kind"] != "SeldonDeployment"
              and not is_karpenter(o)]
    assert {"Gateway", "VirtualService", "PodMonitor", "PrometheusRule",
            "PeerAuthentication"} <= {o["kind"] for o in custom}
    assert validate_custom(custom) == [None] * len(custom)


def test_canary_needs_kserve():
    graph = evaluate("staging", config=seldon_stack("staging", **{
        "modelServing.models.cifar10.canary": {"percent": 10, "version": "0" * 20}}))
    assert "canary: needs backend kserve" in str(graph.error)
    assert json.dumps(graph.resources) == "[]"


def test_the_pool_must_hold_a_surge_replica_for_seldons_rollouts_too():
    """The operator's Deployments roll with maxUnavailable 0 (docs): one more pod than the
    floor, so a floor that fills the pool is refused as on KServe."""
    graph = evaluate("staging", config=seldon_stack("staging", **{
        "modelServing.models.cifar10.minReplicas": 3,
        "modelServing.models.cifar10.maxReplicas": 3}))
    assert "4 replica(s) are needed during a rollout" in str(graph.error)
    assert graph.resources == []
