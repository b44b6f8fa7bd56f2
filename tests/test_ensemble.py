from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ddtool.nets import NetSpec, build_net
from ddtool.runtime import ensemble
from ddtool.runtime.train import TrainSettings, train


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
    from ddtool.methods.base import default_impl
    from ddtool.runtime.evaluate import default_eval_impl

    assert default_eval_impl(torch.device("cpu")) == "loop"
    assert default_eval_impl(torch.device("cuda")) == "stacked"
    for method in ("dm", "dc", "dsa", "idc"):
        assert default_impl(method, "cpu") == "loop"
        assert default_impl(method, torch.device("cuda:0")) == "vectorized"
