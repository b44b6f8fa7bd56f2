"""``compile = "auto"``: compile the hot forwards only when the work left is large enough to repay it.

torch.compile costs tens of seconds before the first compiled step (25 s for the DM iteration on
CIFAR-10 shapes on this project's 2-core CPU, BENCHMARKS.md) and then makes the first-order
forwards faster (DM iteration 1.63x on the same CPU). A digits quick start never repays that; a
CIFAR-10 run of hundreds of iterations repays it many times over. The decision is made from the
work itself, counted in FLOPs (convolutions and matrix products, ``torch.utils.flop_counter``), so
it is the same on every run of the same recipe and data on one machine, whatever its load:

    remaining FLOPs / eager rate x GAIN > compile cost

i.e. the eager seconds the rest would take, times the fraction compiling saves, against the
expected compile time, at the eager rate and compile cost this machine recorded, else EAGER_RATE
and COMPILE_COST of the device type. GAIN is taken low on purpose (DM saves 39 % on this CPU;
IDC's inner step about a third since its matching's double backward compiles too:
docs/benchmarks/2026-12-07-idc-step.md). EAGER_RATE on CPU is this project's measured eager
ConvNet rate (54–65 GFLOP/s, BENCHMARKS.md); the CUDA figures are assumptions until a GPU
measures them.
Distillation decides after its first (FLOP-counted) iteration, evaluation before training from
the planned epochs. Compiled graphs are reused across runs by PyTorch's on-disk FX graph cache
(``TORCHINDUCTOR_CACHE_DIR``); the records keep how long compiling took (the first compiled
unit's seconds minus the second's). A run where compiling would pay but no backend exists (no C++
compiler on CPU, no Triton on CUDA) stays eager and says so in one line; a short run stays eager
silently (the record says why).

The constants below are only the first guess: the first compile on a machine records its measured
seconds and the eager FLOP/s of the iteration it decided on (:mod:`ddtool.runtime.machine`, in the
user cache), and later decisions use those, saying which numbers they used.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ddtool.compiled import compiler_present, compiler_usable
from ddtool.runtime import machine

GAIN = 0.3
COMPILE_COST = {"cpu": 30.0, "cuda": 60.0}  # seconds, the expected first compile (other device types: cuda's)
EAGER_RATE = {"cpu": 60e9, "cuda": 10e12}  # FLOP/s of an eager ConvNet step (cuda: assumed, not measured)


def _of(table: dict[str, float], device: torch.device) -> float:
    return table.get(device.type, table["cuda"])


def expected_cost(device: torch.device) -> float:
    return _of(COMPILE_COST, device)


@dataclass(frozen=True)
class Rates:
    """The numbers a decision uses: eager FLOP/s and compile seconds, each measured on this machine
    (:mod:`ddtool.runtime.machine`) or assumed (the constants above)."""

    eager_flops_per_s: float
    compile_seconds: float
    eager_measured: bool = False
    compile_measured: bool = False

    def describe(self) -> str:
        """E.g. "measured here: 41 GFLOP/s eager, compile 22 s"."""
        eager, cost = f"{self.eager_flops_per_s / 1e9:.3g} GFLOP/s eager", f"compile {self.compile_seconds:.3g} s"
        if self.eager_measured == self.compile_measured:
            return f"{'measured here' if self.eager_measured else 'assumed'}: {eager}, {cost}"
        return (f"{eager} ({'measured here' if self.eager_measured else 'assumed'}), "
                f"{cost} ({'measured here' if self.compile_measured else 'assumed'})")

    def to_dict(self) -> dict[str, Any]:
        return {"eager_flops_per_s": self.eager_flops_per_s, "compile_seconds": self.compile_seconds,
                "eager_from": "measured" if self.eager_measured else "assumed",
                "compile_from": "measured" if self.compile_measured else "assumed"}


def rates(device: torch.device) -> Rates:
    """This machine's recorded rates for ``device`` where present, else the assumed constants."""
    m = machine.measured(device)
    return Rates(m.eager_flops_per_s or _of(EAGER_RATE, device), m.compile_seconds or expected_cost(device),
                 m.eager_flops_per_s is not None, m.compile_seconds is not None)


def pays(flops: float, device: torch.device, at: Rates | None = None) -> bool:
    """Whether compiling work of ``flops`` repays the compile cost (``at``: the rates to use; the
    assumed constants by default)."""
    at = at or Rates(_of(EAGER_RATE, device), expected_cost(device))
    return flops / at.eager_flops_per_s * GAIN > at.compile_seconds


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
    _eager_rate: float | None = field(default=None, repr=False)  # what this run's eager unit ran at
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

    def decide(self, remaining_flops: float, at: int | None = None, eager: tuple[float, float] | None = None) -> bool:
        """Under ``"auto"``, once: compile the rest when its ``remaining_flops`` repay it, at this
        machine's recorded rates (else the assumed ones). ``eager``: (FLOPs, seconds) of a unit this
        run ran eager, kept as the machine's eager rate if it compiles. Returns whether the rest runs
        compiled."""
        if eager is not None and not self.compiled and eager[0] > 0 and eager[1] > 0:
            self._eager_rate = eager[0] / eager[1]
        if self.decided:
            return self.compiled
        self.decided = True
        r = rates(self.device)
        self.info.update(remaining_flops=int(remaining_flops), rates=r.to_dict(),
                         **({"decided_at": at} if at is not None else {}))
        eager_s = remaining_flops / r.eager_flops_per_s
        if not pays(remaining_flops, self.device, r):
            self.info.update(compiled=False, reason=(
                f"{remaining_flops / 1e12:.2g} TFLOP (~{eager_s:.0f} s eager): too little to repay "
                f"~{r.compile_seconds:.0f} s of compiling ({r.describe()})"))
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
                f"~{r.compile_seconds:.0f} s of compiling ({r.describe()})"))
            self.note(f"compile auto: compiling (~{eager_s:.0f} s of eager work left; {r.describe()}; "
                      "compile = false keeps eager)")
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
            # the machine's first measured compile (and the eager rate of the run that paid it) is what
            # later "auto" decisions use; a cache that cannot be written changes nothing
            self.info["machine_recorded"] = machine.record(
                self.device, compile_seconds=self.info["compile_seconds"], eager_flops_per_s=self._eager_rate)
