"""``distill.compile = "auto"``: compile the hot forwards only when the run is long enough to repay it.

torch.compile costs tens of seconds before the first compiled step (25 s for the DM iteration on
CIFAR-10 shapes on this project's 2-core CPU, BENCHMARKS.md) and then makes the first-order
forwards faster (DM iteration 1.63x, the same CPU). A digits quick start never repays that; a
CIFAR-10 run of hundreds of iterations does many times over. So the decision is made from the
run itself: the second iteration runs eager and is timed (the first carries the FLOP counter),
and the rest is compiled when

    remaining iterations x seconds per eager iteration x GAIN > COMPILE_COST[device type]

GAIN is the fraction of an iteration's time compiling saves, taken low on purpose (DM saves 39 %
on CPU; IDC compiles only its first-order half, the real side and the network updates). Compiled
graphs are reused across runs by PyTorch's on-disk FX graph cache (``TORCHINDUCTOR_CACHE_DIR``),
so a second run's compile is shorter; the run record keeps how long the first compiled iteration
took beyond an eager one, so the cost is visible. A short run stays eager silently (the record says
why); a run where compiling would pay but no backend exists (no C++ compiler on CPU, no Triton on
CUDA) stays eager and says so in one line.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ddtool.compiled import compiler_present

GAIN = 0.3
COMPILE_COST = {"cpu": 30.0, "cuda": 60.0}  # seconds, the expected first compile (other device types: cuda's)


def expected_cost(device: torch.device) -> float:
    return COMPILE_COST.get(device.type, COMPILE_COST["cuda"])


def pays(remaining: int, eager_seconds: float, device: torch.device) -> bool:
    """Whether compiling the rest of a run of ``remaining`` iterations of ``eager_seconds`` each repays its cost."""
    return remaining * eager_seconds * GAIN > expected_cost(device)


@dataclass
class AutoCompile:
    """The loop's compile decision for one run, recorded as ``record["compile"]``.

    ``setting`` is the recipe's ``distill.compile``: ``True``/``False`` force it from the first
    iteration, ``"auto"`` decides after the first timed eager iteration (:func:`pays`).
    """

    setting: bool | str
    device: torch.device
    note: Callable[[str], None] = field(default=lambda _line: None, repr=False)
    compiled: bool = False
    decided: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    _started: float | None = field(default=None, repr=False)
    _eager_seconds: float | None = field(default=None, repr=False)
    _measure_next: bool = field(default=False, repr=False)
    _backend: tuple[bool, str] = field(default=(False, ""), repr=False)

    def start(self) -> bool:
        """The flag for the first iteration (the context's ``compile``)."""
        self.info["setting"] = self.setting
        if self.setting is True or self.setting is False:
            self.compiled, self.decided = bool(self.setting), True
            self.info.update(compiled=self.compiled, reason="distill.compile = " + str(self.setting).lower())
            return self.compiled
        self._backend = compiler_present(self.device)
        return False

    def before(self, it: int, first: int) -> None:
        """Called before iteration ``it`` (``first`` = the run's first, which carries the FLOP counter)."""
        self._started = time.perf_counter() if (not self.decided and it > first) or self._measure_next else None

    def after(self, ctx: Any, it: int, iterations: int) -> None:
        """Called after iteration ``it``: decide once, from its eager seconds, for the rest of the run."""
        if self._started is None:
            return
        seconds = time.perf_counter() - self._started
        if self._measure_next:  # the first compiled iteration: how much longer than an eager one
            self._measure_next = False
            self.info["compile_seconds"] = round(max(0.0, seconds - (self._eager_seconds or 0.0)), 2)
            return
        self.decided = True
        self._eager_seconds = seconds
        remaining = iterations - it - 1
        self.info.update(decided_at=it, eager_seconds_per_iteration=round(seconds, 4), remaining=remaining)
        if not pays(remaining, seconds, self.device):
            # said in the run record only: a short run's output stays as it was
            self.info.update(compiled=False, reason=(
                f"{remaining} iterations x {seconds:.2f} s: too short to repay ~{expected_cost(self.device):.0f} s"))
        elif not self._backend[0]:
            self.info.update(compiled=False, reason=f"would pay, but no compiler ({self._backend[1]})")
            self.note(f"compile auto: compiling would pay for this run, but torch.compile has no backend here "
                      f"({self._backend[1]}); running eager")
        else:
            self.compiled = ctx.compile = True
            self._measure_next = True
            self.info.update(compiled=True, reason=(
                f"{remaining} iterations x {seconds:.2f} s: saving ~{GAIN:.0%} repays ~{expected_cost(self.device):.0f} s"))
            self.note(f"compile auto: compiling the rest ({remaining} iterations of {seconds:.2f} s eager; "
                      f"set distill.compile = false to keep eager)")
