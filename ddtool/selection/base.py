"""The contract of a model-selection strategy; re-exported as ``ddtool.api.SelectionStrategy``.

A strategy decides where each outer loop's network comes from (a fresh init, a pool model, an
average...). The registered object is the prototype: every run works on a deep copy of it, so a
strategy may keep per-run state on ``self``.

Two kinds of pool, one contract:

* **model pools** (``pool/NAME``, methods that match under a network: DC, DSA, IDC, DM, DREAM+):
  the runtime calls ``select(ctx, it)`` for the outer loop's network. A strategy that ranks
  candidates scores a network with ``ctx.method.score(ctx, ctx.synthetic, net)`` (the loss the
  outer loop's first update takes under it) and, when ``ctx.method.replays_score(ctx, net)``, can
  leave the RNG where the chosen network's scoring started so that update takes exactly that loss.
* **trajectory pools** (``trajectories/NAME``, methods that match expert trajectories: MTT): the
  method calls ``select_segment(ctx, it, starts, score)`` for the expert and start epoch the outer
  loop matches (a :class:`Segment`). ``starts`` is the number of start epochs it may use
  (0 .. starts - 1); ``score(segment)`` is the method's matching loss of the current synthetic set
  on that segment, so a strategy ranks segments exactly as it ranks networks; the method's step then
  matches the returned segment drawing from the RNG where the strategy left it (a strategy that
  leaves it where the chosen segment's scoring started makes the update replay that score, seed
  003 Algorithm 1 line 12). The default draws both uniformly and scores nothing (MTT's own draw). A strategy that implements it sets
  ``draws_trajectories = True``; trajectory methods refuse the others in one line before any work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from ddtool.errors import DDToolError, UsageError

if TYPE_CHECKING:  # the context holds the contracts (ddtool.context imports this module)
    from ddtool.context import DistillContext


@dataclass(frozen=True)
class Segment:
    """Where an outer loop of trajectory matching starts: expert ``expert`` of ``ctx.trajectories``
    at its epoch ``start`` (the method matches from there to a later epoch of the same expert)."""

    expert: int
    start: int


class SelectionStrategy:
    """What the runtime calls of a strategy. Every member has a default except ``name`` and ``select``."""

    name: str = ""  # the registry name: [distill] selection = "NAME"
    description: str = ""  # one line for 'ddtool plugins'
    needs_pool: bool = False  # True: a run without [distill] pool / --pool is refused before any work
    # True: the context keeps what the perturbation schedule added to the selected network
    # (``ctx.perturbation``), so ``after_step`` can take it out of a network it writes back
    keeps_trained: bool = False
    # True: ``select_segment`` is meant for trajectory pools (a trajectory method refuses the others)
    draws_trajectories: bool = False
    # True: the strategy ranks candidates by the method's loss (``MatchingMethod.score``), so a method
    # that implements ``step`` alone is refused before the run starts
    scores_candidates: bool = False
    # True: ``select`` applies the perturbation schedule to its candidates itself (``ctx.perturb``), so
    # each is scored as the network the method will use, and sets ``ctx.perturbation`` to its choice's
    # when it ``keeps_trained``; ``ctx.next_model`` then does not perturb the choice again
    perturbs_candidates: bool = False

    def configure(self, raw: dict[str, Any] | None) -> None:
        """Apply ``[distill.options.<name>]``, the sub-table of the method options named after the
        strategy (None when the recipe has none). A strategy with settings parses it with
        ``ddtool.api.parse_section``; the default takes no settings."""
        if raw:
            shown = sorted(raw) if isinstance(raw, dict) else raw
            raise UsageError(f"selection '{self.name}' takes no settings (got [distill.options.{self.name}] {shown})")

    def select(self, ctx: DistillContext, it: int) -> nn.Module:
        """The network of outer loop ``it``, before the perturbation schedule sees it."""
        raise NotImplementedError(f"selection '{self.name}' does not implement select")

    def select_segment(self, ctx: DistillContext, it: int, starts: int,
                       score: Callable[[Segment], float]) -> Segment:
        """The expert and start epoch of outer loop ``it`` of a trajectory method (see the module
        docstring): by default both uniform, the expert first (``score`` is not called)."""
        expert = int(torch.randint(len(ctx.trajectories), (1,)).item())  # type: ignore[arg-type]
        return Segment(expert, int(torch.randint(starts, (1,)).item()))

    def after_step(self, ctx: DistillContext, it: int, net: nn.Module) -> None:
        """Called with the network of the outer loop once the loop is done."""

    def plan_note(self, pool_size: int | None, experts: int | None, starts: int | None) -> str | None:
        """One line for the user about how the strategy will draw from what this run has (a model
        pool of ``pool_size``, or ``experts`` trajectories with ``starts`` start epochs each; None
        where the run has none), printed once before the run; None: nothing to say."""
        return None

    def log(self) -> dict[str, Any] | None:
        """What the strategy chose in the latest outer loop, for the run record (small, JSON-able:
        the runtime keeps one entry per outer loop under ``selection_log``); None: nothing to keep."""
        return None

    def state(self) -> dict[str, torch.Tensor]:
        """Tensors to checkpoint so a resumed run continues identically."""
        return {}

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what ``state()`` returned (``ddtool distill --resume``). A strategy whose
        ``state()`` returns tensors must override this; the default accepts only nothing."""
        if tensors:
            raise DDToolError(
                f"selection '{self.name}' saved state in the checkpoint but cannot load it "
                "(it does not implement load_state); this run cannot be resumed exactly"
            )
