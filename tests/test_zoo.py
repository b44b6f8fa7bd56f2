"""The architecture zoo (small inputs, 1-channel inputs, norms) and the cross-architecture evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from ddtool.errors import UsageError
from ddtool.nets import NetSpec, build_net
from ddtool.store import Store

ZOO = ["convnet3-bn", "resnetap10", "resnet18", "alexnet", "vgg11", "densenet121", "efficientnet-b0"]
HEAVY = {"densenet121", "efficientnet-b0"}
# (channels, resolution) of digits, CIFAR and Tiny-ImageNet
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


# --- the evaluation protocol, checked rather than assumed -------------------------------------

def _tiny_set(digits, per_class: int = 4):  # type: ignore[no-untyped-def]
    from ddtool.synthetic import SyntheticSet

    idx = torch.cat([digits.class_indices(c)[:per_class] for c in range(digits.num_classes)])
    return SyntheticSet(digits.normalize(digits.train_images[idx]), digits.train_labels[idx], per_class)


@pytest.mark.parametrize("protocol, repeats, per_epoch", [
    ("dsa", 2, [0.01] * 6 + [0.001] * 6),  # x0.1 at half
    ("idc", 1, [0.01] * 8 + [0.002] * 2 + [0.0004] * 2),  # x0.2 at 2E//3 and 5E//6 (IDC's MultiStepLR)
])
def test_eval_protocol_lr_schedule_augmentation_and_cutmix(digits, monkeypatch: pytest.MonkeyPatch, protocol: str,  # type: ignore[no-untyped-def]
                                                           repeats: int, per_epoch: list[float]) -> None:
    import ddtool.augment as augment
    import ddtool.nets.losses as losses
    from ddtool.recipe import EvalSection
    from ddtool.runtime.evaluate import evaluate_set
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    # Keyed by the optimiser itself: holding it keeps a collected optimiser's id from being reused by the next repeat.
    lrs: dict[object, list[float]] = {}
    handle = register_optimizer_step_pre_hook(
        lambda opt, args, kwargs: lrs.setdefault(opt, []).append(opt.param_groups[0]["lr"]))
    augmented, mixed = [], []
    real_call, real_cutmix = augment.Augmenter.__call__, losses.cutmix
    monkeypatch.setattr(augment.Augmenter, "__call__",
                        lambda self, x: augmented.append(x.shape[0]) or real_call(self, x))
    monkeypatch.setattr(losses, "cutmix", lambda x, y: mixed.append(1) or real_cutmix(x, y))
    cfg = EvalSection(protocol=protocol, epochs=12, batch=8, repeats=repeats)
    try:
        accs = evaluate_set(_tiny_set(digits), digits, NetSpec("convnet", {"width": 8}), cfg, torch.device("cpu"))
    finally:
        handle.remove()
    steps_per_epoch = 40 // 8
    expected = [lr for lr in per_epoch for _ in range(steps_per_epoch)]
    assert lrs and all(seq == pytest.approx(expected) for seq in lrs.values())  # every optimiser, every step
    steps = sum(len(seq) for seq in lrs.values())
    assert len(accs) == repeats and len(lrs) == repeats  # one optimiser per repeat
    # DSA: one operation on every training image, every epoch; IDC: its DiffAug chain, three
    # stages (flip, colour, one of crop/scale/rotate) on every image
    stages = 3 if protocol == "idc" else 1
    assert sum(augmented) == 40 * 12 * repeats * stages
    if protocol == "idc":  # CutMix on about half the batches (Binomial(60, 0.5): 18..42 covers > 4 sigma)
        assert 18 <= len(mixed) <= 42 and steps == 60
    else:
        assert mixed == []


def test_cross_architecture_table_and_full_data(cli, store: Store, tiny_recipe: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("distill", "-r", tiny_recipe, "--method", "random", "--name", "rnd").exit_code == 0
    res = cli("eval", "synthetic/rnd", "-r", tiny_recipe, "--net", "convnet3,convnet3-bn", "--epochs", "2",
              "--repeats", "1", "--set", "eval.batch=64")
    assert res.exit_code == 0, res.stderr
    header = next(line for line in res.stdout.splitlines() if "convnet3-bn" in line)
    assert "set" in header and "convnet3 " in header
    row = next(line for line in res.stdout.splitlines() if "synthetic/rnd:v1" in line)
    assert row.count("±") == 2
    evals = [r for r in store.runs() if r["command"] == "eval"]
    assert sorted(r["net"]["name"] for r in evals) == ["convnet3", "convnet3-bn"]

    res = cli("eval", "--full-data", "--dataset", "digits", "--epochs", "1", "--repeats", "1", "-r", tiny_recipe,
              "--json")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    assert [(e["ref"], e["net"]) for e in out] == [("full:digits", "convnet")]
    record = store.run(out[0]["run"])
    assert record["inputs"] == [] and record["full_data"] is True
    assert record["metrics"]["full_data"] is True and record["metrics"]["train_images"] == 1437
    assert record["metrics"]["epochs"] == 1 and record["net"]["options"]["width"] == 16


def test_eval_needs_refs_or_full_data_and_known_nets(cli, tiny_recipe: Path) -> None:  # type: ignore[no-untyped-def]
    res = cli("eval")
    assert res.exit_code == 2 and "--full-data" in res.stderr
    res = cli("eval", "--full-data", "--dataset", "digits", "--net", "convnet3,resnet99")
    assert res.exit_code == 2 and "unknown architecture 'resnet99'" in res.stderr


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
