"""The whole `mlserve:` namespace validated section by section, then every cross-section rule
(components/config/rules/), into one report of (location, message) problems."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Annotated, Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.alias_generators import to_camel

from components.config.errors import ConfigError, Problem
from components.config.rules import InvalidSection, check_rules
from components.config.stack import SECRET_KEYS, StackConfig


def _model_at(loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class that owns the key at `loc`, to list the keys it allows."""
    model: Any = StackConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = next((f for n, f in model.model_fields.items() if to_camel(n) == part), None)
        if field is None:
            return None
        model = _inner_model(field.annotation)
        if model is None:
            return None
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if (found := _inner_model(arg)) is not None:
            return found
    return None


def _describe(error: Mapping[str, Any]) -> list[Problem]:
    """(loc, message) pairs for one pydantic error, in the project's wording."""
    loc = tuple(error["loc"])
    ctx = error.get("ctx") or {}
    got = error.get("input")
    kind = error["type"]
    cause = ctx.get("error")
    if isinstance(cause, ConfigError):
        # A section's own rule: its locations are relative to the model that checks them.
        return [(loc + sub if isinstance(sub, tuple) else sub, message)
                for sub, message in cause.located]
    if kind == "extra_forbidden":
        owner = _model_at(loc[:-1])
        allowed = ", ".join(sorted(to_camel(n) for n in owner.model_fields)) if owner else "?"
        return [(loc, f"unknown key; allowed keys here: {allowed}")]
    messages = {
        "missing": "is required",
        "greater_than_equal": f"must be >= {ctx.get('ge')}, got {got!r}",
        "less_than_equal": f"must be <= {ctx.get('le')}, got {got!r}",
        "literal_error": f"must be {ctx.get('expected')}, got {got!r}",
        "string_pattern_mismatch": f"must match {ctx.get('pattern')}, got {got!r}",
        "too_short": f"must have at least {ctx.get('min_length')} item(s), got {got!r}",
        "string_too_long": f"must be at most {ctx.get('max_length')} characters, got {got!r}",
        "int_parsing": f"must be an integer, got {got!r}",
        "int_type": f"must be an integer, got {got!r}",
        "bool_parsing": f"must be true or false, got {got!r}",
        "bool_type": f"must be true or false, got {got!r}",
        "string_type": f"must be a string, got {got!r}",
        "list_type": f"must be a list, got {got!r}",
        "dict_type": f"must be a mapping, got {got!r}",
        "model_type": f"must be a mapping of keys, got {got!r}",
        "value_error": str(cause) if cause is not None else error["msg"],
    }
    return [(loc, messages.get(kind, f"{error['msg'][0].lower()}{error['msg'][1:]}, got {got!r}"))]


@cache
def _section_adapter(name: str) -> TypeAdapter[Any]:
    field = StackConfig.model_fields[name]
    # The field's type with its constraints (pattern, lengths), without its alias.
    annotation = field.annotation
    assert annotation is not None, f"StackConfig.{name} has no type"
    constrained: Any = Annotated[(annotation, *field.metadata)] if field.metadata else annotation
    return TypeAdapter(constrained)


def validate_sections(raw: Mapping[str, Any]) -> tuple[StackConfig, list[Problem]]:
    """Each top-level section validated on its own, so one bad section hides nothing else.

    Returns a StackConfig in which every invalid section is a stand-in that makes the rules
    reading it skip (see `check_rules`), and the problems found in the sections.
    """
    problems: list[Problem] = []
    aliases = {to_camel(name): name for name in StackConfig.model_fields}
    values: dict[str, Any] = {}
    for alias, name in aliases.items():
        field = StackConfig.model_fields[name]
        if alias not in raw:
            if field.is_required():
                problems.append(((alias,), "is required"))
                values[name] = InvalidSection(alias)
            else:
                values[name] = field.get_default(call_default_factory=True)
            continue
        try:
            values[name] = _section_adapter(name).validate_python(raw[alias])
        except ValidationError as exc:
            problems += [problem for error in exc.errors(include_url=False)
                         for problem in _describe({**error, "loc": (alias, *error["loc"])})]
            values[name] = InvalidSection(alias)
    allowed = ", ".join(sorted(aliases))
    problems += [((key,), f"unknown key; allowed keys here: {allowed}")
                 for key in raw if key not in aliases]
    return StackConfig.model_construct(**values), problems


def check(raw: Mapping[str, Any], secret_keys: Sequence[str] = (),
          file_problems: Sequence[Problem] = ()) -> tuple[StackConfig, list[Problem]]:
    """Validate the raw `mlserve:` values (keys without the namespace): the StackConfig (invalid
    sections stand in as `InvalidSection`) and every problem of every section and every
    cross-section rule, after `file_problems` (found in the stack file itself, e.g. keys listed
    twice).

    `secret_keys` are the keys the engine holds encrypted; a secret stored in plain text in a
    stack file is an error.
    """
    problems: list[Problem] = [
        ((key,), "must be set with `pulumi config set --secret`, it is stored in plain text")
        for key in SECRET_KEYS if key in raw and key not in secret_keys]
    config, section_problems = validate_sections(raw)
    problems += section_problems + check_rules(config)
    return config, [*file_problems, *problems]


def parse(raw: Mapping[str, Any], secret_keys: Sequence[str] = (),
          file_problems: Sequence[Problem] = ()) -> StackConfig:
    """Validate the raw `mlserve:` values into a StackConfig, or raise one ConfigError listing
    every problem."""
    config, problems = check(raw, secret_keys, file_problems)
    if problems:
        raise ConfigError(problems)
    return config
