"""The only calls into the Pulumi runtime: the engine's configuration, which keys it holds as
secrets, and which stack runs.

The SDK offers no public way to list every key of a namespace (`pulumi.Config` reads the keys it
is asked for), and an undeclared key must be an error, not ignored; so this module reads the
runtime's own settings (pulumi/runtime/config.py), here and nowhere else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi

from components.config.errors import NAMESPACE, Problem
from components.config.stack import SECRET_KEYS
from components.config.stack_file import stack_file_problems


def _decode(value: Any) -> Any:
    # The engine passes every value as a string; structured values are JSON. Scalars stay strings
    # (so "1.30" is not turned into 1.3) and pydantic's lax mode converts "3" or "true" by field.
    if isinstance(value, str) and value[:1] in ("{", "["):
        return json.loads(value)
    return value


def raw_project_config() -> dict[str, Any]:
    """Every `mlserve:*` value the engine gave this program, including keys nobody declared."""
    from pulumi.runtime import config as runtime_config

    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    prefix = f"{NAMESPACE}:"
    return {k[len(prefix):]: _decode(v) for k, v in sorted(merged.items()) if k.startswith(prefix)}


def secret_project_keys() -> list[str]:
    """The keys of SECRET_KEYS that the engine reports as secret (encrypted in the stack file)."""
    from pulumi.runtime import config as runtime_config

    from_env = set(runtime_config.get_config_secret_keys_env())
    return [k for k in SECRET_KEYS if runtime_config.is_config_secret(f"{NAMESPACE}:{k}")
            or f"{NAMESPACE}:{k}" in from_env]


def this_stack_file_problems(project_dir: Path) -> list[Problem]:
    """Keys listed twice in this stack's `Pulumi.<stack>.yaml`."""
    return stack_file_problems(project_dir / f"Pulumi.{pulumi.get_stack()}.yaml")

