"""ConvNet shapes that the reference networks fix (issue 11, item 5)."""

from __future__ import annotations

import pytest
import torch

from ddtool.lookup import build_net
from ddtool.nets import NetSpec
from ddtool.nets.convnet import ConvNet


def test_28x28_one_channel_pads_to_32_and_embeds_2048() -> None:
    # reference networks.ConvNet: padding 3 on the first conv of 1-channel 28x28 input, so
    # 28 -> 32 -> 16 -> 8 -> 4 and the embedding is 128 * 4 * 4
    net = ConvNet(1, 10, 28, depth=3, width=128)
    assert net.features[0].padding == (3, 3)
    assert net.feature_dim == 2048
    x = torch.randn(2, 1, 28, 28)
    assert net.embed(x).shape == (2, 2048)
    assert net(x).shape == (2, 10)


@pytest.mark.parametrize("channels,res,dim", [(3, 32, 2048), (3, 28, 1152), (1, 8, 8 * 2 * 2)])
def test_other_inputs_keep_padding_one(channels: int, res: int, dim: int) -> None:
    depth = 2 if res == 8 else 3
    net = ConvNet(channels, 10, res, depth=depth, width=128 if res != 8 else 8)
    assert net.features[0].padding == (1, 1)
    assert net.feature_dim == dim
    assert net.embed(torch.randn(1, channels, res, res)).shape == (1, dim)


def test_registered_convnet_uses_the_reference_padding() -> None:
    net = build_net(NetSpec("convnet3", {"width": 16}), 1, 10, 28)
    assert net(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert net.embed(torch.randn(1, 1, 28, 28)).shape[1] == 16 * 4 * 4
