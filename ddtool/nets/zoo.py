"""Cross-architecture networks: ConvNet-3-BN, ResNetAP-10 and torchvision's models, small-input ready.

Every architecture here builds a :class:`ZooNet`: ``body`` maps images to a flat feature vector
(``embed``, what DM and herding match) and ``head`` is the final linear layer, so
``forward(x) = head(body(x))``. torchvision models are built with ``weights=None`` (nothing is
ever downloaded) and adapted the way the dataset-distillation literature does for small images:

* resolution <= 64 (CIFAR, MNIST, Tiny-ImageNet, 8x8 digits): the ImageNet stem (strided 7x7 /
  11x11 conv and its max-pool) becomes a 3x3 stride-1 conv; AlexNet and VGG-11 end in a global
  average pool and one linear layer (their 4096-wide ImageNet MLPs are for 224 px inputs), and
  any pooling layer that cannot run on a tiny map is dropped, as ConvNet-d stops pooling at 1x1;
* 8x8 inputs must still train, not only return logits: un-normalised AlexNet keeps its maps at
  >= 2x2 and gets He init (PyTorch's default init lets the signal vanish through its three 3x3
  convs), and ResNetAP-10 stops pooling at 2x2 (instance norm of a single pixel is zero);
* any resolution: the first conv takes the dataset's channel count (1 for MNIST / digits).

Options (``build(..., norm=...)``): ``norm`` = ``batch`` | ``instance`` (GroupNorm(C, C), as
the reference code's "instance" norm) | ``none`` replaces every normalisation layer; each
architecture has its own default (ResNetAP-10: instance, as IDC; the torchvision ones: batch;
AlexNet: none, as torchvision's). ``width`` and ``depth`` are ConvNet settings that recipes
always pass: ``convnet3-bn`` uses ``width``, the others ignore both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ddtool.errors import UsageError
from ddtool.markers import hookimpl
from ddtool.nets.convnet import NORMS, ConvNet
from ddtool.nets.factory import Architecture, RegisterArchitecture

SMALL = 64  # inputs up to this size get the CIFAR-style stem


class ZooNet(nn.Module):
    """``body`` (images -> flat features) followed by the linear ``head``."""

    def __init__(self, body: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.body = body
        self.head = head
        self.feature_dim = head.in_features

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _check_norm(name: str, norm: str) -> None:
    if norm not in NORMS:
        raise UsageError(f"unknown norm '{norm}' for {name}; choose one of {', '.join(NORMS)}")


def norm_layer(kind: str) -> Callable[[int], nn.Module]:
    if kind == "instance":
        return lambda c: nn.GroupNorm(c, c, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d
    return lambda c: nn.Identity()


def swap_norms(module: nn.Module, kind: str) -> nn.Module:
    """Replace every BatchNorm2d in ``module`` by ``kind`` (no-op for batch)."""
    if kind == "batch":
        return module
    make = norm_layer(kind)
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, make(child.num_features))
        else:
            swap_norms(child, kind)
    return module


def _conv_out(r: int, k: int, s: int, p: int) -> int:
    return (r + 2 * p - k) // s + 1


def _pair(v: Any) -> int:
    return int(v[0] if isinstance(v, tuple) else v)


def drop_small_pools(features: nn.Sequential, resolution: int, min_out: int = 1) -> nn.Sequential:
    """Walk a plain conv/pool stack; a pool that cannot run (input smaller than its window) or would
    leave a map smaller than ``min_out`` becomes Identity, as ConvNet-d stops pooling at 1x1."""
    r = resolution
    for i, layer in enumerate(features):
        if isinstance(layer, nn.Conv2d):
            r = _conv_out(r, _pair(layer.kernel_size), _pair(layer.stride), _pair(layer.padding))
        elif isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
            k, s, p = _pair(layer.kernel_size), _pair(layer.stride or layer.kernel_size), _pair(layer.padding)
            if r < k or r < 2 or _conv_out(r, k, s, p) < min_out:
                features[i] = nn.Identity()
            else:
                r = _conv_out(r, k, s, p)
    return features


# ---------------------------------------------------------------------------------------------
# ConvNet-3 with batch norm


@dataclass(frozen=True)
class ConvNetBN(Architecture):
    name: str = "convnet3-bn"
    description: str = "ConvNet-3 with batch norm instead of instance norm (DM's ConvNetBN); width option"
    depth: int = 3

    def build(self, channels: int, num_classes: int, resolution: int, width: int = 128,
              **_ignored: Any) -> nn.Module:
        if width < 1:
            raise UsageError(f"{self.name} needs width >= 1 (got {width})")
        return ConvNet(channels, num_classes, resolution, depth=self.depth, width=width, norm="batch")


# ---------------------------------------------------------------------------------------------
# ResNetAP-10 (seed 002 Table 2; IDC): strided convs replaced by stride-1 conv + AvgPool2d(2)


class APBlock(nn.Module):
    """Basic residual block; downsampling by average pooling after the first conv (and in the shortcut)."""

    def __init__(self, cin: int, cout: int, pool: bool, norm: str) -> None:
        super().__init__()
        make, bias = norm_layer(norm), norm == "none"
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=bias)
        self.norm1 = make(cout)
        self.pool = nn.AvgPool2d(2) if pool else nn.Identity()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=bias)
        self.norm2 = make(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if pool or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=bias),
                                          nn.AvgPool2d(2) if pool else nn.Identity(), make(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pool(self.relu(self.norm1(self.conv1(x))))
        out = self.norm2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def resnet_ap(channels: int, num_classes: int, resolution: int, norm: str = "instance",
              blocks: tuple[int, ...] = (1, 1, 1, 1), width: int = 64) -> ZooNet:
    make, bias = norm_layer(norm), norm == "none"
    if resolution <= SMALL:  # 3x3 stem, no pooling
        stem: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1, bias=bias), make(width),
                                 nn.ReLU(inplace=True)]
        r = resolution
    elif resolution <= 128:  # 3x3 stem + AvgPool(2)
        stem = [nn.Conv2d(channels, width, 3, padding=1, bias=bias), make(width), nn.ReLU(inplace=True),
                nn.AvgPool2d(2)]
        r = resolution // 2
    else:  # 7x7 stem + AvgPool(4)
        stem = [nn.Conv2d(channels, width, 7, padding=3, bias=bias), make(width), nn.ReLU(inplace=True),
                nn.AvgPool2d(4)]
        r = resolution // 4
    layers: list[nn.Module] = list(stem)
    cin = width
    for stage, n in enumerate(blocks):
        cout = width * 2**stage
        for b in range(n):
            pool = stage > 0 and b == 0 and r >= 4  # keep >= 2x2: instance norm of a 1x1 map is 0
            layers.append(APBlock(cin, cout, pool, norm))
            r, cin = (r // 2 if pool else r), cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    net = ZooNet(nn.Sequential(*layers), nn.Linear(cin, num_classes))
    for m in net.modules():  # He init for convs, unit affine for norms (as the reference)
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return net


@dataclass(frozen=True)
class ResNetAP10(Architecture):
    name: str = "resnetap10"
    description: str = "ResNetAP-10: ResNet-10, downsampling by stride-1 conv + AvgPool2d(2); instance norm (IDC)"

    def build(self, channels: int, num_classes: int, resolution: int, norm: str = "instance",
              **_ignored: Any) -> nn.Module:
        _check_norm(self.name, norm)
        return resnet_ap(channels, num_classes, resolution, norm=norm)


# ---------------------------------------------------------------------------------------------
# torchvision models


def _resnet18(channels: int, num_classes: int, resolution: int, norm: str) -> ZooNet:
    from torchvision.models import resnet18

    m = resnet18(weights=None, num_classes=num_classes, norm_layer=norm_layer(norm))
    if resolution <= SMALL:
        m.conv1 = nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False)
        m.maxpool = nn.Identity()  # type: ignore[assignment]
    elif channels != 3:
        m.conv1 = nn.Conv2d(channels, 64, 7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(m.conv1.weight, mode="fan_out", nonlinearity="relu")
    body = nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2, m.layer3, m.layer4,
                         m.avgpool, nn.Flatten())
    return ZooNet(body, m.fc)


def _alexnet(channels: int, num_classes: int, resolution: int, norm: str) -> ZooNet:
    from torchvision.models import alexnet

    m = alexnet(weights=None, num_classes=num_classes)
    if resolution <= SMALL:
        m.features[0] = nn.Conv2d(channels, 64, 3, stride=1, padding=1)
        # no norm: three 3x3 convs on a 1x1 map (8x8 digits) would shrink the signal to nothing
        features = drop_small_pools(m.features, resolution, min_out=2)
        body = nn.Sequential(features, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        head = nn.Linear(256, num_classes)
    else:
        if channels != 3:
            m.features[0] = nn.Conv2d(channels, 64, 11, stride=4, padding=2)
        body = nn.Sequential(drop_small_pools(m.features, resolution), m.avgpool, nn.Flatten(), *m.classifier[:-1])
        head = m.classifier[-1]
    for conv in _conv_layers(body):  # He init: PyTorch's default shrinks the signal ~2.5x per layer,
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")  # which an un-normalised net never recovers
        nn.init.zeros_(conv.bias)
    if norm != "none":  # torchvision's AlexNet has no normalisation: add one after every conv
        _add_norm_after_convs(body, norm)
    return ZooNet(body, head)


def _conv_layers(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def _add_norm_after_convs(module: nn.Module, norm: str) -> None:
    make = norm_layer(norm)
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Conv2d):
            setattr(module, name, nn.Sequential(child, make(child.out_channels)))
        else:
            _add_norm_after_convs(child, norm)


def _vgg11(channels: int, num_classes: int, resolution: int, norm: str) -> ZooNet:
    from torchvision.models import vgg11, vgg11_bn

    m = vgg11(weights=None, num_classes=num_classes) if norm == "none" else \
        swap_norms(vgg11_bn(weights=None, num_classes=num_classes), norm)
    if channels != 3:
        m.features[0] = nn.Conv2d(channels, 64, 3, padding=1)
    if resolution <= SMALL:  # CIFAR VGG: features -> global pool -> Linear(512, classes)
        body = nn.Sequential(drop_small_pools(m.features, resolution), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        head = nn.Linear(512, num_classes)
    else:
        body = nn.Sequential(drop_small_pools(m.features, resolution), m.avgpool, nn.Flatten(), *m.classifier[:-1])
        head = m.classifier[-1]
    return ZooNet(body, head)


def _densenet121(channels: int, num_classes: int, resolution: int, norm: str) -> ZooNet:
    from torchvision.models import densenet121

    m = densenet121(weights=None, num_classes=num_classes)
    if resolution <= SMALL:
        m.features.conv0 = nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False)
        m.features.pool0 = nn.Identity()
    elif channels != 3:
        m.features.conv0 = nn.Conv2d(channels, 64, 7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(m.features.conv0.weight)
    # three transitions halve the map with AvgPool2d(2): keep a 1x1 map 1x1
    r = resolution if resolution <= SMALL else resolution // 4
    for name in ("transition1", "transition2", "transition3"):
        trans = getattr(m.features, name)
        if r < 2:
            trans.pool = nn.Identity()
        else:
            r //= 2
    swap_norms(m, norm)
    body = nn.Sequential(m.features, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return ZooNet(body, m.classifier)


def _efficientnet_b0(channels: int, num_classes: int, resolution: int, norm: str) -> ZooNet:
    from torchvision.models import efficientnet_b0

    m = efficientnet_b0(weights=None, num_classes=num_classes)
    stride = 1 if resolution <= SMALL else 2
    m.features[0][0] = nn.Conv2d(channels, 32, 3, stride=stride, padding=1, bias=False)
    nn.init.kaiming_normal_(m.features[0][0].weight, mode="fan_out")
    swap_norms(m, norm)
    body = nn.Sequential(m.features, m.avgpool, nn.Flatten(), m.classifier[0])  # classifier[0]: dropout
    return ZooNet(body, m.classifier[1])


@dataclass(frozen=True)
class TorchvisionArch(Architecture):
    """A torchvision model (weights=None) adapted to the dataset's channels and resolution."""

    name: str
    description: str
    factory: Callable[[int, int, int, str], ZooNet]
    default_norm: str = "batch"

    def build(self, channels: int, num_classes: int, resolution: int, norm: str | None = None,
              **_ignored: Any) -> nn.Module:
        norm = norm or self.default_norm
        _check_norm(self.name, norm)
        if channels < 1 or num_classes < 1 or resolution < 1:
            raise UsageError(f"{self.name} needs channels, classes and resolution >= 1")
        return self.factory(channels, num_classes, resolution, norm)


ZOO = (
    ConvNetBN(),
    ResNetAP10(),
    TorchvisionArch("resnet18", "torchvision ResNet-18, batch norm; 3x3 stride-1 stem, no max-pool up to 64 px",
                    _resnet18),
    TorchvisionArch("alexnet", "torchvision AlexNet, no norm; CIFAR-style 3x3 stem and global-pool head up to 64 px",
                    _alexnet, default_norm="none"),
    TorchvisionArch("vgg11", "torchvision VGG-11 with batch norm (vgg11_bn); global-pool + linear head up to 64 px",
                    _vgg11),
    TorchvisionArch("densenet121", "torchvision DenseNet-121; 3x3 stride-1 stem, no max-pool up to 64 px (heavy)",
                    _densenet121),
    TorchvisionArch("efficientnet-b0", "torchvision EfficientNet-B0; stride-1 stem up to 64 px (heavy)",
                    _efficientnet_b0),
)

ALIASES = {"resnetap10": ("resnet-ap10", "resnetap-10"), "efficientnet-b0": ("efficientnet_b0",),
           "convnet3-bn": ("convnet-bn", "convnetbn")}


@hookimpl
def ddtool_register_architectures(register: RegisterArchitecture) -> None:
    for arch in ZOO:
        register(arch, aliases=ALIASES.get(arch.name, ()))
