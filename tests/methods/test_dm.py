"""Distribution Matching (ddtool.methods.dm): the class-batched loss equals the per-class loop, a
zero loss on the real batch itself, bf16 on the real side."""

from __future__ import annotations

import pytest
import torch

from ddtool.augment import Augmenter
from ddtool.context import DistillContext
from ddtool.methods.dm import DM
from ddtool.methods.sharding import shard_of
from ddtool.nets import NetSpec
from ddtool.perturb import NoPerturbation
from ddtool.recipe import DistillSection
from ddtool.runtime.distill.planning import build_context
from ddtool.selection.builtin import Scratch
from ddtool.synthetic import SyntheticSet, init_synthetic


def _ctx(digits, impl: str, norm: str = "instance") -> DistillContext:  # type: ignore[no-untyped-def]
    return build_context(DistillSection(batch_real=32), digits, torch.device("cpu"),
                         net_spec=NetSpec("convnet", {"width": 8, "norm": norm}), iterations=1, selection=Scratch(),
                         schedule=NoPerturbation(), impl=impl)


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
    # each class's real batch from its own stream, keyed from the global one (ddtool.methods.sharding)
    reals = shard_of(ctx).per_class(ctx, range(10), lambda c: ctx.real_class(c, 5))
    x_real = torch.cat(reals)
    y_real = torch.arange(10).repeat_interleave(5)
    net = ctx.fresh_net()
    torch.manual_seed(0)  # the loss draws the same real batches again
    loss = DM().loss(ctx, SyntheticSet(x_real.clone(), y_real, 5), net)
    assert float(loss) < 1e-8
    torch.manual_seed(0)
    loss2 = DM().loss(ctx, SyntheticSet(x_real.clone() + 0.5, y_real, 5), net)
    assert float(loss2) > 1e-4


def test_bf16_real_side_is_close_to_fp32_but_not_identical(digits) -> None:  # type: ignore[no-untyped-def]
    losses = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        ctx = build_context(DistillSection(batch_real=64, precision=precision), digits, torch.device("cpu"),
                            net_spec=NetSpec("convnet", {"width": 16}), iterations=1, selection=Scratch(),
                            schedule=NoPerturbation(), impl="vectorized")
        syn = init_synthetic(digits, 1, "real")
        syn.images.requires_grad_(True)
        loss = DM().loss(ctx, syn, ctx.fresh_net())
        loss.backward()
        losses[precision] = (float(loss.detach()), syn.images.grad.clone())
    (l32, g32), (l16, g16) = losses["fp32"], losses["bf16"]
    assert l16 != l32  # autocast really ran
    assert abs(l16 - l32) / l32 < 0.05
    assert torch.nn.functional.cosine_similarity(g16.flatten(), g32.flatten(), dim=0) > 0.99
