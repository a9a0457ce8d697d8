"""The rollout contract: render the program for one configuration, then for the next (a new model
version, a canary added, promoted, rolled back), and check that what the engine and the
controllers do between the two never leaves the route pointing at a server that isn't Ready,
leaves nothing behind, and moves only the model that changed.

The model of the receivers, each part from the pinned code (docs/architecture.md, "Rollouts"):

- The Pulumi engine creates and updates resources in dependency order; an update of a resource
  annotated `pulumi.com/waitFor` completes only when its condition holds; resources gone from the
  program are deleted after every create and update has completed (pulumi/pulumi
  pkg/resource/deploy/deployment_executor.go, performPostSteps).
- KServe (v0.20.0, Standard mode) names a predictor's Deployment, Service and ScaledObject after the
  InferenceService when `predictor.name` is unset, patches that Deployment on an update, and
  deletes every other predictor Deployment/Service of the InferenceService at once
  (components/predictor.go, orphan clean-up). Its objects are owned by the InferenceService and
  go with it.
- Kubernetes rolls a Deployment with `maxUnavailable: 0` by starting new pods and stopping an old
  one only when a new one is Ready: the Service keeps Ready endpoints throughout.
- A destination at the KEDA HTTP add-on's interceptor (a track that may be at zero replicas) sets
  the request's Host (Istio's per-destination `headers.request.set`); the interceptor (v0.15.0)
  forwards to the target Service of the InterceptorRoute whose hosts hold that Host, and answers
  404 while there is none (interceptor/middleware/routing.go:40-55, pkg/routing/table.go:187-200):
  the route reaches that Service, and must wait for the InterceptorRoute.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from components import naming
from components.cold_start import INTERCEPTOR_PROXY_SERVICE
from tests.harness import Graph, Res, evaluate, set_path, stack_config

ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
ROUTE = "kubernetes:networking.istio.io/v1:VirtualService"
INTERCEPTOR_ROUTE = "kubernetes:http.keda.sh/v1beta1:InterceptorRoute"
MODELS = ("cifar10", "resnet")


@dataclass
class Transition:
    """What applying `after` to a stack in the state `before` does, step by step."""

    before: Graph
    after: Graph
    problems: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.problems.append(message)


def _by_urn(graph: Graph, type_: str) -> dict[str, Res]:
    return {r.urn: r for r in graph.of_type(type_)}


def _services(graph: Graph) -> dict[str, Res]:
    """InferenceServices by the name of the predictor Service KServe gives them."""
    return {naming.predictor(r.inputs["metadata"]["name"]): r for r in graph.of_type(ISVC)}


def _intercepted(graph: Graph, destination: dict) -> Res | None:
    """The InterceptorRoute a destination at the interceptor reaches by the Host it sets."""
    host = destination.get("headers", {}).get("request", {}).get("set", {}).get("host")
    for route in graph.of_type(INTERCEPTOR_ROUTE):
        if any(host in rule.get("hosts", []) for rule in route.inputs["spec"]["rules"]):
            return route
    return None


def _served_by(graph: Graph, destination: dict) -> str:
    """The Service a destination's requests reach: its own host, or, through the interceptor,
    its InterceptorRoute's target."""
    host = destination["destination"]["host"].split(".")[0]
    if host != INTERCEPTOR_PROXY_SERVICE:
        return host
    route = _intercepted(graph, destination)
    return route.inputs["spec"]["target"]["service"] if route is not None else host


def _destinations(graph: Graph, route: Res) -> dict[str, int]:
    """Service name -> weight, for every destination of a VirtualService."""
    return {_served_by(graph, d): d["weight"]
            for http in route.inputs["spec"]["http"] for d in http["route"]}


def _budget_for(graph: Graph, service: Res) -> Res | None:
    """The readiness budget that selects exactly the pods of this InferenceService's revision."""
    labels = service.inputs["metadata"]["labels"]
    for budget in graph.of_type(PDB):
        selector = budget.inputs["spec"]["selector"]["matchLabels"]
        if selector and all(labels.get(k) == v for k, v in selector.items()) and \
                naming.REVISION_LABEL in selector:
            return budget
    return None


def _floor(service: Res) -> int:
    return service.inputs["spec"]["predictor"]["minReplicas"]


def check(transition: Transition) -> list[str]:
    """Every way `before` -> `after` could drop a request or leave something behind."""
    before, after = transition.before, transition.after
    old_services, new_services = _services(before), _services(after)
    old_by_urn = _by_urn(before, ISVC)

    for name, service in new_services.items():
        predictor = service.inputs["spec"]["predictor"]
        # A named predictor makes KServe derive the Deployment from it and delete the others.
        if "name" in predictor:
            transition.fail(f"{name}: predictor.name is set; renaming it deletes the serving "
                            "Deployment before the new one is Ready")
        strategy = predictor.get("deploymentStrategy", {})
        if strategy.get("rollingUpdate", {}).get("maxUnavailable") != 0:
            transition.fail(f"{name}: a rolling update may stop old pods before new ones are "
                            f"Ready ({strategy})")
        old = old_by_urn.get(service.urn)
        if old is not None and old.inputs["metadata"]["name"] != \
                service.inputs["metadata"]["name"]:
            transition.fail(f"{service.name}: renamed from {old.inputs['metadata']['name']}: "
                            "the engine replaces it and KServe builds a new fleet")

    for route in after.of_type(ROUTE):
        old_route = next((r for r in before.of_type(ROUTE) if r.urn == route.urn), None)
        old_weights = _destinations(before, old_route) if old_route else {}
        for http in route.inputs["spec"]["http"]:
            for destination in http["route"]:
                if destination["destination"]["host"].split(".")[0] != INTERCEPTOR_PROXY_SERVICE:
                    continue
                held = _intercepted(after, destination)
                if held is None:
                    transition.fail(f"{route.name}: sends requests to the interceptor with a "
                                    "Host no InterceptorRoute matches")
                elif not after.waits_for(route, held):
                    transition.fail(f"{route.name}: sends requests to the interceptor before "
                                    f"{held.name} exists")
        for host, weight in _destinations(after, route).items():
            service = new_services.get(host)
            if service is None:
                transition.fail(f"{route.name}: routes to {host}, which nothing serves")
                continue
            # Traffic that moves to a server must find it Ready: a server new to the route is
            # waited for, unless it is a scale-to-zero stable track (the documented exception).
            new_here = weight > 0 and (old_weights.get(host, 0) == 0 or
                                       host not in old_services)
            if not new_here or _floor(service) == 0:
                continue
            budget = _budget_for(after, service)
            if budget is None:
                transition.fail(f"{route.name}: sends {weight}% to {host} with no readiness "
                                "budget on its pods")
                continue
            if not after.waits_for(route, budget):
                transition.fail(f"{route.name}: moves traffic to {host} without waiting for "
                                f"{budget.name}")
            if budget.inputs["metadata"]["annotations"].get("pulumi.com/waitFor") != \
                    "condition=DisruptionAllowed":
                transition.fail(f"{budget.name}: not awaited")
            if budget.inputs["spec"]["minAvailable"] != _floor(service) - 1:
                transition.fail(f"{budget.name}: DisruptionAllowed doesn't mean the floor "
                                f"({_floor(service)}) is Ready")

    # The engine deletes what is gone after every update: by then no route may point at it.
    deleted = [s for host, s in old_services.items()
               if s.urn not in {r.urn for r in after.of_type(ISVC)}]
    for service in deleted:
        host = naming.predictor(service.inputs["metadata"]["name"])
        for route in after.of_type(ROUTE):
            if _destinations(after, route).get(host):
                transition.fail(f"{route.name}: still routes to {host}, which is deleted")
    # Every server of a model is routed (at weight 0 for a dark canary): none left running idle.
    routed = {h for r in after.of_type(ROUTE) for h in _destinations(after, r)}
    for host in new_services:
        if host not in routed:
            transition.fail(f"{host}: runs but no route reaches it")
    return transition.problems


def model_resources(graph: Graph, model: str) -> dict[str, Res]:
    prefix = f"model-serving-{model}"
    return {r.name: r for r in graph.resources
            if r.name == prefix or r.name.startswith(f"{prefix}-")}


def moved(before: Graph, after: Graph, model: str) -> bool:
    """Whether anything the stack registers for `model` differs between the two renders."""
    old, new = model_resources(before, model), model_resources(after, model)
    return set(old) != set(new) or any(json.dumps(old[n].inputs, sort_keys=True) !=
                                       json.dumps(new[n].inputs, sort_keys=True) for n in old)


# ---- renders ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A repository of two models: the shipped cifar10 and a copy named resnet."""
    root = tmp_path_factory.mktemp("repo") / "model_repo"
    source = Path(__file__).resolve().parents[2] / "model_repo"
    shutil.copytree(source / "cifar10", root / "cifar10")
    shutil.copytree(source / "cifar10", root / "resnet")
    for config in (root / "resnet").rglob("*.pbtxt"):
        config.write_text(config.read_text().replace('name: "cifar10"', 'name: "resnet"'))
    return root


def render(repo: Path, models: dict[str, dict], stack: str = "staging",
           backend: str = "kserve") -> Graph:
    config = set_path(stack_config(stack), "modelRepository.path", str(repo))
    config = set_path(config, "modelServing.backend", backend)
    config = set_path(config, "gpuNodeGroups[0].maxSize", 8)
    config = set_path(config, "modelServing.models", models)
    graph = evaluate(stack, config=config)
    assert graph.error is None, graph.error
    return graph


def own_version(repo: Path, model: str) -> str:
    from modelrepo.repository import load

    return load(repo).models[model].content_hash


def edit(repo: Path, model: str, line: str) -> None:
    config = repo / model / "config.pbtxt"
    config.write_text(config.read_text() + f"# {line}\n")


SERVED = {"minReplicas": 2, "maxReplicas": 4, "gpuPool": "a10g"}


def change_one_model(repo: Path, backend: str = "kserve") -> tuple[Graph, Graph, str, str]:
    """resnet's files change; cifar10's don't: the renders before and after, resnet's versions."""
    before = render(repo, {m: SERVED for m in MODELS}, backend=backend)
    old = own_version(repo, "resnet")
    edit(repo, "resnet", "retrained")
    after = render(repo, {m: SERVED for m in MODELS}, backend=backend)
    return before, after, old, own_version(repo, "resnet")


@pytest.fixture(scope="module")
def version_change(repo):
    return change_one_model(repo)


def test_a_new_version_rolls_the_same_deployment_and_drops_nothing(version_change):
    before, after, old, new = version_change
    assert old != new
    assert check(Transition(before, after)) == []
    stable = {r.inputs["metadata"]["name"]: r for r in after.of_type(ISVC)}["resnet-stable"]
    assert stable.inputs["metadata"]["labels"][naming.VERSION_LABEL] == new
    assert stable.inputs["spec"]["predictor"]["model"]["storageUri"].endswith(f"/{new}")
    # Same InferenceService, same Deployment/Service/ScaledObject/HPA names: updated in place,
    # so the version that was serving leaves nothing behind.
    assert {r.urn for r in before.of_type(ISVC)} == {r.urn for r in after.of_type(ISVC)}
    # ... and `pulumi up` waits for the new revision: the budget moves with it.
    old_budget = next(r for r in before.of_type(PDB) if r.name.endswith("resnet-stable-budget"))
    new_budget = next(r for r in after.of_type(PDB) if r.name.endswith("resnet-stable-budget"))
    assert old_budget.inputs["spec"] != new_budget.inputs["spec"]
    assert _budget_for(after, stable) is new_budget


def test_only_the_model_whose_files_changed_moves(version_change):
    before, after, _, _ = version_change
    assert moved(before, after, "resnet")
    assert not moved(before, after, "cifar10"), "cifar10's files didn't change"


@pytest.fixture(scope="module")
def canary_steps(tmp_path_factory, repo):
    """V served; canary W at 10 %; 25 %; promoted; and, from the canary, rolled back."""
    work = tmp_path_factory.mktemp("canary") / "model_repo"
    shutil.copytree(repo, work)
    stable = own_version(work, "cifar10")
    served = render(work, {"cifar10": SERVED})
    edit(work, "cifar10", "candidate")
    candidate = own_version(work, "cifar10")
    pinned = {**SERVED, "version": stable}
    canary = render(work, {"cifar10": {**pinned, "canary": {"percent": 10}}})
    wider = render(work, {"cifar10": {**pinned, "canary": {"percent": 25, "replicas": 2,
                                                            "maxReplicas": 3}}})
    promoted = render(work, {"cifar10": SERVED})
    rolled_back = render(work, {"cifar10": pinned})
    return {"stable": stable, "candidate": candidate, "served": served, "canary": canary,
            "wider": wider, "promoted": promoted, "rolled_back": rolled_back}


@pytest.mark.parametrize(("start", "end"), [("served", "canary"), ("canary", "wider"),
                                            ("wider", "promoted"), ("canary", "promoted"),
                                            ("canary", "rolled_back"), ("wider", "rolled_back")])
def test_canary_steps_drop_nothing(canary_steps, start, end):
    assert check(Transition(canary_steps[start], canary_steps[end])) == []


def test_a_canary_next_to_a_held_stable_track_drops_nothing(tmp_path, repo):
    """dev's stable track may be at zero replicas (held by the interceptor): a canary, its
    promotion and its rollback keep every destination reachable, and the canary waited for."""
    work = tmp_path / "model_repo"
    shutil.copytree(repo, work)
    held = {"minReplicas": 0, "maxReplicas": 2}
    stable = own_version(work, "cifar10")
    served = render(work, {"cifar10": held}, stack="dev")
    edit(work, "cifar10", "candidate")
    pinned = {**held, "version": stable}
    canary = render(work, {"cifar10": {**pinned, "canary": {"percent": 10}}}, stack="dev")
    assert weights(canary) == {"cifar10-stable-predictor": 90, "cifar10-canary-predictor": 10}
    for start, end in ((served, canary), (canary, render(work, {"cifar10": held}, stack="dev")),
                       (canary, render(work, {"cifar10": pinned}, stack="dev"))):
        assert check(Transition(start, end)) == []


def weights(graph: Graph) -> dict[str, int]:
    (route,) = graph.of_type(ROUTE)
    return _destinations(graph, route)


def test_canary_is_its_own_inference_service_and_route_share(canary_steps):
    graph = canary_steps["canary"]
    services = {r.inputs["metadata"]["name"]: r.inputs for r in graph.of_type(ISVC)}
    assert set(services) == {"cifar10-stable", "cifar10-canary"}
    stable, canary = services["cifar10-stable"], services["cifar10-canary"]
    assert stable["metadata"]["labels"][naming.VERSION_LABEL] == canary_steps["stable"]
    assert canary["metadata"]["labels"][naming.VERSION_LABEL] == canary_steps["candidate"]
    assert canary["metadata"]["labels"][naming.TRACK_LABEL] == "canary"
    assert weights(graph) == {"cifar10-stable-predictor": 90, "cifar10-canary-predictor": 10}
    # Adding the canary doesn't touch the stable track: same floor, triggers, pods.
    (served,) = canary_steps["served"].of_type(ISVC)
    assert stable == served.inputs


def test_promotion_and_rollback_are_one_change_each(canary_steps):
    promoted, rolled_back = canary_steps["promoted"], canary_steps["rolled_back"]
    assert weights(promoted) == {"cifar10-stable-predictor": 100}
    assert weights(rolled_back) == {"cifar10-stable-predictor": 100}
    (stable,) = promoted.of_type(ISVC)
    assert stable.inputs["metadata"]["labels"][naming.VERSION_LABEL] == \
        canary_steps["candidate"]
    (kept,) = rolled_back.of_type(ISVC)
    served = next(r for r in canary_steps["canary"].of_type(ISVC)
                  if r.inputs["metadata"]["name"] == "cifar10-stable")
    assert kept.inputs == served.inputs, "rolling back leaves the stable track untouched"


def test_scale_to_zero_stable_is_the_documented_exception():
    """dev's model sits at zero replicas: there is no floor to wait for, and no budget."""
    graph = evaluate("dev")
    (service,) = graph.of_type(ISVC)
    assert _floor(service) == 0
    assert graph.of_type(PDB) == []
    assert check(Transition(graph, graph)) == []


# ---- the contract can fail --------------------------------------------------------------------

def _without_dependency(graph: Graph, type_: str, on: str) -> Graph:
    resources = [replace(r, dependencies=[d for d in r.dependencies if on not in d])
                 if r.type == type_ else r for r in graph.resources]
    return replace(graph, resources=resources)


def test_a_route_to_the_interceptor_that_does_not_wait_for_its_route_is_caught():
    graph = evaluate("dev")
    hasty = _without_dependency(graph, ROUTE, "interceptor-route")
    problems = check(Transition(graph, hasty))
    assert any("before model-serving-cifar10-stable-interceptor-route exists" in p
               for p in problems), problems


def test_a_held_track_no_interceptor_route_matches_is_caught():
    graph = evaluate("dev")
    resources = [r for r in graph.resources if r.type != INTERCEPTOR_ROUTE]
    problems = check(Transition(graph, replace(graph, resources=resources)))
    assert any("Host no InterceptorRoute matches" in p for p in problems), problems
    assert any("cifar10-stable-predictor: runs but no route reaches it" in p
               for p in problems), problems


def test_a_route_that_does_not_wait_for_the_canary_is_caught(canary_steps):
    hasty = _without_dependency(canary_steps["canary"], ROUTE, "canary")
    problems = check(Transition(canary_steps["served"], hasty))
    assert any("without waiting for" in p for p in problems), problems


def test_a_per_version_predictor_name_is_caught(version_change):
    before, after, _, new = version_change

    def named(res: Res) -> Res:
        if res.type != ISVC:
            return res
        inputs = json.loads(json.dumps(res.inputs))
        inputs["spec"]["predictor"]["name"] = f"v-{new[:10]}"
        return replace(res, inputs=inputs)

    renamed = replace(after, resources=[named(r) for r in after.resources])
    problems = check(Transition(before, renamed))
    assert any("predictor.name is set" in p for p in problems), problems


def test_deleting_a_server_the_route_still_uses_is_caught(canary_steps):
    start = canary_steps["canary"]
    (route,) = canary_steps["promoted"].of_type(ROUTE)
    old_route = next(r for r in start.of_type(ROUTE))
    # The promoted program, but with the route left as it was: it still sends 10 % to the canary.
    stale = replace(canary_steps["promoted"], resources=[
        replace(r, inputs=old_route.inputs) if r.urn == route.urn else r
        for r in canary_steps["promoted"].resources])
    problems = check(Transition(start, stale))
    assert any("nothing serves" in p or "which is deleted" in p for p in problems), problems
