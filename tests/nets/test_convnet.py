"""ConvNet-d (ddtool.nets): depth per resolution, norms, instance norm per sample, unknown names."""

from __future__ import annotations

import pytest
import torch

from ddtool.errors import UsageError
from ddtool.lookup import build_net
from ddtool.nets import NetSpec


@pytest.mark.parametrize("res, depth", [(8, 2), (16, 3), (28, 3), (32, 3), (64, 4)])
@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
def test_convnet_shapes(res: int, depth: int, norm: str) -> None:
    net = build_net(NetSpec("convnet", {"width": 8, "norm": norm}), 3, 7, res)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in net.modules()) == depth
    assert net(torch.randn(2, 3, res, res)).shape == (2, 7)


def test_instance_norm_makes_batch_forward_equal_per_sample() -> None:
    torch.manual_seed(0)
    net = build_net(NetSpec("convnet3", {"width": 8}), 1, 10, 8)
    x = torch.randn(5, 1, 8, 8)
    batched = net.embed(x)
    single = torch.cat([net.embed(x[i : i + 1]) for i in range(5)])
    assert torch.allclose(batched, single, atol=1e-5)


def test_unknown_norm_and_arch() -> None:
    with pytest.raises(UsageError, match="unknown norm"):
        build_net(NetSpec("convnet", {"norm": "layer"}), 1, 10, 8)
    with pytest.raises(UsageError, match="unknown architecture"):
        build_net(NetSpec("resnet999"), 1, 10, 8)
