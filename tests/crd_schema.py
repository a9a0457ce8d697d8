"""Validation of a custom resource against its CRD's structural OpenAPI v3 schema, the way the API
server treats it: a field the schema doesn't list is pruned, silently (so here: an error, the
field would never reach the controller); `nullable`, `x-kubernetes-int-or-string` and
`x-kubernetes-preserve-unknown-fields` as Kubernetes defines them."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

UPSTREAM = Path(__file__).parent / "upstream"
SELDON_DEPLOYMENT_SCHEMA = (UPSTREAM / "seldon-core-operator-1.17.1"
                            / "seldondeployment-v1.schema.json")


def to_json_schema(node: Any) -> Any:
    """An OpenAPI v3 structural schema as a strict JSON Schema."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: to_json_schema(value) for key, value in node.items()
           if not key.startswith("x-kubernetes-") and key not in ("nullable", "format")}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.pop("anyOf", None)
        out["type"] = ["integer", "string"]
    if "properties" in node and "additionalProperties" not in node and \
            not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if node.get("nullable") and "type" in out:
        kinds = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*kinds, "null"]
    return out


@cache
def _validator(path: Path) -> jsonschema.protocols.Validator:
    schema = to_json_schema(json.loads(path.read_text()))
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    return cls(schema)


def crd_errors(obj: dict[str, Any], schema: Path = SELDON_DEPLOYMENT_SCHEMA) -> list[str]:
    """Every violation, as `path: message`; [] when the object is valid."""
    return sorted(f"{'.'.join(str(p) for p in error.absolute_path) or '.'}: {error.message}"
                  for error in _validator(schema).iter_errors(obj))
