"""Helpers for benchmarks: synthetic problems of a given shape, interleaved A/B timing, FLOPs."""

from __future__ import annotations

import platform
import statistics
import time
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from ddtool.data import ImageData


def fake_data(classes: int, per_class: int, channels: int, res: int, seed: int = 0) -> ImageData:
    """Random uint8 images with the shape of a real dataset (speed does not depend on content)."""
    g = torch.Generator().manual_seed(seed)
    n = classes * per_class
    images = torch.randint(0, 256, (n, channels, res, res), dtype=torch.uint8, generator=g)
    labels = torch.arange(classes).repeat_interleave(per_class)
    return ImageData(f"fake{classes}x{res}", [str(c) for c in range(classes)], images, labels,
                     images[:classes], torch.arange(classes))


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Time each function ``rounds`` times, alternating A B A B so drift hits all equally."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t)
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def flops_of(fn: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def machine() -> str:
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU {platform.processor() or platform.machine()}"
    return f"{dev}, {torch.get_num_threads()} threads, torch {torch.__version__}"
