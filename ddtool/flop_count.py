"""FLOPs of a block of work, counted without holding on to its autograd graph.

``torch.utils.flop_counter.FlopCounterMode`` counts by the formulas of its ``flop_registry`` in a
dispatch mode, and also attributes every count to the module it ran in through a
``ModuleTracker``. That tracker hooks every module's inputs and outputs for the backward pass, and
those hooks keep alive the activations a checkpointed unroll (MTT, DATM: ``unroll =
"checkpointed"``) exists to drop: a run's first iteration, which ddtool counts, then peaked near
the plain unroll (docs/benchmarks/2026-12-07-method-memory.md). ddtool only needs the total, so
:class:`FlopCounter` is the same counter with the module attribution left out.
"""

from __future__ import annotations

from typing import Any

from torch.utils.flop_counter import FlopCounterMode

GLOBAL = "Global"  # FlopCounterMode's name for "not inside any module": where get_total_flops reads


class _NoModuleTracker:
    """Stands in for FlopCounterMode's ModuleTracker: every count goes to the total only."""

    parents = frozenset({GLOBAL})

    def __enter__(self) -> "_NoModuleTracker":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


class FlopCounter(FlopCounterMode):
    """``with FlopCounter() as c: ...`` then ``c.get_total_flops()``: FlopCounterMode's total
    (the same formulas, forward and backward), without per-module counts and without the module
    hooks that keep activations alive."""

    def __init__(self) -> None:
        super().__init__(display=False)
        self.mod_tracker = _NoModuleTracker()  # type: ignore[assignment]
