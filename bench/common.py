"""Helpers for benchmarks: synthetic problems of a given shape, interleaved A/B timing, FLOPs."""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from ddtool.data import ImageData
from ddtool.flop_count import FlopCounter


def fake_data(classes: int, per_class: int, channels: int, res: int, seed: int = 0) -> ImageData:
    """Random uint8 images with the shape of a real dataset (speed does not depend on content)."""
    g = torch.Generator().manual_seed(seed)
    n = classes * per_class
    images = torch.randint(0, 256, (n, channels, res, res), dtype=torch.uint8, generator=g)
    labels = torch.arange(classes).repeat_interleave(per_class)
    return ImageData(f"fake{classes}x{res}", [str(c) for c in range(classes)], images, labels,
                     images[:classes], torch.arange(classes))


@dataclass
class Probe:
    """What :func:`interleaved` saw of each function besides its timed rounds, while :func:`probing`:
    the seconds of its warm-up calls (a compiled variant compiles there) and its peak memory."""

    cuda: bool = False  # peak memory from CUDA's allocator, else the process's RSS
    warmup_s: dict[str, float] = field(default_factory=dict)
    peak_bytes: dict[str, int] = field(default_factory=dict)


_probe: ContextVar[Probe | None] = ContextVar("bench_probe", default=None)


@contextmanager
def probing(device: torch.device | str = "cpu") -> Iterator[Probe]:
    """Collect a :class:`Probe` from every :func:`interleaved` call inside the block (the case
    functions of bench.step keep their signatures)."""
    probe = Probe(cuda=torch.device(device).type == "cuda")
    token = _probe.set(probe)
    try:
        yield probe
    finally:
        _probe.reset(token)


def reset_peak_memory(cuda: bool) -> None:
    """Start a new peak: CUDA's allocator statistics, else the process's peak RSS where Linux lets
    it be reset (``/proc/self/clear_refs``); elsewhere the peak stays the process's."""
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        return
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_memory(cuda: bool) -> int:
    """Bytes at the peak since :func:`reset_peak_memory`: CUDA's max allocated, else peak RSS."""
    if cuda:
        return int(torch.cuda.max_memory_allocated())
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource  # no /proc (macOS): the process's lifetime peak, in bytes there

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if platform.system() == "Darwin" else peak * 1024)


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Time each function ``rounds`` times, alternating A B A B so drift hits all equally."""
    probe = _probe.get()

    def call(name: str, fn: Callable[[], object]) -> float:
        if probe is not None:
            reset_peak_memory(probe.cuda)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t
        if probe is not None:
            probe.peak_bytes[name] = max(probe.peak_bytes.get(name, 0), peak_memory(probe.cuda))
        return seconds

    for _ in range(warmup):
        for name, fn in fns.items():
            s = call(name, fn)
            if probe is not None:
                probe.warmup_s[name] = probe.warmup_s.get(name, 0.0) + s
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(call(name, fn))
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def flops_of(fn: Callable[[], object]) -> int:
    with FlopCounter() as counter:
        fn()
    return int(counter.get_total_flops())


def machine() -> str:
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU {platform.processor() or platform.machine()}"
    return f"{dev}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def add_run_args(ap: argparse.ArgumentParser, set_help: str) -> None:
    """The options a benchmark that distils real recipes shares: ``--set``, ``--store``, ``--device``."""
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help=set_help)
    ap.add_argument("--store", default="", help="store folder (default: a fresh temp folder)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def bench_store(path: str) -> "Store":
    """The store ``--store`` names, else a fresh one in a temp folder."""
    import tempfile

    from ddtool.store import Store

    return Store(path or tempfile.mkdtemp(prefix="ddtool-bench-"))

