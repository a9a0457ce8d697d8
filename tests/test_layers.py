"""docs/layers.md as a test: every import of the project's own modules runs downwards.

Imports are read with `ast` from the source, so an import inside a function or a TYPE_CHECKING
block counts too. A failure names the module, the line and the import."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ROOT_DIR

PACKAGES = ("components", "modelrepo", "policy", "tools")
TESTS = "tests"
"""The harness, the graph snapshot and the tests: they may import every layer and are not
checked themselves, but no layer may import them."""
FACTS = ("components.versions", "components.aws_facts", "components.naming")
BELOW_PARTS = {"config", "facts", "modelrepo", "policy"}
ALLOWED: dict[str, set[str]] = {
    "policy": {"policy"},
    "modelrepo": {"modelrepo"},
    "facts": {"facts"},
    "config": {"config", "facts", "modelrepo", "policy"},
    "parts": {"parts"} | BELOW_PARTS,
    "program": {"parts"} | BELOW_PARTS,
    "tools": {"tools", "parts"} | BELOW_PARTS,
}
CONFIG_RANKS: dict[str, int] = {
    "errors": 0, "quantities": 0,
    "types": 1, "stack_file": 1,
    "network": 2, "cluster": 2, "nodes": 2, "bucket": 2, "serving": 2, "platform": 2,
    "gpu_capacity": 2,
    "stack": 3,
    "capacity": 4,
    "rules.scope": 5,
    "rules.platform": 6, "rules.storage": 6, "rules.models": 6, "rules.capacity": 6,
    "rules.prod": 6, "rules.accounts": 6, "rules.gpu_capacity": 6,
    "rules": 7,
    "validate": 8,
    "runtime": 9,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT_DIR).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> list[Path]:
    files = [ROOT_DIR / "__main__.py"]
    for package in PACKAGES:
        files += [p for p in sorted((ROOT_DIR / package).rglob("*.py"))
                  if "venv" not in p.relative_to(ROOT_DIR).parts]
    return files


def is_module(name: str) -> bool:
    path = ROOT_DIR.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports(path: Path, text: str) -> Iterator[tuple[int, str]]:
    """(line, module) of every import of a project module, relative ones resolved, `from p import
    m` read as module p.m when m is a module."""
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [f"{base}.{alias.name}" if is_module(f"{base}.{alias.name}") else base
                     for alias in node.names]
        else:
            continue
        for name in dict.fromkeys(names):
            if name.split(".")[0] in (*PACKAGES, TESTS):
                yield node.lineno, name


def layer(module: str) -> str:
    top = module.split(".")[0]
    if module == "__main__":
        return "program"
    if top in ("policy", "modelrepo", "tools", TESTS):
        return top
    if module == "components.config" or module.startswith("components.config."):
        return "config"
    if module in FACTS:
        return "facts"
    return "parts"


def config_rank(module: str) -> int | None:
    return CONFIG_RANKS.get(module.removeprefix("components.config."))


def violations(path: Path, text: str | None = None) -> Iterator[str]:
    importer = module_name(path)
    where = path.relative_to(ROOT_DIR)
    for line, imported in imports(path, path.read_text() if text is None else text):
        own, theirs = layer(importer), layer(imported)
        if theirs not in ALLOWED[own]:
            yield (f"{where}:{line}: imports {imported}: the {own} layer may import only "
                   f"{sorted(ALLOWED[own])}, not {theirs} (docs/layers.md)")
        elif own == theirs == "config" and importer != "components.config":
            mine, other = config_rank(importer), config_rank(imported)
            if mine is None or other is None or other >= mine:
                yield (f"{where}:{line}: imports {imported}: inside components/config/ a module "
                       f"imports only lower ranks ({importer}: {mine}, {imported}: {other}; "
                       "docs/layers.md)")


@pytest.mark.parametrize("path", source_files(), ids=lambda p: str(p.relative_to(ROOT_DIR)))
def test_imports_run_downwards(path: Path):
    assert list(violations(path)) == []


def test_every_config_module_has_a_rank():
    modules = {module_name(p).removeprefix("components.config.")
               for p in (ROOT_DIR / "components" / "config").rglob("*.py")
               if p.name != "__init__.py" or p.parent.name != "config"}
    assert modules == set(CONFIG_RANKS), "add the module to CONFIG_RANKS and docs/layers.md"


def test_every_rank_is_in_the_picture():
    text = (ROOT_DIR / "docs" / "layers.md").read_text()
    for module in CONFIG_RANKS:
        assert f"`{module.replace('.', '/')}`" in text, module


def test_the_check_sees_a_wrong_way_import():
    """The check itself can fail: a section importing a tool, and the stack above it."""
    section = ROOT_DIR / "components" / "config" / "network.py"
    text = section.read_text() + ("\n\ndef _late():\n    from tools import promote\n"
                                  "    from components.config.stack import StackConfig\n")
    found = list(violations(section, text))
    assert len(found) == 2, found
    assert "imports tools.promote: the config layer may import only" in found[0]
    assert "imports components.config.stack: inside components/config/" in found[1]


def test_no_layer_imports_the_tests():
    """tests/ (the harness, tests/graph_snapshot.py) sits above every layer."""
    part = ROOT_DIR / "components" / "foundation.py"
    text = part.read_text() + "\n\nfrom tests.graph_snapshot import SHIPPED\n"
    found = list(violations(part, text))
    assert len(found) == 1, found
    assert "imports tests.graph_snapshot: the parts layer may import only" in found[0]
