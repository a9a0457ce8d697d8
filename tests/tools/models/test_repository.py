"""modelrepo/repository.py: layout and config rules, each problem naming file and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from modelrepo import repository
from modelrepo.repository import RepositoryError
from tests.harness import ROOT_DIR

SHIPPED = ROOT_DIR / "model_repo"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the shipped repository to break."""
    target = tmp_path / "model_repo"
    shutil.copytree(SHIPPED, target)
    return target


def edit_config(repo: Path, old: str, new: str) -> None:
    config = repo / "cifar10" / "config.pbtxt"
    text = config.read_text()
    assert old in text, old
    config.write_text(text.replace(old, new))


def problems(repo: Path) -> list[str]:
    with pytest.raises(RepositoryError) as caught:
        repository.load(repo)
    return caught.value.problems


def test_shipped_repository_is_valid():
    repo = repository.load(SHIPPED)
    assert set(repo.models) == {"cifar10"}
    assert repo.files == ("cifar10/1/model.pt", "cifar10/config.pbtxt",
                          "cifar10/configs/cpu.pbtxt", "cifar10/labels.txt")
    assert repo.models["cifar10"].custom_configs == ("cpu",)
    model = repo.models["cifar10"]
    assert model.config.platform == "pytorch_libtorch"
    assert model.config.max_batch_size > 0
    assert model.config.HasField("dynamic_batching")
    assert [t.name for t in model.config.input] == ["image__0"]
    assert [t.name for t in model.config.output] == ["probs__0"]
    assert model.config.instance_group[0].kind == model.config.instance_group[0].KIND_GPU


BROKEN = [
    (lambda r: (r / "cifar10" / "config.pbtxt").unlink(),
     "model_repo/cifar10/config.pbtxt: missing"),
    (lambda r: (r / "cifar10" / "1" / "model.pt").unlink(),
     "model_repo/cifar10/1/model.pt: missing"),
    (lambda r: (r / "cifar10" / "1").rename(r / "cifar10" / "v1"),
     "model_repo/cifar10/v1: version folders must be numbers"),
    (lambda r: (r / "__pycache__").mkdir(),
     "model_repo/__pycache__: Triton would try to load this folder as a model"),
    (lambda r: (r / "notes.txt").write_text("x"),
     "model_repo/notes.txt: only model folders belong at the top"),
    (lambda r: (r / "cifar10" / "labels.txt").unlink(),
     "model_repo/cifar10/config.pbtxt: output[0].label_filename: labels.txt is not in"),
    (lambda r: edit_config(r, 'name: "cifar10"', 'name: "cifar100"'),
     "model_repo/cifar10/config.pbtxt: name: must match the folder name 'cifar10'"),
    (lambda r: (r / "cifar10" / "configs" / "cpu.pbtxt").write_text("max_batch_size: -1"),
     "model_repo/cifar10/configs/cpu.pbtxt: "),
    (lambda r: (r / "cifar10" / "configs" / "notes.txt").write_text("x"),
     "model_repo/cifar10/configs/notes.txt: only <name>.pbtxt files belong in configs/"),
    (lambda r: edit_config(r, "max_batch_size: 64", "max_batch_sise: 64"),
     "model_repo/cifar10/config.pbtxt: "),
    (lambda r: edit_config(r, 'platform: "pytorch_libtorch"', 'platform: "pytorch"'),
     "model_repo/cifar10/config.pbtxt: platform: must be one of"),
    (lambda r: edit_config(r, 'name: "image__0"', 'name: "image"'),
     "model_repo/cifar10/config.pbtxt: input[0].name: must follow the libtorch convention"),
    (lambda r: edit_config(r, 'name: "probs__0"', 'name: "probs__1"'),
     "model_repo/cifar10/config.pbtxt: output: libtorch indices must be 0..0, got [1]"),
    (lambda r: edit_config(r, "data_type: TYPE_UINT8\n", ""),
     "model_repo/cifar10/config.pbtxt: input[0].data_type: must be set"),
    (lambda r: edit_config(r, "dims: [ 10 ]", "dims: [ 0 ]"),
     "model_repo/cifar10/config.pbtxt: output[0].dims: each must be -1 or > 0"),
    (lambda r: edit_config(r, "max_batch_size: 64", "max_batch_size: 0"),
     "model_repo/cifar10/config.pbtxt: dynamic_batching: needs max_batch_size > 0"),
    (lambda r: edit_config(r, "max_queue_delay_microseconds: 0",
                           "max_queue_delay_microseconds: 5000000"),
     "model_repo/cifar10/config.pbtxt: dynamic_batching.max_queue_delay_microseconds"),
]


@pytest.mark.parametrize(("breakage", "expected"), BROKEN,
                         ids=[e.split(": ", 1)[-1][:40] for _, e in BROKEN])
def test_broken_repository_names_file_and_field(repo, breakage, expected):
    breakage(repo)
    found = problems(repo)
    assert any(p.startswith(expected) for p in found), found


def test_all_problems_reported_together(repo):
    (repo / "__pycache__").mkdir()
    edit_config(repo, 'name: "image__0"', 'name: "image"')
    (repo / "cifar10" / "1" / "model.pt").unlink()
    assert len(problems(repo)) == 3


def test_hash_is_content_addressed(repo):
    first = repository.load(repo).content_hash
    assert repository.load(repo).content_hash == first
    assert first == repository.load(SHIPPED).content_hash  # same bytes elsewhere: same hash
    (repo / "README.md").write_text("not uploaded, not hashed")
    assert repository.load(repo).content_hash == first
    labels = repo / "cifar10" / "labels.txt"
    labels.write_bytes(labels.read_bytes() + b" ")
    assert repository.load(repo).content_hash != first


def test_renaming_a_file_changes_the_hash(repo):
    first = repository.load(repo).content_hash
    (repo / "cifar10" / "labels.txt").rename(repo / "cifar10" / "classes.txt")
    for config in (repo / "cifar10" / "config.pbtxt", repo / "cifar10" / "configs" / "cpu.pbtxt"):
        config.write_text(config.read_text().replace('"labels.txt"', '"classes.txt"'))
    assert repository.load(repo).content_hash != first


def test_each_model_has_its_own_version(repo):
    """A model's version covers its own files only: changing one model moves that model alone."""
    shutil.copytree(repo / "cifar10", repo / "other")
    for config in (repo / "other" / "config.pbtxt", repo / "other" / "configs" / "cpu.pbtxt"):
        config.write_text(config.read_text().replace('name: "cifar10"', 'name: "other"'))
    before = repository.load(repo)
    assert before.models["other"].files == tuple(
        f for f in before.files if f.startswith("other/"))
    assert before.models["cifar10"].content_hash != before.models["other"].content_hash
    assert before.models["cifar10"].content_hash == repository.load(SHIPPED).models[
        "cifar10"].content_hash
    labels = repo / "other" / "labels.txt"
    labels.write_bytes(labels.read_bytes() + b" ")
    after = repository.load(repo)
    assert after.models["other"].content_hash != before.models["other"].content_hash
    assert after.models["cifar10"].content_hash == before.models["cifar10"].content_hash
    assert after.content_hash != before.content_hash


def test_lean_validation_needs_no_torch():
    """The stack's pre-upload check imports nothing beyond the runtime requirements."""
    import subprocess
    import sys

    code = ("import sys, pathlib; import modelrepo.repository as r; "
            "r.load(pathlib.Path('model_repo')); "
            "bad = [m for m in ('torch', 'moto', 'locust', 'pytriton') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT_DIR, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
