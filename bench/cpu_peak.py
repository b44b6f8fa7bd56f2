"""A CPU core's fp32 FLOP per cycle, from what the machine and torch say rather than from an assumption.

The counted FLOPs of a benchmark (torch's FlopCounterMode: convolutions and matrix products) run in
oneDNN and the BLAS, which pick their own instruction set: ``ATEN_CPU_CAPABILITY`` lowers only
ATen's own (element-wise) kernels, ``ONEDNN_MAX_CPU_ISA`` lowers oneDNN's. So the peak is set by the
hardware's vector unit capped by ``ONEDNN_MAX_CPU_ISA``; torch's capability is reported beside it,
and said to be below it where it is. Measured on an AVX2 machine (AMD EPYC Zen 3, 2 threads,
2026-12-07): a 3x3 convolution (64 x 128 x 32 x 32, 128 filters) ran at 126 GFLOP/s with torch's
AVX2 capability, 114 with ``ATEN_CPU_CAPABILITY=default`` (oneDNN's verbose log still said
``isa:Intel AVX2``) and 53 with ``ONEDNN_MAX_CPU_ISA=SSE41``.

What cannot be read is assumed and said so: the FMA pipes per core, each as wide as the vector
unit (2 on Intel since Haswell and AMD since Zen 2; half that where wide instructions are split: Zen 1
runs AVX2 on 128-bit pipes, Zen 4 AVX-512 on 256-bit ones, and some Xeons have one 512-bit FMA unit),
and the clock (/proc/cpuinfo's "cpu MHz", the current clock, not the boost one). ``--flop-per-cycle``
replaces the figure where the assumption is wrong.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, order=True)
class VectorUnit:
    """An fp32 vector instruction set: ordered by ``rank`` so that ``min`` is the lower of two."""

    rank: int
    name: str
    lanes: int  # fp32 lanes of one register
    fma: bool  # fused multiply-add: 2 FLOP per lane and pipe in one instruction

    def describe(self) -> str:
        return f"{self.name} + FMA" if self.fma else f"{self.name} (no FMA)"


SCALAR = VectorUnit(0, "scalar", 1, False)
SSE = VectorUnit(1, "SSE", 4, False)
AVX = VectorUnit(2, "AVX", 8, False)
AVX2 = VectorUnit(3, "AVX2", 8, True)  # ATen's and oneDNN's AVX2 level requires FMA3 too
AVX512 = VectorUnit(4, "AVX-512", 16, True)
NEON = VectorUnit(1, "NEON", 4, True)  # aarch64's Advanced SIMD (asimd): 128-bit, with FMA

# torch.backends.cpu.get_cpu_capability() -> the unit ATen's kernels were built for;
# DEFAULT is the baseline build (SSE2 on x86-64)
TORCH_CAPABILITY = {"AVX512": AVX512, "AVX2": AVX2, "DEFAULT": SSE, "NO AVX": SSE}
# ONEDNN_MAX_CPU_ISA (or its older name DNNL_MAX_CPU_ISA) values, by prefix, most specific first
ONEDNN_CAP = (("AVX10", AVX512), ("AVX512", AVX512), ("AVX2", AVX2), ("AVX", AVX), ("SSE41", SSE))


@dataclass(frozen=True)
class Detected:
    """What :func:`detect` found: ``flop_per_cycle`` (None where unknown) and ``line``, what was
    detected and what was assumed, for a benchmark's header."""

    flop_per_cycle: float | None
    line: str
    unit: VectorUnit | None = None  # the unit the counted kernels run on
    pipes: int = 2


def flags_of(cpuinfo: str) -> set[str]:
    """The first processor's feature flags (x86 ``flags``, aarch64 ``Features``)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def hardware_unit(cpuinfo: str) -> VectorUnit | None:
    """The widest fp32 vector unit /proc/cpuinfo's flags declare, None where they declare none."""
    flags = flags_of(cpuinfo)
    if "avx512f" in flags:
        return AVX512
    if "avx2" in flags and "fma" in flags:
        return AVX2
    if "avx" in flags:
        return AVX
    if "sse" in flags or "sse2" in flags:
        return SSE
    if "asimd" in flags:
        return NEON
    return None


def torch_unit(capability: str) -> VectorUnit | None:
    """The unit ``torch.backends.cpu.get_cpu_capability()`` names, None for one not known here
    (a non-x86 build's VSX, ZVECTOR, SVE)."""
    return TORCH_CAPABILITY.get(capability.strip().upper())


def onednn_cap(value: str) -> VectorUnit | None:
    """The unit ``ONEDNN_MAX_CPU_ISA`` caps oneDNN at; None when unset or ``ALL``."""
    v = value.strip().upper()
    return next((unit for prefix, unit in ONEDNN_CAP if v.startswith(prefix)), None)


def clock_ghz(cpuinfo: str) -> float:
    """The highest "cpu MHz" /proc/cpuinfo lists, in GHz (0.0 where it lists none)."""
    mhz = [float(m) for m in re.findall(r"^cpu MHz\s*:\s*([0-9.]+)", cpuinfo, flags=re.M)]
    return max(mhz) / 1000 if mhz else 0.0


def detect(cpuinfo: str, capability: str, onednn_max_isa: str = "", pipes: int = 2) -> Detected:
    """fp32 FLOP per cycle and core for the kernels the counted FLOPs run in.

    ``cpuinfo``: /proc/cpuinfo's text; ``capability``: torch's CPU capability
    (``torch.backends.cpu.get_cpu_capability()``); ``onednn_max_isa``: ``$ONEDNN_MAX_CPU_ISA``;
    ``pipes``: vector FMA pipes per core, assumed (nothing readable says it).
    """
    hw = hardware_unit(cpuinfo)
    aten = torch_unit(capability)
    cap = onednn_cap(onednn_max_isa)
    if hw is None:
        return Detected(None, f"unknown: /proc/cpuinfo declares no vector unit known here (torch capability "
                              f"{capability or '?'}); pass --flop-per-cycle")
    unit = min(hw, cap) if cap is not None and hw is not NEON else hw  # the cap names x86 sets
    # without FMA a multiply and an add make the 2 FLOP: counted as if each pipe issued both, an upper
    # bound (Zen pairs its FMA pipes with add pipes and reaches it; Sandy Bridge's one multiply and one
    # add port reach half), so that no measured rate reads above 100 % of it
    flop = unit.lanes * 2 * pipes
    what = "FMA pipes" if unit.fma else "pipes (a multiply and an add each: an upper bound without FMA)"
    line = (f"{unit.describe()}: {unit.lanes} fp32 lanes x 2 FLOP x {pipes} {what} = {flop} FLOP/cycle "
            f"(assumed {pipes} pipes; hardware {hw.describe()} from /proc/cpuinfo flags")
    if unit is not hw:
        line += f", capped by ONEDNN_MAX_CPU_ISA={onednn_max_isa}"
    line += f"; torch capability {capability or '?'}"
    if aten is not None and aten < unit:
        line += (f": ATen's own kernels run {aten.name} (ATEN_CPU_CAPABILITY), but they are the element-wise "
                 "ones the FLOP count leaves out; convolutions and matmuls run in oneDNN / BLAS at the peak's ISA")
    line += ")"
    if unit is AVX512 and _amd_family(cpuinfo) == 0x19:
        line += "; an AMD family 19h (Zen 4) core runs AVX-512 on 256-bit pipes: 32 FLOP/cycle, pass --flop-per-cycle 32"
    return Detected(float(flop), line, unit, pipes)


def _amd_family(cpuinfo: str) -> int | None:
    if "AuthenticAMD" not in cpuinfo:
        return None
    found = re.search(r"^cpu family\s*:\s*(\d+)", cpuinfo, flags=re.M)
    return int(found.group(1)) if found else None


def read_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux
        return ""


def this_machine(pipes: int = 2) -> Detected:
    """:func:`detect` on this machine: its /proc/cpuinfo, torch's capability, ``$ONEDNN_MAX_CPU_ISA``."""
    import torch

    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA", "")
    return detect(read_cpuinfo(), torch.backends.cpu.get_cpu_capability(), onednn, pipes)


def flop_per_cycle_line(detected: Detected, override: float | None) -> tuple[float | None, str]:
    """The FLOP per cycle to use and the sentence saying where it came from: ``override``
    (``--flop-per-cycle``) wins and says what it replaced."""
    if override is None:
        return detected.flop_per_cycle, detected.line
    was = f"{detected.flop_per_cycle:g}" if detected.flop_per_cycle is not None else "unknown"
    return override, f"{override:g} FLOP/cycle from --flop-per-cycle, overriding the detected {was} ({detected.line})"
