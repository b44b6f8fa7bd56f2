"""Plain supervised training and testing, shared by pretraining and evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Protocol

import torch
from torch import nn

from ddtool.nets.losses import batch_loss


def resolve_device(device: str) -> torch.device:
    from ddtool.errors import UsageError

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device != "cuda" and not device.startswith("cuda:"):
        raise UsageError(f"unknown device '{device}'; use auto, cpu, cuda or cuda:N")
    index = device.partition(":")[2]
    if device.startswith("cuda:") and not index.isdigit():
        raise UsageError(f"unknown device '{device}'; use auto, cpu, cuda or cuda:N (N a GPU number, e.g. cuda:0)")
    if not torch.cuda.is_available():
        raise UsageError(f"--device {device} asked for, but no CUDA device is available; use --device cpu")
    if index and int(index) >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise UsageError(f"--device {device}: there {'is' if count == 1 else 'are'} only {count} CUDA "
                         f"device{'' if count == 1 else 's'} (cuda:0{f'..cuda:{count - 1}' if count > 1 else ''})")
    return torch.device(device)


@dataclass
class TrainSettings:
    epochs: int
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch: int = 256
    # fractions of the epochs where the lr is multiplied by ``gamma``; Fractions, so that
    # 2/3 of 300 epochs is epoch 200 exactly as the reference's integer ``2 * epochs // 3``
    milestones: tuple[Fraction, ...] = (Fraction(1, 2),)
    gamma: float = 0.1
    cutmix: float = 0.0  # probability of CutMix per batch (IDC's evaluation)
    temperature: float = 1.0  # of the student's logits when the labels are soft targets ([N, classes] floats)
    optimizer: str = "sgd"  # sgd (lr, momentum, weight_decay) | adamw (lr, weight_decay; NCFM's evaluation)


class BatchAugment(Protocol):
    """What training applies to each batch: an :class:`~ddtool.augment.Augmenter` or a
    :class:`~ddtool.augment.DiffAugChain`."""

    @property
    def enabled(self) -> bool: ...

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


def milestone_epochs(settings: TrainSettings) -> list[int]:
    """The 0-based epochs from which each lr drop applies: ``floor(epochs * m)`` in exact arithmetic."""
    return [int(settings.epochs * Fraction(m)) for m in settings.milestones]


def lr_at(settings: TrainSettings, epoch: int) -> float:
    """MultiStepLR stepped once per epoch: ``lr * gamma ** (milestones reached by this epoch)``."""
    drops = sum(epoch >= e for e in milestone_epochs(settings))
    return settings.lr * (settings.gamma**drops)


def make_optimizer(net: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    """The optimizer ``settings.optimizer`` names over the net's parameters."""
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    if settings.optimizer != "sgd":
        raise ValueError(f"unknown optimizer '{settings.optimizer}' (sgd or adamw)")
    return torch.optim.SGD(net.parameters(), lr=settings.lr, momentum=settings.momentum,
                           weight_decay=settings.weight_decay)


def train(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, settings: TrainSettings,
          augment: BatchAugment | None = None, on_epoch: Callable[[int, float], None] | None = None,
          forward: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None) -> float:
    """SGD (or ``settings.optimizer``) on (images, labels), both already on the net's device; returns
    the last epoch's loss.

    ``forward(net, x)`` replaces ``net(x)`` (a compiled forward: ``ddtool.compiled.forward_fn``).

    ``labels`` int64 class indices: cross-entropy. Float [N, classes] probabilities (soft labels):
    ``T² · CE(targets, softmax(net(x) / T))``, T = ``settings.temperature`` — Hinton's KD loss up
    to the targets' entropy, a constant, so the gradients are the KL's; at T = 1 on one-hot
    targets it is the hard-label loss exactly."""
    opt = make_optimizer(net, settings)
    net.train()
    n = images.shape[0]
    loss_value = float("nan")
    model: Callable[[torch.Tensor], torch.Tensor] = net if forward is None else (lambda z: forward(net, z))
    for epoch in range(settings.epochs):
        for group in opt.param_groups:
            group["lr"] = lr_at(settings, epoch)
        perm = torch.randperm(n, device=images.device)
        # summed on the device (in float64, as Python floats were): one host sync per epoch, not per batch
        total = torch.zeros((), dtype=torch.float64, device=images.device)
        seen = 0
        for start in range(0, n, settings.batch):
            idx = perm[start : start + settings.batch]
            x, y = images[idx], labels[idx]
            if augment is not None and augment.enabled:
                x = augment(x)
            if labels.is_floating_point():
                t = settings.temperature
                loss = t * t * batch_loss(lambda z: model(z) / t, x, y, settings.cutmix)
            else:
                loss = batch_loss(model, x, y, settings.cutmix)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach().double() * len(idx)
            seen += len(idx)
        loss_value = float(total) / max(seen, 1)
        if on_epoch is not None:
            on_epoch(epoch, loss_value)
    return loss_value


@torch.no_grad()
def accuracy(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, normalize: Callable[[torch.Tensor], torch.Tensor],
             batch: int = 1024, on_batch: Callable[[int], None] | None = None) -> float:
    """Top-1 accuracy on uint8 images (normalised batch by batch to keep memory flat).
    ``on_batch(n)`` is told after each batch of ``n`` images (progress over a large test set)."""
    net.eval()
    correct = 0
    device = next(net.parameters()).device
    for start in range(0, images.shape[0], batch):
        x = normalize(images[start : start + batch].to(device))
        correct += int((net(x).argmax(1) == labels[start : start + batch].to(device)).sum())
        if on_batch is not None:
            on_batch(int(x.shape[0]))
    net.train()
    return correct / max(images.shape[0], 1)
