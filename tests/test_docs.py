"""The README, docs/ and Pulumi.yaml say what the code does, and their links lead somewhere."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from pydantic.alias_generators import to_camel

from components.config.stack import StackConfig
from tests.harness import ROOT_DIR
from tools import docs
from tools.config_reference import reference

README = ROOT_DIR / "README.md"
DOCS = sorted((ROOT_DIR / "docs").glob("*.md"))


@pytest.mark.parametrize("block", docs.BLOCKS, ids=lambda b: f"{b.path}:{b.begin.split(':')[0]}")
def test_generated_blocks_are_what_the_code_generates(block):
    text = (ROOT_DIR / block.path).read_text()
    assert docs.render(block, text) == text, (
        f"{block.path}: the block from {block.begin.strip()!r} differs from the code; "
        f"run `{docs.COMMAND}` and commit the result")


def test_make_docs_rewrites_a_stale_block_and_nothing_else(tmp_path):
    for path in {b.path for b in docs.BLOCKS}:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT_DIR / path, tmp_path / path)
    docs.write(tmp_path)
    policy = tmp_path / "docs" / "policy.md"
    fresh = policy.read_text()
    policy.write_text(fresh.replace("| `no-iam-users` |", "| `no-iam-users-edited` |"))
    assert docs.stale(tmp_path) == ["docs/policy.md"]
    assert docs.write(tmp_path) == ["docs/policy.md"]
    assert policy.read_text() == fresh
    assert docs.stale(tmp_path) == []


def test_a_missing_marker_is_named():
    block = docs.BLOCKS[0]
    with pytest.raises(docs.MarkersError, match=re.escape(block.path)):
        docs.render(block, f"{block.begin}\nno end marker\n")


# ---- the configuration reference's defaults are the model's -------------------------------

# One valid value for each required key, to build the smallest document that reaches a key.
REQUIRED_VALUES = {
    "environment": "dev",
    "region": "us-west-2",
    "cluster": {},
    "network.existingVpc.vpcId": "vpc-0123456789abcdef0",
    "network.existingVpc.privateSubnetIds": ["subnet-00000001", "subnet-00000002"],
    "network.existingVpc.publicSubnetIds": ["subnet-00000003", "subnet-00000004"],
    "gpuNodeGroups[].name": "gpu",
    "gpuNodeGroups[].instanceTypes": ["g5.xlarge"],
    "modelServing.models.<name>.canary.percent": 10,
}
# The cluster section is valid either way; a key is read from the first that doesn't set it.
CLUSTERS = ({"adminPrincipalArns": ["arn:aws:iam::111122223333:role/admin"]},
            {"mode": "existing", "kubeconfig": "kubeconfig"})
MODEL = "model"  # the name standing for <name>
ROW = re.compile(r"^\| `(?P<key>[^`]+)` \| .* \| "
                 r"(?P<default>`[^`]*`|\*\*required\*\*|see below) \| ")


def _segments(key: str) -> list[str]:
    return key.replace("[].", ".[].").split(".")


def _smallest_document(segments: list[str]) -> dict:
    """The required keys at the root, and on the way to the key only the objects that must be
    there: list and map items, and objects with required keys (or leading to one). An object
    with a default is left out, like the key: its default decides."""
    def required_in(prefix: list[str]) -> dict:
        return {_segments(key)[-1]: value for key, value in REQUIRED_VALUES.items()
                if _segments(key)[:-1] == prefix}

    def needed(depth: int) -> bool:  # must the object at segments[:depth + 1] be written?
        if depth >= len(segments) - 1:
            return False
        return (bool({segments[depth], segments[depth + 1]} & {"[]", "<name>"})
                or bool(required_in(segments[:depth + 1])) or needed(depth + 1))

    document = required_in([])
    document["cluster"] = next(dict(cluster) for cluster in CLUSTERS
                               if segments[0] != "cluster" or len(segments) == 1
                               or segments[1] not in cluster)
    here: dict | list = document
    for depth, segment in enumerate(segments[:-1]):
        if not needed(depth):
            break
        inner = required_in(segments[:depth + 1])
        if segment == "[]":
            here.append(inner)
            here = here[0]
            continue
        name = MODEL if segment == "<name>" else segment
        here.setdefault(name, [] if segments[depth + 1] == "[]" else inner)
        here = here[name]
    return document


def _read(dumped: dict, segments: list[str]):
    value = dumped
    for segment in segments:
        value = value[0] if segment == "[]" else value[MODEL if segment == "<name>" else segment]
    return value


def _reference_rows():
    rows = [ROW.match(line) for line in reference().splitlines() if line.startswith("| `")]
    assert all(rows), "a reference row doesn't parse"
    return [(row["key"], row["default"]) for row in rows]


@pytest.mark.parametrize(("key", "printed"), _reference_rows(), ids=lambda v: str(v))
def test_each_printed_default_is_what_the_model_gives(key, printed):
    """Each key's default in the reference is the value pydantic gives when the key (and anything
    around it that has a default) is left out of a stack's configuration."""
    segments = _segments(key)
    if printed == "**required**":
        assert key in REQUIRED_VALUES, f"{key}: required; add a valid value to REQUIRED_VALUES"
        document = _smallest_document(segments)
        _read(document, segments[:-1]).pop(segments[-1], None)
        with pytest.raises(ValueError, match=re.escape(to_camel(segments[-1]))):
            StackConfig.model_validate(document)
        return
    document = _smallest_document(segments)
    dumped = StackConfig.model_validate(document).model_dump(mode="json", by_alias=True)
    value = _read(dumped, segments)
    if printed == "see below":
        assert isinstance(value, dict), key
    else:
        assert printed == f"`{json.dumps(value)}`", key


# ---- the README, Pulumi.yaml, CI -------------------------------------------------------------

def test_readme_opens_with_the_two_commands_and_stays_short():
    text = README.read_text()
    top = text[:1200]
    assert "make test" in top and "make up STACK=dev" in top and "make test-fast" in top
    assert len(text.splitlines()) <= 200, "README.md is over 200 lines: move detail to docs/"


def test_pulumi_yaml_documents_every_top_level_key():
    text = (ROOT_DIR / "Pulumi.yaml").read_text()
    declared = yaml.safe_load(text)["config"]
    for name in StackConfig.model_fields:
        key = to_camel(name)
        assert key in declared or re.search(rf"^\s*#\s+{key}\s", text, re.M), key


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT_DIR / ".ci" / "run").read_text()


# ---- links ---------------------------------------------------------------------------------

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats
    numbered."""
    anchors: set[str] = set()
    fenced = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        match = None if fenced else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            slug = re.sub(r"[^\w\- ]", "", match[1].lower()).replace(" ", "-")
            candidate, n = slug, 0
            while candidate in anchors:
                n += 1
                candidate = f"{slug}-{n}"
            anchors.add(candidate)
    return anchors


def _relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return [target for target in LINK.findall(text) if not re.match(r"^[a-z]+:", target)]


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_every_relative_link_resolves(path):
    broken = []
    for target in _relative_links(path):
        file, _, anchor = target.partition("#")
        destination = (path.parent / file).resolve() if file else path
        if not destination.exists():
            broken.append(f"{target}: no file {file}")
        elif anchor and anchor not in _anchors(destination.read_text()):
            broken.append(f"{target}: no heading #{anchor} in {destination.name}")
    assert not broken, f"{path.relative_to(ROOT_DIR)}: " + "; ".join(broken)


def test_the_link_check_sees_links_and_headings():
    assert _anchors("# A title\n## Seldon Core (opt-in)\n## `make` it: go\n## A title\n") == {
        "a-title", "seldon-core-opt-in", "make-it-go", "a-title-1"}
    assert _relative_links(README)  # the README links into docs/
