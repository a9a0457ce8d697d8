"""Builds model_repo/cifar10/1/model.pt: trains on CIFAR-10 when it is available locally, else
exports deterministic seeded weights, and checks the TorchScript reproduces the eager model."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tools.models.net import CLASSES, Net, RawImageClassifier, normalise

SEED = 20230109
MODEL = "cifar10"


@dataclass
class BuildResult:
    path: Path
    trained: bool
    written: bool
    detail: str


def seeded_classifier(seed: int = SEED) -> RawImageClassifier:
    torch.manual_seed(seed)
    return RawImageClassifier(Net()).eval()


def _load_cifar10_batches(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """The python version of CIFAR-10 (cifar-10-batches-py/data_batch_1..5), read from disk."""
    folder = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
    files = sorted(folder.glob("data_batch_*"))
    if not files:
        raise FileNotFoundError(f"{folder}: no data_batch_* files (CIFAR-10 python version)")
    images, labels = [], []
    for file in files:
        with file.open("rb") as handle:
            batch = pickle.load(handle, encoding="bytes")  # noqa: S301 - the dataset's own format
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def trained_classifier(dataset: Path, epochs: int = 2, seed: int = SEED) -> tuple[
        RawImageClassifier, str]:
    """The tutorial's training loop (SGD lr 0.001 momentum 0.9, batch 4) on the raw-image wrapper."""
    images, labels = _load_cifar10_batches(dataset)
    model = seeded_classifier(seed).train()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 4):
            idx = order[start:start + 4]
            optimiser.zero_grad()
            logits = model.net(normalise(x[idx]))
            loss_fn(logits, y[idx]).backward()
            optimiser.step()
    return model.eval(), f"trained {epochs} epoch(s) on {len(x)} CIFAR-10 images from {dataset}"


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def export(model: RawImageClassifier, path: Path) -> bool:
    """Script, save, reload and compare with the eager model on several image sizes.

    An existing file with the same weights is kept: TorchScript archives carry a random
    serialization id, and a new file would mean a new content hash and a needless rollout.
    Returns whether the file was written.
    """
    scripted = torch.jit.script(model)
    written = True
    if path.is_file() and same_weights(torch.jit.load(str(path), map_location="cpu"), scripted):
        written = False
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.jit.save(scripted, str(path))
    reloaded = torch.jit.load(str(path), map_location="cpu")
    generator = torch.Generator().manual_seed(0)
    for shape in ((1, 3, 32, 32), (4, 3, 32, 32), (2, 3, 64, 48)):
        images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
        with torch.inference_mode():
            expected, got = model(images), reloaded(images)
        if not torch.allclose(expected, got, atol=1e-6):
            raise RuntimeError(f"{path}: TorchScript output differs from eager for {shape}")
    return written


def build(repository: Path, dataset: Path | None = None) -> BuildResult:
    if dataset is not None and any(dataset.rglob("data_batch_*")):
        model, detail = trained_classifier(dataset)
        trained = True
    else:
        model = seeded_classifier()
        trained = False
        detail = (f"CIFAR-10 not found{f' under {dataset}' if dataset else ''}: exported "
                  f"deterministic seeded weights (seed {SEED}), NOT a trained model")
    path = repository / MODEL / "1" / "model.pt"
    written = export(model, path)
    (repository / MODEL / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    if not written:
        detail += "; the existing file has these weights already and was kept"
    return BuildResult(path=path, trained=trained, written=written, detail=detail)
