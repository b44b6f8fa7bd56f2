"""IDC: Dataset Condensation via Efficient Synthetic-Data Parameterization (Kim et al., ICML 2022).

The backbone of Acc-DD ("Ours", seeds 000-002). Numbers from the IDC reference code
(``misc/reproduce.py`` for CIFAR-10) unless stated:

* multi-formation: every stored image holds ``factor x factor`` tiles, each upsampled to the full
  resolution, so a class's ``ipc`` stored images train as ``factor**2 * ipc`` images (f = 2 on
  CIFAR); initialised from downsized real images;
* per outer loop a network (fresh for IDC; a perturbed early-stage pool model for Acc-DD) with
  its own SGD (lr 0.01, momentum 0.9, weight decay 5e-4);
* ``inner_loops`` (100) times: for every class in turn, a real batch (64) and at most
  ``batch_syn_max`` (128) decoded synthetic images, augmented together (siamese), the gradient
  matching loss over the convolution weights (``mse`` on CIFAR, ``l1`` on ImageNet), and one
  SGD step on the images *per class*; then the network trains on real data (``n_data`` = 2000
  images on CIFAR-10 = 32 batches of 64), each batch augmented with the same chain as the
  matching (flip, color, one of crop/scale/rotate; per-sample parameters; no cutout when CutMix
  is on) and CutMixed with p = 0.5;
* the images are clamped to the valid pixel range at the start of every outer loop.

IDC optimises pixels in [0, 1] and normalises inside the augmentation; ddtool stores normalised
images. With ``pixel_lr`` (default) the image gradient is divided by std_c**2 per channel
before the step, which makes SGD on the normalised images follow exactly the trajectory of
IDC's SGD on pixels, so ``lr_img`` keeps the papers' values (IDC 5e-3, Acc-DD 1e-2, both
x ipc/10).

Implementations: ``loop`` is the reference (per class: loss, backward, step). ``vectorized``
computes all classes' gradients in one batched call. Because IDC steps once per class with a
momentum optimiser, class c's images have already moved by the momentum of the c earlier
steps when their loss is taken; the vectorised path evaluates them at exactly that point
(closed form for SGD with momentum) and then replays the per-class steps, so both paths give
the same images. Other optimisers fall back to the loop.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ddtool.augment import DSAParams, chain_stages
from ddtool.compiled import forward_fn
from ddtool.context import DistillContext
from ddtool.errors import UsageError
from ddtool.methods.base import MatchingMethod, at_least_one
from ddtool.methods.matching import (
    DISTANCES,
    ClassSiamese,
    Siamese,
    class_matching_losses,
    synthetic_by_class,
    vmap_safe,
)
from ddtool.methods.sharding import ClassShard, all_reduce_sum, shard_of, shard_range, whole_loss
from ddtool.nets.losses import batch_loss, cutmix
from ddtool.synthetic import SyntheticSet, decode, init_synthetic

def idc_augmentation(ops: Sequence[str], params: DSAParams, groups: int, size: int,
                     device: torch.device | str, op_per_group: bool = False) -> Siamese:
    """IDC's DiffAug chain over the operations in ``ops``, with ``groups`` parameter sets.

    flip and color always, then one of the remaining operations (crop, scale, rotate) drawn at
    random, then cutout always. The matching step uses one group per class (siamese: the real
    and the synthetic images of a class share parameters, IDC's ``batch=True``) and, with
    ``op_per_group``, each class draws its own middle operation (IDC augments class by class);
    the network updates use one group per sample and one middle operation per batch.
    """
    if not ops:
        return Siamese()
    return Siamese([(aug, aug.sample(groups, size, device, op_per_group=op_per_group))
                    for aug in chain_stages(tuple(ops), params)])


@dataclass
class IDCOptions:
    """``[distill.options]`` of idc."""

    factor: int = 2  # multi-formation factor (2 on CIFAR, 3 on ImageNet; 1 = IDC-I)
    inner_loops: int = 100  # matching steps per outer loop
    net_steps: int = 32  # network updates on real data per inner loop (n_data 2000 / batch 64 on CIFAR-10)
    net_batch: int = 64  # real images per network update
    batch_syn_max: int = 128  # decoded synthetic images per class and step, at most
    dist: str = "mse"  # mse (CIFAR) | l1 (ImageNet) | dc | cos
    match_fc: bool = False  # also match the linear layer's gradient (IDC --fc; off by default)
    lr_net: float = 0.01
    momentum_net: float = 0.9
    weight_decay_net: float = 5e-4
    cutmix: float = 0.5  # CutMix probability in the network updates (IDC mix_p on CIFAR)
    pixel_lr: bool = True  # lr_img in IDC's [0, 1]-pixel units (see the module docstring)
    clamp: bool = True  # clamp the images to the valid pixel range every outer loop
    # with distill.compile: also compile the matching's double backward (false: only the real side
    # and the network updates are compiled, the synthetic side runs eager)
    compile_matching: bool = True


def _check_dist(dist: str) -> None:
    if dist not in DISTANCES:
        raise UsageError(f"unknown distill.options.dist '{dist}'; choose from {', '.join(DISTANCES)}")


class IDC(MatchingMethod):
    name = "idc"
    description = "IDC: multi-formation + per-class gradient matching, network trained on real data (Acc-DD's backbone)"
    options_type = IDCOptions
    factor = 2  # the default; the run's factor comes from [distill.options] (factor_for)
    trains_network = True  # the network trains on real data between image updates
    # across processes: each updates its classes' images (gradients summed, so all hold the whole
    # set) and the network updates are data-parallel (ddtool.methods.sharding)
    class_sharded = True

    def progress_steps(self, options: Any) -> int:
        return int(options.inner_loops) if options is not None else 1

    def distill_defaults(self) -> dict[str, Any]:
        # IDC's argument.py: lr_img 5e-3 at ipc 10, times ipc / 10 (tune_lr_img), batch_real 64,
        # aug_type color_crop_cutout (Acc-DD keeps all three, with lr_img 1e-2 in its recipes)
        return {"lr_img": 0.005, "lr_img_scale": "ipc", "batch_real": 64, "augment": "color_crop_cutout"}

    def default_iterations(self, ipc: int) -> int:
        return 2000  # IDC on CIFAR-10 (niter 2000 x 100 inner loops); Acc-DD uses 400/200/100

    def opts(self, ctx: DistillContext) -> IDCOptions:
        o = ctx.options if isinstance(ctx.options, IDCOptions) else IDCOptions()
        _check_dist(o.dist)
        return o

    def parse_options(self, raw: dict) -> IDCOptions:  # type: ignore[override]
        o = super().parse_options(raw)
        at_least_one(o, ("inner_loops", "net_batch", "batch_syn_max"))
        if o.net_steps < 0:
            raise UsageError(f"distill.options.net_steps must be >= 0, got {o.net_steps}")
        _check_dist(o.dist)
        return o

    def init_synthetic(self, ctx: DistillContext) -> SyntheticSet:
        # the instance is the registry's (shared); the factor travels in the SyntheticSet, not in self
        factor = self.factor_for(ctx.options, ctx.data.resolution)
        return init_synthetic(ctx.data, ctx.cfg.ipc, ctx.cfg.init, factor, ctx.device)

    # -- pieces --------------------------------------------------------------------------------

    def siamese(self, ctx: DistillContext) -> Siamese:
        """IDC's augmentation of the matching step (:func:`idc_augmentation`), one parameter set per class."""
        return idc_augmentation(ctx.augment.ops, ctx.augment.p, ctx.num_classes, ctx.data.resolution, ctx.device,
                                op_per_group=True)

    @staticmethod
    def net_ops(ctx: DistillContext, o: IDCOptions) -> tuple[str, ...]:
        """The operations of the network updates: cutout is left out when CutMix is on (IDC's remove_aug)."""
        return tuple(op for op in ctx.augment.ops if not (o.cutmix > 0 and op == "cutout"))

    def _batches(self, ctx: DistillContext, syn: SyntheticSet, o: IDCOptions,
                 reals: list[torch.Tensor] | None = None, classes: Sequence[int] | None = None
                 ) -> tuple[list[torch.Tensor], list[torch.Tensor], Siamese]:
        """All randomness of one inner step for ``classes`` (default: all), entry i for class
        ``classes[i]``, each class from its own stream (``ClassShard.per_class``): its real batch
        (unless the caller chose them, one per class: DREAM's representatives), its synthetic
        subset, its augmentation."""
        classes = range(ctx.num_classes) if classes is None else classes
        n_dec = syn.ipc * syn.factor**2

        def draw(c: int) -> tuple[torch.Tensor, torch.Tensor | None, Siamese]:
            real = ctx.real_class(c, ctx.cfg.batch_real) if reals is None else reals[c]
            pick = torch.randperm(n_dec, device=ctx.device)[:o.batch_syn_max] if n_dec > o.batch_syn_max else None
            return real, pick, idc_augmentation(ctx.augment.ops, ctx.augment.p, 1, ctx.data.resolution, ctx.device,
                                                op_per_group=True)

        drawn = shard_of(ctx).per_class(ctx, classes, draw)
        return [d[0] for d in drawn], [d[1] for d in drawn], ClassSiamese([d[2] for d in drawn])  # type: ignore[return-value]

    @staticmethod
    def _syn_class(syn: SyntheticSet, c: int, pick: torch.Tensor | None) -> torch.Tensor:
        rows = syn.labels == c
        x, _ = decode(syn.images[rows], syn.labels[rows], syn.factor)
        return x if pick is None else x[pick.to(x.device)]

    def loss(self, ctx: DistillContext, syn: SyntheticSet, net: nn.Module) -> torch.Tensor:
        """Sum over classes of the matching loss at the current images (DynaDistill ranks models with
        it; split across processes: ``whole_loss``)."""
        return self.whole_matching_loss(ctx, syn, net, self.opts(ctx))

    def whole_matching_loss(self, ctx: DistillContext, syn: SyntheticSet, net: nn.Module, o: IDCOptions,
                            reals: Sequence[torch.Tensor | None] | None = None) -> torch.Tensor:
        """:meth:`loss` with the real batches of this process's classes given (``reals[c]``; None:
        drawn at random), each process computing its classes' terms."""
        def losses(classes: Sequence[int]) -> torch.Tensor:
            if not classes:
                return syn.images.new_zeros(0)
            picked, picks, siamese = self._batches(ctx, syn, o, reals, classes=classes)  # type: ignore[arg-type]
            syns = _picked(synthetic_by_class(syn, ctx.num_classes, syn.images), classes, picks)
            return self.class_losses(ctx, o, net, picked, syns, siamese, vectorized=ctx.impl == "vectorized",
                                     classes=list(classes))

        return whole_loss(ctx, losses)

    def class_losses(self, ctx: DistillContext, o: IDCOptions, net: nn.Module, reals: Sequence[torch.Tensor],
                     syns: Sequence[torch.Tensor], siamese: Siamese, *, vectorized: bool,
                     classes: Sequence[int] | None = None) -> torch.Tensor:
        """The matching loss of every entry (a [K] tensor, :func:`class_matching_losses`): IDC's
        gradient distance. A subclass adds terms here (DREAM+: the embedding distance)."""
        return class_matching_losses(net, reals, syns, siamese, o.dist, include_linear=o.match_fc,
                                     vectorized=vectorized, classes=classes, real_bf16=_bf16(ctx),
                                     real_compiled=ctx.compile,
                                     whole_compiled=ctx.compile and o.compile_matching)

    def _grad_scale(self, ctx: DistillContext, o: IDCOptions, like: torch.Tensor) -> torch.Tensor | None:
        if not o.pixel_lr:
            return None
        _, std = ctx.data.stats(like.device, like.dtype)
        return 1.0 / std**2

    def image_update(self, ctx: DistillContext, syn: SyntheticSet, opt: torch.optim.Optimizer | None,
                     net: nn.Module, reals: list[torch.Tensor] | None = None, *, score: bool = False) -> torch.Tensor:
        """One inner step on the images: a matching loss and an optimiser step per class; ``reals``
        (one batch per class) replaces the random real batches.

        Returns the sum of the class losses as a detached 0-d tensor (no host sync per step).

        With ``score=True`` nothing moves: the same draws and the same class losses at the same
        images, without a graph to the images (the per-class steps are played on a copy of the
        optimiser with zero gradients, :class:`_Shadow`, which moves the classes not yet stepped
        exactly as the real steps do). That is the first inner step's loss under ``net``: what
        DynaDistill scores a candidate with (:meth:`score`).
        """
        o = self.opts(ctx)
        shard = shard_of(ctx)
        classes = shard.classes  # all of them in one process
        reals, picks, siamese = self._batches(ctx, syn, o, reals, classes)
        scale = self._grad_scale(ctx, o, syn.images)
        num = ctx.num_classes
        rows = [syn.labels == c for c in range(num)]
        sgd = _plain_sgd(opt, syn.images) if opt is not None else None
        if shard.world > 1 and sgd is None:
            raise UsageError("idc across processes needs plain SGD on the images (the per-class steps are "
                             "replayed from summed gradients); run it in one process")
        if shard.world == 1 and (ctx.impl != "vectorized" or sgd is None or not vmap_safe(net)):
            total = syn.images.new_zeros((), dtype=torch.float64)
            shadow = _Shadow(opt, syn) if score else None
            for c in range(num):
                # decoded from the images as they are now (scoring: as they would be)
                x_syn = self._syn_class(syn if shadow is None else shadow.syn, c, picks[c])
                loss = self.class_losses(ctx, o, net, reals[c:c + 1], [x_syn], siamese.select(c),
                                         vectorized=False, classes=[c])[0]
                if shadow is not None:
                    shadow.step()
                    total += loss.detach()
                    continue
                assert opt is not None
                opt.zero_grad(set_to_none=True)
                loss.backward(inputs=[syn.images])
                if scale is not None:
                    syn.images.grad.mul_(scale)  # type: ignore[union-attr]
                opt.step()
                total += loss.detach()
            return total
        lr, mu = sgd
        # where class c's images will be when its turn comes: moved by the momentum buffer in the
        # c earlier steps (their gradient rows are zero): x - lr * buf * (mu + mu^2 + ... + mu^c)
        buf = opt.state.get(syn.images, {}).get("momentum_buffer")
        x_eval = syn.images.detach().clone()
        if buf is not None and mu > 0:
            coef = torch.tensor([sum(mu**j for j in range(1, c + 1)) for c in range(num)],
                                device=x_eval.device, dtype=x_eval.dtype)[syn.labels]
            x_eval = x_eval - lr * coef.view(-1, 1, 1, 1) * buf
        x_eval.requires_grad_(not score)
        # this process's classes (all in one process); the other rows' gradients come from the others
        syns = _picked(synthetic_by_class(syn, num, x_eval), classes, picks)
        losses = self.class_losses(ctx, o, net, reals, syns, siamese, vectorized=ctx.impl == "vectorized",
                                   classes=list(classes)) if classes else x_eval.new_zeros(0)
        if score:
            return shard.all_classes(losses, classes).sum().double()
        assert opt is not None
        g = torch.autograd.grad(losses.sum(), x_eval)[0] if losses.requires_grad else torch.zeros_like(x_eval)
        g = all_reduce_sum(g, shard.world)  # exact: each row has one owner
        if scale is not None:
            g = g * scale
        for c in range(num):  # replay the per-class steps (cheap: element-wise on the images)
            opt.zero_grad(set_to_none=True)
            syn.images.grad = torch.where(rows[c].view(-1, 1, 1, 1), g, torch.zeros_like(g))
            opt.step()
        return shard.all_classes(losses, classes).sum().double()

    def train_net(self, ctx: DistillContext, net: nn.Module, net_opt: torch.optim.Optimizer, o: IDCOptions,
                  ops: Sequence[str]) -> None:
        """IDC's network update on real data: ``o.net_steps`` SGD steps on random real batches, each
        augmented with IDC's chain (:func:`idc_augmentation`) over ``ops`` with per-sample
        parameters, and CutMix with probability ``o.cutmix``; under bf16 autocast with
        ``distill.precision = "bf16"`` (half of an inner step's FLOPs at the CIFAR settings)."""
        net.train()
        forward = forward_fn(ctx.compile)
        shard = shard_of(ctx)
        for _ in range(o.net_steps):
            # every process draws the whole batch (the same, from the shared stream); across processes
            # each computes its share of the loss and the gradients are summed (data-parallel)
            x, y = ctx.real_random(o.net_batch)
            if ops:
                with torch.no_grad():
                    x = idc_augmentation(ops, ctx.augment.p, x.shape[0], x.shape[-1], x.device).apply(x)
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=_bf16(ctx)):
                if shard.world == 1:
                    loss = batch_loss(lambda b: forward(net, b), x, y, o.cutmix)
                else:
                    loss = _batch_loss_share(lambda b: forward(net, b), x, y, o.cutmix, shard)
            net_opt.zero_grad(set_to_none=True)
            loss.backward()
            shard.sum_grads([q for q in net.parameters() if q.requires_grad])
            net_opt.step()

    @torch.no_grad()
    def clamp(self, ctx: DistillContext, syn: SyntheticSet) -> None:
        """Keep the images inside the normalised image of [0, 1] (IDC clamps its pixels every outer loop);
        not on ZCA-whitened data ('+zca'), whose values have no per-pixel range."""
        if getattr(ctx.data, "zca", None) is not None:
            return
        mean, std = ctx.data.stats(syn.images.device, syn.images.dtype)
        syn.images.copy_(torch.maximum(torch.minimum(syn.images, (1 - mean) / std), -mean / std))

    def prepare_net(self, ctx: DistillContext, net: nn.Module, net_opt: torch.optim.Optimizer, o: IDCOptions,
                    ops: Sequence[str]) -> None:
        """Before the inner loops of an outer loop: nothing for IDC (DREAM+ trains the network first)."""

    def inner_reals(self, ctx: DistillContext, net: nn.Module, o: IDCOptions, inner: int,
                    previous: list[torch.Tensor] | None) -> list[torch.Tensor] | None:
        """The real batch per class of inner loop ``inner``; None: drawn at random (IDC). DREAM+
        returns its representatives, re-clustered every ``interval`` loops (else ``previous``)."""
        return None

    def score(self, ctx: DistillContext, syn: SyntheticSet, net: nn.Module) -> float:
        """The loss the first inner step of the outer loop takes under ``net`` (DynaDistill's
        ``L_i``): :meth:`image_update` with ``score=True`` on that step's real batches, at the images
        as that step sees them (each class moved by the momentum of the earlier classes' steps;
        without ``ctx.optimizer`` as they are). Drawn exactly as :meth:`step` draws after choosing
        ``net``, so the step replays it."""
        o = self.opts(ctx)
        net.requires_grad_(True)
        net.train()
        reals = self.inner_reals(ctx, net, o, 0, None)
        return float(self.image_update(ctx, syn, ctx.optimizer, net, reals, score=True))

    def replays_score(self, ctx: DistillContext, net: nn.Module) -> bool:
        return True  # the step's first draws after next_model are the first inner step's, as score's

    def step(self, ctx: DistillContext, syn: SyntheticSet, opt: torch.optim.Optimizer, it: int) -> float:
        o = self.opts(ctx)
        if o.clamp:
            # before the network is chosen: a strategy scoring candidates (DynaDistill) scores the
            # images the first inner step will match
            self.clamp(ctx, syn)
        net = ctx.next_model(it)
        net.requires_grad_(True)
        net.train()
        net_opt = torch.optim.SGD(net.parameters(), lr=o.lr_net, momentum=o.momentum_net,
                                  weight_decay=o.weight_decay_net)
        net_ops = self.net_ops(ctx, o)
        self.prepare_net(ctx, net, net_opt, o, net_ops)
        total = syn.images.new_zeros((), dtype=torch.float64)
        reals: list[torch.Tensor] | None = None
        for inner in range(o.inner_loops):
            reals = self.inner_reals(ctx, net, o, inner, reals)
            total += self.image_update(ctx, syn, opt, net, reals)
            self.train_net(ctx, net, net_opt, o, net_ops)
            ctx.inner_step_done()
        ctx.selection.after_step(ctx, it, net)
        return float(total) / o.inner_loops  # the one host sync of the outer loop


class _Shadow:
    """The synthetic set under a copy of its optimiser, stepped with zero gradients.

    Between its per-class steps IDC's loop moves the rows of the classes not yet stepped only
    through the optimiser's state (momentum, weight decay: their gradient rows are zero), which a
    copy stepped with zero gradients reproduces exactly (the same kernels on the same tensors), so a
    scoring pass evaluates every class where the real update will. Without the images' optimiser
    (``opt`` None, or one holding other parameters too) the images stay as they are."""

    def __init__(self, opt: torch.optim.Optimizer | None, syn: SyntheticSet) -> None:
        self.opt: torch.optim.Optimizer | None = None
        images = syn.images.detach().clone()
        params = [p for g in opt.param_groups for p in g["params"]] if opt is not None else []
        if len(params) == 1 and params[0] is syn.images:
            self.opt = copy.deepcopy(opt)  # its parameter and state, copied together
            images = self.opt.param_groups[0]["params"][0]
        self.images = images
        self.syn = SyntheticSet(images.detach(), syn.labels, syn.ipc, syn.factor)  # a view: it follows the steps

    def step(self) -> None:
        if self.opt is not None:
            self.images.grad = torch.zeros_like(self.images)
            self.opt.step()


def _picked(by_class: list[torch.Tensor], classes: Sequence[int], picks: list[torch.Tensor | None]
            ) -> list[torch.Tensor]:
    """The decoded synthetic images of each class of ``classes``, subset by its pick (None: all)."""
    return [by_class[c] if p is None else by_class[c][p.to(by_class[c].device)] for c, p in zip(classes, picks)]


def _batch_loss_share(forward: Any, x: torch.Tensor, y: torch.Tensor, cutmix_p: float,
                      shard: ClassShard) -> torch.Tensor:
    """This process's share of :func:`batch_loss` on the batch: its contiguous block of rows, summed
    and divided by the whole batch's size, so the shares add up to the batch's mean loss. CutMix
    is drawn as ``batch_loss`` draws it, on the whole batch (the same on every process)."""
    rows = shard_range(len(x), shard.rank, shard.world)
    part = slice(rows[0], rows[-1] + 1) if rows else slice(0, 0)
    if cutmix_p > 0 and torch.rand(()).item() < cutmix_p:
        x, ya, yb, lam = cutmix(x, y)
        out = forward(x[part])
        return (lam * F.cross_entropy(out, ya[part], reduction="sum")
                + (1 - lam) * F.cross_entropy(out, yb[part], reduction="sum")) / len(x)
    return F.cross_entropy(forward(x[part]), y[part], reduction="sum") / len(x)


def _bf16(ctx: DistillContext) -> bool:
    """``distill.precision = "bf16"``: the real-side gradients and the network updates run under
    bf16 autocast; the synthetic side (whose second-order graph reaches the pixels) stays fp32."""
    return ctx.cfg.precision == "bf16"


def _plain_sgd(opt: torch.optim.Optimizer, images: torch.Tensor) -> tuple[float, float] | None:
    """(lr, momentum) when opt is plain SGD on the images alone, where the closed form holds."""
    if type(opt) is not torch.optim.SGD or len(opt.param_groups) != 1:
        return None
    g = opt.param_groups[0]
    if len(g["params"]) != 1 or g["params"][0] is not images:
        return None
    if g.get("nesterov") or g.get("dampening", 0) != 0 or g.get("weight_decay", 0) != 0 or g.get("maximize"):
        return None
    return float(g["lr"]), float(g.get("momentum", 0.0))
