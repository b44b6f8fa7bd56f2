"""Pixel-space linear-kernel MMD (DM paper, appendix Table T6), registered as a ddtool plugin."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ddtool.hookspecs import hookimpl
from ddtool.methods.base import MatchingMethod
from ddtool.methods.dm import class_means

__version__ = "0.1.0"


@dataclass
class Options:
    kernel: str = "linear"


class PixelMMD(MatchingMethod):
    name = "pixelmmd"
    description = "linear-kernel MMD in pixel space: match per-class mean images (DM appendix T6)"
    options_type = Options

    def default_iterations(self, ipc: int) -> int:
        return 1000

    def loss(self, ctx, syn, net=None):  # type: ignore[no-untyped-def, override]
        if ctx.options.kernel != "linear":
            from ddtool.errors import UsageError

            raise UsageError("pixelmmd supports kernel = 'linear' only")
        x_real, y_real = ctx.real_batch(ctx.cfg.batch_real)
        x_syn, y_syn = syn.decoded()
        # linear kernel: MMD^2 = ||mean(phi(real)) - mean(phi(syn))||^2 with phi the identity
        mr = class_means(x_real.flatten(1), y_real, ctx.num_classes)
        ms = class_means(x_syn.flatten(1), y_syn, ctx.num_classes)
        return ((mr - ms) ** 2).sum()

    def step(self, ctx, syn, opt, it):  # type: ignore[no-untyped-def, override]
        loss = self.loss(ctx, syn)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())


@hookimpl
def ddtool_register_matching_methods(register):  # type: ignore[no-untyped-def]
    register(PixelMMD(), aliases=("mmd",))
