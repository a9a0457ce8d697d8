"""The rollout contract on the Seldon backend: render the program for one configuration, then for
the next (a new model version, an autoscaling change), run both through a model of what
seldon-core-operator 1.17.1 builds from a SeldonDeployment, and check that the route exists
whatever the replicas, that a version change rolls the same Deployment and `pulumi up` waits for
its new pods, that an autoscaling change restarts nothing, and that every name the stack's
queries use is the one the operator gives.

The model of the operator (paths in SeldonIO/seldon-core at v1.17.1, operator/controllers/ unless
stated; docs/architecture.md, "Seldon Core", lists the same lines):

- Deployment `GetDeploymentName` (components/naming.py), labels `seldon-deployment-id`, `app`,
  `fluentd`, selector `seldon-deployment-id` (seldondeployment_controller.go:972-1000); the pod
  spec is the componentSpec's (:1028), its securityContext kept (:1036-1039); annotations from the
  spec, the predictor and the componentSpec's metadata (:1017-1034); labels from the predictor
  (after defaulting `version: <predictor>`, apis/.../defaults.go:210-215) and the componentSpec's
  metadata (:1041-1052). Strategy: maxUnavailable int 0 (:998).
- Per graph container: selector and pod label `seldon-app-svc-<container>` (:754, 796-802), TCP
  probes and a preStop sleep only where none are given (:821-839), env including the predictor's
  labels (:845-883); with `seldon.io/no-engine` the `seldon-app` label and a predictor Service on
  the container's ports (:558-579), otherwise the executor container whose ENGINE_PREDICTOR is the
  whole predictor in base64 JSON, kedaSpec included (seldondeployment_engine.go:283-300,
  controllers/utils/controller_utils.go:24-39), and a predictor Service on 8000/5001 (:642-655).
- Triton: a declared container keeps its args, image and probes; its ports become exactly
  grpc/http (seldondeployment_prepackaged_servers.go:225-247); the storage initializer is an init
  container with args `[modelUri, /mnt/models]` (model_initializer_injector.go:220-241).
- KEDA: a ScaledObject named like the Deployment, from kedaSpec (:169-193); the Deployment's
  replicas are left to it (:514-527, 1722-1725, 1744-1751).
- Services and Deployments are created on the first reconcile, the VirtualService only once
  every Deployment has a Ready replica (:2088, 2122-2135): hence the stack's own route.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import shutil
from dataclasses import dataclass, field, replace

import pytest

from components import cold_start, naming
from tests.components import test_rollout_contract as contract
from tests.components.test_rollout_contract import Transition, repo  # noqa: F401 (a fixture)
from tests.harness import Graph, Res, evaluate, set_path, stack_config
from tests.istio_route import interceptor_target

SDEP = "kubernetes:machinelearning.seldon.io/v1:SeldonDeployment"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
ROUTE = "kubernetes:networking.istio.io/v1:VirtualService"
INTERCEPTOR_ROUTE = "kubernetes:http.keda.sh/v1beta1:InterceptorRoute"
INTERCEPTOR = (f"{cold_start.INTERCEPTOR_PROXY_SERVICE}.{cold_start.NAMESPACE}.svc.cluster.local",
               cold_start.INTERCEPTOR_PROXY_PORT)
NO_ENGINE = "seldon.io/no-engine"
ENGINE_PORTS = {"http": 8000, "grpc": 5001}  # chart executor.port; ctl:82-83
DEFAULT_USER = {"runAsUser": 8888}  # chart defaultUserID


# ---- what the operator builds --------------------------------------------------------------------

@dataclass
class Built:
    deployments: dict[str, dict] = field(default_factory=dict)
    scaled_objects: dict[str, dict] = field(default_factory=dict)
    services: dict[str, dict] = field(default_factory=dict)


def _unit(graph: dict, name: str) -> dict | None:
    if graph["name"] == name:
        return graph
    return next((u for c in graph.get("children", []) if (u := _unit(c, name))), None)


def operator_builds(sdep: dict) -> Built:
    built = Built()
    sdep = copy.deepcopy(sdep)
    name, namespace = sdep["metadata"]["name"], sdep["metadata"]["namespace"]
    seldon_id = naming.seldon_fit(name)
    for p in sdep["spec"]["predictors"]:
        p.setdefault("labels", {}).setdefault("version", p["name"])
        annotations = p.get("annotations", {})
        no_engine = annotations.get(NO_ENGINE, "").lower() == "true"
        predictor_key = naming.seldon_predictor_service(name, p["name"])
        for index, component in enumerate(p["componentSpecs"]):
            meta, pod = component.get("metadata", {}), copy.deepcopy(component["spec"])
            containers = pod["containers"]
            deployment = naming.seldon_deployment(
                name, p["name"], index,
                meta.get("name") or "-".join(c["name"] for c in containers))
            selector = {"seldon-deployment-id": seldon_id}
            labels = {**selector, "app": deployment, "fluentd": "true", **p["labels"],
                      **meta.get("labels", {}), "seldon.io/model": "true",
                      "app.kubernetes.io/managed-by": "seldon-core"}
            template_annotations = {"prometheus.io/scrape": "true",
                                    **sdep["spec"].get("annotations", {}), **annotations,
                                    **meta.get("annotations", {})}
            pod.setdefault("securityContext", DEFAULT_USER)
            for container in containers:
                unit = _unit(p["graph"], container["name"])
                if unit is None:
                    continue
                key = f"seldon-app-svc-{container['name']}"
                selector[key] = labels[key] = naming.seldon_container_service(
                    name, container["name"], p["name"])
                container.setdefault("livenessProbe", {"tcpSocket": {"port": 9000}})
                container.setdefault("readinessProbe", {"tcpSocket": {"port": 9000}})
                container.setdefault("lifecycle", {"preStop": {"exec": {
                    "command": ["/bin/sh", "-c", "/bin/sleep 10"]}}})
                container.setdefault("env", []).append(
                    {"name": "PREDICTOR_LABELS", "value": json.dumps(p["labels"])})
                ports = {q["name"]: q["containerPort"] for q in container.get("ports", [])}
                ports = {"http": ports.get("http", 9000), "grpc": ports.get("grpc", 9500)}
                if unit.get("implementation") == "TRITON_SERVER":
                    container.setdefault("args", ["/opt/tritonserver/bin/tritonserver",
                                                  "--strict-model-config=false"])
                    container["ports"] = [{"name": "grpc", "containerPort": ports["grpc"]},
                                          {"name": "http", "containerPort": ports["http"]}]
                if unit.get("modelUri"):
                    pod.setdefault("initContainers", []).append({
                        "name": f"{container['name']}-model-initializer"[:63],
                        "args": [unit["modelUri"], "/mnt/models"],
                        "envFrom": [{"secretRef": {"name": unit["envSecretRefName"]}}]})
                if unit.get("serviceAccountName"):
                    pod["serviceAccountName"] = unit["serviceAccountName"]
                if no_engine:
                    selector["seldon-app"] = labels["seldon-app"] = predictor_key
                    built.services[predictor_key] = {"ports": ports,
                                                     "selector": {"seldon-app": predictor_key}}
            if not no_engine:
                engine = {k: v for k, v in copy.deepcopy(p).items()
                          if k not in ("traffic", "replicas", "explainer")}
                containers.append({"name": "seldon-container-engine", "env": [{
                    "name": "ENGINE_PREDICTOR",
                    "value": base64.b64encode(json.dumps(engine, sort_keys=True).encode())
                    .decode()}]})
                selector["seldon-app"] = labels["seldon-app"] = predictor_key
                built.services[predictor_key] = {"ports": dict(ENGINE_PORTS),
                                                 "selector": {"seldon-app": predictor_key}}
            autoscaled = "kedaSpec" in component or "hpaSpec" in component
            built.deployments[deployment] = {
                "namespace": namespace,
                "selector": selector,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}},
                "replicas": None if autoscaled else component.get("replicas", 1),
                "template": {"metadata": {"labels": labels,
                                          "annotations": template_annotations},
                             "spec": pod},
            }
            if "kedaSpec" in component:
                built.scaled_objects[deployment] = {
                    **component["kedaSpec"],
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                       "name": deployment}}
    return built


# ---- the contract -------------------------------------------------------------------------------

def _objects(graph: Graph, type_: str) -> dict[str, Res]:
    return {r.inputs["metadata"]["name"]: r for r in graph.of_type(type_)}


def _budget_for(graph: Graph, labels: dict[str, str]) -> Res | None:
    for budget in graph.of_type(PDB):
        selector = budget.inputs["spec"]["selector"]["matchLabels"]
        if naming.REVISION_LABEL in selector and all(labels.get(k) == v
                                                     for k, v in selector.items()):
            return budget
    return None


def check(transition: Transition) -> list[str]:
    before, after = transition.before, transition.after
    old, new = _objects(before, SDEP), _objects(after, SDEP)
    routes = _objects(after, ROUTE)
    for name, sdep in new.items():
        built = operator_builds(sdep.inputs)
        (deployment, spec), = built.deployments.items()
        labels = spec["template"]["metadata"]["labels"]
        # The stack's queries select the pods the operator really creates.
        pattern = f"{naming.seldon_pod_prefix(name)}.*"
        if not re.fullmatch(pattern, f"{deployment}-7d9f8b6c54-x2k9q"):
            transition.fail(f"{name}: the operator's Deployment {deployment} escapes {pattern}")
        if any(c["name"] == "seldon-container-engine"
               for c in spec["template"]["spec"]["containers"]):
            transition.fail(f"{name}: an executor in the pod template (ENGINE_PREDICTOR carries "
                            "the whole predictor, autoscaling included)")
        if spec["strategy"]["rollingUpdate"]["maxUnavailable"] != 0:
            transition.fail(f"{name}: old pods may stop before new ones are Ready")
        # A route that exists at zero replicas, to what the operator serves.
        route = routes.get(name)
        if route is None:
            transition.fail(f"{name}: no route of the stack's (the operator's waits for a "
                            "Ready replica)")
        else:
            held = [r.inputs for r in after.of_type(INTERCEPTOR_ROUTE)]
            for entry in route.inputs["spec"]["http"]:
                for target in entry["route"]:
                    host = target["destination"]["host"]
                    port = target["destination"]["port"]["number"]
                    if (host, port) == INTERCEPTOR:
                        # Held while it wakes: where the interceptor forwards it.
                        onward = interceptor_target(held, target["headers"]["request"]["set"]
                                                    ["host"])
                        if onward is None:
                            transition.fail(f"{name}: routes to the interceptor, which has no "
                                            "route for it")
                            continue
                        host, port = onward
                        (fallback,) = [r["spec"]["coldStart"]["fallback"]["service"]["port"]
                                       for r in held if r["spec"]["target"]["service"]
                                       == host.split(".")[0]]
                        if fallback in built.services.get(host.split(".")[0], {}).get(
                                "ports", {}).values():
                            transition.fail(f"{name}: the fallback's port {fallback} is a port "
                                            f"of {host}: the sidecar would route it there")
                    host = host.split(".")[0]
                    if port not in built.services.get(host, {}).get("ports", {}).values():
                        transition.fail(f"{name}: routes to {host}:{port}, which the operator "
                                        "doesn't serve")
            if any(after.waits_for(route, b) for b in after.of_type(PDB)):
                transition.fail(f"{name}: the route waits for Ready replicas")
        floor = (sdep.inputs["spec"]["predictors"][0]["componentSpecs"][0]
                 .get("kedaSpec", {}).get("minReplicaCount", 1))
        budget = _budget_for(after, labels)
        if floor >= 1 and (budget is None or not after.waits_for(budget, sdep)):
            transition.fail(f"{name}: `pulumi up` doesn't wait for the pods of this revision")
        if name not in old:
            continue
        was = operator_builds(old[name].inputs)
        (old_deployment, old_spec), = was.deployments.items()
        if old_deployment != deployment:
            transition.fail(f"{name}: Deployment renamed {old_deployment} -> {deployment}: a "
                            "second fleet, the first deleted only once it is Ready")
        elif old_spec["selector"] != spec["selector"]:
            transition.fail(f"{name}: selector changed: the operator deletes the Deployment "
                            "and creates it again")
        rolls = old_spec["template"] != spec["template"]
        old_revision = old_spec["template"]["metadata"]["labels"].get(naming.REVISION_LABEL)
        if rolls and labels.get(naming.REVISION_LABEL) == old_revision:
            transition.fail(f"{name}: the pods roll under the same revision: `pulumi up` "
                            "doesn't wait for the new ones")
    return transition.problems


# ---- renders ------------------------------------------------------------------------------------

SERVED = {"minReplicas": 2, "maxReplicas": 4, "gpuPool": "a10g"}


def render(repository, models: dict[str, dict]) -> Graph:
    return contract.render(repository, models, backend="seldon")


def template_of(graph: Graph, model: str) -> dict:
    (spec,) = operator_builds(_objects(graph, SDEP)[model].inputs).deployments.values()
    return spec["template"]


@pytest.fixture(scope="module")
def version_change(tmp_path_factory, repo):  # noqa: F811
    work = tmp_path_factory.mktemp("seldon") / "model_repo"
    shutil.copytree(repo, work)
    return contract.change_one_model(work, backend="seldon")


def test_a_new_version_rolls_the_same_deployment_and_is_awaited(version_change):
    before, after, old, new = version_change
    assert old != new
    assert check(Transition(before, after)) == []
    was, now = template_of(before, "resnet"), template_of(after, "resnet")
    assert was != now
    (initializer,) = now["spec"]["initContainers"]
    assert initializer["args"][0].endswith(f"/{new}")
    assert now["metadata"]["labels"][naming.VERSION_LABEL] == new
    budget = _budget_for(after, now["metadata"]["labels"])
    assert budget is not None and budget.inputs["spec"]["minAvailable"] == 1
    assert budget.inputs["metadata"]["annotations"]["pulumi.com/waitFor"] == \
        "condition=DisruptionAllowed"


def test_only_the_model_whose_files_changed_rolls(version_change):
    before, after, _, _ = version_change
    assert template_of(before, "cifar10") == template_of(after, "cifar10")
    assert _objects(before, SDEP)["cifar10"].inputs == _objects(after, SDEP)["cifar10"].inputs


@pytest.mark.parametrize("change", [
    {"maxReplicas": 6}, {"cooldownSeconds": 120}, {"scaleUpStabilizationSeconds": 30},
    {"targetPendingRequests": 8}, {"pollingSeconds": 30}])
def test_an_autoscaling_change_restarts_nothing(repo, change):  # noqa: F811
    before = render(repo, {"cifar10": SERVED})
    after = render(repo, {"cifar10": {**SERVED, **change}})
    assert check(Transition(before, after)) == []
    assert template_of(before, "cifar10") == template_of(after, "cifar10"), "no restart"
    built_before = operator_builds(_objects(before, SDEP)["cifar10"].inputs)
    built_after = operator_builds(_objects(after, SDEP)["cifar10"].inputs)
    assert built_before.scaled_objects != built_after.scaled_objects, "KEDA gets the change"
    assert [b.inputs for b in before.of_type(PDB)] == [b.inputs for b in after.of_type(PDB)]


def test_scale_to_zero_has_a_route_and_nothing_to_wait_for():
    config = set_path(stack_config("dev"), "modelServing.backend", "seldon")
    graph = evaluate("dev", config=config)
    assert graph.error is None, graph.error
    assert graph.of_type(PDB) == []
    assert check(Transition(graph, graph)) == []
    (scaled,) = operator_builds(_objects(graph, SDEP)["cifar10"].inputs).scaled_objects.values()
    assert scaled["minReplicaCount"] == 0 and scaled["scaleTargetRef"]["name"] == \
        "cifar10-default-0-triton"
    # Its HTTP is held at the interceptor, whose route forwards to the predictor Service the
    # operator creates on its first reconcile, on Triton's HTTP port.
    (held,) = graph.of_type(INTERCEPTOR_ROUTE)
    built = operator_builds(_objects(graph, SDEP)["cifar10"].inputs)
    target = held.inputs["spec"]["target"]
    assert built.services[target["service"]]["ports"]["http"] == target["port"]


def test_a_fallback_on_a_port_of_the_predictor_service_is_caught():
    config = set_path(stack_config("dev"), "modelServing.backend", "seldon")
    graph = evaluate("dev", config=config)

    def on_tritons_port(res: Res) -> Res:
        if res.type != INTERCEPTOR_ROUTE:
            return res
        inputs = json.loads(json.dumps(res.inputs))
        inputs["spec"]["coldStart"]["fallback"]["service"]["port"] = 9500
        return replace(res, inputs=inputs)

    edited = replace(graph, resources=[on_tritons_port(r) for r in graph.resources])
    problems = check(Transition(edited, edited))
    assert any("the fallback's port 9500" in p for p in problems), problems


# ---- the contract can fail --------------------------------------------------------------------

def _edit_sdeps(graph: Graph, change) -> Graph:
    def edited(res: Res) -> Res:
        if res.type != SDEP:
            return res
        inputs = json.loads(json.dumps(res.inputs))
        change(inputs)
        return replace(res, inputs=inputs)

    return replace(graph, resources=[edited(r) for r in graph.resources])


def _with_executor(inputs: dict) -> None:
    del inputs["spec"]["predictors"][0]["annotations"][NO_ENGINE]


def test_an_executor_would_restart_every_pod_on_an_autoscaling_change(repo):  # noqa: F811
    before = _edit_sdeps(render(repo, {"cifar10": SERVED}), _with_executor)
    after = _edit_sdeps(render(repo, {"cifar10": {**SERVED, "maxReplicas": 6}}), _with_executor)
    assert template_of(before, "cifar10") != template_of(after, "cifar10")
    problems = check(Transition(before, after))
    assert any("an executor in the pod template" in p for p in problems), problems
    assert any("roll under the same revision" in p for p in problems), problems
    assert any("which the operator doesn't serve" in p for p in problems), problems


def test_an_unnamed_component_is_caught(version_change):
    before, after, _, _ = version_change

    def unnamed(inputs: dict) -> None:
        del inputs["spec"]["predictors"][0]["componentSpecs"][0]["metadata"]["name"]

    problems = check(Transition(before, _edit_sdeps(after, unnamed)))
    assert any("renamed cifar10-default-0-triton -> cifar10-default-0-cifar10" in p
               for p in problems), problems
    assert any("escapes" in p for p in problems), problems
