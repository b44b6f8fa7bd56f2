"""Distribution Matching (Zhao & Bilen, seed 004, Eq. 6 and Algorithm 1).

Per iteration a network is drawn (a fresh random init for plain DM; a perturbed early-stage
model for "DM + Ours", supp. Table 5) and frozen. For every class the mean embedding of an
augmented real batch is matched to the mean embedding of the equally augmented synthetic
images (siamese augmentation: the same parameters for both). The loss is the sum over classes
of the squared distance between the two means.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import nn

from ddtool.compiled import forward_fn
from ddtool.context import DistillContext
from ddtool.errors import UsageError
from ddtool.methods.base import MatchingMethod, class_means, per_sample_forward
from ddtool.methods.matching import ClassSiamese, Siamese
from ddtool.methods.sharding import shard_of, step_images, whole_loss
from ddtool.synthetic import SyntheticSet


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

    # the loss of a class needs only that class's images (per-sample norms): runs shard the classes
    # across processes (ddtool.methods.sharding)
    class_sharded = True

    def default_iterations(self, ipc: int) -> int:
        return 20000  # CIFAR in the paper

    def class_losses(self, ctx: DistillContext, syn: SyntheticSet, net: nn.Module,
                     classes: Sequence[int]) -> torch.Tensor:
        """The loss of each class of ``classes`` ([len(classes)]): the squared distance between the
        mean embeddings of its augmented real batch and of its equally augmented synthetic images.
        A class's real batch and augmentation come from its own stream (``ClassShard.per_class``),
        so they do not depend on which classes are computed together."""
        net.requires_grad_(False)
        x_all, y_all = syn.decoded()
        if not classes:
            return x_all.new_zeros(0)
        size = x_all.shape[-1]
        drawn = shard_of(ctx).per_class(ctx, classes, lambda c: (
            ctx.real_class(c, ctx.cfg.batch_real), Siamese.sample(ctx.augment, 1, size, ctx.device)))
        reals = [x for x, _ in drawn]
        siamese = ClassSiamese([s for _, s in drawn])
        syns = [x_all[y_all == c] for c in classes]
        embed = forward_fn(ctx.compile, "embed")
        if ctx.impl == "loop" and per_sample_forward(net):
            # the reference's ConvNet branch: one forward per class and side
            out = []
            for i in range(len(classes)):
                s = siamese.select(i)
                with no_grad_forward(ctx):
                    er = embed(net, s.apply(reals[i])).float().mean(0)
                es = embed(net, s.apply(syns[i])).mean(0)
                out.append(((er - es) ** 2).sum())
            return torch.stack(out)
        # one forward for all classes per side: with a per-sample norm this equals the loop; with
        # BatchNorm in training mode it is what the reference's ConvNetBN branch of main_DM.py
        # computes (each class augmented on its own, then all classes concatenated, so the batch
        # statistics are those of the whole real / whole synthetic batch; seed 004 Table 2's BN
        # rows). The real side needs no graph: only the synthetic pixels receive gradients.
        k = len(classes)
        yr = _groups([len(x) for x in reals], ctx.device)
        ys = _groups([len(x) for x in syns], ctx.device)
        with no_grad_forward(ctx):
            mr = class_means(embed(net, siamese.apply(torch.cat(reals), yr)).float(), yr, k)
        ms = class_means(embed(net, siamese.apply(torch.cat(syns), ys)), ys, k)
        return ((mr - ms) ** 2).sum(1)

    def loss(self, ctx: DistillContext, syn: SyntheticSet, net: nn.Module) -> torch.Tensor:
        """The sum over classes of :meth:`class_losses` (split across processes: ``whole_loss``)."""
        return whole_loss(ctx, lambda classes: self.class_losses(ctx, syn, net, classes))

    def replays_score(self, ctx: DistillContext, net: nn.Module) -> bool:
        return True  # the step's loss is loss's, with the same draws

    def step(self, ctx: DistillContext, syn: SyntheticSet, opt: torch.optim.Optimizer, it: int) -> float:
        """One outer iteration: this process's classes' losses, their image gradient summed across
        processes (rows of other classes are zero), one step of ``opt`` on the whole set."""
        net = ctx.next_model(it)
        shard = shard_of(ctx)
        if shard.world > 1 and not per_sample_forward(net):
            raise UsageError("dm with a batch-norm network normalises over every class at once, which class "
                             "shards cannot split: set net.norm = \"instance\" or run in one process")
        losses = self.class_losses(ctx, syn, net, shard.classes)
        total = step_images(ctx, losses, shard.classes, opt, syn.images)
        ctx.selection.after_step(ctx, it, net)
        return float(total)


def _groups(counts: list[int], device: torch.device) -> torch.Tensor:
    """Group index of every row of class-blocked rows: [0] * counts[0] + [1] * counts[1] + ..."""
    return torch.repeat_interleave(torch.arange(len(counts), device=device), torch.tensor(counts, device=device))
