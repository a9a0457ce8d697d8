"""The Seldon client path end to end, offline: a real Triton started with the arguments the stack
renders for Seldon, behind a proxy that applies the stack's VirtualService as Istio does and,
for the model that may be at zero replicas, its InterceptorRoute as the interceptor does
(tests/istio_route.py), reached at the URL the stack outputs by tools.smoke."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from components import cold_start
from modelrepo import repository
from tests.harness import ROOT_DIR, evaluate, set_path, stack_config
from tests.istio_route import RoutingProxy
from tools import smoke
from tools.models.serve import TritonServer, write_twins

SDEP = "kubernetes:machinelearning.seldon.io/v1:SeldonDeployment"
ROUTE = "kubernetes:networking.istio.io/v1:VirtualService"
INTERCEPTOR_ROUTE = "kubernetes:http.keda.sh/v1beta1:InterceptorRoute"
INTERCEPTOR = (f"{cold_start.INTERCEPTOR_PROXY_SERVICE}.{cold_start.NAMESPACE}.svc.cluster.local",
               cold_start.INTERCEPTOR_PROXY_PORT)
PREDICTOR = "cifar10-default.models"
# What the harness owns on loopback: the binary, its ports and the repository folder.
HARNESS_FLAGS = ("--http-port=", "--grpc-port=", "--model-repository=")


@pytest.fixture(scope="module")
def rendered():
    """dev on Seldon, the model on CPU (so Triton also gets --model-config-name=cpu)."""
    config = set_path(stack_config("dev"), "modelServing.backend", "seldon")
    config = set_path(config, "modelServing.models.cifar10", {
        "gpus": 0, "minReplicas": 0, "maxReplicas": 2, "cpu": "1", "memory": "2Gi"})
    graph = evaluate("dev", config=config)
    assert graph.error is None, graph.error
    (sdep,) = graph.of_type(SDEP)
    (container,) = sdep.inputs["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"]
    (route,) = graph.of_type(ROUTE)
    held = [r.inputs for r in graph.of_type(INTERCEPTOR_ROUTE)]
    return (container["args"], route.inputs["spec"]["http"], graph.exports["models"]["cifar10"],
            held)


def tritons_own_args(args: list[str]) -> tuple[str, ...]:
    assert args[0] == "/opt/tritonserver/bin/tritonserver"
    return tuple(a for a in args[1:] if not a.startswith(HARNESS_FLAGS))


@pytest.fixture(scope="module")
def repository_with_a_broken_model(tmp_path_factory):
    """The repository's models as loopback twins, next to one that can't load."""
    root = write_twins(repository.load(ROOT_DIR / "model_repo"),
                       tmp_path_factory.mktemp("seldon") / "repo")
    broken = root / "broken"
    shutil.copytree(root / "cifar10", broken)
    (broken / "config.pbtxt").write_text('name: "broken"\nbackend: "python"\n'
                                         'input [{ name: "x" data_type: TYPE_NOPE dims: [1] }]\n')
    return root


@pytest.fixture(scope="module")
def served(rendered, repository_with_a_broken_model):
    args, routes, endpoint, held = rendered
    with TritonServer(str(repository_with_a_broken_model),
                      extra_args=tritons_own_args(args)) as server:
        # The model may be at zero replicas: its HTTP goes through the interceptor, which
        # forwards to `<service>.<namespace>:<port>` (the predictor Service, Triton's HTTP port).
        upstream = {(PREDICTOR, 9000): server.url}
        with RoutingProxy(routes, upstream, interceptor=INTERCEPTOR,
                          interceptor_routes=held) as proxy:
            yield server, proxy, endpoint


def test_the_stacks_url_passes_smoke_through_the_route(served):
    server, proxy, endpoint = served
    url = proxy.rebase(endpoint["url"])
    assert url.endswith("/seldon/models/cifar10/v2/models/cifar10/infer")
    result = subprocess.run([sys.executable, "-m", "tools.smoke", "--url", url, "--wait", "30"],
                            cwd=ROOT_DIR, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    for check in ("/v2/health/live", "/v2/health/ready", "/v2/models/cifar10/ready",
                  "metadata", "inference"):
        assert f"PASS  {check}" in result.stdout
    # Triton saw the paths without the prefix, as Envoy rewrites them, through the interceptor.
    assert ("/seldon/models/cifar10/v2/models/cifar10/infer",
            "/v2/models/cifar10/infer") in proxy.seen
    assert proxy.hops and set(proxy.hops) == {(INTERCEPTOR, (PREDICTOR, 9000))}


def test_a_gateway_url_with_the_path_prefix(served):
    _, proxy, _ = served
    endpoints = smoke.endpoints_from_url(proxy.url, None, ["cifar10"], "/seldon/models/{model}")
    assert [e.base for e in endpoints] == [f"{proxy.url}/seldon/models/cifar10"]
    assert smoke.run(endpoints) is True


def test_latency_summaries_and_the_backlog_exist(served):
    """The series the SLO alert, the dashboards and KEDA read (after the smoke's inference)."""
    server, proxy, endpoint = served
    assert smoke.run([smoke.Endpoint("cifar10", proxy.rebase(endpoint["url"]).split(
        "/v2/models/")[0], None)]) is True
    with urllib.request.urlopen(server.metrics_url, timeout=10) as answer:
        metrics = answer.read().decode()
    assert any(line.startswith("nv_inference_request_summary_us{") and 'model="cifar10"' in line
               and 'quantile="0.95"' in line for line in metrics.splitlines())
    assert any(line.startswith("nv_inference_pending_request_count{")
               and 'model="cifar10"' in line for line in metrics.splitlines())


def test_one_broken_model_takes_nothing_down_and_stays_unloaded(served):
    server, proxy, _ = served
    with urllib.request.urlopen(f"{server.url}/v2/repository/index", data=b"{}",
                                timeout=10) as answer:
        index = {m["name"]: m.get("state") for m in json.loads(answer.read())}
    assert index["cifar10"] == "READY" and index.get("broken") in (None, "")


def test_the_route_keeps_tritons_repository_api_inside(served):
    server, proxy, _ = served
    request = urllib.request.Request(
        f"{proxy.url}/seldon/models/cifar10/v2/repository/models/cifar10/unload", data=b"{}",
        method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 404
    with urllib.request.urlopen(f"{server.url}/v2/models/cifar10/ready", timeout=10) as answer:
        assert answer.status == 200


def test_without_explicit_model_control_the_broken_model_stops_triton(
        rendered, repository_with_a_broken_model):
    """What the operator's default arguments (no explicit model control) did with the same
    repository: every model loads, and Triton exits on the one that can't."""
    args, _, _, _ = rendered
    default = tuple(a for a in tritons_own_args(args)
                    if not a.startswith(("--model-control-mode=", "--load-model=")))
    with pytest.raises(RuntimeError, match="tritonserver exited") as stopped:
        TritonServer(str(repository_with_a_broken_model), extra_args=default).start(timeout=60)
    assert "failed to load all models" in str(stopped.value)


def test_make_smoke_with_the_seldon_path_prefix(served):
    from tests.tools.test_smoke_and_load import _without_pulumi

    _, proxy, _ = served
    result = subprocess.run(["make", "--no-print-directory", "smoke", f"URL={proxy.url}",
                             "PATH_PREFIX=/seldon/models/{model}", "SMOKE_WAIT=30"],
                            cwd=ROOT_DIR, env=_without_pulumi(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"cifar10 @ {proxy.url}/seldon/models/cifar10" in result.stdout
    assert "smoke: all checks passed" in result.stdout
