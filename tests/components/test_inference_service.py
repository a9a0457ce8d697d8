"""components/inference_service.py and components/model_serving.py: each model served on GPUs,
scaled on Triton's backlog, watched, reachable only from the gateway and Prometheus."""

from __future__ import annotations

import json
import re
import shlex
import urllib.request

import pytest

from components import naming
from components.kserve import KSERVE, client_paths
from components.monitoring import PROMETHEUS_URL
from components.promql import alert_expressions, dashboard_queries
from components.versions import TRITON_IMAGE_TAG
from modelrepo.repository import load
from modelrepo.triton import METRICS_ARGS
from tests import istio_route
from tests.harness import ROOT_DIR, evaluate, set_path, stack_config
from tests.kserve_schema import validate_inference_service

ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
# The version a model serves by default: the hash of its own files.
CIFAR10 = load(ROOT_DIR / "model_repo").models["cifar10"].content_hash


def isvc(graph, name="cifar10-stable"):
    found = [r for r in graph.of_type(ISVC) if r.inputs["metadata"]["name"] == name]
    assert len(found) == 1, [r.inputs["metadata"]["name"] for r in graph.of_type(ISVC)]
    return found[0].inputs


def budgets(graph):
    return {r.inputs["metadata"]["name"]: r for r in graph.of_type(PDB)}


def served_config(graph):
    return json.loads(stack_config(graph.stack)["mlserve:modelServing"])["models"]["cifar10"]


def of_kind(graph, kind):
    return [r for r in graph.resources if r.custom and r.type.endswith(f":{kind}")]


def model_rules(graph):
    """The models' PrometheusRules (not the platform's GPU node-health rule)."""
    return [r for r in of_kind(graph, "PrometheusRule") if r.name != "node-health-alerts"]


def test_one_stable_inference_service_per_model(graph):
    assert [r.inputs["metadata"]["name"] for r in graph.of_type(ISVC)] == ["cifar10-stable"]
    meta = isvc(graph)["metadata"]
    assert meta["namespace"] == "models"
    assert meta["annotations"] == {"serving.kserve.io/deploymentMode": "Standard",
                                   "serving.kserve.io/autoscalerClass": "keda",
                                   # while the model loads (tests/components/test_karpenter.py)
                                   "karpenter.sh/do-not-disrupt": "30m"}
    labels = meta["labels"]
    assert {k: labels[k] for k in (naming.MODEL_LABEL, naming.TRACK_LABEL,
                                   naming.VERSION_LABEL)} == {
        naming.MODEL_LABEL: "cifar10", naming.TRACK_LABEL: "stable",
        naming.VERSION_LABEL: CIFAR10}
    # No predictor name: KServe names the Deployment after the InferenceService, the same for
    # every version, and its clean-up of other predictors never fires.
    assert "name" not in isvc(graph)["spec"]["predictor"]


def test_a_version_change_is_a_rolling_update_that_keeps_serving(graph):
    predictor = isvc(graph)["spec"]["predictor"]
    assert predictor["deploymentStrategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    model = predictor["model"]
    drain = model["lifecycle"]["preStop"]["sleep"]["seconds"]
    # The pod keeps serving while gateways learn it's stopping, then Triton drains (30 s).
    assert drain >= 5 and predictor["terminationGracePeriodSeconds"] >= drain + 30


def test_pulumi_up_waits_for_the_floor_of_the_new_revision(staging, prod):
    for graph in (staging, prod):
        config = served_config(graph)
        service = isvc(graph)
        budget = budgets(graph)["cifar10-stable"]
        assert budget.inputs["metadata"]["annotations"] == {
            "pulumi.com/waitFor": "condition=DisruptionAllowed"}
        # DisruptionAllowed is True when currentHealthy > minAvailable: the floor is Ready.
        assert budget.inputs["spec"]["minAvailable"] == config["minReplicas"] - 1
        labels = service["metadata"]["labels"]
        assert budget.inputs["spec"]["selector"]["matchLabels"] == {
            k: labels[k] for k in (naming.MODEL_LABEL, naming.TRACK_LABEL,
                                   naming.REVISION_LABEL)}
        # The failure names the model: the resource is named after it, within its timeout.
        assert "cifar10" in budget.name
        assert budget.custom_timeouts == {"create": "30m", "update": "30m"}
        stable = graph.one(ISVC, "model-serving-cifar10-stable")
        assert graph.waits_for(budget, stable)
        route = graph.one("kubernetes:networking.istio.io/v1:VirtualService")
        assert graph.waits_for(route, budget)


def test_ready_timeout_per_model():
    graph = evaluate("staging", config=set_path(
        stack_config("staging"), "modelServing.models.cifar10.readyTimeoutMinutes", 45))
    assert budgets(graph)["cifar10-stable"].custom_timeouts == {"create": "45m",
                                                                "update": "45m"}


def test_the_revision_follows_the_pod_template_not_the_scaling():
    base = isvc(evaluate("staging"))["metadata"]["labels"][naming.REVISION_LABEL]
    scaled = isvc(evaluate("staging", config=set_path(
        stack_config("staging"), "modelServing.models.cifar10.maxReplicas", 9)))
    resized = isvc(evaluate("staging", config=set_path(
        stack_config("staging"), "modelServing.models.cifar10.memory", "10Gi")))
    assert scaled["metadata"]["labels"][naming.REVISION_LABEL] == base
    assert resized["metadata"]["labels"][naming.REVISION_LABEL] != base


def test_predictor_runs_triton_on_the_configured_gpus(graph):
    config = served_config(graph)
    predictor = isvc(graph)["spec"]["predictor"]
    assert predictor["serviceAccountName"] == "model-server"
    assert predictor["minReplicas"] == config["minReplicas"]
    assert predictor["maxReplicas"] == config["maxReplicas"]
    assert predictor["nodeSelector"] == {"nvidia.com/gpu.present": "true",
                                         "mlserve.io/pool": config["gpuPool"]}
    assert predictor["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists",
                                         "effect": "NoSchedule"}]
    model = predictor["model"]
    assert model["modelFormat"] == {"name": "triton"}
    assert model["protocolVersion"] == "v2"
    assert model["runtime"] == "kserve-tritonserver"
    assert model["runtimeVersion"] == TRITON_IMAGE_TAG
    assert model["storageUri"] == f"s3://{graph.exports['modelBucketName']}/models/{CIFAR10}"
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert model["resources"]["requests"]["cpu"] == config["cpu"]
    assert model["resources"]["limits"]["memory"] == config["memory"]
    # KServe builds the Service from the first port: it must be Triton's HTTP port.
    assert model["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                              {"name": "metrics", "containerPort": 8002, "protocol": "TCP"}]
    assert model["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert model["args"][:2] == ["--model-control-mode=explicit", "--load-model=cifar10"]
    assert set(METRICS_ARGS) <= set(model["args"])


def test_keda_scales_on_tritons_backlog(graph):
    config = served_config(graph)
    scaling = isvc(graph)["spec"]["predictor"]["autoScaling"]
    metric = scaling["metrics"][0]
    assert metric["type"] == "External"
    external = metric["external"]
    assert external["metric"]["backend"] == "prometheus"
    assert external["metric"]["serverAddress"] == PROMETHEUS_URL
    assert external["metric"]["query"] == (
        'sum(nv_inference_pending_request_count{namespace="models",model="cifar10",'
        'pod=~"cifar10-stable-predictor-.*"})')
    assert external["target"] == {"type": "Value", "value": str(config["targetPendingRequests"])}
    assert scaling["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert scaling["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == \
        config.get("cooldownSeconds", 300)


def test_scale_from_zero_wakes_on_the_interceptors_requests(dev, prod):
    """The requests the KEDA HTTP add-on's interceptor holds for the track wake it
    (tests/components/test_cold_start.py follows the labels to the route)."""
    metrics = isvc(dev)["spec"]["predictor"]["autoScaling"]["metrics"]
    assert len(metrics) == 2
    demand = metrics[1]["external"]
    assert demand["metric"]["query"].startswith(
        "clamp_max((sum(interceptor_request_concurrency{")
    assert 'route_name="cifar10-stable-predictor"' in demand["metric"]["query"]
    assert demand["target"]["value"] == "1"
    monitors = [r.inputs["metadata"]["name"] for r in of_kind(dev, "PodMonitor")]
    # The gateway's metrics would see the interceptor as the destination, not the model.
    assert "keda-http-interceptor" in monitors and "istio-ingressgateway" not in monitors
    assert len(isvc(prod)["spec"]["predictor"]["autoScaling"]["metrics"]) == 1
    assert "istio-ingressgateway" not in [r.inputs["metadata"]["name"]
                                          for r in of_kind(prod, "PodMonitor")]


def test_route_at_the_gateway(graph):
    (route,) = of_kind(graph, "VirtualService")
    spec = route.inputs["spec"]
    assert spec["hosts"] == ["cifar10-models.example.com"]
    assert spec["gateways"] == ["models/models-gateway"]
    predictor = "cifar10-stable-predictor.models.svc.cluster.local"
    if graph.stack == "dev":  # minReplicas 0: held by the interceptor while it wakes
        destination = {"destination": {
            "host": "keda-add-ons-http-interceptor-proxy.keda-http.svc.cluster.local",
            "port": {"number": 8080}}, "headers": {"request": {"set": {"host": predictor}}}}
    else:
        destination = {"destination": {"host": predictor, "port": {"number": 80}}}
    assert spec["http"] == [{"name": "model", "match": client_paths("cifar10"),
                             "route": [{**destination, "weight": 100}]}]
    (gateway,) = [g for g in of_kind(graph, "Gateway")
                  if g.inputs["metadata"]["name"] == "models-gateway"]
    assert gateway.inputs["spec"]["servers"][0]["hosts"] == ["models/*.example.com"]
    kserve = [r for r in graph.of_type("kubernetes:helm.sh/v3:Release")
              if r.inputs["name"] == "kserve"][0]
    assert kserve.inputs["values"]["kserve"]["controller"]["gateway"][
        "disableIngressCreation"] is True


def test_the_route_passes_the_clients_calls_and_nothing_else(graph):
    """What tools/smoke.py and the tutorial's client call gets through; Triton's repository,
    logging, trace and shared-memory endpoints, and other models' paths, do not."""
    (route,) = of_kind(graph, "VirtualService")

    def routed(path: str) -> bool:
        return istio_route.route(route.inputs["spec"]["http"], path) is not None

    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/cifar10",
                 "/v2/models/cifar10/ready", "/v2/models/cifar10/infer",
                 "/v2/models/cifar10/versions/1/infer"):
        assert routed(path), path
    for path in ("/v2/repository/models/cifar10/unload", "/v2/repository/index", "/v2/logging",
                 "/v2/trace/setting", "/v2/systemsharedmemory/register", "/v2",
                 "/v2/models/other/infer", "/v2/models/cifar10x/infer", "/metrics"):
        assert not routed(path), path


def test_hpa_on_cpu_as_a_fallback():
    graph = evaluate("staging", config=set_path(stack_config("staging"),
                                                "modelServing.models.cifar10.autoscaler", "hpa"))
    service = isvc(graph)
    assert service["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "hpa"
    (metric,) = service["spec"]["predictor"]["autoScaling"]["metrics"]
    assert metric == {"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}


def test_scale_to_zero_only_where_allowed(dev, prod):
    assert isvc(dev)["spec"]["predictor"]["minReplicas"] == 0
    assert isvc(prod)["spec"]["predictor"]["minReplicas"] >= 2
    config = set_path(stack_config("staging"), "modelServing.models.cifar10.minReplicas", 0)
    graph = evaluate("staging", config=config)
    assert "modelServing.allowScaleToZero" in str(graph.error) and graph.resources == []


# ---- canary (deploy, promote and roll back: tests/components/test_rollout_contract.py) ----

OLD = "0123456789abcdef0123"


def canary_stack(**canary):
    config = set_path(stack_config("staging"), "modelServing.models.cifar10.version", OLD)
    return set_path(config, "modelServing.models.cifar10.canary", canary)


def test_canary_is_its_own_inference_service_with_a_share_of_the_route():
    graph = evaluate("staging", config=canary_stack(percent=10))
    stable, canary = isvc(graph), isvc(graph, "cifar10-canary")
    assert stable["metadata"]["labels"][naming.VERSION_LABEL] == OLD
    assert stable["spec"]["predictor"]["model"]["storageUri"].endswith(f"/models/{OLD}")
    assert "canary" not in stable["spec"], "KServe's in-place canary isn't used"
    assert canary["metadata"]["labels"][naming.TRACK_LABEL] == "canary"
    assert canary["metadata"]["labels"][naming.VERSION_LABEL] == CIFAR10
    assert canary["spec"]["predictor"]["model"]["storageUri"].endswith(f"/models/{CIFAR10}")
    assert graph.exports["models"]["cifar10"]["canaryVersion"] == CIFAR10
    (route,) = of_kind(graph, "VirtualService")
    weights = {r["destination"]["host"].split(".")[0]: r["weight"]
               for r in route.inputs["spec"]["http"][0]["route"]}
    assert weights == {"cifar10-stable-predictor": 90, "cifar10-canary-predictor": 10}
    # The route moves traffic to the canary only once its replicas are Ready.
    canary_budget = budgets(graph)["cifar10-canary"]
    assert canary_budget.inputs["spec"]["minAvailable"] == 0  # one replica: DisruptionAllowed
    assert graph.waits_for(graph.one("kubernetes:networking.istio.io/v1:VirtualService"),
                           canary_budget)
    for service in (stable, canary):
        assert validate_inference_service(service) == []


def test_a_fixed_canary_under_keda_creates_no_empty_scaled_object():
    """KServe builds a canary's autoscaler from the InferenceService's annotations; a ScaledObject
    without triggers is refused by KEDA's webhook. A fixed canary has autoscaler class none:
    KServe sets the Deployment's replicas and creates no autoscaler."""
    config = set_path(canary_stack(percent=10, replicas=2), "gpuNodeGroups[0].maxSize", 4)
    canary = isvc(evaluate("staging", config=config), "cifar10-canary")
    assert canary["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "none"
    assert canary["spec"]["predictor"]["minReplicas"] == 2
    assert "autoScaling" not in canary["spec"]["predictor"]


def test_a_growing_canary_scales_on_its_own_pods():
    graph = evaluate("staging", config=canary_stack(percent=50, replicas=1, maxReplicas=3))
    canary = isvc(graph, "cifar10-canary")
    predictor = canary["spec"]["predictor"]
    assert canary["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "keda"
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 3)
    queries = [m["external"]["metric"]["query"] for m in predictor["autoScaling"]["metrics"]]
    assert queries and all('pod=~"cifar10-canary-predictor-.*"' in q for q in queries)
    stable_queries = [m["external"]["metric"]["query"]
                      for m in isvc(graph)["spec"]["predictor"]["autoScaling"]["metrics"]]
    assert all('pod=~"cifar10-stable-predictor-.*"' in q for q in stable_queries)


def test_canary_rules():
    same = set_path(stack_config("staging"), "modelServing.models.cifar10.canary",
                    {"percent": 5})
    assert "canary must differ from the served version" in str(evaluate("staging",
                                                                        config=same).error)
    shrinking = canary_stack(percent=5, replicas=3, maxReplicas=2)
    assert "canary.maxReplicas: must be >= replicas (3), got 2" in str(
        evaluate("staging", config=shrinking).error)


# ---- watching -------------------------------------------------------------------------------

def test_pod_monitor_scrapes_triton_metrics(graph):
    (monitor,) = [m for m in of_kind(graph, "PodMonitor")
                  if m.inputs["metadata"]["name"] == "cifar10-triton"]
    # Every track's pods: KServe copies the InferenceService's labels onto them.
    assert monitor.inputs["spec"]["selector"] == {"matchLabels": {"mlserve.io/model": "cifar10"}}
    assert monitor.inputs["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    permissive = [p for p in of_kind(graph, "PeerAuthentication")
                  if p.inputs["metadata"]["name"] == "cifar10-metrics"][0]
    # Plaintext for Prometheus on the metrics port; dev's model may be at zero, and the KEDA HTTP
    # add-on's interceptor reaches its HTTP port past its sidecar (tests/components/test_cold_start.py).
    held = {"8080": {"mode": "PERMISSIVE"}} if graph.stack == "dev" else {}
    assert permissive.inputs["spec"]["portLevelMtls"] == {"8002": {"mode": "PERMISSIVE"}, **held}
    assert permissive.inputs["spec"]["mtls"] == {"mode": "STRICT"}


def test_alerts_for_errors_latency_and_gpu_starvation(graph):
    config = served_config(graph)
    (rule,) = model_rules(graph)
    alerts = {r["alert"]: r for r in rule.inputs["spec"]["groups"][0]["rules"]}
    assert set(alerts) == {"ModelErrorRateHigh", "ModelLatencyP95AboveSLO",
                           "ModelPodsPendingForGPU"}
    assert alerts["ModelLatencyP95AboveSLO"]["expr"].endswith(f"> {config['sloP95Ms']}")
    assert alerts["ModelErrorRateHigh"]["expr"].endswith(
        f"> {config.get('maxErrorRate', 0.01)}")


def test_dashboard_per_model(graph):
    maps = [r for r in graph.of_type("kubernetes:core/v1:ConfigMap")
            if r.inputs["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    (dashboard_map,) = maps
    (body,) = dashboard_map.inputs["data"].values()
    dashboard = json.loads(body)
    titles = {p["title"] for p in dashboard["panels"]}
    for needed in ("Requests/s", "Failures/s", "p50 latency (ms)", "p95 latency (ms)",
                   "p99 latency (ms)", "Queue time per request (ms)",
                   "Batch size (inferences per execution)", "Replicas", "GPU utilisation (%)",
                   "GPU memory used (MiB)"):
        assert needed in titles


def test_one_disruption_budget_per_track_with_a_floor(dev, staging, prod):
    # One budget per pod (the eviction API refuses pods under two), none at zero replicas.
    assert dev.of_type(PDB) == []
    assert budgets(staging)["cifar10-stable"].inputs["spec"]["minAvailable"] == 0
    assert budgets(prod)["cifar10-stable"].inputs["spec"]["minAvailable"] == 1


def test_only_the_gateway_and_prometheus_reach_model_pods(graph):
    (policy,) = [p for p in graph.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
                 if p.inputs["metadata"]["name"] == "model-servers"]
    spec = policy.inputs["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    sources = [[(peer["namespaceSelector"]["matchLabels"], peer["podSelector"]["matchLabels"])
                for peer in rule["from"]] for rule in spec["ingress"]]
    gateway = [({"kubernetes.io/metadata.name": "istio-system"}, {"istio": "ingressgateway"})]
    if graph.stack == "dev":  # the interceptor forwards a held model's requests
        gateway.append(({"kubernetes.io/metadata.name": "keda-http"},
                        {"app.kubernetes.io/component": "interceptor",
                         "app.kubernetes.io/name": "http-add-on"}))
    assert sources == [gateway, [({"kubernetes.io/metadata.name": "monitoring"},
                                  {"app.kubernetes.io/name": "prometheus"})]]
    cni = [a for a in graph.of_type("aws:eks/addon:Addon") if a.inputs["addonName"] == "vpc-cni"]
    assert json.loads(cni[0].inputs["configurationValues"]) == {"enableNetworkPolicy": "true"}


def test_service_account_uses_irsa_and_no_static_keys_anywhere(graph):
    (account,) = graph.of_type("kubernetes:core/v1:ServiceAccount")
    assert account.inputs["automountServiceAccountToken"] is False
    annotations = account.inputs["metadata"]["annotations"]
    assert annotations["eks.amazonaws.com/role-arn"] == graph.exports["modelReaderRoleArn"]
    assert annotations["serving.kserve.io/s3-region"] == "us-west-2"
    assert annotations["serving.kserve.io/s3-usehttps"] == "1"
    everything = json.dumps([r.inputs for r in graph.resources]).lower()
    for secret in ("aws_access_key_id", "aws_secret_access_key", "secretaccesskey"):
        assert secret not in everything


def test_models_wait_for_runtime_identity_files_and_keda(graph):
    service = [r for r in graph.of_type(ISVC)][0]
    releases = {r.inputs["name"]: r for r in graph.of_type("kubernetes:helm.sh/v3:Release")}
    assert graph.waits_for(service, releases["kserve-runtime-configs"])
    assert graph.waits_for(service, releases["keda"])
    # The whole reader role: the role and the inline policy that lets it read the bucket, so the
    # storage initializer never starts with an identity that cannot fetch the model yet.
    reader = graph.one("mlserve:iam:IrsaRole", "models-reader")
    assert {r.type for r in graph.descendants(reader) if r.custom} == {
        "aws:iam/role:Role", "aws:iam/rolePolicy:RolePolicy"}
    assert graph.waits_for(service, reader)
    for obj in graph.of_type("aws:s3/bucketObjectv2:BucketObjectv2"):
        assert graph.waits_for(service, obj)


def test_outputs_per_model(graph):
    endpoint = graph.exports["models"]["cifar10"]
    assert endpoint["host"] == "cifar10-models.example.com"
    assert endpoint["url"].startswith("http://k8s-istiosys-") and \
        endpoint["url"].endswith("/v2/models/cifar10/infer")
    assert endpoint["version"] == graph.exports["modelVersions"]["cifar10"]
    assert shlex.split(endpoint["curl"])[0] == "curl"


# ---- against the real local Triton ----------------------------------------------------------

def _scrape(server) -> set[str]:
    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines()
            if line and not line.startswith("#")}


def test_every_promql_metric_exists_on_a_live_triton(graph, local_triton):
    from components.model_plan import ModelPlan  # noqa: F401
    from components.promql import backlog_query  # noqa: F401

    exported = _scrape(local_triton)
    queries = [m["external"]["metric"]["query"]
               for m in isvc(graph)["spec"]["predictor"]["autoScaling"]["metrics"]]
    (rule,) = model_rules(graph)
    queries += [r["expr"] for r in rule.inputs["spec"]["groups"][0]["rules"]]
    maps = [r for r in graph.of_type("kubernetes:core/v1:ConfigMap")
            if r.inputs["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    dashboard = json.loads(next(iter(maps[0].inputs["data"].values())))
    queries += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    names = {n for q in queries for n in re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\{", q)}
    triton = {n for n in names if n.startswith("nv_")}
    # The others come from the exporters the platform installs, not from Triton (the KEDA HTTP
    # add-on's interceptor: tests/components/test_cold_start.py).
    assert names - triton <= {"kube_pod_status_phase", "DCGM_FI_DEV_GPU_UTIL",
                              "DCGM_FI_DEV_FB_USED", "istio_requests_total",
                              "interceptor_request_concurrency",
                              "interceptor_request_count_total"}
    assert triton and triton <= exported, sorted(triton - exported)


def test_the_output_curl_request_is_answered_by_a_local_triton(graph, local_triton):
    words = shlex.split(graph.exports["models"]["cifar10"]["curl"])
    url = next(w for w in words if w.startswith("http://"))
    path = "/" + url.split("/", 3)[3]
    headers = dict(h.split(": ", 1) for h in
                   (words[i + 1] for i, w in enumerate(words) if w == "-H"))
    assert headers.pop("Host") == graph.exports["models"]["cifar10"]["host"]
    body = words[words.index("-d") + 1].encode()
    request = urllib.request.Request(local_triton.url + path, data=body, headers=headers,
                                     method="POST")
    answer = json.load(urllib.request.urlopen(request, timeout=30))
    probs = answer["outputs"][0]["data"]
    assert len(probs) == 10 and sum(probs) == pytest.approx(1.0, abs=1e-5)


def test_queries_select_one_model_in_one_namespace(graph):
    from components.model_plan import ModelPlan

    plan = ModelPlan(name="cifar10", namespace="models", service_account="s",
                     storage_prefix="models", version="a" * 20,
                     config=__import__("components.config.serving", fromlist=["ServedModelConfig"])
                     .ServedModelConfig(), gpu_pool="p", backend=KSERVE)
    for expr in [*alert_expressions(plan).values(), *dashboard_queries(plan).values()]:
        for selector in re.findall(r"nv_\w+\{([^}]*)\}", expr):
            assert 'namespace="models"' in selector and 'model="cifar10"' in selector


def test_without_monitoring_models_get_no_monitoring_objects():
    config = set_path(stack_config("staging"), "platform.monitoring.enabled", False)
    config = set_path(config, "platform.dcgmExporter.enabled", False)
    config = set_path(config, "modelServing.models.cifar10.autoscaler", "hpa")
    graph = evaluate("staging", config=config)
    assert graph.error is None, graph.error
    assert of_kind(graph, "PodMonitor") == [] and of_kind(graph, "PrometheusRule") == []
    assert isvc(graph)["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "hpa"


def test_default_models_fall_back_to_hpa_without_keda():
    config = set_path(stack_config("staging"), "modelServing.models", {})
    config = set_path(config, "platform.keda.enabled", False)
    graph = evaluate("staging", config=config)
    assert graph.error is None, graph.error
    assert isvc(graph)["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "hpa"


def test_kserve_waits_for_keda(graph):
    releases = {r.inputs["name"]: r for r in graph.of_type("kubernetes:helm.sh/v3:Release")}
    assert graph.waits_for(releases["kserve"], releases["keda"])


def test_triton_tag_from_config_reaches_the_model():
    graph = evaluate("staging", config=set_path(stack_config("staging"),
                                                "platform.kserve.tritonImageTag", "26.08-py3"))
    assert isvc(graph)["spec"]["predictor"]["model"]["runtimeVersion"] == "26.08-py3"


def test_model_plan_problems_are_reported_together():
    config = set_path(stack_config("staging"), "modelServing.models.cifar10.canary",
                      {"percent": 5})
    config = set_path(config, "modelServing.models.ghost", {"gpuPool": "a10g"})
    config = set_path(config, "gpuNodeGroups[0].maxSize", 5)
    graph = evaluate("staging", config=config)
    assert graph.resources == [] and [p.split(":", 2)[1] for p in graph.error.problems] == [
        "modelServing.models.ghost", "modelServing.models.cifar10.canary.version"]


def test_model_pods_run_as_tritons_own_user(graph):
    """The Triton image declares no USER: runAsNonRoot alone would stop the pod from starting, so
    the pod names Triton's uid (1000, asserted by Triton's own image build)."""
    for service in graph.of_type(ISVC):
        context = service.inputs["spec"]["predictor"]["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == context["runAsGroup"] == 1000
