"""Validation of the Kubernetes objects the stack emits against real, published schemas.

Core kinds: kubernetes-validate (the OpenAPI schemas of the cluster's Kubernetes version), strict,
so unknown fields fail. Custom resources: the schemas in the npm @kubernetes-models/* packages
(tests/schemas/package.json, installed by `make test`), run by tests/schemas/validate.mjs, or, for
kinds those packages lack, the upstream CRD kept as test data (UPSTREAM_CRDS, tests/crd_schema.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate

from tests.crd_schema import UPSTREAM, crd_errors
from tests.harness import Graph

SCHEMAS_DIR = Path(__file__).parent / "schemas"
NOT_OBJECTS = ("kubernetes:helm.sh/", "pulumi:providers:")
_INPUT_KEYS = {"apiVersion", "kind", "metadata", "spec", "data", "stringData", "type",
               "provisioner", "parameters", "volumeBindingMode", "allowVolumeExpansion",
               "reclaimPolicy", "mountOptions", "allowedTopologies", "immutable", "rules",
               "subjects", "roleRef", "webhooks", "binaryData"}


def manifests(graph: Graph) -> list[dict[str, Any]]:
    """Every Kubernetes object the program registers directly, as it would be applied."""
    out = []
    for res in graph.resources:
        if not res.custom or not res.type.startswith("kubernetes:") or \
                res.type.startswith(NOT_OBJECTS):
            continue
        out.append({k: v for k, v in res.inputs.items() if k in _INPUT_KEYS})
    return out


def is_kserve(obj: dict[str, Any]) -> bool:
    return obj["apiVersion"].startswith("serving.kserve.io/")


def is_karpenter(obj: dict[str, Any]) -> bool:
    """Karpenter's kinds: validated against its own CRDs (tests/components/test_karpenter.py)."""
    return obj["apiVersion"].startswith(("karpenter.sh/", "karpenter.k8s.aws/"))


def is_core(obj: dict[str, Any]) -> bool:
    group = obj["apiVersion"].rsplit("/", 1)[0] if "/" in obj["apiVersion"] else ""
    return group == "" or group.endswith(".k8s.io") or group in {"apps", "batch", "policy",
                                                                 "autoscaling"}


def validate_core(obj: dict[str, Any], kubernetes_version: str) -> str | None:
    try:
        kubernetes_validate.validate(obj, kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return f"{'.'.join(str(p) for p in exc.path)}: {exc.message}"
    return None


UPSTREAM_CRDS: dict[tuple[str, str], Path] = {
    ("http.keda.sh/v1beta1", "InterceptorRoute"):
        UPSTREAM / "keda-http-add-on-0.15.0" / "interceptorroute-v1beta1.schema.json",
}


def validate_custom(objects: list[dict[str, Any]]) -> list[str | None]:
    """None per valid object, else what is wrong with it."""
    results: list[str | None] = [None] * len(objects)
    published = []
    for index, obj in enumerate(objects):
        schema = UPSTREAM_CRDS.get((obj["apiVersion"], obj["kind"]))
        if schema is None:
            published.append(index)
        else:
            results[index] = "; ".join(crd_errors(obj, schema)) or None
    for index, result in zip(published, _validate_published([objects[i] for i in published]),
                             strict=True):
        results[index] = result
    return results


def _validate_published(objects: list[dict[str, Any]]) -> list[str | None]:
    node = shutil.which("node")
    assert node, "node is needed to validate custom resources (see docs/operations.md, Prerequisites)"
    assert (SCHEMAS_DIR / "node_modules").is_dir(), \
        "schemas not installed: run `make test` (npm ci in tests/schemas)"
    result = subprocess.run([node, "validate.mjs"], cwd=SCHEMAS_DIR, input=json.dumps(objects),
                            capture_output=True, text=True, check=True, timeout=60)
    return [None if r["ok"] else r["error"] for r in json.loads(result.stdout)]
