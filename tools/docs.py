"""Writes every generated block of the docs in place, between its markers: `make docs`.

    python -m tools.docs           # rewrite the blocks that differ from the code
    python -m tools.docs --check   # list them and exit 1, writing nothing

Each block is produced by a generator that reads the code (the typed configuration, the pinned
versions, the policy rules); tests/test_docs.py fails when a file differs from its generator.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tools import config_reference, policy_table, project_config, versions_table

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "make docs"


@dataclass(frozen=True)
class Block:
    path: str  # relative to the project root
    begin: str  # the first line of the generator's output
    end: str  # its last line
    generate: Callable[[], str]


BLOCKS = (
    Block("docs/configuration.md", config_reference.BEGIN, config_reference.END,
          config_reference.reference),
    Block("docs/architecture.md", versions_table.BEGIN, versions_table.END, versions_table.table),
    Block("docs/policy.md", policy_table.BEGIN, policy_table.END, policy_table.table),
    Block("Pulumi.yaml", project_config.BEGIN, project_config.END, project_config.block),
)


class MarkersError(ValueError):
    pass


def render(block: Block, text: str) -> str:
    """`text` with the block between its markers (markers included) replaced by the generator's
    output; the markers must each be there once, as whole lines."""
    lines = text.split("\n")
    found = {marker: [i for i, line in enumerate(lines) if line == marker]
             for marker in (block.begin, block.end)}
    if any(len(at) != 1 for at in found.values()):
        raise MarkersError(f"{block.path}: needs the lines {block.begin!r} and {block.end!r} "
                           f"once each, in that order")
    start, stop = found[block.begin][0], found[block.end][0]
    if stop < start:
        raise MarkersError(f"{block.path}: {block.end!r} comes before {block.begin!r}")
    return "\n".join([*lines[:start], block.generate(), *lines[stop + 1:]])


def stale(root: Path = ROOT) -> list[str]:
    """The files whose generated blocks differ from what the code generates now."""
    out = []
    for path in dict.fromkeys(b.path for b in BLOCKS):
        text = (root / path).read_text()
        if _rendered(path, text) != text:
            out.append(path)
    return out


def _rendered(path: str, text: str) -> str:
    for block in BLOCKS:
        if block.path == path:
            text = render(block, text)
    return text


def write(root: Path = ROOT) -> list[str]:
    changed = stale(root)
    for path in changed:
        file = root / path
        file.write_text(_rendered(path, file.read_text()))
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.docs",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    try:
        changed = stale() if args.check else write()
    except MarkersError as error:
        print(f"docs: {error}", file=sys.stderr)
        return 1
    for path in changed:
        print(f"{path}: {'out of date, run `' + COMMAND + '`' if args.check else 'updated'}")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
