"""The PyTorch CIFAR-10 tutorial network, wrapped to take raw images."""

from __future__ import annotations

from typing import Final

import torch
import torch.nn.functional as F
from torch import nn

IMAGE_SIZE: Final = 32
CLASSES = ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class Net(nn.Module):
    """conv 3→6 k5, maxpool 2, conv 6→16 k5, fc 400→120→84→10 (the PyTorch tutorial's net)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N,3,H,W] of any size -> float [N,3,32,32], scaled to [0,1], mean 0.5 / std 0.5."""
    x = images.to(torch.float32) / 255.0
    if x.shape[-2] != 32 or x.shape[-1] != 32:  # IMAGE_SIZE (TorchScript needs the literal)
        x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    return (x - 0.5) / 0.5


class RawImageClassifier(nn.Module):
    """What Triton serves: `image__0` uint8 [N,3,H,W] in, `probs__0` float [N,10] softmax out."""

    def __init__(self, net: Net) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(normalise(image)), dim=1)
