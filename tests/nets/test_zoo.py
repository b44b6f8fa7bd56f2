"""The architecture zoo (ddtool.nets.zoo): small inputs, 1-channel inputs, norms, tiny inputs still train."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ddtool.errors import UsageError
from ddtool.lookup import build_net
from ddtool.nets import NetSpec


ZOO = ["convnet3-bn", "resnetap10", "resnet18", "alexnet", "vgg11", "densenet121", "efficientnet-b0"]
HEAVY = {"densenet121", "efficientnet-b0"}
SHAPES = [(1, 8), (3, 32), (3, 64)]


def test_every_architecture_is_registered() -> None:
    from ddtool.plugins import registries

    reg = registries().architecture
    for name in ZOO:
        entry = reg.entry(name)
        assert entry.obj.name == name and entry.obj.description and entry.distribution.startswith("ddtool")
    assert reg.entry("efficientnet_b0").name == "efficientnet-b0"


@pytest.mark.parametrize("channels, res", SHAPES, ids=[f"{c}x{r}x{r}" for c, r in SHAPES])
@pytest.mark.parametrize("name", ZOO)
def test_logits_for_every_dataset_shape(name: str, channels: int, res: int) -> None:
    torch.manual_seed(0)
    net = build_net(NetSpec(name), channels, 5, res)
    x = torch.randn(2, channels, res, res)
    if name in HEAVY:  # heavy on CPU: one forward of a batch of two
        with torch.no_grad():
            out = net(x)
    else:
        out = net(x)
        out.sum().backward()  # gradients reach the first layer (what gradient matching needs)
        first = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
        assert first.in_channels == channels and first.weight.grad is not None
        with torch.no_grad():
            emb = net.embed(x)  # what DM and herding match
        assert emb.shape == (2, net.feature_dim if hasattr(net, "feature_dim") else emb.shape[1])
    assert out.shape == (2, 5) and torch.isfinite(out).all()


def _convs(net: nn.Module) -> list[nn.Conv2d]:
    return [m for m in net.modules() if isinstance(m, nn.Conv2d)]


def test_small_inputs_get_cifar_stems_and_large_ones_imagenet_stems() -> None:
    r18 = build_net(NetSpec("resnet18"), 3, 10, 32)
    stem = _convs(r18)[0]
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in r18.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in r18.modules())
    big = build_net(NetSpec("resnet18"), 1, 10, 128)
    stem = _convs(big)[0]
    assert stem.kernel_size == (7, 7) and stem.stride == (2, 2) and stem.in_channels == 1
    assert big(torch.randn(2, 1, 128, 128)).shape == (2, 10)
    eff = build_net(NetSpec("efficientnet-b0"), 3, 10, 32)
    assert _convs(eff)[0].stride == (1, 1)
    assert _convs(build_net(NetSpec("efficientnet-b0"), 3, 10, 128))[0].stride == (2, 2)
    dense = build_net(NetSpec("densenet121"), 3, 10, 32)
    assert _convs(dense)[0].kernel_size == (3, 3) and not any(isinstance(m, nn.MaxPool2d) for m in dense.modules())
    alex = build_net(NetSpec("alexnet"), 3, 10, 32)
    assert _convs(alex)[0].kernel_size == (3, 3) and _convs(alex)[0].stride == (1, 1)
    # the 4096-wide ImageNet MLP heads are for big inputs only
    assert not any(isinstance(m, nn.Linear) and m.out_features == 4096 for m in alex.modules())
    vgg = build_net(NetSpec("vgg11"), 3, 10, 32)
    assert [m for m in vgg.modules() if isinstance(m, nn.Linear)][-1].in_features == 512


def test_resnetap10_pools_instead_of_striding() -> None:
    for res in (32, 128):
        net = build_net(NetSpec("resnetap10"), 3, 10, res)
        convs = _convs(net)
        assert all(c.stride == (1, 1) for c in convs)
        assert sum(c.kernel_size == (3, 3) for c in convs) == 9  # stem + 4 blocks x 2: ResNet-10
        assert sum(isinstance(m, nn.AvgPool2d) for m in net.modules()) >= 6  # 3 blocks + 3 shortcuts (+ stem)
        assert any(isinstance(m, nn.GroupNorm) for m in net.modules())  # instance norm, as IDC
        assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
        assert net(torch.randn(2, 3, res, res)).shape == (2, 10)


def test_norm_option_and_recipe_settings() -> None:
    def kinds(net: nn.Module) -> set[type]:
        return {type(m) for m in net.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))}

    assert kinds(build_net(NetSpec("resnet18", {"norm": "instance"}), 3, 10, 32)) == {nn.GroupNorm}
    assert kinds(build_net(NetSpec("vgg11", {"norm": "none"}), 3, 10, 32)) == set()
    assert kinds(build_net(NetSpec("vgg11"), 3, 10, 32)) == {nn.BatchNorm2d}
    assert kinds(build_net(NetSpec("alexnet"), 3, 10, 32)) == set()
    assert kinds(build_net(NetSpec("alexnet", {"norm": "batch"}), 3, 10, 32)) == {nn.BatchNorm2d}
    assert kinds(build_net(NetSpec("resnetap10", {"norm": "batch"}), 3, 10, 32)) == {nn.BatchNorm2d}
    bn = build_net(NetSpec("convnet3-bn", {"width": 16, "norm": "instance"}), 3, 10, 32)
    assert kinds(bn) == {nn.BatchNorm2d} and len(_convs(bn)) == 3 and _convs(bn)[0].out_channels == 16
    # recipes always pass the ConvNet settings width/depth/norm: the zoo accepts them
    net = build_net(NetSpec("resnet18", {"width": 128, "depth": 3, "norm": "batch"}), 3, 10, 32)
    assert isinstance(net, nn.Module)
    with pytest.raises(UsageError, match="unknown norm 'layer' for resnet18"):
        build_net(NetSpec("resnet18", {"norm": "layer"}), 3, 10, 32)


@pytest.mark.parametrize("name", ["alexnet", "resnetap10"])
def test_tiny_inputs_still_train(digits, name: str) -> None:  # type: ignore[no-untyped-def]
    """8x8 digits: no signal may vanish in 1x1 maps (un-normalised AlexNet, instance norm of 1 pixel)."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    net = build_net(NetSpec(name), 1, 10, 8)
    x, y = digits.normalize(digits.train_images[:256]), digits.train_labels[:256]
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    for step in range(30):
        idx = torch.randperm(256)[:64]
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = F.cross_entropy(net(x), y).item()
    assert final < 1.5  # chance is ln(10) = 2.30
