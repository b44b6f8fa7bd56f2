"""ConvNet-d of the dataset-distillation literature (seed 002, Table 1).

d x [Conv3x3(width, pad 1) -> norm -> ReLU -> AvgPool2x2] -> Linear(width * r * r, classes).
"Instance" norm is GroupNorm(width, width) with affine parameters, as in the reference code:
it normalises each sample on its own, so a batch of many classes gives the same features as
one forward per class.
"""

from __future__ import annotations

import torch
from torch import nn

NORMS = ("instance", "batch", "none")


def _norm(kind: str, width: int) -> nn.Module:
    if kind == "instance":
        return nn.GroupNorm(width, width, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(width)
    return nn.Identity()


class ConvNet(nn.Module):
    def __init__(self, channels: int, num_classes: int, resolution: int, depth: int = 3,
                 width: int = 128, norm: str = "instance") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c, r = channels, resolution
        for _ in range(depth):
            layers += [nn.Conv2d(c, width, 3, padding=1), _norm(norm, width), nn.ReLU(inplace=True)]
            if r >= 2:
                layers.append(nn.AvgPool2d(2))
                r //= 2
            c = width
        self.features = nn.Sequential(*layers)
        self.feature_dim = width * r * r
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))
