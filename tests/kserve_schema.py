"""Strict validation of InferenceServices against KServe's own generated models (the `kserve`
Python SDK): unknown fields, wrong types, missing required fields and values outside a model's
enums are errors, at their JSON path."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import types
from typing import Any

import kubernetes.client.models


def _kserve_models() -> types.ModuleType:
    """kserve.models without running kserve/__init__.py: that one registers KServe's gRPC
    protos, which clash with tritonclient's (both declare `inference.*`) in one process."""
    if "kserve" not in sys.modules:
        spec = importlib.util.find_spec("kserve")
        assert spec is not None and spec.submodule_search_locations, "kserve is not installed"
        package = types.ModuleType("kserve")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["kserve"] = package
    return importlib.import_module("kserve.models")


kserve_models = _kserve_models()
Configuration = importlib.import_module("kserve.configuration").Configuration

_LIST = re.compile(r"^(?:list|List)\[(.+)\]$")
_DICT = re.compile(r"^(?:dict\(str, (.+)\)|Dict\[str, (.+)\])$")
_PRIMITIVES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,),
               "date": (str,), "datetime": (str,)}


# Types KServe's generator leaves as names: Kubernetes quantities (a string or a number).
_QUANTITIES = {"ResourceQuantity", "V1beta1MetricQuantity", "IntOrString"}
_UPSTREAM = re.compile(r"^K8sIoApi[A-Z][a-z]+(V\d+(?:alpha\d+|beta\d+)?)(\w+)$")


def _model_class(name: str) -> type | None:
    if match := _UPSTREAM.match(name):  # K8sIoApiAutoscalingV2X -> kubernetes' V2X
        name = match[1] + match[2]
    return getattr(kserve_models, name, None) or getattr(kubernetes.client.models, name, None)


def validate(value: Any, type_name: str, path: str = "") -> list[str]:
    errors: list[str] = []
    if value is None:
        return errors
    if type_name == "object":
        return errors
    if type_name in _PRIMITIVES:
        allowed = _PRIMITIVES[type_name]
        if not isinstance(value, allowed) or (type_name != "bool" and isinstance(value, bool)):
            errors.append(f"{path or '.'}: expected {type_name}, got {type(value).__name__}")
        return errors
    if match := _LIST.match(type_name):
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        for index, item in enumerate(value):
            errors += validate(item, match[1], f"{path}[{index}]")
        return errors
    if match := _DICT.match(type_name):
        if not isinstance(value, dict):
            return [f"{path}: expected a map, got {type(value).__name__}"]
        for key, item in value.items():
            errors += validate(item, match[1] or match[2], f"{path}.{key}")
        return errors
    if type_name in _QUANTITIES:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            errors.append(f"{path}: expected a quantity (string or number), got "
                          f"{type(value).__name__}")
        return errors
    cls = _model_class(type_name)
    if cls is None:
        raise LookupError(f"{path}: no generated model {type_name} to validate against")
    if hasattr(cls, "model_validate"):
        # The Kubernetes client's models are pydantic, strict about unknown fields already.
        try:
            cls.model_validate(value)
        except Exception as exc:  # noqa: BLE001 - pydantic's ValidationError
            details = exc.errors() if hasattr(exc, "errors") else [{"loc": (), "msg": str(exc)}]
            errors += [f"{path}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                       for e in details]
        return errors
    if not isinstance(value, dict):
        return [f"{path}: expected {type_name} object, got {type(value).__name__}"]
    by_json = {json_key: attr for attr, json_key in cls.attribute_map.items()}
    for key in value:
        if key not in by_json:
            errors.append(f"{path}.{key}: unknown field of {type_name}")
    for json_key, attr in by_json.items():
        if json_key in value:
            errors += validate(value[json_key], cls.openapi_types[attr], f"{path}.{json_key}")
    if not errors:
        # The generated constructor enforces required fields and enums.
        kwargs = {by_json[k]: v for k, v in value.items()}
        try:
            cls(**kwargs, local_vars_configuration=Configuration())
        except (ValueError, TypeError) as exc:
            errors.append(f"{path or '.'}: {type_name}: {exc}")
    return errors


def validate_inference_service(manifest: dict[str, Any]) -> list[str]:
    return validate(manifest, "V1beta1InferenceService")
