"""ConvNet-d of the dataset-distillation literature (seed 002, Table 1).

d x [Conv3x3(width, pad 1) -> norm -> ReLU -> AvgPool2x2] -> Linear(width * r * r, classes).
On 28x28 one-channel images (MNIST, Fashion-MNIST) the first convolution pads by 3, as the
reference ``networks.ConvNet`` does, so the maps grow to 32x32 and three blocks pool 32 -> 4
(a 2048-wide embedding at width 128) instead of flooring 28 -> 14 -> 7 -> 3. The reference pads by
3 for any one-channel input; ddtool keeps that to 28x28, the only one-channel size the papers
use, so the 8x8 digits keep their own fitted depth.
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


def first_padding(channels: int, resolution: int) -> int:
    """Padding of the first convolution: 3 on 28x28 one-channel images (reference ConvNet), else 1."""
    return 3 if channels == 1 and resolution == 28 else 1


class ConvNet(nn.Module):
    def __init__(self, channels: int, num_classes: int, resolution: int, depth: int = 3,
                 width: int = 128, norm: str = "instance") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c, r = channels, resolution
        for d in range(depth):
            pad = first_padding(channels, resolution) if d == 0 else 1
            r += 2 * (pad - 1)
            layers += [nn.Conv2d(c, width, 3, padding=pad), _norm(norm, width), nn.ReLU(inplace=True)]
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
