"""Built-in architectures, registered through the same hook as third-party ones."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ddtool.errors import UsageError
from ddtool.markers import hookimpl
from ddtool.nets.convnet import NORMS, ConvNet
from ddtool.nets.factory import Architecture, RegisterArchitecture


def auto_depth(resolution: int) -> int:
    """ConvNet-3 from 16x16 to 32x32, one more block per doubling above (ConvNet-4 at 64x64).

    Below 16x16 fewer blocks: every block normalises its map before pooling, and the last
    block must still see at least 4x4. On 8x8 digits a third block would instance-normalise
    2x2 maps, which makes the weight gradients explode (gradient matching then drives the
    images to chance accuracy); two blocks train and match well there.
    """
    depth, r = 3, 32
    while resolution > r:
        depth, r = depth + 1, r * 2
    while depth > 1 and resolution >> (depth - 1) < 4:
        depth -= 1
    return depth


@dataclass(frozen=True)
class ConvNetArch(Architecture):
    name: str = "convnet"
    description: str = "ConvNet-d (depth auto: 2 at 8x8, 3 from 16x16 to 32x32, 4 at 64x64), width 128, instance norm"
    depth: int | None = None

    def build(self, channels: int, num_classes: int, resolution: int, depth: int | None = None,
              width: int = 128, norm: str = "instance") -> nn.Module:
        if norm not in NORMS:
            raise UsageError(f"unknown norm '{norm}' for convnet; choose one of {', '.join(NORMS)}")
        depth = depth or self.depth or auto_depth(resolution)
        if depth < 1 or width < 1:
            raise UsageError(f"convnet needs depth >= 1 and width >= 1 (got depth={depth}, width={width})")
        return ConvNet(channels, num_classes, resolution, depth=depth, width=width, norm=norm)


@hookimpl
def ddtool_register_architectures(register: RegisterArchitecture) -> None:
    register(ConvNetArch())
    register(ConvNetArch(name="convnet3", description="ConvNet-3 (seed 002 Table 1)", depth=3))
    register(ConvNetArch(name="convnet4", description="ConvNet-4 for 64x64 inputs", depth=4))
