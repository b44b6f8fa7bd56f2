"""Distribution Matching (Zhao & Bilen, seed 004, Eq. 6 and Algorithm 1).

Per iteration a network is drawn (a fresh random init for plain DM; a perturbed early-stage
model for "DM + Ours", supp. Table 5) and frozen. For every class the mean embedding of an
augmented real batch is matched to the mean embedding of the equally augmented synthetic
images (siamese augmentation: the same parameters for both). The loss is the sum over classes
of the squared distance between the two means.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from ddtool.compiled import forward_fn
from ddtool.context import DistillContext
from ddtool.methods.base import MatchingMethod, per_sample_forward
from ddtool.synthetic import SyntheticSet


def class_means(emb: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The mean row of ``emb`` [N, D] per class of ``labels`` [N]: [num_classes, D] (zeros for a
    class without rows); one index_add instead of a Python loop over classes."""
    sums = torch.zeros(num_classes, emb.shape[1], device=emb.device, dtype=emb.dtype).index_add_(0, labels, emb)
    counts = torch.bincount(labels, minlength=num_classes).clamp_min(1).to(emb.dtype)
    return sums / counts[:, None]


@contextmanager
def no_grad_forward(ctx: DistillContext) -> Iterator[None]:
    """No graph, and bf16 autocast when ``distill.precision = "bf16"``: the real side of DM is
    most of its FLOPs and needs no gradient, so it is where reduced precision pays."""
    with torch.no_grad(), torch.autocast(ctx.device.type, dtype=torch.bfloat16,
                                         enabled=ctx.cfg.precision == "bf16"):
        yield


class DM(MatchingMethod):
    name = "dm"
    description = "Distribution Matching: per-class mean embeddings under random networks (seed 004)"

    def default_iterations(self, ipc: int) -> int:
        return 20000  # CIFAR in the paper

    def loss(self, ctx: DistillContext, syn: SyntheticSet, net: nn.Module) -> torch.Tensor:
        net.requires_grad_(False)
        x_real, y_real = ctx.real_batch(ctx.cfg.batch_real)
        x_syn, y_syn = syn.decoded()
        embed = forward_fn(ctx.compile, "embed")
        draw = ctx.augment.sample(ctx.num_classes, x_real.shape[-1], ctx.device, op_per_group=True)
        if ctx.impl == "loop" and per_sample_forward(net):
            # the reference's ConvNet branch: one forward per class and side
            total = x_syn.new_zeros(())
            for c in range(ctx.num_classes):
                d = draw.select(c)
                with no_grad_forward(ctx):
                    er = embed(net, ctx.augment.apply(x_real[y_real == c], d)).float().mean(0)
                es = embed(net, ctx.augment.apply(x_syn[y_syn == c], d)).mean(0)
                total = total + ((er - es) ** 2).sum()
            return total
        # one forward for all classes per side: with a per-sample norm this equals the loop; with
        # BatchNorm in training mode it is what the reference's ConvNetBN branch of main_DM.py
        # computes (each class augmented on its own, then all classes concatenated, so the batch
        # statistics are those of the whole real / whole synthetic batch; seed 004 Table 2's BN
        # rows). The real side needs no graph: only the synthetic pixels receive gradients.
        with no_grad_forward(ctx):
            mr = class_means(embed(net, ctx.augment.apply(x_real, draw, y_real)).float(), y_real, ctx.num_classes)
        ms = class_means(embed(net, ctx.augment.apply(x_syn, draw, y_syn)), y_syn, ctx.num_classes)
        return ((mr - ms) ** 2).sum()
