from __future__ import annotations

import pytest
import torch

from ddtool.augment import OPS, Augmenter
from ddtool.context import DistillContext
from ddtool.methods.dm import DM
from ddtool.nets import NetSpec
from ddtool.perturb import NoPerturbation
from ddtool.recipe import DistillSection
from ddtool.selection.builtin import Scratch
from ddtool.synthetic import SyntheticSet, decode, encode_real, init_synthetic


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

    assert torch.equal(aug.apply(x, Draw("flip", {"flip": torch.tensor([True])})), x.flip(3))
    shifted = Augmenter("crop").apply(x, Draw("crop", {"tx": torch.tensor([1]), "ty": torch.tensor([0])}))
    assert torch.equal(shifted[0, 0, :, :3], x[0, 0, :, 1:]) and torch.all(shifted[0, 0, :, 3] == 0)


def _ctx(digits, impl: str, norm: str = "instance") -> DistillContext:  # type: ignore[no-untyped-def]
    return DistillContext(data=digits, cfg=DistillSection(batch_real=32),
                          net_spec=NetSpec("convnet", {"width": 8, "norm": norm}),
                          device=torch.device("cpu"), iterations=1, selection=Scratch(), schedule=NoPerturbation(),
                          impl=impl)


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_dm_vectorized_equals_loop(digits, norm: str) -> None:  # type: ignore[no-untyped-def]
    # batch norm (training mode) normalises with the statistics of each forward's batch: both impls
    # take the reference's one-forward-per-side path for such nets (see test_dm_batchnorm.py)
    results = []
    for impl in ("vectorized", "loop"):
        torch.manual_seed(0)
        ctx = _ctx(digits, impl, norm)
        syn = init_synthetic(digits, 2, "real")
        syn.images.requires_grad_(True)
        net = ctx.fresh_net()
        loss = DM().loss(ctx, syn, net)
        loss.backward()
        results.append((loss.detach(), syn.images.grad.clone()))
    assert torch.allclose(results[0][0], results[1][0], rtol=1e-5)
    assert torch.allclose(results[0][1], results[1][1], rtol=1e-4, atol=1e-7)


def test_dm_loss_is_zero_when_synthetic_equals_the_real_batch(digits) -> None:  # type: ignore[no-untyped-def]
    ctx = _ctx(digits, "vectorized")
    ctx.augment = Augmenter("none")
    ctx.cfg.batch_real = 5
    torch.manual_seed(0)
    x_real, y_real = ctx.real_batch(5)
    net = ctx.fresh_net()
    torch.manual_seed(0)  # the loss draws the same real batch again
    loss = DM().loss(ctx, SyntheticSet(x_real.clone(), y_real, 5), net)
    assert float(loss) < 1e-8
    torch.manual_seed(0)
    loss2 = DM().loss(ctx, SyntheticSet(x_real.clone() + 0.5, y_real, 5), net)
    assert float(loss2) > 1e-4


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
