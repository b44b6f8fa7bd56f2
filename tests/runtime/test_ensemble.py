from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ddtool.lookup import build_net
from ddtool.nets import NetSpec
from ddtool.runtime import ensemble
from ddtool.runtime.supervised import TrainSettings, train


class _FixedOrder:
    """Make randperm the identity so looped and stacked training see the same batches."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(torch, "randperm", lambda n, device=None, **kw: torch.arange(n, device=device))


def test_stacked_training_equals_looped_training(monkeypatch: pytest.MonkeyPatch) -> None:
    _FixedOrder(monkeypatch)
    torch.manual_seed(0)
    nets = [build_net(NetSpec("convnet", {"width": 8}), 1, 10, 8) for _ in range(3)]
    looped = [copy.deepcopy(n) for n in nets]
    x, y = torch.randn(20, 1, 8, 8), torch.arange(20) % 10
    settings = TrainSettings(epochs=3, lr=0.05, batch=8, milestones=(0.5,))
    ensemble.train_stacked(nets, x, y, settings, augment=None)
    for net in looped:
        train(net, x, y, settings, augment=None)
    for a, b in zip(nets, looped):
        for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
            assert torch.allclose(pa, pb, atol=1e-5), name
    # and the nets really moved
    torch.manual_seed(0)
    fresh = build_net(NetSpec("convnet", {"width": 8}), 1, 10, 8)
    assert not torch.allclose(fresh.classifier.weight, nets[0].classifier.weight)


def test_stacked_forward_matches_each_net() -> None:
    torch.manual_seed(1)
    nets = [build_net(NetSpec("convnet", {"width": 8}), 3, 5, 16) for _ in range(2)]
    x = torch.randn(2, 4, 3, 16, 16)
    out = ensemble.Stacked(nets)(x)
    for r, net in enumerate(nets):
        assert torch.allclose(out[r], net(x[r]), atol=1e-5)


def test_batchnorm_and_cutmix_take_the_loop() -> None:
    bn = [build_net(NetSpec("convnet", {"width": 4, "norm": "batch"}), 1, 10, 8) for _ in range(2)]
    inst = [build_net(NetSpec("convnet", {"width": 4}), 1, 10, 8) for _ in range(2)]
    assert not ensemble.supports(bn, TrainSettings(epochs=1))
    assert not ensemble.supports(inst, TrainSettings(epochs=1, cutmix=0.5))
    assert ensemble.supports(inst, TrainSettings(epochs=1))
    assert isinstance(inst[0], nn.Module)


def test_auto_implementations_loop_on_cpu_batched_on_cuda() -> None:
    from ddtool.impl import default_impl, resolve_impl

    # one vocabulary for distill, eval and pretrain; "stacked" (eval/pretrain's old word) is an alias
    assert default_impl(torch.device("cpu")) == "loop"
    assert default_impl(torch.device("cuda")) == "vectorized"
    assert default_impl("cpu") == "loop"
    assert default_impl(torch.device("cuda:0")) == "vectorized"
    assert resolve_impl("stacked", "cpu") == "vectorized" and resolve_impl("auto", "cpu") == "loop"


def test_stacked_members_keep_their_own_lr_and_augmentation(monkeypatch: pytest.MonkeyPatch) -> None:
    from ddtool.augment import Augmenter

    _FixedOrder(monkeypatch)
    torch.manual_seed(2)
    nets = [build_net(NetSpec("convnet", {"width": 8}), 1, 10, 8) for _ in range(3)]
    start = [copy.deepcopy(n) for n in nets]
    x, y = torch.randn(24, 1, 8, 8), torch.arange(24) % 10
    settings = TrainSettings(epochs=2, lr=0.02, batch=8, milestones=())
    losses = ensemble.train_stacked(nets, x, y, settings, Augmenter("flip_rotate"), lr_scale=[1.0, 3.0, 0.5],
                                    augmented=[False, True, False])
    assert len(losses) == 3 and all(v == v for v in losses)
    for r in (0, 2):  # un-augmented members: exactly a looped run at their own lr
        alone = copy.deepcopy(start[r])
        scale = [1.0, 3.0, 0.5][r]
        train(alone, x, y, TrainSettings(epochs=2, lr=0.02 * scale, batch=8, milestones=()), augment=None)
        for (name, pa), pb in zip(nets[r].named_parameters(), alone.parameters()):
            assert torch.allclose(pa, pb, atol=1e-5), (r, name)
    plain = copy.deepcopy(start[1])
    train(plain, x, y, TrainSettings(epochs=2, lr=0.06, batch=8, milestones=()), augment=None)
    assert not torch.allclose(plain.classifier.weight, nets[1].classifier.weight, atol=1e-4)  # augmented


def test_stacked_pool_equals_looped_pool(monkeypatch: pytest.MonkeyPatch, digits) -> None:  # type: ignore[no-untyped-def]
    import ddtool.runtime.pretrain.pool_training as pretrain

    _FixedOrder(monkeypatch)
    monkeypatch.setattr(pretrain, "AUGMENT_CYCLE", (False,))  # augmentation draws differ between the paths
    spec = NetSpec("convnet", {"width": 4})
    stacked = pretrain.train_pool(digits, spec, 3, 1, 0.01, 256, 7, torch.device("cpu"), impl="stacked")
    looped = pretrain.train_pool(digits, spec, 3, 1, 0.01, 256, 7, torch.device("cpu"), impl="loop")
    assert [m["lr"] for m in stacked.models] == [0.01, 0.005, 0.02]  # LR_CYCLE: the models differ
    for a, b in zip(stacked.states, looped.states):
        for key in a:
            assert torch.allclose(a[key], b[key], atol=1e-5), key
    for ma, mb in zip(stacked.models, looped.models):
        assert ma["train_loss"] == pytest.approx(mb["train_loss"], rel=1e-4)
        assert ma["test_acc"] == pytest.approx(mb["test_acc"], abs=1e-3)
    assert not torch.allclose(stacked.states[0]["classifier.weight"], stacked.states[1]["classifier.weight"])
