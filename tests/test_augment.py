"""DSA augmentation (ddtool.augment): siamese draws, differentiability, what each operation moves,
one operation per class as the reference draws it."""

from __future__ import annotations

import pytest
import torch

from ddtool.augment import OPS, Augmenter


@pytest.mark.parametrize("op", OPS)
def test_siamese_draw_gives_same_result_for_same_group(op: str) -> None:
    torch.manual_seed(0)
    aug = Augmenter(op)
    x = torch.randn(4, 3, 16, 16)
    draw = aug.sample(2, 16)
    groups = torch.tensor([0, 0, 1, 1])
    both = aug.apply(torch.cat([x[:1], x[:1], x[:1], x[:1]]), draw, groups)
    assert torch.allclose(both[0], both[1]) and torch.allclose(both[2], both[3])
    # applied alone, a group's parameters give the same output as inside the batch
    assert torch.allclose(aug.apply(x[:1], draw.select(1)), both[2], atol=1e-6)


@pytest.mark.parametrize("op", OPS)
def test_augmentation_is_differentiable(op: str) -> None:
    torch.manual_seed(1)
    x = torch.randn(3, 3, 16, 16, requires_grad=True)
    out = Augmenter(op)(x)
    out.square().sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_flip_and_crop_move_pixels_as_specified() -> None:
    aug = Augmenter("flip")
    x = torch.arange(16.0).view(1, 1, 4, 4)
    from ddtool.augment import Draw

    assert torch.equal(aug.apply(x, Draw("flip", {"flip": torch.tensor([True])})), x.flip(3))  # exact: a flip moves values
    shifted = Augmenter("crop").apply(x, Draw("crop", {"tx": torch.tensor([1]), "ty": torch.tensor([0])}))
    assert torch.equal(shifted[0, 0, :, :3], x[0, 0, :, 1:]) and torch.all(shifted[0, 0, :, 3] == 0)  # exact: a shift moves values


def test_operation_per_class_like_the_reference() -> None:
    """Siamese draws for matching pick each class's operation on its own (one DiffAugment call
    per class in the reference code); the batched apply equals applying each class alone."""
    from ddtool.augment import GroupDraw

    torch.manual_seed(3)
    aug = Augmenter()
    draw = aug.sample(10, 16, op_per_group=True)
    assert isinstance(draw, GroupDraw) and len(set(draw.ops)) > 1  # 10 classes, 6 ops: several drawn
    groups = torch.arange(10).repeat_interleave(3)
    x = torch.randn(30, 3, 16, 16, requires_grad=True)
    batched = aug.apply(x, draw, groups)
    for c in range(10):
        alone = aug.apply(x[groups == c], draw.select(c))
        assert draw.select(c).op == draw.ops[c]
        torch.testing.assert_close(batched[groups == c], alone, atol=1e-6, rtol=1e-5)
    batched.square().sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    # per-sample training keeps one operation per batch (the reference's training-time call)
    assert not isinstance(aug.sample(30, 16), GroupDraw)
