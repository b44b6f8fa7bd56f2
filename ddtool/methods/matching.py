"""The per-class gradient matching shared by DC, DSA (``ddtool.methods.dc``) and IDC (``ddtool.methods.idc``).

For every class the cross-entropy gradient of a network's parameters on a real batch of the
class is compared with the gradient on the synthetic images of the class (``match_distance``),
both batches passed through the same sampled augmentation (``Siamese``).

The per-class gradients come either from the reference per-class Python loop or from one
batched call over classes (``vectorized=True``: ``torch.func.vmap`` of ``grad`` over the class
axis, so the weights' gradients stay per class). Both give the same loss and the same image
gradient; ``tests/methods/test_matching.py`` checks it.

With ``whole_compiled`` (IDC under ``distill.compile``) the per-class loop computes the synthetic
side's distance and its gradient with respect to the augmented images in one compiled function
(:func:`syn_distance_and_grad`: ``torch.func.grad`` of the distance of ``torch.func.grad``), so
the double backward is compiled as well; autograd then carries that gradient through the
augmentation to the stored images.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ddtool.augment import Augmenter, Draw, GroupDraw
from ddtool.compiled import Forward, compile_once, forward_fn, plain_forward
from ddtool.errors import UsageError
from ddtool.methods.base import per_sample_forward
from ddtool.synthetic import SyntheticSet, decode

DISTANCES = ("dc", "mse", "l1", "cos")
EPS = 1e-6  # as in the DC reference: 1 - <a, b> / (|a| |b| + 1e-6)


# -- distances -------------------------------------------------------------------------------

def check_distance(kind: str) -> None:
    """A UsageError unless ``kind`` is one of :data:`DISTANCES`."""
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
    check_distance(kind)
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


class ClassSiamese(Siamese):
    """One independently drawn single-group :class:`Siamese` per group: group i's augmentation
    drawn from class i's own stream (``ddtool.methods.sharding``), so it does not depend on which
    other classes are drawn with it."""

    def __init__(self, per_group: Sequence[Siamese]) -> None:
        super().__init__()
        self.per_group = list(per_group)

    def select(self, group: int) -> Siamese:
        return self.per_group[group].select(0)

    def apply(self, x: torch.Tensor, groups: torch.Tensor | None = None) -> torch.Tensor:
        if groups is None:
            raise ValueError("ClassSiamese.apply needs the group of every sample")
        parts, order = [], []
        for g, one in enumerate(self.per_group):
            rows = (groups == g).nonzero().flatten()
            if len(rows):
                parts.append(one.select(0).apply(x[rows]))
                order.append(rows)
        if len(parts) == 1:
            return parts[0]
        return torch.cat(parts)[torch.argsort(torch.cat(order))]


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


def syn_distance_and_grad(net: nn.Module, params: dict[str, torch.Tensor], g_real: Sequence[torch.Tensor],
                          x: torch.Tensor, label: torch.Tensor, kind: str,
                          include_linear: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The matching distance of the synthetic batch ``x`` of class ``label`` (a 0-d tensor) against
    ``g_real`` and its gradient with respect to ``x``: what ``_class_grads_loop(create_graph=True)``,
    :func:`match_distance` and a backward to ``x`` give, written with ``torch.func`` so that
    torch.compile traces the double backward into one graph with no autograd at its boundary
    (AOTAutograd cannot differentiate a compiled graph twice, but it need not here)."""
    from torch.func import functional_call, grad, grad_and_value

    names = list(params)

    def ce(p: dict[str, torch.Tensor], xb: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(net, p, (xb,)), label.expand(xb.shape[0]))

    def distance(xb: torch.Tensor) -> torch.Tensor:
        g = grad(ce)(params, xb)
        return match_distance(g_real, [g[n] for n in names], kind, include_linear=include_linear)

    gx, d = grad_and_value(distance)(x)
    return d, gx


_WHOLE: dict[str, Callable[..., Any]] = {}


def _compiled_syn_distance_and_grad(*args: Any) -> tuple[torch.Tensor, torch.Tensor]:
    # one compiled function per process, like compiled.forward_fn: every network of the run (its
    # parameters are graph inputs) and every class (the label is a tensor) reuse its graph
    if "syn" not in _WHOLE:
        _WHOLE["syn"] = compile_once(syn_distance_and_grad)
    return _WHOLE["syn"](*args)


class _WithGrad(torch.autograd.Function):
    """``value`` (computed apart) as a function of ``x`` whose gradient is ``grad``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, value: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(grad)
        return value.clone()

    @staticmethod
    def backward(ctx: Any, out: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (grad,) = ctx.saved_tensors
        return out * grad, None, None


def _syn_distance_compiled(net: nn.Module, g_real: Sequence[torch.Tensor], x: torch.Tensor, c: int, kind: str,
                           include_linear: bool) -> torch.Tensor:
    """The distance of class ``c``'s augmented synthetic batch ``x``, differentiable with respect
    to ``x`` (and through it to the images) by the compiled :func:`syn_distance_and_grad`."""
    params = {n: p.detach() for n, p in net.named_parameters()}
    label = torch.tensor(c, dtype=torch.long, device=x.device)
    d, gx = _compiled_syn_distance_and_grad(net, params, [g.detach() for g in g_real], x.detach(), label,
                                            kind, include_linear)
    return _WithGrad.apply(x, d, gx)


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
                          real_bf16: bool = False, real_compiled: bool = False,
                          whole_compiled: bool = False) -> torch.Tensor:
    """The matching distance of every entry (a [K] tensor): entry i from reals[i] and syns[i].

    Entry i is class ``classes[i]`` (default: i) and uses group i of ``siamese``, so the real
    and the synthetic batch of a class get the same augmentation. ``reals``/``syns`` are
    un-augmented. The synthetic side keeps the graph to the images when they require grad.
    ``real_bf16`` computes the real side's gradients (targets, no graph) under bf16 autocast;
    ``real_compiled`` computes them with a torch.compile'd forward (per-class loop only: the
    synthetic side needs double backward, which compiled graphs do not have). ``whole_compiled``
    compiles the synthetic side too, double backward included (:func:`syn_distance_and_grad`;
    per-class loop, networks without training-mode BatchNorm, and only where the images need
    the gradient: scoring stays first-order).
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
            if whole_compiled and create_graph and vmap_safe(net):
                out.append(_syn_distance_compiled(net, g_real, si.apply(syns[i]), labels[i], kind, include_linear))
                continue
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
    x, y = decode(syn.images if images is None else images, syn.labels, syn.factor)
    out = []
    for c in range(num_classes):
        xc = x[y == c]
        if max_size and len(xc) > max_size:
            xc = xc[torch.randperm(len(xc), device=xc.device)[:max_size]]
        out.append(xc)
    return out
