"""Every constant of the policy pack is either checked here against its source of truth or
named as the pack's own. The pack runs in its own environment (policy/venv) and imports nothing
of the stack (docs/layers.md), so it keeps copies; a copy that drifts makes a rule look for a
label, a type or a value the stack no longer emits, and pass silently.

A new constant in policy/rules.py fails `test_every_constant_is_accounted_for` until it gets a
check here (or a reason to be the pack's own)."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from policy import rules
from tests.harness import ROOT_DIR, Graph

OWN = {
    "RULES": "the pack's registry of rules",
    "MODEL_SERVERS": "(ISVC, SELDON), both checked below",
}


def _walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def _seldon_graph() -> Graph:
    from tests.components.test_seldon import seldon_graph

    return seldon_graph("dev")


def _graph(stack: str) -> Graph:
    from tests.conftest import stack_graph

    return stack_graph(stack)


def supported_kubernetes_versions() -> None:
    from components.versions import SUPPORTED_KUBERNETES_VERSIONS

    assert rules.SUPPORTED_KUBERNETES_VERSIONS == SUPPORTED_KUBERNETES_VERSIONS


def content_addressed() -> None:
    from modelrepo.layout import VERSION_PATTERN, hash_of_digests, version_uri

    assert rules.CONTENT_ADDRESSED.pattern == f"/{VERSION_PATTERN.strip('^$')}/?$"
    version = hash_of_digests([("m/config.pbtxt", b"\0" * 32)])
    assert rules.CONTENT_ADDRESSED.search(version_uri("bucket", "models", version))
    assert not rules.CONTENT_ADDRESSED.search(version_uri("bucket", "models", "latest"))


def aws_key_names() -> None:
    """The names the AWS SDK reads credentials from (botocore's EnvProvider): the key pair and
    the session token; the legacy AWS_SECURITY_TOKEN alone grants nothing without the pair."""
    from botocore.credentials import EnvProvider

    pair = {EnvProvider.ACCESS_KEY, EnvProvider.SECRET_KEY}
    assert pair <= set(rules.AWS_KEY_NAMES) <= pair | set(EnvProvider.TOKENS)
    assert "AWS_SESSION_TOKEN" in rules.AWS_KEY_NAMES


def gpu_taint() -> None:
    from components.gpu_node_groups import GPU_TAINT

    assert {"key": GPU_TAINT.key, "effect": GPU_TAINT.effect} == rules.GPU_TAINT


def gpu_resource() -> None:
    """The resource name model servers request GPUs by, as the stack writes it."""
    limits: list[dict[str, Any]] = [
        v["limits"] for r in _graph("dev").of_type(rules.ISVC) for v in _walk(r.inputs)
        if isinstance(v, dict) and isinstance(v.get("limits"), dict)]
    assert limits and all(rules.GPU_RESOURCE in limit for limit in limits), limits


def gpu_present_label() -> None:
    from components.gpu_node_groups import GPU_PRESENT_LABEL

    assert rules.GPU_PRESENT_LABEL == GPU_PRESENT_LABEL


def pool_label() -> None:
    from components.k8s import POOL_LABEL

    assert rules.POOL_LABEL == POOL_LABEL


def track_label() -> None:
    from components.naming import TRACK_LABEL

    assert rules.TRACK_LABEL == TRACK_LABEL


def environment_label() -> None:
    """The label the stack puts on the model namespace: how the pack tells a stack's
    environment from its Kubernetes objects alone."""
    for stack in ("dev", "prod"):
        labels = [r.inputs["metadata"].get("labels") or {}
                  for r in _graph(stack).of_type("kubernetes:core/v1:Namespace")]
        assert any(lab.get(rules.ENVIRONMENT_LABEL) == stack for lab in labels), labels


def environment_tag() -> None:
    for stack in ("dev", "prod"):
        for provider in _graph(stack).of_type(rules.AWS_PROVIDER):
            tags = provider.inputs["defaultTags"]
            tags = json.loads(tags) if isinstance(tags, str) else tags
            assert tags["tags"].get(rules.ENVIRONMENT_TAG) == stack, tags


def pod_labels() -> None:
    """The label each serving backend's controller puts on every model pod."""
    from components.kserve import KSERVE
    from components.seldon import SELDON

    assert (KSERVE.pod_label, SELDON.pod_label) == (rules.ISVC_POD_LABEL, rules.SELDON_POD_LABEL)


def type_token(name: str) -> Callable[[], None]:
    def check() -> None:
        token = getattr(rules, name)
        types = {r.type for stack in ("dev", "prod") for r in _graph(stack).resources}
        types |= {r.type for r in _seldon_graph().resources}
        assert token in types, f"{name} = {token!r}: no shipped stack registers that type"
    return check


def ha_values() -> None:
    """Each chart the pack checks is one the stack installs, and each value path it reads is one
    the stack sets in prod (a renamed key would let the rule read nothing)."""
    releases = {rules._chart(SimpleNamespace(props=r.inputs)): r.inputs
                for r in _graph("prod").of_type(rules.HELM_RELEASE)}
    for chart, paths in rules.HA_VALUES.items():
        assert chart in releases, f"HA_VALUES names {chart!r}, which prod doesn't install"
        for path in paths:
            value: Any = releases[chart].get("values") or {}
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            assert isinstance(value, int), f"{chart}: {'.'.join(path)} is not set in prod"


CHECKS: dict[str, Callable[[], None]] = {
    "SUPPORTED_KUBERNETES_VERSIONS": supported_kubernetes_versions,
    "CONTENT_ADDRESSED": content_addressed,
    "AWS_KEY_NAMES": aws_key_names,
    "GPU_TAINT": gpu_taint,
    "GPU_RESOURCE": gpu_resource,
    "POOL_LABEL": pool_label,
    "TRACK_LABEL": track_label,
    "ENVIRONMENT_LABEL": environment_label,
    "ENVIRONMENT_TAG": environment_tag,
    "ISVC_POD_LABEL": pod_labels,
    "SELDON_POD_LABEL": pod_labels,
    "GPU_PRESENT_LABEL": gpu_present_label,
    **{name: type_token(name) for name in
       ("BUCKET", "EKS", "AWS_PROVIDER", "ISVC", "SELDON", "HELM_RELEASE", "NODE_POOL",
        "NODE_CLASS", "INTERCEPTOR_ROUTE")},
    "HA_VALUES": ha_values,
}


def pack_constants() -> list[str]:
    """Every module-level UPPER_CASE name policy/rules.py assigns."""
    tree = ast.parse((ROOT_DIR / "policy" / "rules.py").read_text())
    names = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) else []
        names += [t.id for t in targets
                  if isinstance(t, ast.Name) and re.fullmatch(r"[A-Z][A-Z0-9_]*", t.id)]
    return names


def test_every_constant_is_accounted_for():
    names = set(pack_constants())
    assert names - set(CHECKS) - set(OWN) == set(), "check the new constant here"
    assert set(CHECKS) | set(OWN) <= names, "a checked constant is gone: drop its check"


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_the_packs_copy_matches_the_stack(name: str):
    CHECKS[name]()
