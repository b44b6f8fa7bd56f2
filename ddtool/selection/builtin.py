"""Built-in selection strategies: scratch, random (Acc-DD), weight_average (supp. Table 6), dynadistill (seed 003)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ddtool.context import DistillContext
from ddtool.errors import UsageError
from ddtool.hookspecs import RegisterSelection, hookimpl
from ddtool.methods.sharding import rng_state, seed_rng, set_rng_state, stream_seed
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

    m: int = 3  # distinct candidates per outer loop, pool models or expert segments (seed 003 Sec. 4.1: 3)
    t: float = 0.5  # temperature (seed 003 Sec. 4.1: 0.5)
    prefer: str = "high"  # high: p ~ exp(L/T) (Algorithm 1 line 11); low: p ~ exp(-L/T)
    # what L is in exp(L/T): none (the raw loss, the formula as written) | mean (L_i / mean_j L_j) | zscore
    # ((L_i - mean) / std over the candidates); see DynaDistill.normalized
    normalize: str = "none"
    shared_draw: bool = True  # score the m candidates on one real batch and augmentation draw (false: one each)
    # false (the default): the pool stays as pretrained; true: the trained network replaces its pool entry, as
    # Algorithm 1 writes it. Default by measurement (issue 23, docs/benchmarks/2026-12-07-digits-methods.md):
    # with the write-back the highest-loss model is the most trained one, is chosen again and trained further
    write_back: bool = False


class DynaDistill(SelectionStrategy):
    """Feedback-based model selection (DynaDistill, seed 003, Algorithm 1).

    Every outer loop (the algorithm's lines 7-12):

    * **candidates** (line 7): ``m`` distinct models drawn from the pool, each perturbed by the
      run's schedule with its own draw, so it is scored as the network the method will use;
    * **scores** (lines 8-10): ``L_i``, the matching loss of the current synthetic set under each
      (``ctx.method.score``: the loss the outer loop's first update takes, without a graph to the
      images), all on one real batch, augmentation draw and student minibatches unless
      ``shared_draw = false``;
    * **choice** (line 11): one candidate sampled with a temperature softmax over the scores;
    * **update** (line 12): the chosen network is returned as scored (the same perturbation tensor)
      and the run's RNG is left where its scoring started, so the method's first update redraws
      exactly the real batch, augmentation and minibatches that produced the sampled ``L_i`` and
      descends that very loss (:meth:`_rank`). Scoring and the update are ``m + 1`` loss
      evaluations, only the update's with a graph. A method whose step cannot replay its score
      (``MatchingMethod.replays_score``: DREAM+'s warm-up trains the network after the choice)
      updates with fresh draws, as before.

    With ``write_back = true`` the network (as trained inside the method's step) replaces its pool
    entry after the outer loop, so the pool advances with the distillation ("we update the
    trajectory pool with the latest models"). The default, ``false``, keeps the pool as
    pretrained: with the write-back and ``prefer = "high"`` the trained model's matching loss
    grows, so it is chosen again and trained further — on digits (IDC, 40 outer loops, ipc 1)
    the chosen model's score rose from ~250 to ~1200 and the set made 60.9-67.7 % over three
    distillation seeds against 87.9-89.4 % with random selection, while a fixed pool was level with
    random selection; and Acc-DD
    (Fig. 5a) found trained models worse to match on.

    The write-back happens only when the method trained the network during the loop (its
    ``trains_network`` attribute: DC, DSA and IDC do; DM never trains it). A network that was
    only perturbed is not a "later model": writing it back would make the pool a random walk of
    accumulated perturbations, so with DM the pool stays as loaded. For the same reason what is
    written back is the trained network *minus the perturbation* the schedule added this loop
    (``ctx.perturbation``, the chosen candidate's): the pool entry advances by the training only.
    (DynaDistill itself has no perturbation; combined with Acc-DD's, writing the perturbed network
    back compounded an alpha-sized random step per loop and drove digits accuracy from 91 % to 43 %.)

    **m larger than what there is** (one rule for pools and trajectories): the candidates are ``m``
    *distinct* candidates, as many as there are when there are fewer, said in one line before the
    run (:meth:`plan_note`). Over a pool a candidate is a model (drawn twice it would be scored
    twice and be the same network), so ``m`` stops at the pool's size. Over trajectories a
    candidate is a segment, an expert at a start epoch: distinct experts first (the paper's "M
    trajectories"), and with fewer experts than ``m`` further, unused start epochs of the same
    experts, so one expert still gives ``m`` candidates that differ by where they start.

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

    The runtime hands that sub-table to ``configure`` and the rest to the method. Every outer loop's
    candidates, scores, probabilities and choice go to the run record (:meth:`log`;
    ``ddtool inspect RUN_ID`` summarises them).

    Over expert trajectories (MTT, ``select_segment``) the same choice ranks segments instead of
    networks, scored by the method's trajectory-matching loss of the current synthetic set from
    each, and the update replays the chosen segment's score the same way. Experts are fixed
    recordings, so nothing is written back.
    """

    name = "dynadistill"
    description = ("DynaDistill: m pool models (or expert segments), one drawn with p ~ exp(L/T) of its "
                   "matching loss (seed 003)")
    needs_pool = True  # a model pool, unless the method matches trajectories (then those are the pool)
    keeps_trained = True  # the context keeps the loop's perturbation so after_step can take it out
    draws_trajectories = True
    perturbs_candidates = True  # each candidate is scored perturbed, as the method will use it
    options_type = DynaDistillOptions

    def __init__(self, m: int = 3, t: float = 0.5, prefer: str = "high") -> None:
        self.options = DynaDistillOptions(m, t, prefer)
        self._check(self.options)
        self._states: list[dict[str, torch.Tensor]] | None = None
        self._current: int | None = None
        self._placed = True  # False: _states came from a checkpoint and may be on another device
        self.last_losses: torch.Tensor | None = None  # the candidates' scores of the latest choice (None: unscored)
        self.last_candidates: list[int] = []  # pool indices (model pools) of the latest candidates
        self.last_segments: list[Segment] = []  # the latest candidates over trajectories
        self._entry: dict[str, Any] | None = None  # the latest outer loop's choice, for the run record

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

    def plan_note(self, pool_size: int | None, experts: int | None, starts: int | None) -> str | None:
        """The line saying how ``m`` meets what the run has, when it exceeds the experts or the pool
        (the rule is in the class docstring)."""
        m = self.options.m
        if experts is not None:
            if experts >= m:
                return None
            segments = experts * (starts or 1)
            if segments < m:
                return (f"dynadistill.m = {m}, but {experts} expert(s) x {starts} start epoch(s) make only "
                        f"{segments} distinct segments: {segments} candidates per iteration")
            return (f"dynadistill.m = {m} with {experts} expert(s): the {m} candidates are distinct (expert, start "
                    "epoch) segments, experts repeated at other start epochs")
        if pool_size is not None and pool_size < m:
            return (f"dynadistill.m = {m}, but the pool has {pool_size} model(s): {pool_size} distinct candidates "
                    "per outer loop (a model drawn twice would be the same candidate)")
        return None

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

    def choose(self, losses: torch.Tensor, u: float | None = None) -> int:
        """Index (into ``losses``) of the candidate sampled for these losses: the first whose
        cumulative probability exceeds ``u`` ~ U(0, 1) (drawn here unless given)."""
        p = self.probabilities(losses)
        if u is None:
            u = float(torch.rand((), dtype=torch.float64))
        k = int(torch.searchsorted(torch.cumsum(p, 0), torch.tensor([u], dtype=p.dtype), right=True))
        return min(k, len(p) - 1)  # u above a cumulative sum rounded below 1

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
        """``L_i`` of one candidate network: the method's score of the current set under it."""
        return float(ctx.method.score(ctx, ctx.synthetic, net))  # type: ignore[union-attr, arg-type]

    def _rank(self, ctx: DistillContext, n: int, score: Callable[[int], float], replay: Callable[[int], bool]) -> int:
        """Score the ``n`` candidates (Algorithm 1 lines 8-10), sample one (line 11) and set the RNG
        for the update (line 12); returns the chosen index.

        Candidate j is scored in a random stream of its own, seeded from one key drawn on the run's
        stream (``shared_draw``: every candidate in the same stream, so the scores differ by the
        candidate, not by sampling noise). The choice's uniform number is drawn before any score.
        When ``replay(k)`` (the method's update replays its score), the run's RNG is left at the
        start of the chosen candidate's stream: the update redraws exactly what produced ``L_k``.
        Otherwise it is put back where it was before the scoring, as if nothing had been scored."""
        where = _device_of(ctx)
        key = int(torch.randint(0, 2**62, (1,)).item())
        u = float(torch.rand((), dtype=torch.float64))
        before = rng_state(where)
        scores = []
        for j in range(n):
            seed_rng(stream_seed(key, 0 if self.options.shared_draw else j), where)
            scores.append(float(score(j)))
        self.last_losses = torch.tensor(scores, dtype=torch.float64)
        k = self.choose(self.last_losses, u)
        if replay(k):
            seed_rng(stream_seed(key, 0 if self.options.shared_draw else k), where)
        else:
            set_rng_state(before, where)
        return k

    def _record(self, candidates: list[Any], k: int) -> None:
        """The latest choice, as :meth:`log` returns it."""
        scored = self.last_losses is not None
        p = self.probabilities(self.last_losses).tolist() if scored else [1.0]  # type: ignore[arg-type]
        self._entry = {"candidates": candidates, "scores": self.last_losses.tolist() if scored else None,  # type: ignore[union-attr]
                       "p": [round(x, 4) for x in p], "k": k}

    def log(self) -> dict[str, Any] | None:
        """The latest outer loop's ``candidates`` (pool indices, or ``[expert, start]`` segments),
        their ``scores`` (None when one candidate was not scored), the probabilities ``p`` (to 4
        decimals) and the index ``k`` of the choice among the candidates."""
        entry, self._entry = self._entry, None
        return entry

    def segments(self, n: int, starts: int) -> list[Segment]:
        """The candidate segments of one iteration over ``n`` experts with ``starts`` start epochs:
        ``m`` distinct experts with uniform start epochs; with fewer experts, every expert once and
        then other start epochs of them, ``m`` distinct segments at most (the class docstring)."""
        m = self.options.m
        if n >= m:
            experts = torch.randperm(n)[:m].tolist()
            return [Segment(e, int(s)) for e, s in zip(experts, torch.randint(starts, (m,)).tolist())]
        order = torch.randperm(n).tolist()
        unused = [torch.randperm(starts).tolist() for _ in range(n)]  # each expert's start epochs, in draw order
        return [Segment(order[j % n], unused[order[j % n]][j // n]) for j in range(min(m, n * starts))]

    def select_segment(self, ctx: DistillContext, it: int, starts: int,
                       score: Callable[[Segment], float]) -> Segment:
        """Algorithm 1 over a trajectory pool: the candidate :meth:`segments`, ranked by ``score``
        (the method's matching loss from each) and one sampled as :meth:`choose`; the RNG is left
        where the chosen segment's scoring started, so the method's update replays that score."""
        candidates = self.segments(len(ctx.trajectories), starts)  # type: ignore[arg-type]
        self.last_segments = candidates
        self.last_losses = None
        k = 0
        if len(candidates) > 1:
            k = self._rank(ctx, len(candidates), lambda j: float(score(candidates[j])), lambda j: True)
        self._record([[c.expert, c.start] for c in candidates], k)
        return candidates[k]

    def select(self, ctx: DistillContext, it: int) -> nn.Module:
        states = self._pool_states(ctx)
        m = min(self.options.m, len(states))  # m distinct models at most (the class docstring)
        candidates = torch.randperm(len(states))[:m].tolist()
        # building a network draws no random numbers (ctx.net_from_state); each candidate is then
        # perturbed with its own draw, and scored as perturbed (the network the method will use)
        nets = [ctx.net_from_state(states[i]) for i in candidates]
        deltas = [ctx.perturb(net, it, keep=True) for net in nets]
        self.last_losses = None
        k = 0
        if m > 1 and ctx.synthetic is not None and ctx.method is not None:
            k = self._rank(ctx, m, lambda j: self.candidate_loss(ctx, nets[j]),
                           lambda j: ctx.method.replays_score(ctx, nets[j]))  # type: ignore[union-attr]
        self.last_candidates = candidates
        self._record(candidates, k)
        self._current = candidates[k]
        ctx.perturbation = deltas[k]  # the chosen network's own perturbation: after_step takes it out
        net = nets[k]
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


def _device_of(ctx: DistillContext) -> torch.device:
    """Where the run draws its random numbers besides the CPU (the synthetic set's device)."""
    return ctx.synthetic.images.device if ctx.synthetic is not None else torch.device("cpu")


@hookimpl
def ddtool_register_selection_strategies(register: RegisterSelection) -> None:
    register(Scratch())
    register(RandomPool(), aliases=("uniform",))
    register(WeightAverage(), aliases=("wavg",))
    register(DynaDistill())
