"""Train R networks of one architecture as one stacked ensemble (torch.func).

The R parameter sets are stacked along a new leading dimension and the forward is vmapped over
it, so one kernel launch serves every repeat. Each repeat keeps its own initialisation, data
order and augmentation draws; plain SGD with momentum and weight decay is element-wise, so
stepping the stacked tensors equals stepping each network alone. The step is written out
(torch's SGD takes one scalar lr per group) so that every member can have its own learning rate
and its own augmentation on/off: the pool of ``pretrain`` varies both across models.

Batch norm keeps running statistics in buffers that vmap cannot update in place, and CutMix
mixes within a batch: both take the looped path (``supports`` says which).
"""

from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state

from ddtool.runtime.supervised import BatchAugment, TrainSettings, lr_at


def supports(nets: list[nn.Module], settings: TrainSettings) -> bool:
    """Whether the stacked path computes the same thing as the loop for these nets."""
    if settings.cutmix > 0 or len(nets) < 2 or settings.optimizer != "sgd":
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


def _sgd_step(params: list[torch.Tensor], bufs: list[torch.Tensor | None], lr: torch.Tensor, momentum: float,
              weight_decay: float) -> None:
    """torch.optim.SGD's update (no dampening, no Nesterov) with lr a [R] tensor, one per member."""
    with torch.no_grad():
        for i, p in enumerate(params):
            d = p.grad if weight_decay == 0 else p.grad.add(p, alpha=weight_decay)  # type: ignore[union-attr]
            if momentum:
                buf = bufs[i]
                if buf is None:
                    bufs[i] = buf = d.clone()
                else:
                    buf.mul_(momentum).add_(d)
                d = buf
            p.sub_(lr.view(-1, *([1] * (p.dim() - 1))) * d)


def train_stacked(nets: list[nn.Module], images: torch.Tensor, labels: torch.Tensor, settings: TrainSettings,
                  augment: BatchAugment | None = None, on_epoch: Callable[[int, float], None] | None = None,
                  lr_scale: Sequence[float] | None = None, augmented: Sequence[bool] | None = None) -> list[float]:
    """Like :func:`ddtool.runtime.supervised.train` for every net at once; updates ``nets`` in place.

    ``lr_scale[r]`` multiplies member r's learning rate (default 1); ``augmented[r] = False``
    trains member r on un-augmented batches (default: every member uses ``augment``).
    Returns each member's mean loss over the last epoch; ``on_epoch`` gets the mean over members.
    """
    model = Stacked(nets)
    params = list(model.params.values())
    bufs: list[torch.Tensor | None] = [None] * len(params)
    r, n = model.size, images.shape[0]
    scale = torch.tensor(list(lr_scale) if lr_scale is not None else [1.0] * r, device=images.device)
    aug_rows = torch.tensor(list(augmented) if augmented is not None else [True] * r, device=images.device)
    use_augment = augment is not None and augment.enabled and bool(aug_rows.any())
    losses = [float("nan")] * r
    for epoch in range(settings.epochs):
        lr = scale * lr_at(settings, epoch)
        perms = torch.stack([torch.randperm(n, device=images.device) for _ in range(r)])
        total = torch.zeros(r, dtype=torch.float64, device=images.device)  # one host sync per epoch
        seen = 0
        for start in range(0, n, settings.batch):
            idx = perms[:, start : start + settings.batch]  # [R, B]
            b = idx.shape[1]
            x = images[idx.reshape(-1)].view(r, b, *images.shape[1:])
            if use_augment:
                if bool(aug_rows.all()):
                    x = augment(x.flatten(0, 1)).view_as(x)  # type: ignore[misc]  # per-sample draws
                else:
                    x = x.clone()
                    x[aug_rows] = augment(x[aug_rows].flatten(0, 1)).view_as(x[aug_rows])  # type: ignore[misc]
            logits = model(x)
            # the sum over repeats of each repeat's mean loss: every repeat gets its own gradient
            per = F.cross_entropy(logits.reshape(r * b, -1), labels[idx.reshape(-1)], reduction="none").view(r, b)
            loss = per.sum() / b
            for p in params:
                p.grad = None
            loss.backward()
            _sgd_step(params, bufs, lr, settings.momentum, settings.weight_decay)
            total += per.detach().double().sum(1)
            seen += b
        losses = (total / max(seen, 1)).tolist()
        if on_epoch is not None:
            on_epoch(epoch, sum(losses) / r)
    model.unstack(nets)
    return losses
