"""DREAM+: Dataset Distillation by Bidirectional REpresentAtive Matching (Liu et al. 2023), the third
matching method of DynaDistill (seed 003, Eq. 3).

IDC (``ddtool.methods.idc``: multi-formation, per-class steps on the images, the network trained on
real data between them), with two changes:

* **representative real batches.** Instead of a random real batch per class, the real images of a
  class are embedded by the outer loop's network (its penultimate features, ``net.embed``), grouped
  by k-means (scikit-learn) into ``batch_real`` clusters, and the real image nearest to each centre
  forms the batch. The clustering is refreshed every ``interval`` inner loops (the DREAM reference:
  ``--interval 10``; number of clusters = ``--batch_real``, one sample per sub-cluster), in the
  feature space of the network as it is then (the network keeps training on real data in between).
  Before the first inner loop the network is trained ``warmup_epochs`` epochs on the real data
  (seed 003: "a network is first trained on the full dataset from scratch for one epoch"; the
  reference trains each outer loop's fresh network one epoch);
* **bidirectional loss** (seed 003 Eq. 3): per class, the gradient-matching distance of IDC plus
  ``alpha`` times the distance between the mean embeddings of the (equally augmented) real and
  synthetic images: ``L = D1(grad real, grad syn) + alpha * D2(mean phi(real), mean phi(syn))``.
  The reference adds both with weight 1 (``alpha = 1``) and the same metric (``mse`` on CIFAR);
  ``alpha = 0`` is IDC with representative batches.

The initial set, as the reference's (``--init mix --f2_init kmean``, its defaults): per class, the
ipc x factor^2 real images nearest to the k-means centres of the class in the features of a freshly
initialised network, downsized into the tiles (``kmeans_init = false``: random real images, as IDC).

Differences from the reference: scikit-learn's k-means on the host (k-means++ start,
``kmeans_iter`` Lloyd iterations) instead of ``fast_pytorch_kmeans`` on the GPU. The clustering is
deterministic given the run's seed (its random state is drawn from torch's RNG), so ``--resume``
continues identically.

Cost: a clustering of every class's real images every ``interval`` inner loops. On CIFAR-10 that
is 10 fits of 5000 x 2048 features into 128 clusters every 10 inner loops (100 per outer
iteration); on a CPU these dominate an outer iteration, so raise ``interval`` there.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import ceil
from typing import Any, Sequence

import torch
from torch import nn

from ddtool.context import DistillContext
from ddtool.errors import UsageError
from ddtool.methods.base import at_least_one, class_means, per_sample_forward
from ddtool.methods.idc import IDC, IDCOptions
from ddtool.methods.matching import Siamese
from ddtool.methods.sharding import shard_of
from ddtool.synthetic import SyntheticSet, init_synthetic

EMBED_DISTANCES = ("mse", "l1")
EMBED_CHUNK = 1024  # images embedded per forward when clustering (bounded memory on large classes)


@dataclass
class DREAMOptions(IDCOptions):
    """``[distill.options]`` of dream: IDC's, plus the representative matching's own."""

    alpha: float = 1.0  # weight of the embedding-distribution distance (seed 003 Eq. 3; the reference adds it with 1)
    embed_dist: str = "mse"  # D2: mse (sum of squares, the reference on CIFAR) | l1
    interval: int = 10  # inner loops between two clusterings (the reference's --interval)
    clusters: int = 0  # k-means clusters per class = real images per class and step (0 = distill.batch_real)
    warmup_epochs: float = 1.0  # epochs on the real data before the first inner loop (0: use the network as selected)
    kmeans_iter: int = 100  # Lloyd iterations per clustering, at most
    # the real tiles of the initial set nearest to k-means centres (ipc x factor^2 per class) in the
    # features of a freshly initialised network (the reference's --init mix --f2_init kmean); false:
    # random real images, as IDC
    kmeans_init: bool = True


def embedding_distance(a: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
    """Distance between mean embeddings along the last axis: ``mse`` (sum of squares) or ``l1``."""
    d = a - b
    return (d * d).sum(-1) if kind == "mse" else d.abs().sum(-1)


@torch.no_grad()
def embed_all(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``net.embed`` of ``images`` in chunks, in evaluation mode (no batch-norm buffer moves), as float32."""
    was = net.training
    net.eval()
    try:
        return torch.cat([net.embed(x).float() for x in images.split(EMBED_CHUNK)])  # type: ignore[operator]
    finally:
        net.train(was)


def nearest_to_centres(features: torch.Tensor, k: int, seed: int, max_iter: int = 100) -> torch.Tensor:
    """Row indices of ``features`` [N, D] nearest to each of the ``k`` k-means centres (scikit-learn,
    one k-means++ start); ``k >= N`` returns every row. Two centres may share their nearest row."""
    from sklearn.cluster import KMeans  # imported on first use: a second or so, only for dream runs

    n = features.shape[0]
    if k >= n:
        return torch.arange(n)
    km = KMeans(n_clusters=k, n_init=1, max_iter=max_iter, random_state=seed).fit(features.cpu().numpy())
    centres = torch.from_numpy(km.cluster_centers_).to(features)
    return torch.cdist(centres, features.cpu()).argmin(dim=1)


class DREAM(IDC):
    name = "dream"
    description = "DREAM+: IDC on k-means representative real batches, gradient + alpha x embedding distance (seed 003)"
    options_type = DREAMOptions
    # across processes, as IDC: each process clusters and matches its own classes (the k-means seeds
    # of every class are drawn on every process, so the run's stream stays the same everywhere); the
    # warm-up is one more data-parallel network update
    class_sharded = True

    def distill_defaults(self) -> dict[str, Any]:
        # the DREAM reference: batch_real 128 (= clusters per class), lr_img 5e-3 x ipc/10, color_crop_cutout
        return {"lr_img": 0.005, "lr_img_scale": "ipc", "batch_real": 128, "augment": "color_crop_cutout"}

    def default_iterations(self, ipc: int) -> int:
        return 400  # seed 003 Table 1 runs DREAM+ for 400 iterations

    def opts(self, ctx: DistillContext) -> DREAMOptions:  # type: ignore[override]
        o = ctx.options if isinstance(ctx.options, DREAMOptions) else DREAMOptions()
        super().opts(ctx)  # IDC's checks of the shared settings
        return o

    def parse_options(self, raw: dict) -> DREAMOptions:  # type: ignore[override]
        o = super().parse_options(raw)
        if o.alpha < 0:
            raise UsageError(f"distill.options.alpha must be >= 0, got {o.alpha}")
        if o.embed_dist not in EMBED_DISTANCES:
            raise UsageError(f"distill.options.embed_dist must be {' or '.join(EMBED_DISTANCES)}, got {o.embed_dist!r}")
        at_least_one(o, ("interval", "kmeans_iter"))
        if o.clusters < 0 or o.warmup_epochs < 0:
            raise UsageError(f"distill.options.clusters and warmup_epochs must be >= 0, got {o.clusters}, "
                             f"{o.warmup_epochs}")
        return o

    # -- the initial set -----------------------------------------------------------------------

    def init_synthetic(self, ctx: DistillContext) -> SyntheticSet:
        """k-means representatives as the initial tiles (``kmeans_init``; ``distill.init = "real"``),
        else IDC's random real images. Every process computes the whole set alike (same draws)."""
        o = self.opts(ctx)
        if not o.kmeans_init or ctx.cfg.init != "real":
            return super().init_synthetic(ctx)
        factor = self.factor_for(ctx.options, ctx.data.resolution)
        # the network and the clusterings' seeds from the run's RNG: reproducible, resumable
        net_seed = int(torch.randint(2**31 - 1, (1,)).item())
        seeds = [int(torch.randint(2**31 - 1, (1,)).item()) for _ in range(ctx.num_classes)]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(net_seed)
            net = ctx.fresh_net()

        def pick(c: int, n: int) -> torch.Tensor:
            idx = ctx.data.class_indices(c)
            return idx[nearest_to_centres(embed_all(net, self.real_images(ctx, idx)), n, seeds[c], o.kmeans_iter)]

        return init_synthetic(ctx.data, ctx.cfg.ipc, "real", factor, ctx.device, pick=pick)

    # -- representative samples ----------------------------------------------------------------

    def representatives(self, ctx: DistillContext, net: nn.Module, o: DREAMOptions,
                        classes: Sequence[int] | None = None) -> list[torch.Tensor | None]:
        """Per class, the training-set indices (``ctx.data``'s) of the real images nearest to the
        k-means centres of the class's embeddings under ``net``; k = ``clusters`` or ``batch_real``.
        Only for ``classes`` (default: all; the others None), but every class's k-means seed is drawn."""
        k = o.clusters or ctx.cfg.batch_real
        # from the run's RNG, one per class whichever are clustered here: reproducible, resumable, and
        # the same stream on every process
        seeds = [int(torch.randint(2**31 - 1, (1,)).item()) for _ in range(ctx.num_classes)]
        mine = set(range(ctx.num_classes) if classes is None else classes)
        out: list[torch.Tensor | None] = []
        for c in range(ctx.num_classes):
            if c not in mine:
                out.append(None)
                continue
            idx = ctx.data.class_indices(c)
            feats = embed_all(net, self.real_images(ctx, idx))
            out.append(idx[nearest_to_centres(feats, k, seeds[c], o.kmeans_iter)])
        return out

    def representative_batches(self, ctx: DistillContext, net: nn.Module, o: DREAMOptions) -> list[torch.Tensor | None]:
        """The real images of :meth:`representatives` for this process's classes (None for the others)."""
        reps = self.representatives(ctx, net, o, shard_of(ctx).classes)
        return [None if i is None else self.real_images(ctx, i) for i in reps]

    @staticmethod
    def real_images(ctx: DistillContext, idx: torch.Tensor) -> torch.Tensor:
        """The normalised training images at ``idx``, on the run's device."""
        return ctx.data.normalize(ctx.data.train_images[idx].to(ctx.device))

    # -- the loss ------------------------------------------------------------------------------

    def class_losses(self, ctx: DistillContext, o: IDCOptions, net: nn.Module, reals: Sequence[torch.Tensor],
                     syns: Sequence[torch.Tensor], siamese: Siamese, *, vectorized: bool,
                     classes: Sequence[int] | None = None) -> torch.Tensor:
        """IDC's gradient distance plus ``alpha`` times the embedding distance, per entry (Eq. 3)."""
        grad = super().class_losses(ctx, o, net, reals, syns, siamese, vectorized=vectorized, classes=classes)
        alpha = o.alpha if isinstance(o, DREAMOptions) else 0.0
        if alpha == 0:
            return grad
        kind = o.embed_dist if isinstance(o, DREAMOptions) else "mse"
        return grad + alpha * self.embedding_losses(net, reals, syns, siamese, kind, vectorized=vectorized)

    @staticmethod
    def embedding_losses(net: nn.Module, reals: Sequence[torch.Tensor], syns: Sequence[torch.Tensor],
                         siamese: Siamese, kind: str = "mse", *, vectorized: bool = True) -> torch.Tensor:
        """Per entry i, the distance between the mean embeddings of ``reals[i]`` and ``syns[i]``, both
        augmented with group i of ``siamese`` (the draw the gradient term used); graph to the synthetic side."""
        num = len(reals)
        if not vectorized or not per_sample_forward(net):
            out = []
            for i in range(num):
                si = siamese.select(i)
                with torch.no_grad():
                    er = net.embed(si.apply(reals[i])).float().mean(0)  # type: ignore[operator]
                es = net.embed(si.apply(syns[i])).mean(0)  # type: ignore[operator]
                out.append(embedding_distance(er, es, kind))
            return torch.stack(out)
        device = syns[0].device
        entries = torch.arange(num, device=device)
        rg = torch.repeat_interleave(entries, torch.tensor([len(r) for r in reals], device=device))
        sg = torch.repeat_interleave(entries, torch.tensor([len(s) for s in syns], device=device))
        embed = net.embed  # type: ignore[operator]
        with torch.no_grad():
            mr = class_means(embed(siamese.apply(torch.cat(list(reals)), rg)).float(), rg, num)
        ms = class_means(embed(siamese.apply(torch.cat(list(syns)), sg)), sg, num)
        return embedding_distance(mr, ms, kind)

    def loss(self, ctx: DistillContext, syn: SyntheticSet, net: nn.Module) -> torch.Tensor:
        """Sum over classes of Eq. 3 on representative batches under ``net`` (DynaDistill scores with
        it; across processes each computes its classes' terms and the sum is shared)."""
        o = self.opts(ctx)
        return self.whole_matching_loss(ctx, syn, net, o, self.representative_batches(ctx, net, o))

    # -- one outer iteration -------------------------------------------------------------------

    def replays_score(self, ctx: DistillContext, net: nn.Module) -> bool:
        """Only without the warm-up: it trains the chosen network after it was scored (warming every
        candidate before scoring it would cost ``m`` warm-ups per outer loop), so the first update
        is not under the scored network and draws afresh."""
        return self.opts(ctx).warmup_epochs == 0

    def prepare_net(self, ctx: DistillContext, net: nn.Module, net_opt: torch.optim.Optimizer,  # type: ignore[override]
                    o: DREAMOptions, ops: Sequence[str]) -> None:
        """The warm-up: ``warmup_epochs`` epochs of IDC's network update on the real data
        (:meth:`IDC.train_net`) before the first inner loop of IDC's outer iteration."""
        steps = ceil(o.warmup_epochs * len(ctx.data.train_labels) / o.net_batch)
        if steps:
            self.train_net(ctx, net, net_opt, replace(o, net_steps=steps), ops)

    def inner_reals(self, ctx: DistillContext, net: nn.Module, o: DREAMOptions, inner: int,  # type: ignore[override]
                    previous: list[torch.Tensor] | None) -> list[torch.Tensor] | None:
        """The representative batches, re-clustered every ``interval`` inner loops under the network as it is then."""
        if inner % o.interval == 0 or previous is None:
            return self.representative_batches(ctx, net, o)  # type: ignore[return-value]
        return previous
