"""The classification loss of a network on one batch, with CutMix (Yun et al. 2019) as an option.

Below the runtime because a matching method trains its network with it too (IDC's network
updates on real data) and methods do not import the runtime.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def cutmix(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """CutMix with lambda ~ Beta(1, 1) = U(0, 1): paste a box from a shuffled batch.

    Returns (x, y_a, y_b, lam) with lam the kept area fraction after clipping the box.
    """
    lam = float(torch.rand(()))
    perm = torch.randperm(x.shape[0], device=x.device)
    h, w = x.shape[-2:]
    cut = (1.0 - lam) ** 0.5
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = int(torch.randint(h, (1,))), int(torch.randint(w, (1,)))
    y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    x = x.clone()
    x[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
    lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
    return x, y, y[perm], lam


def batch_loss(net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
               cutmix_p: float = 0.0) -> torch.Tensor:
    """Cross-entropy of ``net`` (a module or any forward) on a batch; with probability ``cutmix_p``
    on a CutMix of it instead."""
    if cutmix_p > 0 and torch.rand(()).item() < cutmix_p:
        x, ya, yb, lam = cutmix(x, y)
        out = net(x)
        return lam * F.cross_entropy(out, ya) + (1 - lam) * F.cross_entropy(out, yb)
    return F.cross_entropy(net(x), y)
