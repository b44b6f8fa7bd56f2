"""Gradient matching: DC (Zhao et al. 2021) and DSA (Zhao & Bilen 2021).

Every outer loop draws a network (``ctx.next_model``: a fresh init for DC/DSA, a perturbed
early-stage model for "DC + Ours", Acc-DD supp. Table 5). Then, ``inner`` times: for every class
the cross-entropy gradient of the network's parameters on a real batch of the class is matched
to the gradient on the synthetic images of the class; one SGD step on the images with the sum
over classes; then the network trains on the synthetic set for ``inner_net`` epochs.

The per-class gradients come either from the reference per-class Python loop (``impl = "loop"``)
or from one batched call over classes (``impl = "vectorized"``: ``torch.func.vmap`` of
``grad`` over the class axis, so the weights' gradients stay per class). Both give the same
loss and the same image gradient; ``tests/test_gradmatch.py`` checks it.

The building blocks (``match_distance``, ``Siamese``, ``class_matching_losses``) are shared with
IDC (``ddtool.methods.idc``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ddtool.augment import Augmenter, Draw, GroupDraw
from ddtool.compiled import Forward, forward_fn, plain_forward
from ddtool.context import DistillContext
from ddtool.errors import UsageError
from ddtool.methods.base import MatchingMethod, per_sample_forward
from ddtool.synthetic import SyntheticSet

DISTANCES = ("dc", "mse", "l1", "cos")
EPS = 1e-6  # as in the DC reference: 1 - <a, b> / (|a| |b| + 1e-6)

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


# -- distances -------------------------------------------------------------------------------

def _check_kind(kind: str) -> None:
    if kind not in DISTANCES:
        raise UsageError(f"unknown gradient distance '{kind}'; choose from {', '.join(DISTANCES)}")


def match_distance(g_real: Sequence[torch.Tensor], g_syn: Sequence[torch.Tensor], kind: str = "dc", *,
                   include_linear: bool = True, batched: bool = False) -> torch.Tensor:
    """Distance between two lists of per-parameter gradients (0 when they are identical).

    * ``dc``: DC's layer-wise distance, per layer the sum over output channels of
      ``1 - cos`` between the flattened per-channel gradients;
    * ``mse``: sum of squared differences (IDC on CIFAR); ``l1``: sum of absolute differences
      (IDC on ImageNet);
    * ``cos``: ``1 - cos`` between the concatenation of all matched gradients.

    One-dimensional parameters (biases, norm affine) are skipped, as DC does and IDC does by
    default (``--bias False``); ``include_linear=False`` also skips 2-D weights (IDC's default
    ``--fc False``: only convolutions are matched). With ``batched=True`` every gradient has a
    leading class axis and the result has one distance per class.
    """
    _check_kind(kind)
    lead = 1 if batched else 0
    pairs = [(r, s) for r, s in zip(g_real, g_syn)
             if r.dim() - lead > 1 and (include_linear or r.dim() - lead != 2)]
    ref = g_syn[0] if len(g_syn) else torch.zeros(())
    shape = tuple(ref.shape[:lead])
    if not pairs:
        return ref.new_zeros(shape)
    if kind == "cos":
        r = torch.cat([a.reshape(*a.shape[:lead], -1) for a, _ in pairs], dim=-1)
        s = torch.cat([b.reshape(*b.shape[:lead], -1) for _, b in pairs], dim=-1)
        return 1 - (r * s).sum(-1) / (r.norm(dim=-1) * s.norm(dim=-1) + EPS)
    total = ref.new_zeros(shape)
    for r, s in pairs:
        if kind == "dc":
            out = r.shape[lead]
            r2, s2 = r.reshape(*r.shape[:lead], out, -1), s.reshape(*s.shape[:lead], out, -1)
            cos = (r2 * s2).sum(-1) / (r2.norm(dim=-1) * s2.norm(dim=-1) + EPS)
            total = total + (1 - cos).sum(-1)
        elif kind == "mse":
            total = total + ((r - s) ** 2).reshape(*r.shape[:lead], -1).sum(-1)
        else:  # l1
            total = total + (r - s).abs().reshape(*r.shape[:lead], -1).sum(-1)
    return total


# -- siamese augmentation ------------------------------------------------------------------------

class Siamese:
    """A sequence of sampled augmentations, one parameter set per class (group).

    The same object is applied to the real and the synthetic batch of a class, which is what
    makes the augmentation siamese. DSA uses one draw of ``ctx.augment``; IDC chains several
    (see ``ddtool.methods.idc``); DC uses none.
    """

    def __init__(self, parts: Sequence[tuple[Augmenter, Draw | GroupDraw]] = ()) -> None:
        self.parts = list(parts)

    @classmethod
    def sample(cls, augment: Augmenter, groups: int, size: int, device: torch.device) -> "Siamese":
        if not augment.enabled:
            return cls()
        return cls([(augment, augment.sample(groups, size, device, op_per_group=True))])

    def select(self, group: int) -> "Siamese":
        return Siamese([(a, d.select(group)) for a, d in self.parts])

    def apply(self, x: torch.Tensor, groups: torch.Tensor | None = None) -> torch.Tensor:
        for aug, draw in self.parts:
            x = aug.apply(x, draw, groups)
        return x


# -- per-class gradients and matching losses ---------------------------------------------------------

# False when a forward would update buffers (BatchNorm in training mode): vmap cannot batch that
vmap_safe = per_sample_forward


def _class_grads_loop(net: nn.Module, x: torch.Tensor, c: int, create_graph: bool,
                      forward: Forward = plain_forward) -> list[torch.Tensor]:
    params = [p for p in net.parameters()]
    y = torch.full((x.shape[0],), c, dtype=torch.long, device=x.device)
    loss = F.cross_entropy(forward(net, x), y)
    grads = torch.autograd.grad(loss, params, create_graph=create_graph)
    return list(grads) if create_graph else [g.detach() for g in grads]


def _class_grads_vmap(net: nn.Module, x: torch.Tensor, classes: torch.Tensor, w: torch.Tensor) -> list[torch.Tensor]:
    """Gradients of the per-class weighted mean CE: x is [K, n, ...], classes [K], w [K, n] (0 = padding).

    Results have a leading class axis; they stay differentiable with respect to x (this is
    how the synthetic images receive the matching loss's gradient).
    """
    from torch.func import functional_call, grad, vmap

    names = [n for n, _ in net.named_parameters()]
    params = {n: p.detach() for n, p in net.named_parameters()}
    buffers = dict(net.named_buffers())

    def class_loss(p: dict[str, torch.Tensor], xb: torch.Tensor, c: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
        out = functional_call(net, (p, buffers), (xb,))
        ce = F.cross_entropy(out, c.expand(xb.shape[0]), reduction="none")
        return (ce * wb).sum() / wb.sum()

    g = vmap(grad(class_loss), in_dims=(None, 0, 0, 0))(params, x, classes, w)
    return [g[n] for n in names]


def _pad_by_class(x: torch.Tensor, counts: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-blocked [sum(counts), ...] -> [C, max(counts), ...] plus weights (0 on padding)."""
    width = max(counts)
    if all(n == width for n in counts):
        return x.view(len(counts), width, *x.shape[1:]), x.new_ones(len(counts), width)
    out = x.new_zeros(len(counts), width, *x.shape[1:])
    w = x.new_zeros(len(counts), width)
    start = 0
    for c, n in enumerate(counts):
        out[c, :n] = x[start:start + n]
        w[c, :n] = 1
        start += n
    return out, w


def class_matching_losses(net: nn.Module, reals: Sequence[torch.Tensor], syns: Sequence[torch.Tensor],
                          siamese: Siamese, kind: str, *, include_linear: bool = True,
                          vectorized: bool = True, classes: Sequence[int] | None = None,
                          real_bf16: bool = False, real_compiled: bool = False) -> torch.Tensor:
    """The matching distance of every entry (a [K] tensor): entry i from reals[i] and syns[i].

    Entry i is class ``classes[i]`` (default: i) and uses group i of ``siamese``, so the real
    and the synthetic batch of a class get the same augmentation. ``reals``/``syns`` are
    un-augmented. The synthetic side keeps the graph to the images when they require grad.
    ``real_bf16`` computes the real side's gradients (targets, no graph) under bf16 autocast;
    ``real_compiled`` computes them with a torch.compile'd forward (per-class loop only: the
    synthetic side needs double backward, which compiled graphs do not have).
    """
    real_cast = torch.autocast(reals[0].device.type, dtype=torch.bfloat16, enabled=real_bf16)
    num = len(reals)
    labels = list(range(num)) if classes is None else list(classes)
    create_graph = any(s.requires_grad for s in syns)
    if not vectorized or not vmap_safe(net) or len({len(s) for s in syns}) != 1:
        out = []
        for i in range(num):
            si = siamese.select(i)
            with real_cast:
                g_real = _class_grads_loop(net, si.apply(reals[i]), labels[i], create_graph=False,
                                           forward=forward_fn(real_compiled))
            g_syn = _class_grads_loop(net, si.apply(syns[i]), labels[i], create_graph=create_graph)
            out.append(match_distance(g_real, g_syn, kind, include_linear=include_linear))
        return torch.stack(out)
    device = syns[0].device
    real_counts = [len(r) for r in reals]
    real_groups = torch.repeat_interleave(torch.arange(num, device=device), torch.tensor(real_counts, device=device))
    syn_groups = torch.arange(num, device=device).repeat_interleave(len(syns[0]))
    with torch.no_grad():
        xr = siamese.apply(torch.cat(list(reals)), real_groups)
    xr, wr = _pad_by_class(xr, real_counts)
    xs = siamese.apply(torch.cat(list(syns)), syn_groups).view(num, len(syns[0]), *syns[0].shape[1:])
    targets = torch.tensor(labels, device=device)
    with real_cast:
        g_real = [g.detach().float() for g in _class_grads_vmap(net, xr, targets, wr)]
    g_syn = _class_grads_vmap(net, xs, targets, xs.new_ones(num, xs.shape[1]))
    if not create_graph:
        g_syn = [g.detach() for g in g_syn]
    return match_distance(g_real, g_syn, kind, include_linear=include_linear, batched=True)


def synthetic_by_class(syn: SyntheticSet, num_classes: int, images: torch.Tensor | None = None,
                       max_size: int = 0) -> list[torch.Tensor]:
    """Decoded synthetic images per class; at most ``max_size`` of them (a random subset; 0 = all).

    ``images`` replaces ``syn.images`` (IDC evaluates at shifted images, see ``idc.py``).
    """
    from ddtool.synthetic import decode

    x, y = decode(syn.images if images is None else images, syn.labels, syn.factor)
    out = []
    for c in range(num_classes):
        xc = x[y == c]
        if max_size and len(xc) > max_size:
            xc = xc[torch.randperm(len(xc), device=xc.device)[:max_size]]
        out.append(xc)
    return out


# -- DC / DSA ------------------------------------------------------------------------------------

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

    def default_iterations(self, ipc: int) -> int:
        return 1000  # DC/DSA reference: --Iteration 1000

    def _opts(self, ctx: DistillContext) -> DCOptions:
        o = ctx.options if isinstance(ctx.options, DCOptions) else DCOptions()
        _check_kind(o.dist)
        return o

    def loops(self, ctx: DistillContext) -> tuple[int, int]:
        o = self._opts(ctx)
        inner, inner_net = dc_loops(ctx.cfg.ipc)
        return (o.inner or inner, o.inner_net or inner_net)

    def _siamese(self, ctx: DistillContext) -> Siamese:
        if not self.augmented:
            return Siamese()
        return Siamese.sample(ctx.augment, ctx.num_classes, ctx.data.resolution, ctx.device)

    def loss(self, ctx: DistillContext, syn: SyntheticSet, net: nn.Module) -> torch.Tensor:
        """Sum over classes of the gradient-matching distance (real batch of ``batch_real`` per class)."""
        o = self._opts(ctx)
        # randomness in a fixed order (real batches, then the augmentation draw) so that both
        # implementations see the same batches for the same seed
        reals = [ctx.real_class(c, ctx.cfg.batch_real) for c in range(ctx.num_classes)]
        syns = synthetic_by_class(syn, ctx.num_classes)
        siamese = self._siamese(ctx)
        return class_matching_losses(net, reals, syns, siamese, o.dist, vectorized=ctx.impl == "vectorized",
                                     real_bf16=ctx.cfg.precision == "bf16", real_compiled=ctx.cfg.compile).sum()

    def step(self, ctx: DistillContext, syn: SyntheticSet, opt: torch.optim.Optimizer, it: int) -> float:
        o = self._opts(ctx)
        inner, inner_net = self.loops(ctx)
        net = ctx.next_model(it)
        net.requires_grad_(True)  # its gradients are what is matched
        net.train()
        net_opt = torch.optim.SGD(net.parameters(), lr=o.lr_net, momentum=o.momentum_net)
        total = torch.zeros((), dtype=torch.float64, device=syn.images.device)  # one host sync per step
        for k in range(inner):
            _freeze_batchnorm(ctx, net)
            loss = self.loss(ctx, syn, net)
            opt.zero_grad(set_to_none=True)
            # only the images: the network's .grad stays clean for its own updates
            loss.backward(inputs=[syn.images])
            opt.step()
            total += loss.detach()
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
