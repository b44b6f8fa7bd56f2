from __future__ import annotations

import torch

from ddtool.context import DistillContext
from ddtool.methods.dm import DM
from ddtool.nets import NetSpec
from ddtool.perturb import NoPerturbation
from ddtool.recipe import DistillSection
from ddtool.selection.builtin import Scratch
from ddtool.synthetic import init_synthetic


def test_bf16_real_side_is_close_to_fp32_but_not_identical(digits) -> None:  # type: ignore[no-untyped-def]
    losses = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        ctx = DistillContext(data=digits, cfg=DistillSection(batch_real=64, precision=precision),
                             net_spec=NetSpec("convnet", {"width": 16}), device=torch.device("cpu"), iterations=1,
                             selection=Scratch(), schedule=NoPerturbation(), impl="vectorized")
        syn = init_synthetic(digits, 1, "real")
        syn.images.requires_grad_(True)
        loss = DM().loss(ctx, syn, ctx.fresh_net())
        loss.backward()
        losses[precision] = (float(loss.detach()), syn.images.grad.clone())
    (l32, g32), (l16, g16) = losses["fp32"], losses["bf16"]
    assert l16 != l32  # autocast really ran
    assert abs(l16 - l32) / l32 < 0.05
    assert torch.nn.functional.cosine_similarity(g16.flatten(), g32.flatten(), dim=0) > 0.99
