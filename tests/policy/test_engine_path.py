"""The policy pack through pulumi-policy's own code path: the pack process in policy/venv, its
gRPC Analyzer service, its deserializer and its read-only property proxies, fed the recorded
graph marshalled the way the engine marshals it (tests/policy/engine.py)."""

from __future__ import annotations

import copy
import json
from functools import cache

import pytest
from pulumi.runtime.proto import analyzer_pb2

from policy.rules import RULES
from tests.conftest import stack_graph
from tests.harness import ROOT_DIR, STACKS, Graph, evaluate, set_path, stack_config
from tests.policy.engine import UNKNOWN, PolicyPack, Resource, from_graph

SHIPPED = ("dev", "staging", "prod", "local")


def graph_resources(stack: str, config: dict[str, str] | None = None) -> list[Resource]:
    """The stack's recorded graph (shipped stacks evaluated once per session), as the engine
    holds it."""
    if config is None or config == stack_config(stack):
        return from_graph(stack_graph(stack) if stack in STACKS else _evaluated(stack))
    graph = evaluate(stack, config=config)
    assert graph.error is None, graph.error
    return from_graph(graph)


@cache
def _evaluated(stack: str, backend: str | None = None) -> Graph:
    config = stack_config(stack)
    if backend:
        config = set_path(config, "modelServing.backend", backend)
    graph = evaluate(stack, config=config)
    assert graph.error is None, graph.error
    return graph


def seldon_resources() -> list[Resource]:
    return from_graph(_evaluated("prod", "seldon"))


@pytest.mark.parametrize("stack", SHIPPED)
def test_every_shipped_stack_passes_through_the_engine_path(stack):
    """Zero diagnostics, not even advisory ones: every rule ran and found nothing."""
    config = stack_config(stack)
    with PolicyPack(config, stack) as pack:
        assert [str(d) for d in pack.check(graph_resources(stack, config))] == []


def test_the_seldon_variant_passes_through_the_engine_path():
    config = set_path(stack_config("prod"), "modelServing.backend", "seldon")
    with PolicyPack(config, "prod") as pack:
        assert [str(d) for d in pack.check(seldon_resources())] == []


def test_the_pack_registers_every_rule_as_mandatory():
    """policy/__main__.py builds one policy per rule, of the rule's kind, as the engine sees it."""
    with PolicyPack() as pack:
        info = pack.info()
    assert info.name == "mlserve"
    kinds = {"resource": analyzer_pb2.POLICY_TYPE_RESOURCE,
             "stack": analyzer_pb2.POLICY_TYPE_STACK}
    assert [(p.name, p.description, p.policy_type) for p in info.policies] == [
        (r.name, r.description, kinds[r.kind]) for r in RULES]
    assert {p.enforcementLevel for p in info.policies} == {analyzer_pb2.MANDATORY}


def _model_server(resources: list[Resource], kind: str = "InferenceService") -> Resource:
    (server,) = [r for r in resources
                 if r.type.startswith("kubernetes:") and r.type.endswith(f":{kind}")]
    return server


def _break_isvc(server: Resource) -> None:
    for wire in (server.inputs, server.outputs):
        predictor = wire["spec"]["predictor"]
        predictor["minReplicas"] = 1
        predictor["tolerations"] = []
        predictor["securityContext"] = {}
        predictor["model"]["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
        predictor["model"]["storageUri"] = "s3://bucket/models/latest"


BAD_MODEL_RULES = {"model-resources-set", "model-gpu-toleration", "model-non-root",
                   "model-storage-content-addressed", "prod-model-availability"}


def test_a_bad_inference_service_is_caught_behind_the_proxies():
    config = stack_config("prod")
    resources = graph_resources("prod", config)
    _break_isvc(_model_server(resources))
    with PolicyPack(config, "prod") as pack:
        found = pack.check(resources)
    # requests+limits, toleration, root, seccomp, storage, minReplicas
    assert len(found) >= 6, [str(d) for d in found]
    assert {d.policy for d in found} == BAD_MODEL_RULES
    assert all(d.mandatory for d in found)


def test_a_bad_seldon_deployment_is_caught_too():
    config = set_path(stack_config("prod"), "modelServing.backend", "seldon")
    resources = seldon_resources()
    server = _model_server(resources, "SeldonDeployment")
    for wire in (server.inputs, server.outputs):
        predictor = wire["spec"]["predictors"][0]
        predictor["graph"]["modelUri"] = "s3://bucket/models/latest"
        component = predictor["componentSpecs"][0]
        component["kedaSpec"]["minReplicaCount"] = 1
        component["spec"]["tolerations"] = []
        component["spec"]["securityContext"] = {}
        component["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
    with PolicyPack(config, "prod") as pack:
        found = pack.check(resources)
    assert {d.policy for d in found} == BAD_MODEL_RULES, [str(d) for d in found]


def test_the_rules_as_written_before_pass_dicts_but_miss_everything_behind_the_proxies():
    """What a test fed plain dicts could not see: the rule idiom before this pack read Mappings
    (kept as the fixture pack tests/policy/dict_idiom_pack) fires on a dict and never through
    pulumi-policy; today's rule fires on both."""
    from importlib.util import module_from_spec, spec_from_file_location

    from tests.policy.test_rules import apply, isvc

    source = ROOT_DIR / "tests" / "policy" / "dict_idiom_pack" / "__main__.py"
    loader = spec_from_file_location("dict_idiom_pack", source)
    module = module_from_spec(loader)
    loader.loader.exec_module(module)

    bad = isvc(securityContext={})
    found: list[str] = []
    module.model_non_root(bad, lambda message, *_: found.append(message))
    assert found, "the old idiom fires when called with plain dicts"

    engine_bad = Resource(bad.resource_type, bad.props)
    with PolicyPack(pack_dir=source.parent) as old_pack:
        assert old_pack.analyze(engine_bad) == [], "…and is blind behind the proxies"
    (rule,) = [r for r in RULES if r.name == "model-non-root"]
    assert apply(rule, [bad])
    with PolicyPack() as pack:
        assert [d.policy for d in pack.analyze(engine_bad)] == ["model-non-root"] * 2


def test_weakening_the_prod_replica_floor_is_caught():
    """minReplicas 2 passes and 1 fails, on the recorded prod graph through the engine path."""
    config = stack_config("prod")
    resources = graph_resources("prod", config)
    server = _model_server(resources)
    with PolicyPack(config, "prod") as pack:
        for replicas, expected in ((2, []), (1, ["prod-model-availability"])):
            for wire in (server.inputs, server.outputs):
                wire["spec"]["predictor"]["minReplicas"] = replicas
            assert [d.policy for d in pack.analyze_stack(resources)] == expected


def test_environment_fails_closed_through_the_engine_path():
    """A stack whose environment can't be told gets the prod rules."""
    config = stack_config("dev")
    resources = graph_resources("dev", config)
    for res in resources:
        if res.type == "pulumi:providers:aws":
            for wire in (res.inputs, res.outputs):
                tags = json.loads(wire["defaultTags"])
                tags["tags"]["mlserve:environment"] = "qa"
                wire["defaultTags"] = json.dumps(tags)
    unknown_env = {k: v for k, v in config.items() if k != "mlserve:environment"}
    with PolicyPack(unknown_env, "dev") as pack:
        found = {d.policy for d in pack.check(resources)}
    # dev's open endpoint, its SPOT model pool, single NAT, force-destroy bucket...
    assert {"eks-endpoint-restricted", "prod-model-capacity-on-demand", "prod-nat-per-az",
            "prod-bucket-protected"} <= found


def test_secrets_and_unknowns_arrive_as_the_engine_sends_them():
    """Secret inputs are unwrapped by pulumi-policy's deserializer; unknown ones make a rule
    report that it can't run during preview (advisory), never crash the pack."""
    secret = Resource("kubernetes:core/v1:Secret", {
        "metadata": {"name": "s"},
        "stringData": {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
                       "value": {"AWS_SECRET_ACCESS_KEY": "x"}}})
    preview_isvc = Resource("kubernetes:serving.kserve.io/v1beta1:InferenceService",
                            {"metadata": {"name": "m"}, "spec": UNKNOWN})
    with PolicyPack() as pack:
        assert [d.policy for d in pack.analyze(secret)] == ["no-aws-keys-in-secrets"]
        found = pack.analyze(preview_isvc)
    assert found and not any(d.mandatory for d in found)
    assert all("during preview" in d.message for d in found)


def test_a_secret_wrapped_isvc_spec_is_still_read():
    resources = graph_resources("prod", stack_config("prod"))
    server = copy.deepcopy(_model_server(resources))
    server.inputs["spec"] = {"4dabf18193072939515e22adb298388d":
                             "1b47061264138c4ac30d75fd1eb44270", "value": server.inputs["spec"]}
    server.inputs["spec"]["value"]["predictor"]["securityContext"] = {}
    with PolicyPack() as pack:
        assert {d.policy for d in pack.analyze(server)} == {"model-non-root"}
