"""Train R networks of one architecture as one stacked ensemble (torch.func).

The R parameter sets are stacked along a new leading dimension and the forward is vmapped over
it, so one kernel launch serves every repeat. Each repeat keeps its own initialisation, data
order and augmentation draws; plain SGD with momentum and weight decay is element-wise, so
stepping the stacked tensors equals stepping each network alone.

Batch norm keeps running statistics in buffers that vmap cannot update in place, and CutMix
mixes within a batch: both take the looped path (``supports`` says which).
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state

from ddtool.augment import Augmenter
from ddtool.runtime.train import TrainSettings, lr_at


def supports(nets: list[nn.Module], settings: TrainSettings) -> bool:
    """Whether the stacked path computes the same thing as the loop for these nets."""
    if settings.cutmix > 0 or len(nets) < 2:
        return False
    kinds = {type(n) for n in nets}
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for n in nets for m in n.modules())
    return len(kinds) == 1 and not has_bn


class Stacked:
    """R copies of one architecture whose parameters live in stacked tensors."""

    def __init__(self, nets: list[nn.Module]) -> None:
        self.params, self.buffers = stack_module_state(nets)
        self.base = copy.deepcopy(nets[0]).to("meta")
        self.size = len(nets)

        def one(params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            return functional_call(self.base, (params, buffers), (x,))

        self._forward = torch.vmap(one, in_dims=(0, 0, 0))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: [R, B, C, H, W] -> logits [R, B, classes]."""
        return self._forward(self.params, self.buffers, x)

    def unstack(self, nets: list[nn.Module]) -> None:
        """Copy the trained stacked parameters back into the given modules."""
        with torch.no_grad():
            for r, net in enumerate(nets):
                for name, p in net.named_parameters():
                    p.copy_(self.params[name][r])


def train_stacked(nets: list[nn.Module], images: torch.Tensor, labels: torch.Tensor, settings: TrainSettings,
                  augment: Augmenter | None = None, on_epoch: Callable[[int, float], None] | None = None) -> float:
    """Like :func:`ddtool.runtime.train.train` for every net at once; updates ``nets`` in place."""
    model = Stacked(nets)
    opt = torch.optim.SGD(model.params.values(), lr=settings.lr, momentum=settings.momentum,
                          weight_decay=settings.weight_decay)
    r, n = model.size, images.shape[0]
    loss_value = float("nan")
    for epoch in range(settings.epochs):
        for group in opt.param_groups:
            group["lr"] = lr_at(settings, epoch)
        perms = torch.stack([torch.randperm(n, device=images.device) for _ in range(r)])
        total = torch.zeros((), dtype=torch.float64, device=images.device)  # one host sync per epoch
        seen = 0
        for start in range(0, n, settings.batch):
            idx = perms[:, start : start + settings.batch]  # [R, B]
            b = idx.shape[1]
            x = images[idx.reshape(-1)]
            if augment is not None and augment.enabled:
                x = augment(x)  # independent parameters per sample, hence per repeat
            logits = model(x.view(r, b, *x.shape[1:]))
            # the sum over repeats of each repeat's mean loss: every repeat gets its own gradient
            loss = F.cross_entropy(logits.reshape(r * b, -1), labels[idx.reshape(-1)], reduction="sum") / b
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach().double() * b / r
            seen += b
        loss_value = float(total) / max(seen, 1)
        if on_epoch is not None:
            on_epoch(epoch, loss_value)
    model.unstack(nets)
    return loss_value
