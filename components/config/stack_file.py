"""Keys listed twice in a stack file. YAML loaders, the engine's included, keep the last one
silently, and the engine hands the program already-merged values, so the file is read again."""

from __future__ import annotations

from pathlib import Path

import yaml

from components.config.errors import NAMESPACE, Key, Problem, key_path


def duplicate_keys(text: str) -> list[tuple[Key, int]]:
    """(key path, line) of every mapping key that repeats an earlier key of the same mapping,
    at any depth."""
    found: list[tuple[Key, int]] = []

    def walk(node: yaml.Node, path: Key) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                name = str(key.value)
                if name in seen:
                    found.append(((*path, name), key.start_mark.line + 1))
                seen.add(name)
                walk(value, (*path, name))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*path, index))

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None:
        walk(root, ())
    return found


def stack_file_problems(path: Path) -> list[Problem]:
    """Keys listed twice in a stack file: an `mlserve:` key by its key path (rendered
    `mlserve:<key path>`), any other by its path in the file."""
    if not path.is_file():
        return []
    prefix = f"{NAMESPACE}:"
    problems: list[Problem] = []
    for duplicate, line in duplicate_keys(path.read_text()):
        message = f"listed twice in {path.name} (line {line})"
        if duplicate[:1] == ("config",) and len(duplicate) > 1:
            top = str(duplicate[1])
            if top.startswith(prefix):
                problems.append(((top[len(prefix):], *duplicate[2:]), message))
            else:
                problems.append((key_path((top, *duplicate[2:])), message))
        else:
            problems.append((key_path(duplicate), message))
    return problems
