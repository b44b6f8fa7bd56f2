"""Built-in selection strategies: scratch, random (Acc-DD), weight_average (supp. Table 6)."""

from __future__ import annotations

import torch
from torch import nn

from ddtool.context import DistillContext
from ddtool.errors import UsageError
from ddtool.hookspecs import hookimpl


class SelectionStrategy:
    name: str = ""
    description: str = ""
    needs_pool: bool = False

    def select(self, ctx: DistillContext, it: int) -> nn.Module:
        raise NotImplementedError

    def after_step(self, ctx: DistillContext, it: int, net: nn.Module) -> None:
        """Called with the network of the outer loop once the loop is done."""

    def state(self) -> dict[str, torch.Tensor]:
        """Tensors to checkpoint so a resumed run continues identically."""
        return {}


def _pool_of(ctx: DistillContext, who: str):  # type: ignore[no-untyped-def]
    if ctx.pool is None or len(ctx.pool) == 0:
        raise UsageError(f"selection '{who}' needs a model pool: set [distill] pool = \"pool/NAME\" or pass --pool")
    return ctx.pool


class Scratch(SelectionStrategy):
    name = "scratch"
    description = "a freshly initialised network every outer loop (DC, DSA, IDC, DM)"

    def select(self, ctx: DistillContext, it: int) -> nn.Module:
        return ctx.fresh_net()


class RandomPool(SelectionStrategy):
    name = "random"
    description = "one pool model drawn uniformly every outer loop (Acc-DD)"
    needs_pool = True

    def select(self, ctx: DistillContext, it: int) -> nn.Module:
        pool = _pool_of(ctx, self.name)
        i = int(torch.randint(len(pool), (1,)).item())
        net = ctx.fresh_net()
        net.load_state_dict(pool.states[i])
        return net


def average_state(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise mean of floating tensors; integer buffers (BN counters) from the first."""
    out = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            out[key] = torch.stack([s[key] for s in states]).mean(0)
        else:
            out[key] = first.clone()
    return out


class WeightAverage(SelectionStrategy):
    name = "weight_average"
    description = "the element-wise average of the pool's weights (Acc-DD supp. Table 6)"
    needs_pool = True

    def __init__(self) -> None:
        self._avg: dict[str, torch.Tensor] | None = None

    def select(self, ctx: DistillContext, it: int) -> nn.Module:
        pool = _pool_of(ctx, self.name)
        if self._avg is None:
            self._avg = average_state(pool.states)
        net = ctx.fresh_net()
        net.load_state_dict(self._avg)
        return net


@hookimpl
def ddtool_register_selection_strategies(register) -> None:  # type: ignore[no-untyped-def]
    register(Scratch())
    register(RandomPool(), aliases=("uniform",))
    register(WeightAverage(), aliases=("wavg",))
