"""Stack files (Pulumi.<stack>.yaml) as tools/promote.py reads and pins them.

A pin is written by editing lines, so every comment and the layout survive: the edit is accepted
only if the result parses to exactly the old configuration with the new values set, and it is
written with compare-and-swap: if the file changed since it was read (someone edited it while
the versions were being copied), nothing is written.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

STEP = 2


class StackFileError(Exception):
    """A stack file that is missing, unreadable, changed meanwhile, or can't be edited safely."""


def stack_file(stack_dir: Path, stack: str) -> Path:
    return stack_dir / f"Pulumi.{stack}.yaml"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _value_after(line: str, indent: int, key: str) -> str | None:
    """The text after `key:` when `line` holds that key at exactly `indent`, else None."""
    if _indent(line) != indent:
        return None
    body = line[indent:]
    for spelled in (key, f'"{key}"', f"'{key}'"):
        if body.startswith(f"{spelled}:"):
            rest = body[len(spelled) + 1:]
            if not rest or rest[0] in " \t":
                return rest.strip()
    return None


def _block_end(lines: Sequence[str], header: int, header_indent: int, end: int) -> int:
    """The first line after `header` that is no longer inside its block."""
    for index in range(header + 1, end):
        if _is_content(lines[index]) and _indent(lines[index]) <= header_indent:
            return index
    return end


def _split_comment(rest: str) -> tuple[str, str]:
    """(value, trailing comment) of the text after `key:`."""
    if rest.startswith("#"):
        return "", rest
    at = rest.find(" #")
    return (rest, "") if at < 0 else (rest[:at].strip(), rest[len(rest[:at].rstrip()):])


def set_block_value(text: str, path: Sequence[str], value: str) -> str:
    """`text` with the block-style mapping key `path` set to the scalar `value`; a missing key
    (and its missing parents) is inserted after the last line of its parent block; a trailing
    comment is kept. Raises StackFileError where the layout isn't plain block style."""
    lines = text.splitlines()
    start, end, parent_indent = 0, len(lines), -1
    for depth, key in enumerate(path):
        content = [i for i in range(start, end) if _is_content(lines[i])]
        indent = _indent(lines[content[0]]) if content else max(parent_indent + STEP, 0)
        found = next(((i, rest) for i in content
                      if (rest := _value_after(lines[i], indent, key)) is not None), None)
        if found is None:
            at = content[-1] + 1 if content else start
            new = [f"{' ' * (indent + STEP * k)}{name}:" for k, name in enumerate(path[depth:])]
            new[-1] += f" {value}"
            lines[at:at] = new
            return "\n".join(lines) + "\n"
        index, rest = found
        current, comment = _split_comment(rest)
        if depth == len(path) - 1:
            lines[index] = f"{' ' * indent}{key}: {value}" + (
                comment if comment.startswith(" ") else f" {comment}" if comment else "")
            return "\n".join(lines) + "\n"
        if current:
            raise StackFileError(f"{'.'.join(path[:depth + 1])} is not a block mapping "
                                 f"({current!r})")
        start, end = index + 1, _block_end(lines, index, indent, end)
        parent_indent = indent
    raise StackFileError("empty key path")


def _set(tree: dict[str, Any], path: Sequence[str], value: Any) -> dict[str, Any]:
    result = copy.deepcopy(tree)
    node = result
    for key in path[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise StackFileError(f"{'.'.join(path)}: {key} is not a mapping")
        node = child
    node[path[-1]] = value
    return result


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive flock(2) on the folder itself (no lock file left behind); none where the
    platform has no fcntl."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@dataclass(frozen=True)
class StackFile:
    stack: str
    path: Path
    text: str
    """The file as read: the compare-and-swap compares against it."""
    tree: dict[str, Any]

    @classmethod
    def read(cls, stack_dir: Path, stack: str) -> StackFile:
        path = stack_file(stack_dir, stack)
        if not path.is_file():
            raise StackFileError(f"{path.name}: no such stack file (stack {stack!r})")
        text = path.read_text()
        try:
            tree = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise StackFileError(f"{path.name}: not valid YAML: {' '.join(str(exc).split())}"
                                 ) from None
        if not isinstance(tree, dict) or not isinstance(tree.get("config") or {}, dict):
            raise StackFileError(f"{path.name}: has no `config:` mapping")
        return cls(stack=stack, path=path, text=text, tree=tree)

    @property
    def config(self) -> dict[str, Any]:
        return self.tree.get("config") or {}

    def value(self, *path: str) -> Any:
        node: Any = self.config
        for key in path:
            if not isinstance(node, Mapping):
                return None
            node = node.get(key)
        return node

    def with_values(self, values: Mapping[tuple[str, ...], str]) -> str | None:
        """The file's text with each `config` key path set to its (string) value, quoted;
        None when every value is set already. Refuses an edit it can't make safely."""
        text, expected = self.text, self.tree
        for path, value in values.items():
            if self.value(*path) == value:
                continue
            full = ("config", *path)
            try:
                text = set_block_value(text, full, f'"{value}"')
                expected = _set(expected, full, value)
                parsed = yaml.safe_load(text)
            except (StackFileError, yaml.YAMLError) as exc:
                raise StackFileError(self._unsafe(path, value, exc)) from None
            if parsed != expected:
                raise StackFileError(self._unsafe(path, value, "the edit would change other "
                                                               "keys"))
        return None if text == self.text else text

    def _unsafe(self, path: Sequence[str], value: str, why: Any) -> str:
        key = ".".join(path).removeprefix("mlserve:")
        return (f"{self.path.name}: can't set {key} safely ({' '.join(str(why).split())}); run "
                f"`pulumi config set --path {key} {value} --stack {self.stack}`")

    def replace(self, new_text: str) -> None:
        """Write `new_text` if the file still holds what was read (compare-and-swap), through
        a temporary file and an atomic rename; raises StackFileError, writing nothing, when it
        changed meanwhile."""
        changed = StackFileError(f"{self.path.name} changed while the versions were being "
                                 "copied; nothing was pinned (the copies are complete and "
                                 "verified: run the promotion again to pin them)")
        if self._current() != self.text:
            raise changed
        # A temporary file of its own (two promotions in one process share a pid).
        handle, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                        dir=self.path.parent)
        temporary = Path(name)
        try:
            with os.fdopen(handle, "w") as out:
                out.write(new_text)
            shutil.copymode(self.path, temporary)
            # Checked again and renamed under the folder's lock: a concurrent promotion's
            # check-and-rename cannot interleave, so neither pin is lost silently.
            with _folder_lock(self.path.parent):
                if self._current() != self.text:
                    raise changed
                os.replace(temporary, self.path)
        finally:
            temporary.unlink(missing_ok=True)

    def _current(self) -> str | None:
        try:
            return self.path.read_text()
        except FileNotFoundError:
            return None
