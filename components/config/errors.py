"""The one error type of the stack's inputs: every problem is a location and a message.

A location is a key path in camelCase under the `mlserve:` namespace, e.g. ("gpuNodeGroups", 0,
"maxSize"), rendered `mlserve:gpuNodeGroups[0].maxSize`, or a file of the project (a stack file,
a model repository file), rendered as it is. The message never repeats the location.

Section validators raise ConfigError with locations relative to their own model (it is a
ValueError too, which pydantic requires of a validator's error); the section's path is put in
front when the section is validated (components/config/stack.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi

NAMESPACE = "mlserve"

Key = tuple[str | int, ...]
"""A key path in camelCase, e.g. ("gpuNodeGroups", 0, "maxSize")."""
Location = Key | str
"""A key path, or a file of the project."""
Problem = tuple[Location, str]
"""One problem: where, and what is wrong (the message does not repeat the location)."""
Loc = Key


def key_path(loc: Sequence[str | int]) -> str:
    """("gpuNodeGroups", 0, "maxSize") -> "gpuNodeGroups[0].maxSize"."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def where(location: Location) -> str:
    """A location as the report names it: `mlserve:<key path>`, or the file."""
    return location if isinstance(location, str) else f"{NAMESPACE}:{key_path(location)}"


def render(location: Location, message: str) -> str:
    return f"{where(location)}: {message}"


class ConfigError(pulumi.RunError, ValueError):
    """Invalid stack input (configuration, stack file, model repository, model plans); `pulumi up`
    prints it without a traceback.

    `located` holds the (location, message) pairs; `problems` the same, each rendered as one
    line, `<location>: <message>`, in the same order. It is a ValueError too, so a section's own
    validator can raise it and pydantic hands it back whole (components/config/stack.py)."""

    heading = "invalid stack configuration"

    def __init__(self, problems: Sequence[Problem]):
        self.located = list(problems)
        self.problems = [render(location, message) for location, message in self.located]
        lines = "\n".join(f"  - {line}" for line in self.problems)
        super().__init__(f"{self.heading} ({len(self.problems)} problem(s)):\n{lines}")

    @property
    def locations(self) -> list[str]:
        """Each problem's location as the report names it."""
        return [where(location) for location, _ in self.located]
