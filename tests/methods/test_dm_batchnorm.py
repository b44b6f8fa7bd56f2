"""DM with batch-norm networks concatenates every class into one forward per side, as the
reference's ConvNetBN branch of main_DM.py does (issue 11, item 4)."""

from __future__ import annotations

import pytest
import torch

from ddtool.augment import Augmenter
from ddtool.methods.base import class_means
from ddtool.methods.dm import DM
from ddtool.methods.sharding import shard_of
from ddtool.nets import NetSpec
from ddtool.perturb import NoPerturbation
from ddtool.recipe import DistillSection
from ddtool.runtime.distill.planning import build_context
from ddtool.selection.builtin import Scratch
from ddtool.synthetic import init_synthetic


def _reference_losses(net, x_real, y_real, x_syn, y_syn, classes):  # type: ignore[no-untyped-def]
    """(concatenated, per-class) DM losses computed by hand."""
    with torch.no_grad():
        mr = class_means(net.embed(x_real), y_real, classes)
    ms = class_means(net.embed(x_syn), y_syn, classes)
    concatenated = ((mr - ms) ** 2).sum()
    per_class = sum(((net.embed(x_real[y_real == c]).mean(0) - net.embed(x_syn[y_syn == c]).mean(0)) ** 2).sum()
                    for c in range(classes))
    return concatenated.detach(), per_class.detach()


@pytest.mark.parametrize("impl", ["loop", "vectorized"])
def test_dm_batchnorm_forwards_all_classes_at_once(digits, impl: str) -> None:  # type: ignore[no-untyped-def]
    ctx = build_context(DistillSection(batch_real=8), digits, torch.device("cpu"),
                        net_spec=NetSpec("convnet", {"width": 8, "norm": "batch"}), iterations=1, selection=Scratch(),
                        schedule=NoPerturbation(), impl=impl)
    ctx.augment = Augmenter("none")
    torch.manual_seed(1)
    syn = init_synthetic(digits, 2, "real")
    net = ctx.fresh_net()
    torch.manual_seed(5)
    # each class's real batch from its own stream, keyed from the global one (ddtool.methods.sharding)
    x_real = torch.cat(shard_of(ctx).per_class(ctx, range(digits.num_classes), lambda c: ctx.real_class(c, 8)))
    y_real = torch.arange(digits.num_classes).repeat_interleave(8)
    expected, per_class = _reference_losses(net, x_real, y_real, syn.images, syn.labels, digits.num_classes)
    assert not torch.allclose(expected, per_class, rtol=1e-3)  # the two readings really differ
    torch.manual_seed(5)  # the loss draws the same real batch
    loss = DM().loss(ctx, syn, net)
    assert torch.allclose(loss.detach(), expected, rtol=1e-5)
