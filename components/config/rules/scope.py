"""What every rule shares: the stand-in for an invalid section, and which models and which
environment a rule looks at."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from components.config.errors import Key, Problem
from components.config.serving import ServedModelConfig
from components.config.stack import StackConfig

Rule = Callable[[StackConfig], Iterable[Problem]]
"""A cross-section rule: reads a validated StackConfig, yields (key path, message) per problem,
the message without the key."""


class SectionUnavailable(Exception):
    """A rule read a section of the stack configuration that failed validation."""


class InvalidSection:
    """Stands in for a section that failed validation: any use of it skips the rule."""

    __slots__ = ("key",)
    key: str

    def __init__(self, key: str):
        object.__setattr__(self, "key", key)

    def _refuse(self, *_: Any, **__: Any) -> Any:
        raise SectionUnavailable(self.key)

    __getattr__ = __iter__ = __len__ = __bool__ = __contains__ = __getitem__ = _refuse
    __eq__ = __lt__ = __gt__ = __hash__ = __str__ = __format__ = _refuse


def is_valid(section: Any) -> bool:
    """False for the stand-in of a section that failed validation."""
    return not isinstance(section, InvalidSection)


def served_models(config: StackConfig) -> Iterator[tuple[Key, str, ServedModelConfig]]:
    """(key path, name, settings) of every model listed under modelServing.models that will be
    served (none with backend none)."""
    serving = config.model_serving
    if serving.backend == "none":
        return
    for name, model in serving.models.items():
        yield ("modelServing", "models", name), name, model


def prod(config: StackConfig) -> bool:
    return config.environment == "prod"


def prod_on_eks(config: StackConfig) -> bool:
    """Prod, with AWS resources of its own (an existing cluster brings its own)."""
    return prod(config) and config.cluster.mode == "eks"


def waived(config: StackConfig, waiver: str) -> bool:
    return waiver in config.prod_waivers
