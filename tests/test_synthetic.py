"""Synthetic sets (ddtool.synthetic): IDC's multi-formation encoding and decoding."""

from __future__ import annotations

import torch

from ddtool.synthetic import decode, encode_real


def test_multi_formation_decode_and_encode() -> None:
    real = torch.randn(8, 3, 8, 8)
    stored = encode_real(real, 2)
    assert stored.shape == (2, 3, 8, 8)
    out, labels = decode(stored, torch.tensor([0, 1]), 2)
    assert out.shape == (8, 3, 8, 8) and labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    # the top-left tile of the first stored image decodes into the first output image
    tile = stored[0:1, :, :4, :4]
    expected = torch.nn.functional.interpolate(tile, size=(8, 8), mode="bilinear", align_corners=False)
    assert torch.allclose(out[0:1], expected)
    assert torch.allclose(stored[0, :, :4, 4:], encode_real(real[:4], 2)[0, :, :4, 4:])


def test_real_init_downsizes_by_nearest_neighbour_as_idc() -> None:
    # IDC's 'mix' init: F.interpolate's default (nearest) keeps every other pixel of a 32x32 image
    # (an antialiased downsizing measured 2 points worse on CIFAR-10)
    real = torch.randn(4, 3, 32, 32)
    stored = encode_real(real, 2)
    tiles = [stored[0, :, :16, :16], stored[0, :, :16, 16:], stored[0, :, 16:, :16], stored[0, :, 16:, 16:]]
    for i, tile in enumerate(tiles):
        assert torch.equal(tile, real[i, :, ::2, ::2])  # exact: strided copies
