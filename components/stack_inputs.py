"""Everything the program needs before it registers a resource, validated in one go.

Three stages read the stack's input: the configuration (components/config/), the model
repository it points at (components/model_repository.py) and the plan for each served model
(components/model_serving.py). Each stage reports all of its own problems; this module runs
every stage whose inputs are usable and raises one ConfigError listing the problems of all of
them, so a stack file with a bad key, a broken model and an unknown model name is fixed in one
round, not three.

A stage is skipped, not failed, when what it reads is unusable: the repository stage when
`modelRepository` is invalid or its path names no folder, the plan stage when the repository
could not be loaded or a section it reads is invalid (SectionUnavailable). A later stage that
trips over a problem an earlier stage already reported adds nothing new.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from components.config.errors import ConfigError, Problem, render
from components.config.rules import SectionUnavailable, is_valid
from components.config.runtime import (
    raw_project_config,
    secret_project_keys,
    this_stack_file_problems,
)
from components.config.stack import StackConfig
from components.config.validate import check as check_config
from components.model_plan import ModelPlan
from components.model_repository import ModelRepositoryError, load_model_repository
from components.model_serving import plan_models
from modelrepo.repository import Repository


@dataclass(frozen=True)
class StackInputs:
    config: StackConfig
    repository: Repository
    plans: list[ModelPlan]


class StackInputError(ModelRepositoryError):
    """The one report of every stage's problems: a ConfigError, and also a ModelRepositoryError,
    since the model repository's problems are in it when it has any."""

    heading = ConfigError.heading


def _load_repository(config: StackConfig, project_root: Path,
                     problems: list[Problem]) -> Repository | None:
    settings = config.model_repository
    if not is_valid(settings):
        return None  # modelRepository itself is invalid: already reported
    try:
        return load_model_repository(settings, project_root)
    except ModelRepositoryError as exc:
        problems.extend(exc.located)
        return None


def _plan(config: StackConfig, repository: Repository,
          problems: list[Problem]) -> list[ModelPlan]:
    try:
        return plan_models(config, repository)
    except SectionUnavailable:
        return []  # a section the plans read is invalid: already reported
    except ConfigError as exc:
        problems.extend(exc.located)
        return []
    except Exception:
        if problems:
            return []  # tripped over a problem already in the report
        raise


def _check(raw: Mapping[str, Any], secret_keys: Sequence[str], project_root: Path,
           file_problems: Sequence[Problem] = ()) -> tuple[StackInputs | None, list[Problem]]:
    config, problems = check_config(raw, secret_keys, file_problems)
    repository = _load_repository(config, project_root, problems)
    plans = _plan(config, repository, problems) if repository is not None else []
    if problems or repository is None:
        return None, problems
    return StackInputs(config, repository, plans), problems


def check(raw: Mapping[str, Any], secret_keys: Sequence[str], project_root: Path,
          file_problems: Sequence[Problem] = ()) -> tuple[StackInputs | None, list[str]]:
    """Every stage that can run, and every problem of all of them (after `file_problems`, found
    in the stack file itself), each rendered `<location>: <message>`."""
    inputs, problems = _check(raw, secret_keys, project_root, file_problems)
    return inputs, [render(location, message) for location, message in problems]


def secret_value(value: SecretStr | None) -> str | None:
    """The plain value of a secret config key, None when unset: the part that takes it keeps it a
    Pulumi secret."""
    return value.get_secret_value() if value else None


def load(project_root: Path) -> StackInputs:
    """This stack's validated inputs; raises one ConfigError listing every problem."""
    inputs, problems = _check(raw_project_config(), secret_project_keys(), project_root,
                              this_stack_file_problems(project_root))
    if problems or inputs is None:
        raise StackInputError(problems)
    return inputs
