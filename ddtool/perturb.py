"""Filter-normalised parameter perturbation (Acc-DD, Eq. 2-3) and its schedules.

For every parameter with more than one dimension, a random direction d ~ N(0, I) is drawn and
each filter d_{l,j} (a slice along the output dimension) is rescaled to the norm of the
matching filter of the weights: d_{l,j} <- d_{l,j} / (||d_{l,j}||_F + eps) * ||theta_{l,j}||_F.
Then theta <- theta + alpha * d. One-dimensional parameters (biases, norm affine) are left alone.
"""

from __future__ import annotations

import math
from typing import Protocol, Sequence

import torch
from torch import nn

from ddtool.errors import UsageError
from ddtool.markers import hookimpl
from ddtool.recipe import DistillSection

EPS = 1e-10


class PerturbationSchedule:
    """The contract of a perturbation schedule (``ddtool.api.PerturbationSchedule``): what happens
    to the selected network before the method sees it. Every member has a default except
    ``name`` and ``perturb``."""

    name: str = ""  # the registry name: [distill] schedule = "NAME"
    description: str = ""  # one line for 'ddtool plugins'
    # False for a schedule that leaves every network as it is ("none"): the context then skips it
    # (no copy of the network to measure what it added), and trajectory matching accepts it
    perturbs: bool = True

    def check(self, cfg: DistillSection) -> None:
        """Refuse, in one line (``UsageError``) before any work, ``[distill]`` settings the schedule
        would silently ignore. The default accepts every setting."""

    def perturb(self, net: nn.Module, it: int, total: int, cfg: DistillSection) -> None:
        """Change ``net`` in place for outer loop ``it`` of ``total``; ``cfg`` is the recipe's
        [distill] (``alpha``, ``alpha_decay``). Draw from the global RNG (a resumed run replays it)."""
        raise NotImplementedError(f"schedule '{self.name}' does not implement perturb")


def filter_normalized_direction(param: torch.Tensor) -> torch.Tensor:
    d = torch.randn_like(param)
    dims = tuple(range(1, param.dim()))
    norm = torch.linalg.vector_norm
    scale = norm(param, dim=dims, keepdim=True) / (norm(d, dim=dims, keepdim=True) + EPS)
    return d * scale


def decay_factor(kind: str, it: int, total: int) -> float:
    if kind == "constant" or total <= 1:
        return 1.0
    t = it / (total - 1)
    if kind == "linear":
        return 1.0 - t
    return 0.5 * (1.0 + math.cos(math.pi * t))  # cosine


class NoPerturbation(PerturbationSchedule):
    name = "none"
    description = "use the selected network as it is"
    perturbs = False

    def perturb(self, net: nn.Module, it: int, total: int, cfg: DistillSection) -> None:
        return None


class Gaussian(PerturbationSchedule):
    name = "gaussian"
    description = "theta + alpha * d, d filter-normalised Gaussian (Acc-DD Eq. 2-3; alpha=1 on CIFAR)"

    @torch.no_grad()
    def perturb(self, net: nn.Module, it: int, total: int, cfg: DistillSection) -> None:
        alpha = cfg.alpha * decay_factor(cfg.alpha_decay, it, total)
        if alpha == 0:
            return
        for p in net.parameters():
            if p.dim() > 1:
                p.add_(filter_normalized_direction(p), alpha=alpha)


class TwoDirection(PerturbationSchedule):
    """The released Acc-DD code's perturbation (not in the paper): two filter-normalised directions,
    each with a magnitude drawn from +-U(0.01, 0.09).

    It has no ``alpha``: the paper's alpha is the magnitude of its one Gaussian direction (Eq. 2,
    ``gaussian``), and the released code draws its own. Scaling these magnitudes by alpha would run
    a third scheme that neither the paper nor the code has, so a non-default ``distill.alpha`` is
    refused rather than ignored (``alpha_decay`` still scales both, as a schedule)."""

    name = "two_direction"
    description = "released Acc-DD code: two filter-normalised directions, magnitudes +-U(0.01, 0.09)"
    low, high = 0.01, 0.09

    def check(self, cfg: DistillSection) -> None:
        if cfg.alpha != DistillSection.alpha:
            raise UsageError(
                f"schedule 'two_direction' (the released Acc-DD code) draws its own magnitudes, +-U({self.low}, "
                f"{self.high}), and ignores distill.alpha (got {cfg.alpha}): leave distill.alpha at "
                f"{DistillSection.alpha}, or use schedule = \"gaussian\" (Acc-DD Eq. 2-3), whose magnitude it is")

    @torch.no_grad()
    def perturb(self, net: nn.Module, it: int, total: int, cfg: DistillSection) -> None:
        decay = decay_factor(cfg.alpha_decay, it, total)
        mags = []
        for _ in range(2):
            m = self.low + (self.high - self.low) * torch.rand(()).item()
            mags.append(m if torch.rand(()).item() < 0.5 else -m)
        for p in net.parameters():
            if p.dim() > 1:
                d = mags[0] * filter_normalized_direction(p) + mags[1] * filter_normalized_direction(p)
                p.add_(d, alpha=decay)


@hookimpl
def ddtool_register_perturbation_schedules(register: RegisterSchedule) -> None:
    register(NoPerturbation())
    register(Gaussian())
    register(TwoDirection(), aliases=("two-direction",))


class RegisterSchedule(Protocol):
    """What a ``ddtool_register_perturbation_schedules`` hook is handed (:mod:`ddtool.hookspecs`)."""

    def __call__(self, schedule: PerturbationSchedule, /, aliases: Sequence[str] = ()) -> None: ...
