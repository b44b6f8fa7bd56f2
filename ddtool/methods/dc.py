"""Gradient matching: DC (Zhao et al. 2021) and DSA (Zhao & Bilen 2021).

Every outer loop draws a network (``ctx.next_model``: a fresh init for DC/DSA, a perturbed
early-stage model for "DC + Ours", Acc-DD supp. Table 5). Then, ``inner`` times: for every class
the cross-entropy gradient of the network's parameters on a real batch of the class is matched
to the gradient on the synthetic images of the class; one SGD step on the images with the sum
over classes; then the network trains on the synthetic set for ``inner_net`` epochs.

The per-class gradients come either from the reference per-class Python loop (``impl = "loop"``)
or from one batched call over classes (``impl = "vectorized"``); the matching itself
(``match_distance``, ``Siamese``, ``class_matching_losses``) lives in ``ddtool.methods.matching``,
shared with IDC.
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ddtool.context import DistillContext
from ddtool.methods.base import MatchingMethod
from ddtool.methods.matching import ClassSiamese, Siamese, check_distance, class_matching_losses, synthetic_by_class
from ddtool.methods.sharding import shard_of, step_images, whole_loss
from ddtool.synthetic import SyntheticSet

# DC reference (get_loops): ipc -> (image updates per network, network epochs between them)
DC_LOOPS = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}


def dc_loops(ipc: int) -> tuple[int, int]:
    """(image updates per outer loop, network epochs on the synthetic set after each but the last).

    DC defines them for ipc 1, 10, 20, ..., 50 only; other ipc take the nearest defined entry
    (ties go to the larger ipc) so that any ipc runs.
    """
    if ipc in DC_LOOPS:
        return DC_LOOPS[ipc]
    best = min(DC_LOOPS, key=lambda k: (abs(k - ipc), -k))
    return DC_LOOPS[best]


@dataclass
class DCOptions:
    """``[distill.options]`` of dc and dsa (0 = the DC reference's value for the ipc)."""

    inner: int = 0  # image updates per outer loop (DC's "outer_loop"; 1/10/50 for ipc 1/10/50)
    inner_net: int = 0  # network epochs on the synthetic set between them (DC's "inner_loop": 1/50/10)
    lr_net: float = 0.01  # SGD on the network (DC/DSA reference: lr_net 0.01, no momentum)
    momentum_net: float = 0.0
    batch_train: int = 256  # minibatch of synthetic images for the network updates
    dist: str = "dc"  # dc | mse | l1 | cos (DC's "ours" = dc)


class DC(MatchingMethod):
    name = "dc"
    description = "Dataset Condensation: per-class gradient matching, layer-wise cosine distance (DC)"
    options_type = DCOptions
    augmented = False  # DSA: siamese augmentation before every gradient
    trains_network = True  # the network trains on the synthetic set between image updates
    # a class's loss needs only its images; every process holds the whole set (the image gradient is
    # summed), so the network trains identically everywhere (ddtool.methods.sharding)
    class_sharded = True

    def distill_defaults(self) -> dict[str, Any]:
        # DC/DSA reference (main.py): lr_img 0.1, batch_real 256
        return {**super().distill_defaults(), "lr_img": 0.1}

    def default_iterations(self, ipc: int) -> int:
        return 1000  # DC/DSA reference: --Iteration 1000

    def _opts(self, ctx: DistillContext) -> DCOptions:
        o = ctx.options if isinstance(ctx.options, DCOptions) else DCOptions()
        check_distance(o.dist)
        return o

    def loops(self, ctx: DistillContext) -> tuple[int, int]:
        o = self._opts(ctx)
        inner, inner_net = dc_loops(ctx.cfg.ipc)
        return (o.inner or inner, o.inner_net or inner_net)

    def _siamese(self, ctx: DistillContext) -> Siamese:
        """One class's augmentation (DSA; none for DC)."""
        if not self.augmented:
            return Siamese()
        return Siamese.sample(ctx.augment, 1, ctx.data.resolution, ctx.device)

    def class_losses(self, ctx: DistillContext, syn: SyntheticSet, net: nn.Module,
                     classes: Sequence[int]) -> torch.Tensor:
        """The gradient-matching distance of each class of ``classes`` (real batch of ``batch_real``).
        A class's real batch and augmentation come from its own stream (``ClassShard.per_class``),
        so both implementations, and any split of the classes across processes, see the same ones."""
        o = self._opts(ctx)
        if not classes:
            return syn.images.new_zeros(0)
        drawn = shard_of(ctx).per_class(ctx, classes, lambda c: (ctx.real_class(c, ctx.cfg.batch_real),
                                                                  self._siamese(ctx)))
        every = synthetic_by_class(syn, ctx.num_classes)
        return class_matching_losses(net, [x for x, _ in drawn], [every[c] for c in classes],
                                     ClassSiamese([s for _, s in drawn]), o.dist, classes=list(classes),
                                     vectorized=ctx.impl == "vectorized", real_bf16=ctx.cfg.precision == "bf16",
                                     real_compiled=ctx.compile)

    def loss(self, ctx: DistillContext, syn: SyntheticSet, net: nn.Module) -> torch.Tensor:
        """Sum over classes of the gradient-matching distance (split across processes: ``whole_loss``)."""
        return whole_loss(ctx, lambda classes: self.class_losses(ctx, syn, net, classes))

    def replays_score(self, ctx: DistillContext, net: nn.Module) -> bool:
        """The step's first loss is :meth:`loss` with the same draws, unless the network has BatchNorm
        (the step first sets and freezes its running statistics on a real batch)."""
        return not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())

    def step(self, ctx: DistillContext, syn: SyntheticSet, opt: torch.optim.Optimizer, it: int) -> float:
        o = self._opts(ctx)
        inner, inner_net = self.loops(ctx)
        net = ctx.next_model(it)
        net.requires_grad_(True)  # its gradients are what is matched
        net.train()
        net_opt = torch.optim.SGD(net.parameters(), lr=o.lr_net, momentum=o.momentum_net)
        total = torch.zeros((), dtype=torch.float64, device=syn.images.device)  # one host sync per step
        shard = shard_of(ctx)  # this process's classes; every process trains the same network
        for k in range(inner):
            _freeze_batchnorm(ctx, net)
            losses = self.class_losses(ctx, syn, net, shard.classes)
            total += step_images(ctx, losses, shard.classes, opt, syn.images)
            if k == inner - 1:
                break  # the reference does not train the network after the last image update
            net.train()
            self._train_on_synthetic(ctx, syn, net, net_opt, inner_net, o.batch_train)
        ctx.selection.after_step(ctx, it, net)
        return float(total) / inner

    def _train_on_synthetic(self, ctx: DistillContext, syn: SyntheticSet, net: nn.Module,
                            net_opt: torch.optim.Optimizer, epochs: int, batch: int) -> None:
        x_all, y_all = syn.decoded()
        x_all, y_all = x_all.detach(), y_all.detach()
        for _ in range(epochs):
            perm = torch.randperm(len(y_all), device=y_all.device)
            for start in range(0, len(perm), batch):
                idx = perm[start:start + batch]
                x = x_all[idx]
                if self.augmented and ctx.augment.enabled:
                    x = ctx.augment(x)  # DSA trains the inner network with (per-sample) augmentation too
                loss = F.cross_entropy(net(x), y_all[idx])
                net_opt.zero_grad(set_to_none=True)
                loss.backward()
                net_opt.step()


class DSA(DC):
    name = "dsa"
    description = "DC with differentiable siamese augmentation (same draw for real and synthetic of a class)"
    augmented = True


def _freeze_batchnorm(ctx: DistillContext, net: nn.Module, per_class: int = 16) -> None:
    """DC's trick for BatchNorm nets: set the running statistics on a real batch, then freeze them.

    A class's few synthetic images give unusable batch statistics. Instance norm (the default
    ConvNet) has no running statistics, so nothing happens there.
    """
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    net.train()
    with torch.no_grad():
        net(ctx.real_batch(per_class)[0])
    for m in bns:
        m.eval()
