"""tools/models/torchscript.py and tools/models/build.py: the model does what its config says, and
the committed model.pt is what the build produces."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from modelrepo import repository
from modelrepo.repository import RepositoryError
from tests.harness import ROOT_DIR
from tests.tools.models.test_repository import edit_config
from tools.models import build, torchscript
from tools.models.net import CLASSES

SHIPPED = ROOT_DIR / "model_repo"
MODEL_PT = SHIPPED / "cifar10" / "1" / "model.pt"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    target = tmp_path / "model_repo"
    shutil.copytree(SHIPPED, target)
    return target


def check_problems(repo: Path) -> list[str]:
    with pytest.raises(RepositoryError) as caught:
        torchscript.check(repository.load(repo))
    return caught.value.problems


def test_shipped_model_matches_its_config():
    torchscript.check(repository.load(SHIPPED))


def test_committed_model_is_the_builds_output():
    committed = torch.jit.load(str(MODEL_PT), map_location="cpu")
    rebuilt = build.seeded_classifier()
    assert build.same_weights(committed, torch.jit.script(rebuilt))
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert torch.equal(committed(images), rebuilt(images))
    assert (SHIPPED / "cifar10" / "labels.txt").read_text().split() == list(CLASSES)


def test_build_without_dataset_says_so_and_keeps_identical_weights(repo):
    result = build.build(repo, dataset=None)
    assert result.trained is False and "NOT a trained model" in result.detail
    assert result.written is False  # same weights: same file, same content hash
    assert repository.load(repo).content_hash == repository.load(SHIPPED).content_hash


def test_build_trains_when_cifar10_is_on_disk(tmp_path):
    """A tiny CIFAR-10-shaped dataset in the python-pickle layout the real one ships in."""
    import pickle

    import numpy as np

    data = tmp_path / "cifar-10-batches-py"
    data.mkdir()
    rng = np.random.default_rng(0)
    with (data / "data_batch_1").open("wb") as handle:
        pickle.dump({b"data": rng.integers(0, 256, (16, 3072), dtype=np.uint8),
                     b"labels": list(rng.integers(0, 10, 16))}, handle)
    (tmp_path / "repo" / "cifar10").mkdir(parents=True)
    shutil.copy(SHIPPED / "cifar10" / "config.pbtxt", tmp_path / "repo" / "cifar10")
    result = build.build(tmp_path / "repo", dataset=tmp_path)
    assert result.trained is True and "trained" in result.detail
    trained = torch.jit.load(str(result.path), map_location="cpu")
    assert not build.same_weights(trained, torch.jit.script(build.seeded_classifier()))
    torchscript.check(repository.load(tmp_path / "repo"))


def test_any_image_size_is_resized(repo):
    model = torch.jit.load(str(MODEL_PT), map_location="cpu")
    with torch.inference_mode():
        for shape in ((1, 3, 32, 32), (2, 3, 64, 64), (1, 3, 17, 45)):
            probs = model(torch.zeros(shape, dtype=torch.uint8))
            assert probs.shape == (shape[0], 10)
            assert torch.allclose(probs.sum(dim=1), torch.ones(shape[0]))


def test_wrong_output_dtype_and_shape_are_reported(repo):
    edit_config(repo, "data_type: TYPE_FP32", "data_type: TYPE_FP16")
    edit_config(repo, "dims: [ 10 ]", "dims: [ 12 ]")
    found = check_problems(repo)
    assert any("model_repo/cifar10/1/model.pt: output[0] (probs__0): model returns "
               "torch.float32, config.pbtxt data_type is TYPE_FP16" in p for p in found)
    assert any("config.pbtxt expects [64, 12]" in p for p in found)


def test_input_count_mismatch_is_reported(repo):
    edit_config(repo, "output [", 'input [ { name: "mask__1" data_type: TYPE_UINT8 '
                                  'dims: [ 3 ] } ]\noutput [')
    assert any("forward takes 1 input(s), config.pbtxt declares 2" in p
               for p in check_problems(repo))


def test_unloadable_model_is_reported(repo):
    (repo / "cifar10" / "1" / "model.pt").write_bytes(b"not a model")
    assert any(p.startswith("model_repo/cifar10/1/model.pt: not a loadable TorchScript")
               for p in check_problems(repo))


def test_wrong_input_rank_is_reported(repo):
    edit_config(repo, "dims: [ 3, -1, -1 ]", "dims: [ 3, -1 ]")
    assert any("fails on a dummy batch" in p for p in check_problems(repo))
