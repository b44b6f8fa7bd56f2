"""``compile = "auto"``: compile the hot forwards only when the work left is large enough to repay it.

torch.compile costs tens of seconds before the first compiled step (25 s for the DM iteration on
CIFAR-10 shapes on this project's 2-core CPU, BENCHMARKS.md) and then makes the first-order
forwards faster (DM iteration 1.63x on the same CPU). A digits quick start never repays that; a
CIFAR-10 run of hundreds of iterations repays it many times over. The decision is made from the
work itself, counted in FLOPs (convolutions and matrix products, ``torch.utils.flop_counter``), so
it is the same on every run of the same recipe and data, whatever the machine's load:

    remaining FLOPs / EAGER_RATE[device type] x GAIN > COMPILE_COST[device type]

i.e. the eager seconds the rest would take, times the fraction compiling saves, against the
expected compile time. GAIN is taken low on purpose (DM saves 39 % on this CPU; IDC compiles
only its first-order half). EAGER_RATE on CPU is this project's measured eager ConvNet rate
(54–65 GFLOP/s, BENCHMARKS.md); the CUDA figures are assumptions until a GPU measures them.
Distillation decides after its first (FLOP-counted) iteration, evaluation before training from
the planned epochs. Compiled graphs are reused across runs by PyTorch's on-disk FX graph cache
(``TORCHINDUCTOR_CACHE_DIR``); the records keep how long compiling took (the first compiled
unit's seconds minus the second's). A run where compiling would pay but no backend exists (no C++
compiler on CPU, no Triton on CUDA) stays eager and says so in one line; a short run stays eager
silently (the record says why).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ddtool.compiled import compiler_present, compiler_usable

GAIN = 0.3
COMPILE_COST = {"cpu": 30.0, "cuda": 60.0}  # seconds, the expected first compile (other device types: cuda's)
EAGER_RATE = {"cpu": 60e9, "cuda": 10e12}  # FLOP/s of an eager ConvNet step (cuda: assumed, not measured)


def _of(table: dict[str, float], device: torch.device) -> float:
    return table.get(device.type, table["cuda"])


def expected_cost(device: torch.device) -> float:
    return _of(COMPILE_COST, device)


def pays(flops: float, device: torch.device) -> bool:
    """Whether compiling work of ``flops`` (eager at EAGER_RATE) repays the expected compile cost."""
    return flops / _of(EAGER_RATE, device) * GAIN > expected_cost(device)


@dataclass
class AutoCompile:
    """One run's compile decision, recorded as the record's ``compile`` entry (``info``).

    ``setting`` is the recipe's ``compile``: ``True``/``False`` force it from the start,
    ``"auto"`` decides once, in :meth:`decide`, from the work left. ``before``/``after`` around
    each unit of work (an iteration, an epoch) time the first two compiled ones.
    """

    setting: bool | str
    device: torch.device
    note: Callable[[str], None] = field(default=lambda _line: None, repr=False)
    compiled: bool = False
    decided: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    _backend: tuple[bool, str] = field(default=(False, ""), repr=False)
    _timed: list[float] = field(default_factory=list, repr=False)
    _started: float | None = field(default=None, repr=False)

    def start(self) -> bool:
        """Whether to compile from the first unit on (forced settings only)."""
        self.info["setting"] = self.setting
        if self.setting is True or self.setting is False:
            self.compiled, self.decided = bool(self.setting), True
            self.info.update(compiled=self.compiled, reason="compile = " + str(self.setting).lower())
            return self.compiled
        self._backend = compiler_present(self.device)
        return False

    def decide(self, remaining_flops: float, at: int | None = None) -> bool:
        """Under ``"auto"``, once: compile the rest when its ``remaining_flops`` repay it. Returns
        whether the rest runs compiled."""
        if self.decided:
            return self.compiled
        self.decided = True
        self.info.update(remaining_flops=int(remaining_flops), **({"decided_at": at} if at is not None else {}))
        eager_s = remaining_flops / _of(EAGER_RATE, self.device)
        if not pays(remaining_flops, self.device):
            self.info.update(compiled=False, reason=(
                f"{remaining_flops / 1e12:.2g} TFLOP (~{eager_s:.0f} s eager): too little to repay "
                f"~{expected_cost(self.device):.0f} s of compiling"))
            return False
        if self._backend[0]:  # the slower check (a probe build on CPU), only when compiling would pay
            self._backend = compiler_usable(self.device)
        if not self._backend[0]:
            self.info.update(compiled=False, reason=f"would pay, but no compiler ({self._backend[1]})")
            self.note(f"compile auto: compiling would pay here, but torch.compile has no backend "
                      f"({self._backend[1]}); running eager")
        else:
            self.compiled = True
            self.info.update(compiled=True, reason=(
                f"{remaining_flops / 1e12:.2g} TFLOP (~{eager_s:.0f} s eager) repays "
                f"~{expected_cost(self.device):.0f} s of compiling"))
            self.note(f"compile auto: compiling (~{eager_s:.0f} s of eager work left; compile = false keeps eager)")
        return self.compiled

    def before(self) -> None:
        self._started = time.perf_counter() if self.compiled and len(self._timed) < 2 else None

    def after(self) -> None:
        if self._started is None:
            return
        self._timed.append(time.perf_counter() - self._started)
        self._started = None
        if len(self._timed) == 2:  # the first compiled unit paid the compile, the second did not
            self.info["compile_seconds"] = round(max(0.0, self._timed[0] - self._timed[1]), 2)
