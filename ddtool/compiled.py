"""torch.compile for the networks a distillation draws (``distill.compile = true``).

The network is an argument of the compiled function, not captured by it, so the fresh or
perturbed network of every outer loop runs the same compiled code (its parameters are graph
inputs); only a new input shape, grad mode or autocast state compiles again. A forward whose
graph autograd differentiates twice stays eager: AOTAutograd has no double backward. IDC's
matching instead computes its double backward inside one function with ``torch.func``
(``ddtool.methods.matching.syn_distance_and_grad``), which compiles like any other
(:func:`compile_once`): no autograd crosses the compiled graph's boundary.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import shutil
from typing import Any, Callable

import torch
from torch import nn

from ddtool.errors import DDToolError

Forward = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def compiler_present(device: torch.device) -> tuple[bool, str]:
    """Whether torch.compile has a backend on ``device``: Triton on CUDA, a C++ compiler on CPU."""
    if device.type == "cuda":
        # looked up, not imported: Triton is torch's optional dependency, not ddtool's
        return (True, "Triton") if importlib.util.find_spec("triton") is not None else (False, "no Triton")
    cxx = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    return (True, cxx) if cxx else (False, "no C++ compiler")


@functools.cache
def inductor_vector_isa() -> tuple[bool, str]:
    """Whether inductor's CPU backend can build kernels here: it picks a vector ISA for this CPU
    (AVX-512, AVX2, ...) by compiling a probe (seconds, once per process). Where it picks none (a
    CPU without AVX2, or ``ATEN_CPU_CAPABILITY=default``) torch 2.14 still emits vectorised
    reductions (``at::vec``) without their header, and the build fails: treated as no backend; so is
    ``ATEN_CPU_CAPABILITY=avx2`` on an AVX-512 CPU (:func:`_lowered_below_hardware`)."""
    try:
        from torch._inductor.cpu_vec_isa import pick_vec_isa
    except ImportError:  # another torch layout: let torch.compile itself say
        return True, "unknown"
    isa = pick_vec_isa()
    lowered = _lowered_below_hardware()
    if isa and lowered:
        return False, lowered
    if isa:
        return True, str(isa)
    return False, (f"inductor picks no vector ISA on this CPU (ATen: {torch.backends.cpu.get_cpu_capability()}), "
                   f"where torch {torch.__version__}'s C++ kernels fail to build")


def _lowered_below_hardware(cpuinfo: str = "/proc/cpuinfo") -> str:
    """Why not to compile when ``ATEN_CPU_CAPABILITY=avx2`` runs on an AVX-512 CPU (else ''): inductor
    then builds its kernels for AVX2 while the CPU and the libraries that do not read the variable
    run AVX-512, and with torch 2.14 the compiled DM loss came out NaN in that mix where eager gave
    5.88 (tests/test_compiled.py, 2026-12-07, an AVX-512 Xeon; cause inside torch not isolated). The
    same tests pass on AVX2 and AVX-512 CPUs at their own capability."""
    if os.environ.get("ATEN_CPU_CAPABILITY", "").lower() != "avx2":
        return ""
    try:
        with open(cpuinfo) as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:  # no /proc (not Linux): nothing known
        return ""
    if " avx512f" not in flags:
        return ""
    return ("ATEN_CPU_CAPABILITY=avx2 on a CPU with AVX-512: compiled losses came out NaN in this mix with "
            f"torch {torch.__version__}; unset ATEN_CPU_CAPABILITY to compile")


def compiler_usable(device: torch.device) -> tuple[bool, str]:
    """:func:`compiler_present`, and on CPU also a vector ISA inductor builds for (slower: a probe)."""
    present = compiler_present(device)
    if not present[0] or device.type != "cpu":
        return present
    return inductor_vector_isa()


def plain_forward(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return net(x)


def embed(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The features before the last linear layer (``net.embed``), else the output."""
    return net.embed(x) if hasattr(net, "embed") else net(x)


_PLAIN: dict[str, Forward] = {"forward": plain_forward, "embed": embed}
_COMPILED: dict[str, Forward] = {}


def forward_fn(compile: bool, kind: str = "forward") -> Forward:
    """``f(net, x)``: the net's forward (``kind="forward"``) or its features (``"embed"``),
    compiled once per process when ``compile`` is set."""
    plain = _PLAIN[kind]
    if not compile:
        return plain
    if kind not in _COMPILED:
        _COMPILED[kind] = compile_once(plain)
    return _COMPILED[kind]


def compile_once(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` under torch.compile, a failing compiler turned into one :class:`DDToolError` naming
    the setting that avoids it. The caller keeps the result (one compiled function per process:
    every call with the same shapes reuses its graphs)."""
    # the CUDA build of torch warns on a CPU-only machine that it found no CUDA runtime when
    # inductor builds its C++ kernels: true and irrelevant there, and not the user's to act on
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    compiled = torch.compile(fn)

    def call(*args: Any) -> Any:
        try:
            return compiled(*args)
        except torch._dynamo.exc.TorchDynamoException as e:  # compiler missing or failing
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            cpu = any(isinstance(a, torch.Tensor) and a.device.type == "cpu" for a in args)
            usable, why = inductor_vector_isa() if cpu else (True, "")
            raise DDToolError(f"torch.compile failed ({why if not usable else first[:200]}); set "
                              "distill.compile = false (eval.compile = false in evaluation)") from None

    return call
