"""Pixel-space linear-kernel MMD (DM paper, appendix Table T6), registered as a ddtool plugin.

It imports only ddtool's public API (``ddtool.api``, also importable as ``ddtool``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ddtool.api import (
    DistillContext,
    MatchingMethod,
    RegisterMethod,
    SyntheticSet,
    UsageError,
    class_means,
    hookimpl,
)

__version__ = "0.1.0"


@dataclass
class Options:
    kernel: str = "linear"


class PixelMMD(MatchingMethod):
    name = "pixelmmd"
    description = "linear-kernel MMD in pixel space: match per-class mean images (DM appendix T6)"
    options_type = Options
    uses_network = False  # no network: neither the selection strategy nor the schedule is asked for one

    def default_iterations(self, ipc: int) -> int:
        return 1000

    def loss(self, ctx: DistillContext, syn: SyntheticSet, net: torch.nn.Module | None = None) -> torch.Tensor:
        if ctx.options.kernel != "linear":
            raise UsageError("pixelmmd supports kernel = 'linear' only")
        x_real, y_real = ctx.real_batch(ctx.cfg.batch_real)
        x_syn, y_syn = syn.decoded()
        # linear kernel: MMD^2 = ||mean(phi(real)) - mean(phi(syn))||^2 with phi the identity
        mr = class_means(x_real.flatten(1), y_real, ctx.num_classes)
        ms = class_means(x_syn.flatten(1), y_syn, ctx.num_classes)
        return ((mr - ms) ** 2).sum()


@hookimpl
def ddtool_register_matching_methods(register: RegisterMethod) -> None:
    register(PixelMMD(), aliases=("mmd",))
