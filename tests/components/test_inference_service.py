"""components/inference_service.py and components/model_serving.py: each model served on GPUs,
scaled on Triton's backlog, watched, reachable only from the gateway and Prometheus."""

from __future__ import annotations

import json
import re
import shlex
import urllib.request

import pytest

from components.inference_service import alert_expressions, dashboard_queries
from components.monitoring import PROMETHEUS_URL
from components.versions import TRITON_IMAGE_TAG
from tests.harness import ROOT_DIR, evaluate, set_path, stack_config
from tools.models import repository
from tools.models.triton import METRICS_ARGS
from tools.registry import version_uri

ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"


def isvc(graph, name="cifar10"):
    found = [r for r in graph.of_type(ISVC) if r.inputs["metadata"]["name"] == name]
    assert len(found) == 1
    return found[0].inputs


def served_config(graph):
    return json.loads(stack_config(graph.stack)["mlserve:modelServing"])["models"]["cifar10"]


def of_kind(graph, kind):
    return [r for r in graph.resources if r.custom and r.type.endswith(f":{kind}")]


def test_one_inference_service_per_model(graph):
    assert [r.inputs["metadata"]["name"] for r in graph.of_type(ISVC)] == ["cifar10"]
    meta = isvc(graph)["metadata"]
    assert meta["namespace"] == "models"
    assert meta["annotations"] == {"serving.kserve.io/deploymentMode": "Standard",
                                   "serving.kserve.io/autoscalerClass": "keda"}


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
    assert model["storageUri"] == graph.exports["modelStorageUris"]["cifar10"]
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
    version = graph.exports["modelVersions"]["cifar10"]
    assert external["metric"]["query"] == (
        'sum(nv_inference_pending_request_count{namespace="models",model="cifar10",'
        f'pod=~"cifar10-v-{version[:10]}-predictor-.*"}})')
    assert external["target"] == {"type": "Value", "value": str(config["targetPendingRequests"])}
    assert scaling["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert scaling["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == \
        config.get("cooldownSeconds", 300)


def test_scale_from_zero_wakes_on_gateway_requests(dev, prod):
    metrics = isvc(dev)["spec"]["predictor"]["autoScaling"]["metrics"]
    assert len(metrics) == 2
    demand = metrics[1]["external"]
    assert demand["metric"]["query"].startswith("clamp_max(sum(rate(istio_requests_total{")
    version = dev.exports["modelVersions"]["cifar10"][:10]
    assert f'destination_service_name="cifar10-v-{version}-predictor"' in \
        demand["metric"]["query"]
    assert demand["target"]["value"] == "1"
    monitors = [r.inputs["metadata"]["name"] for r in of_kind(dev, "PodMonitor")]
    assert "istio-ingressgateway" in monitors
    assert len(isvc(prod)["spec"]["predictor"]["autoScaling"]["metrics"]) == 1
    assert "istio-ingressgateway" not in [r.inputs["metadata"]["name"]
                                          for r in of_kind(prod, "PodMonitor")]


def test_route_at_the_gateway(graph):
    version = graph.exports["modelVersions"]["cifar10"][:10]
    (route,) = of_kind(graph, "VirtualService")
    spec = route.inputs["spec"]
    assert spec["hosts"] == ["cifar10-models.example.com"]
    assert spec["gateways"] == ["models/models-gateway"]
    assert spec["http"] == [{"route": [{"destination": {
        "host": f"cifar10-v-{version}-predictor.models.svc.cluster.local",
        "port": {"number": 80}}, "weight": 100}]}]
    (gateway,) = [g for g in of_kind(graph, "Gateway")
                  if g.inputs["metadata"]["name"] == "models-gateway"]
    assert gateway.inputs["spec"]["servers"][0]["hosts"] == ["models/*.example.com"]
    kserve = [r for r in graph.of_type("kubernetes:helm.sh/v3:Release")
              if r.inputs["name"] == "kserve"][0]
    assert kserve.inputs["values"]["kserve"]["controller"]["gateway"][
        "disableIngressCreation"] is True


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


# ---- canary: deploy, promote, roll back -----------------------------------------------------

OLD = "0123456789abcdef0123"


def canary_stack(**canary):
    config = set_path(stack_config("staging"), "modelServing.models.cifar10.version", OLD)
    return set_path(config, "modelServing.models.cifar10.canary", canary)


def test_canary_sends_a_share_to_the_new_content_hash():
    graph = evaluate("staging", config=canary_stack(percent=10))
    spec = isvc(graph)["spec"]
    new = repository.load(ROOT_DIR / "model_repo").models["cifar10"].content_hash
    assert spec["predictor"]["name"] == f"v-{OLD[:10]}"
    assert spec["predictor"]["model"]["storageUri"] == graph.exports["modelStorageUris"]["cifar10"]
    assert spec["predictor"]["model"]["storageUri"].endswith(f"/models/{OLD}")
    (canary,) = spec["canary"]
    assert canary["trafficPercent"] == 10
    assert canary["predictor"]["name"] == f"v-{new[:10]}"
    assert canary["predictor"]["model"]["storageUri"] == version_uri(
        graph.exports["modelBucketName"], "models", new)
    assert canary["predictor"]["minReplicas"] == 1
    assert "autoScaling" not in canary["predictor"] and "maxReplicas" not in canary["predictor"]
    assert graph.exports["models"]["cifar10"]["canaryVersion"] == new
    (route,) = of_kind(graph, "VirtualService")
    weights = {r["destination"]["host"].split(".")[0]: r["weight"]
               for r in route.inputs["spec"]["http"][0]["route"]}
    assert weights == {f"cifar10-v-{OLD[:10]}-predictor": 90,
                       f"cifar10-v-{new[:10]}-predictor": 10}


def test_promoting_keeps_the_canarys_deployment_and_rollback_removes_it():
    with_canary = isvc(evaluate("staging", config=canary_stack(percent=25)))
    canary_name = with_canary["spec"]["canary"][0]["predictor"]["name"]
    promoted = isvc(evaluate("staging"))  # version back to the repository's: the canary's
    assert promoted["spec"]["predictor"]["name"] == canary_name
    assert "canary" not in promoted["spec"]
    rolled_back = isvc(evaluate("staging", config=set_path(
        stack_config("staging"), "modelServing.models.cifar10.version", OLD)))
    assert rolled_back["spec"]["predictor"] == with_canary["spec"]["predictor"]
    assert "canary" not in rolled_back["spec"]


def test_canary_rules():
    graph = evaluate("dev", config=set_path(stack_config("dev"),
                                            "modelServing.models.cifar10.canary", {"percent": 5}))
    assert "canary: needs minReplicas >= 1" in str(graph.error)
    same = set_path(stack_config("staging"), "modelServing.models.cifar10.canary",
                    {"percent": 5})
    assert "canary must differ from the served version" in str(evaluate("staging",
                                                                        config=same).error)


# ---- watching -------------------------------------------------------------------------------

def test_pod_monitor_scrapes_triton_metrics(graph):
    (monitor,) = [m for m in of_kind(graph, "PodMonitor")
                  if m.inputs["metadata"]["name"] == "cifar10-triton"]
    assert monitor.inputs["spec"]["selector"] == {
        "matchLabels": {"serving.kserve.io/inferenceservice": "cifar10"}}
    assert monitor.inputs["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    permissive = [p for p in of_kind(graph, "PeerAuthentication")
                  if p.inputs["metadata"]["name"] == "cifar10-metrics"][0]
    assert permissive.inputs["spec"]["portLevelMtls"] == {"8002": {"mode": "PERMISSIVE"}}
    assert permissive.inputs["spec"]["mtls"] == {"mode": "STRICT"}


def test_alerts_for_errors_latency_and_gpu_starvation(graph):
    config = served_config(graph)
    (rule,) = of_kind(graph, "PrometheusRule")
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


def test_disruption_budget_when_two_or_more_replicas(dev, prod):
    assert dev.of_type("kubernetes:policy/v1:PodDisruptionBudget") == []
    (budget,) = prod.of_type("kubernetes:policy/v1:PodDisruptionBudget")
    assert budget.inputs["spec"]["minAvailable"] == 1


def test_only_the_gateway_and_prometheus_reach_model_pods(graph):
    (policy,) = graph.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
    spec = policy.inputs["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    sources = [(rule["from"][0]["namespaceSelector"]["matchLabels"],
                rule["from"][0]["podSelector"]["matchLabels"]) for rule in spec["ingress"]]
    assert sources == [({"kubernetes.io/metadata.name": "istio-system"},
                        {"istio": "ingressgateway"}),
                       ({"kubernetes.io/metadata.name": "monitoring"},
                        {"app.kubernetes.io/name": "prometheus"})]
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
    assert graph.waits_for(service, graph.one("mlserve:iam:IrsaRole" if False else
                                              "aws:iam/rolePolicy:RolePolicy",
                                              "models-reader-policy"))
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
    from components.inference_service import ModelPlan, backlog_query  # noqa: F401

    exported = _scrape(local_triton)
    queries = [m["external"]["metric"]["query"]
               for m in isvc(graph)["spec"]["predictor"]["autoScaling"]["metrics"]]
    (rule,) = of_kind(graph, "PrometheusRule")
    queries += [r["expr"] for r in rule.inputs["spec"]["groups"][0]["rules"]]
    maps = [r for r in graph.of_type("kubernetes:core/v1:ConfigMap")
            if r.inputs["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    dashboard = json.loads(next(iter(maps[0].inputs["data"].values())))
    queries += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    names = {n for q in queries for n in re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\{", q)}
    triton = {n for n in names if n.startswith("nv_")}
    # The others come from the exporters the platform installs, not from Triton.
    assert names - triton <= {"kube_pod_status_phase", "DCGM_FI_DEV_GPU_UTIL",
                              "DCGM_FI_DEV_FB_USED", "istio_requests_total"}
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
    from components.inference_service import ModelPlan

    plan = ModelPlan(name="cifar10", namespace="models", service_account="s",
                     storage_prefix="models", version="a" * 20,
                     config=__import__("components.config", fromlist=["ServedModelConfig"])
                     .ServedModelConfig(), gpu_pool="p")
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
