"""Built-in selection strategies: scratch, random (Acc-DD), weight_average (supp. Table 6), dynadistill (seed 003)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ddtool.context import DistillContext
from ddtool.errors import UsageError
from ddtool.hookspecs import RegisterSelection, hookimpl
from ddtool.pool import states_from_tensors, states_to_tensors
from ddtool.recipe import parse_section
from ddtool.selection.base import Segment, SelectionStrategy

NORMALIZE = ("none", "mean", "zscore")

__all__ = ["DynaDistill", "DynaDistillOptions", "RandomPool", "Scratch", "SelectionStrategy", "WeightAverage",
           "average_state"]


def _pool_of(ctx: DistillContext, who: str):  # type: ignore[no-untyped-def]
    if ctx.pool is None or len(ctx.pool) == 0:
        raise UsageError(f"selection '{who}' needs a model pool: set [distill] pool = \"pool/NAME\" or pass --pool")
    return ctx.pool


class Scratch(SelectionStrategy):
    name = "scratch"
    description = "a fresh network every outer loop (DC, DSA, IDC, DM); a uniform expert and start epoch (MTT)"
    draws_trajectories = True  # the contract's default select_segment: MTT's uniform draw

    def select(self, ctx: DistillContext, it: int) -> nn.Module:
        return ctx.fresh_net()


class RandomPool(SelectionStrategy):
    name = "random"
    description = "one pool model drawn uniformly every outer loop (Acc-DD)"
    needs_pool = True

    def select(self, ctx: DistillContext, it: int) -> nn.Module:
        pool = _pool_of(ctx, self.name)
        i = int(torch.randint(len(pool), (1,)).item())
        return ctx.net_from_state(pool.states[i])


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
        return ctx.net_from_state(self._avg)


@dataclass
class DynaDistillOptions:
    """``[distill.options.dynadistill]``: the strategy's own sub-table of the method options."""

    m: int = 3  # candidates drawn from the pool per outer loop (seed 003 Sec. 4.1: 3)
    t: float = 0.5  # temperature (seed 003 Sec. 4.1: 0.5)
    prefer: str = "high"  # high: p ~ exp(L/T) (Algorithm 1 line 11); low: p ~ exp(-L/T)
    # what L is in exp(L/T): none (the raw loss, the formula as written) | mean (L_i / mean_j L_j) | zscore
    # ((L_i - mean) / std over the candidates); see DynaDistill.normalized
    normalize: str = "none"
    shared_draw: bool = True  # score the m candidates on one real batch and augmentation draw (false: one each)
    write_back: bool = True  # the trained network replaces its pool entry (false: the pool stays as pretrained)


class DynaDistill(SelectionStrategy):
    """Feedback-based model selection (DynaDistill, seed 003, Algorithm 1).

    Every outer loop: draw ``m`` distinct models from the pool, compute the matching loss
    ``L_i`` of the current synthetic set under each (``ctx.method.loss``; all on one real batch
    and augmentation draw unless ``shared_draw = false``), and sample one with a temperature
    softmax over the losses. After the outer loop the network (as perturbed and
    trained inside the method's step) replaces its pool entry, so the pool advances with the
    distillation ("we update the trajectory pool with the latest models").

    ``write_back = false`` keeps the pool as pretrained: over a long run the write-back turns an
    early-stage pool into converged models, which Acc-DD (Fig. 5a) found worse to match on.

    The write-back happens only when the method trained the network during the loop (its
    ``trains_network`` attribute: DC, DSA and IDC do; DM never trains it). A network that was
    only perturbed is not a "later model": writing it back would make the pool a random walk of
    accumulated perturbations, so with DM the pool stays as loaded. For the same reason what is
    written back is the trained network *minus the perturbation* the schedule added this loop
    (``ctx.perturbation``): the pool entry advances by the training only. (DynaDistill itself
    has no perturbation; combined with Acc-DD's, writing the perturbed network back compounded
    an alpha-sized random step per loop and drove digits accuracy from 91 % to 43 %.)

    Which way the softmax points is ambiguous in the seed: Algorithm 1 line 11 writes
    ``Pr(L_i) = exp(L_i) / sum_j exp(L_j)`` (with temperature: exp(L_i / T)), i.e. the model
    under which the synthetic set is matched *worst* is the likeliest (``prefer = "high"``, the
    default, as written); the prose says models "that exhibit superior performance metrics
    are accorded a higher likelihood", which reads as the lowest loss being preferred
    (``prefer = "low"``: exp(-L_i / T)). With ``normalize = "none"`` (the default) losses are used
    raw, so their scale (which depends on the method and the distance) sets how peaked the choice
    is, exactly as in the formula: summed IDC losses of ~50 make T = 0.5 an argmax, MTT's
    normalised O(1) loss samples. ``"mean"`` and ``"zscore"`` (:meth:`normalized`) make T mean
    the same on every method, as the seed's "diverse trajectory selection" asks of it.

    Settings come from the sub-table named after the strategy inside ``[distill.options]``::

        [distill.options.dynadistill]
        m = 3
        t = 0.5
        prefer = "high"
        normalize = "none"

    The runtime hands that sub-table to ``configure`` and the rest to the method.

    Over expert trajectories (MTT, ``select_segment``) the same choice ranks segments instead of
    networks: ``m`` distinct experts, each with a start epoch drawn uniformly, scored by the
    method's trajectory-matching loss of the current synthetic set from there, one sampled with the
    same softmax. Experts are fixed recordings, so nothing is written back.
    """

    name = "dynadistill"
    description = ("DynaDistill: m pool models (or expert segments), one drawn with p ~ exp(L/T) of its "
                   "matching loss (seed 003)")
    needs_pool = True  # a model pool, unless the method matches trajectories (then those are the pool)
    keeps_trained = True  # the context keeps the loop's perturbation so after_step can take it out
    draws_trajectories = True
    options_type = DynaDistillOptions

    def __init__(self, m: int = 3, t: float = 0.5, prefer: str = "high") -> None:
        self.options = DynaDistillOptions(m, t, prefer)
        self._check(self.options)
        self._states: list[dict[str, torch.Tensor]] | None = None
        self._current: int | None = None
        self._placed = True  # False: _states came from a checkpoint and may be on another device
        self.last_losses: torch.Tensor | None = None  # the candidates' losses of the latest choice
        self.last_candidates: list[int] = []  # pool indices (model pools) of the latest candidates
        self.last_segments: list[Segment] = []  # the latest candidates over trajectories

    @property
    def scores_candidates(self) -> bool:  # type: ignore[override]
        return self.options.m > 1  # one candidate is a uniform draw: nothing is scored

    @staticmethod
    def _check(o: DynaDistillOptions) -> None:
        if o.m < 1:
            raise UsageError(f"dynadistill.m must be >= 1, got {o.m}")
        if not o.t > 0:
            raise UsageError(f"dynadistill.t must be > 0, got {o.t}")
        if o.prefer not in ("high", "low"):
            raise UsageError(f"dynadistill.prefer must be high or low, got {o.prefer!r}")
        if o.normalize not in NORMALIZE:
            raise UsageError(f"dynadistill.normalize must be {', '.join(NORMALIZE)}, got {o.normalize!r}")

    def configure(self, raw: dict[str, Any] | None) -> None:
        """Apply ``[distill.options.dynadistill]`` (unknown keys and wrong types are errors)."""
        o = parse_section("distill.options.dynadistill", DynaDistillOptions, raw or {})
        self._check(o)
        self.options = o

    def normalized(self, losses: torch.Tensor) -> torch.Tensor:
        """The candidates' losses as the softmax sees them (``normalize``), in float64:

        * ``none``: ``L_i`` (Algorithm 1 line 11 as written: the loss's own scale, which depends on
          the method, the distance and the dataset, sets how peaked the choice is);
        * ``mean``: ``L_i / mean_j L_j``, scale-free with the loss's sign kept (divided by
          ``|mean|``); a zero mean (every loss 0) leaves the losses as they are (all 0: uniform);
        * ``zscore``: ``(L_i - mean) / std`` over the m candidates (the population std, so the
          scores have unit variance); when the std is 0 (equal losses, or m = 1) every score is 0
          and the choice is uniform.

        With ``mean`` or ``zscore`` a temperature means the same on every method and dataset."""
        x = losses.double()
        kind = self.options.normalize
        if kind == "mean":
            mean = x.mean().abs()
            return x / mean if mean > 0 else x
        if kind == "zscore":
            std = x.std(correction=0) if len(x) > 1 else x.new_zeros(())
            return (x - x.mean()) / std if std > 0 else torch.zeros_like(x)
        return x

    def probabilities(self, losses: torch.Tensor) -> torch.Tensor:
        """The sampling distribution over candidates for their matching losses (Algorithm 1 line 11:
        softmax of ``normalized(L) / T``, negated for ``prefer = "low"``)."""
        sign = 1.0 if self.options.prefer == "high" else -1.0
        return torch.softmax(sign * self.normalized(losses) / self.options.t, dim=0)

    def choose(self, losses: torch.Tensor) -> int:
        """Index (into ``losses``) of the candidate sampled for these losses."""
        return int(torch.multinomial(self.probabilities(losses), 1).item())

    def _pool_states(self, ctx: DistillContext) -> list[dict[str, torch.Tensor]]:
        pool = _pool_of(ctx, self.name)
        if self._states is None:
            # a private copy (on the pool's device, where the context keeps it): the loaded artifact stays as it was
            self._states = [{k: v.clone() for k, v in sd.items()} for sd in pool.states]
        elif self._placed is False:
            # restored from a checkpoint (on the host): moved next to the pool once
            device = next(iter(pool.states[0].values())).device
            self._states = [{k: v.to(device) for k, v in sd.items()} for sd in self._states]
        self._placed = True
        return self._states

    def candidate_loss(self, ctx: DistillContext, net: nn.Module) -> float:
        syn = ctx.synthetic
        # detached images: the loss is a score here, no graph to the pixels is needed
        frozen = type(syn)(syn.images.detach(), syn.labels, syn.ipc, syn.factor)
        return float(ctx.method.loss(ctx, frozen, net).detach())

    def _scores(self, ctx: DistillContext, n: int, score: Callable[[int], float]) -> torch.Tensor:
        """``score(j)`` of the n candidates, in order, as a tensor."""
        losses = []
        where = ctx.synthetic.images.device if ctx.synthetic is not None else torch.device("cpu")
        devices = [where] if where.type == "cuda" else []
        for j in range(n):
            if self.options.shared_draw and j < n - 1:
                # every candidate is scored on the same random draw (real batch, augmentation, student
                # minibatches; the RNG state is put back after each), so the losses differ by the
                # candidate, not by sampling noise; the last one advances the RNG as a single scoring would
                with torch.random.fork_rng(devices=devices):
                    losses.append(score(j))
            else:
                losses.append(score(j))
        return torch.tensor(losses)

    def select_segment(self, ctx: DistillContext, it: int, starts: int,
                       score: Callable[[Segment], float]) -> Segment:
        """Algorithm 1 over a trajectory pool: ``m`` distinct experts with uniform start epochs,
        ranked by ``score`` (the method's matching loss from each), one sampled as :meth:`choose`.
        With fewer experts than ``m`` the experts are drawn with replacement, so that the
        candidates still differ by their start epochs (with a single expert the strategy used to
        score nothing and reduce to MTT's uniform draw)."""
        n = len(ctx.trajectories)  # type: ignore[arg-type]
        m = self.options.m
        experts = torch.randperm(n)[:m].tolist() if n >= m else torch.randint(n, (m,)).tolist()
        candidates = [Segment(e, int(s)) for e, s in zip(experts, torch.randint(starts, (m,)).tolist())]
        self.last_segments = candidates
        if m == 1:
            return candidates[0]
        self.last_losses = self._scores(ctx, m, lambda j: float(score(candidates[j])))
        return candidates[self.choose(self.last_losses)]

    def select(self, ctx: DistillContext, it: int) -> nn.Module:
        states = self._pool_states(ctx)
        m = min(self.options.m, len(states))
        candidates = torch.randperm(len(states))[:m].tolist()
        if m > 1 and ctx.synthetic is not None and ctx.method is not None:
            # building a network draws no random numbers (ctx.net_from_state), so all are built first
            nets = [ctx.net_from_state(states[i]) for i in candidates]
            self.last_losses = self._scores(ctx, m, lambda j: self.candidate_loss(ctx, nets[j]))
            k = self.choose(self.last_losses)
            chosen, net = candidates[k], nets[k]
        else:
            chosen = candidates[0]
            net = ctx.net_from_state(states[chosen])
        self.last_candidates = candidates
        self._current = chosen
        net.zero_grad(set_to_none=True)
        return net

    def after_step(self, ctx: DistillContext, it: int, net: nn.Module) -> None:
        if self._current is None or self._states is None:
            return
        if ctx.method is None or not ctx.method.trains_network or not self.options.write_back:
            # only perturbed (DM), or a fixed pool asked for: keep the entry, see the class docstring
            self._current = None
            return
        old = self._states[self._current]
        delta = ctx.perturbation or {}
        self._states[self._current] = {
            k: (v.detach() - delta[k] if k in delta else v.detach()).to(old[k].device).clone()
            for k, v in net.state_dict().items()}
        self._current = None

    def state(self) -> dict[str, torch.Tensor]:
        """The advanced pool (``m<i>.<param>``); empty until the first selection."""
        if self._states is None:
            return {}
        return states_to_tensors(self._states)

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore the advanced pool from ``state()`` (``ddtool distill --resume``)."""
        if not tensors:
            self._states = None  # not advanced yet: the pool is copied again at the first selection
            return
        self._states = [{k: v.clone() for k, v in sd.items()} for sd in states_from_tensors(tensors)]
        self._placed = False
        self._current = None


@hookimpl
def ddtool_register_selection_strategies(register: RegisterSelection) -> None:
    register(Scratch())
    register(RandomPool(), aliases=("uniform",))
    register(WeightAverage(), aliases=("wavg",))
    register(DynaDistill())
