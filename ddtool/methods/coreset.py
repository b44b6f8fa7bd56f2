"""Coreset baselines stored as synthetic sets: a random real subset, and herding."""

from __future__ import annotations

import torch
from torch import nn

from ddtool.context import DistillContext
from ddtool.methods.base import MatchingMethod
from ddtool.compiled import embed
from ddtool.synthetic import SyntheticSet


class RandomReal(MatchingMethod):
    name = "random"
    description = "a random subset of real images per class (lower bound baseline)"
    iterative = False

    def default_iterations(self, ipc: int) -> int:
        return 0


def herding_indices(features: torch.Tensor, k: int) -> list[int]:
    """Greedy mean matching (Welling 2009): pick k rows one at a time so that the mean of the
    picked rows stays as close as possible to the mean of all rows; no row is picked twice."""
    target = features.mean(0)
    picked: list[int] = []
    total = torch.zeros_like(target)
    available = torch.ones(len(features), dtype=torch.bool, device=features.device)
    for n in range(1, min(k, len(features)) + 1):
        # distance of the running mean to the class mean if row i were added next
        dist = ((total + features) / n - target).norm(dim=1)
        dist = dist.masked_fill(~available, float("inf"))
        i = int(dist.argmin())
        picked.append(i)
        available[i] = False
        total = total + features[i]
    return picked


class Herding(MatchingMethod):
    name = "herding"
    description = ("herding coreset: per class, real images whose running mean embedding approaches the "
                   "class mean, in the embedding of the pool's first model (a random network without a pool)")
    iterative = False

    def default_iterations(self, ipc: int) -> int:
        return 0

    def embedding_net(self, ctx: DistillContext) -> nn.Module:
        if ctx.pool is not None and len(ctx.pool):
            return ctx.net_from_state(ctx.pool.states[0]).eval()
        net = ctx.fresh_net()
        # without a pool the embedding is a random network's (seeded by distill.seed): weaker than
        # the trained feature extractor of the DM paper's herding baseline
        return net.eval()

    @torch.no_grad()
    def init_synthetic(self, ctx: DistillContext) -> SyntheticSet:
        net = self.embedding_net(ctx)
        data = ctx.data
        images, labels = [], []
        for c in range(ctx.num_classes):
            idx = data.class_indices(c)
            x = data.normalize(data.train_images[idx].to(ctx.device))
            feats = torch.cat([embed(net, x[i:i + 512]) for i in range(0, len(x), 512)])
            pick = herding_indices(feats, ctx.cfg.ipc)
            images.append(x[pick])
            labels.append(torch.full((len(pick),), c, dtype=torch.long, device=ctx.device))
        return SyntheticSet(torch.cat(images), torch.cat(labels), ctx.cfg.ipc, 1)
