"""The interface every matching method implements (built-in or plugin).

The runtime owns the loop, progress, checkpoints and the artifact; a method owns one outer
iteration. Subclass :class:`MatchingMethod` and override what differs::

    class MyMethod(MatchingMethod):
        name = "mine"
        def step(self, ctx, syn, opt, it):
            loss = ...            # from ctx.real_batch(...), ctx.next_model(it), syn.images
            opt.zero_grad(); loss.backward(); opt.step()
            return float(loss)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ddtool.context import DistillContext
from ddtool.synthetic import SyntheticSet, init_synthetic


class MatchingMethod:
    name: str = ""
    description: str = ""
    iterative: bool = True  # False: the initial set is the result (coresets)
    factor: int = 1  # multi-formation factor of the stored images
    options_type: type | None = None  # dataclass for [distill.options]
    # True when ``step`` trains the outer loop's network (DC/DSA/IDC); False when the network is
    # only used as it was selected and perturbed (DM). DynaDistill writes a network back into its
    # pool only when it was trained, so perturbations alone do not accumulate in the pool.
    trains_network: bool = False

    def default_iterations(self, ipc: int) -> int:
        return 1000

    def init_synthetic(self, ctx: DistillContext) -> SyntheticSet:
        return init_synthetic(ctx.data, ctx.cfg.ipc, ctx.cfg.init, self.factor, ctx.device)

    def make_optimizer(self, ctx: DistillContext, syn: SyntheticSet) -> torch.optim.Optimizer:
        return torch.optim.SGD([syn.images], lr=ctx.cfg.lr_img, momentum=ctx.cfg.momentum_img)

    def loss(self, ctx: DistillContext, syn: SyntheticSet, net: torch.nn.Module) -> torch.Tensor:
        """The matching loss of ``syn`` under ``net`` (DynaDistill ranks models with it)."""
        raise NotImplementedError(f"method '{self.name}' has no matching loss")

    def step(self, ctx: DistillContext, syn: SyntheticSet, opt: torch.optim.Optimizer, it: int) -> float:
        net = ctx.next_model(it)
        loss = self.loss(ctx, syn, net)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ctx.selection.after_step(ctx, it, net)
        return float(loss.detach())

    def parse_options(self, raw: dict[str, Any]) -> Any:
        if self.options_type is None:
            if raw:
                from ddtool.errors import UsageError

                raise UsageError(f"method '{self.name}' takes no [distill.options] (got {sorted(raw)})")
            return None
        from ddtool.recipe import _build_section

        return _build_section("distill.options", self.options_type, raw)


def per_sample_forward(net: nn.Module) -> bool:
    """Whether the network's output for a sample is independent of the rest of its batch.

    False with a BatchNorm module in training mode: it normalises with batch statistics (and
    updates running buffers), so one forward over all classes differs from a forward per class,
    and ``torch.func.vmap`` cannot batch the buffer update. Instance/group norm and BatchNorm in
    eval mode (running statistics) are per sample.
    """
    return not any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in net.modules())


def default_impl(method_name: str, device: torch.device | str) -> str:
    """The implementation ``[distill] impl = "auto"`` resolves to: ``loop`` on CPU, ``vectorized`` on CUDA.

    On the 2-core benchmark CPU the batched paths were slower than the per-class loop (DM
    0.5-0.8x the loop's speed; DC, DSA and IDC likewise), because a CPU gains nothing from
    fewer, larger kernel launches. On CUDA the batched paths are the point (many tiny per-class
    kernels otherwise); that choice is not yet measured on a GPU. ``method_name`` is accepted so
    a per-method choice can be made once measured; every method takes the same default today.
    """
    return "vectorized" if torch.device(device).type == "cuda" else "loop"
