"""Estimates before a run: seconds per outer iteration and in total, and the peak memory, from a short probe.

``ddtool distill --dry-run`` replays the run's first outer iterations on the chosen device
(:func:`replay`, also what ``eval --checkpoints`` counts FLOPs with): iteration 0 under
``torch.utils.flop_counter`` (its FLOPs), then, while the probe has taken at most
``PROBE_BUDGET_S``, iterations 1 and 2 timed alone (their median is the per-iteration seconds,
without the first call's warm-up and the counter's overhead, which doubles IDC's step). A method
whose iteration is made of inner steps (IDC's inner loops) has its FLOPs counted on the first
inner step and a timed iteration stopped once past the budget, both scaled to the whole
iteration, so a dry-run takes seconds rather than an iteration of minutes. The probe runs eager, from the run's seed, on a throw-away context: nothing is
stored. What it measures:

* seconds: the timed iteration's wall seconds, times the planned iterations (eager: a
  ``compile`` run pays its compile time first and then runs faster; checkpoint writes are not in it);
* peak memory: on CUDA, the allocator's peak during the probe (``torch.cuda.max_memory_allocated``,
  the run record's ``peak_cuda_bytes``); on a CPU, the dry-run process's peak resident memory
  (data, libraries and one iteration's tensors; Linux ``ru_maxrss``, the run record's
  ``peak_rss_bytes``), which the run itself repeats: an outer iteration frees what it made;
* the limit it is compared with: the GPU's total memory, or the RAM available now
  (``MemAvailable`` of ``/proc/meminfo``, plus what this process already holds; none where Linux's
  files are absent, and then nothing is checked).

Over the limit, one line names the fix (:func:`advice`). The limit, the estimate's fields and that
line's wording are shared with ``eval`` and ``pretrain``'s dry-runs (:mod:`ddtool.runtime.dry_run_estimates`). The estimate is kept in the user cache
(:mod:`ddtool.runtime.machine`); a run of the same recipe, data and device copies it into its
record's ``estimate`` beside what it measured, so the estimator's error is measured
(``python -m bench.estimates``).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from ddtool.data import ImageData
from ddtool.runtime.distill.planning import Plan
# the pieces every verb's dry-run shares; memory_limit is looked up here, so a test can fake it for distill
from ddtool.runtime.dry_run_estimates import (PROBE_BUDGET_S, Estimate, gib, memory_limit, memory_measures,
                                              over_memory, probe_peak, sync)

__all__ = ["Estimate", "Replay", "advice", "describe", "estimate", "estimate_and_keep", "memory_limit", "replay"]


@dataclass
class Replay:
    """What replaying a run's first outer iterations measured."""

    flops: float  # of iteration 0 (matmuls and convolutions, forward and backward), scaled as its seconds
    seconds: list[float]  # wall seconds of each replayed iteration (the first one FLOP-counted)
    peak_memory_bytes: int | None = None  # when asked for: the device's peak (see the module's doc)
    fraction: float = 1.0  # of iteration 0 that ran: less when it was stopped after some inner steps


class _OverBudget(Exception):
    """Raised from the inner-step callback: the probe has seen enough of iteration 0."""


def replay(p: Plan, data: ImageData, device: torch.device, iterations: int = 1, memory: bool = False,
           budget_s: float = PROBE_BUDGET_S, scaled: bool = False) -> Replay:
    """Replay the first ``iterations`` outer iterations of the run planned as ``p`` (eager, from
    its seed, on a throw-away context; the caller's RNG state is left as it was): iteration 0 under
    the FLOP counter, the others timed alone, while the replay has taken at most ``budget_s``.

    ``scaled``: a method with inner steps (IDC's inner loops, ``progress_steps``) has its FLOPs
    counted on iteration 0's first inner step, and a timed iteration stopped once it passes the
    budget (after two inner steps at least); each is scaled to the whole iteration (its inner steps
    cost alike: the seconds before the first step, plus the median step times the others)."""
    from ddtool.flop_count import FlopCounter

    from ddtool.runtime.distill.loop import start_run

    steps = max(1, p.method.progress_steps(p.options)) if scaled else 1
    ticks: list[float] = []
    stop = {"after": 0.0, "ticks": 1}  # stop an iteration at an inner step past "after" (a perf_counter time)

    def inner_step() -> None:
        ticks.append(time.perf_counter())
        if steps > len(ticks) >= stop["ticks"] and ticks[-1] > stop["after"]:
            raise _OverBudget

    def run(it: int) -> float:
        """Seconds of iteration ``it``, scaled from its inner steps when it was stopped."""
        ticks.clear()
        sync(device)
        t = time.perf_counter()
        try:
            p.method.step(ctx, syn, opt, it)
        except _OverBudget:
            gaps = [b - a for a, b in zip(ticks, ticks[1:])]
            return ticks[0] - t + (statistics.median(gaps) if gaps else ticks[0] - t) * (steps - 1)
        sync(device)
        return time.perf_counter() - t

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        if memory and device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        ctx, syn, opt = start_run(p, data, compile=False, on_inner_step=inner_step)
        started = time.perf_counter()
        with FlopCounter() as counter:
            seconds = [run(0)]  # stopped after its first inner step when scaled (stop["after"] has passed)
        fraction = min(1.0, len(ticks) / steps) if steps > 1 and len(ticks) < steps else 1.0
        for it in range(1, min(iterations, p.iterations)):
            spent = time.perf_counter() - started
            if spent > budget_s:
                break
            stop.update(after=time.perf_counter() + budget_s - spent, ticks=2)
            seconds.append(run(it))
        peak = probe_peak(device) if memory else None
    return Replay(float(counter.get_total_flops()) / fraction, seconds, peak, fraction)


def advice(p: Plan, peak: int, limit: int, limit_what: str) -> str:
    """One line: the estimate exceeds the limit, and what lowers the run's memory."""
    fixes = []
    o = p.options
    if getattr(o, "unroll", None) == "plain":  # trajectory matching (mtt): the whole unroll's graph is held
        fixes.append(f'distill.options.unroll = "checkpointed" (memory of distill.options.segment = '
                     f"{getattr(o, 'segment', 10)} student steps instead of {getattr(o, 'syn_steps', 'all')})")
    elif getattr(o, "unroll", None) == "checkpointed":
        fixes.append(f"a smaller distill.options.segment (now {getattr(o, 'segment', '?')})")
    batches = []
    if getattr(p.cfg, "batch_real", 0):
        batches.append(f"distill.batch_real (now {p.cfg.batch_real})")
    if getattr(o, "batch_syn", None) is not None:
        batches.append(f"distill.options.batch_syn (now {o.batch_syn or 'the whole set'})")
    fixes.append("smaller batches" + (f": {', '.join(batches)}" if batches else ""))
    fixes.append("fewer processes (--nproc: each holds its own copy)" if p.device.type == "cpu"
                 else "fewer processes per GPU")
    return over_memory(peak, limit, limit_what, fixes)


def _selection_only(p: Plan, data: ImageData, device: torch.device) -> Estimate:
    """A method whose initial set is the result (a coreset: random, herding) has no iteration to
    replay: the probe makes its set once, as the run does, and times that."""
    from ddtool.runtime.distill.loop import start_run

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        sync(device)
        t = time.perf_counter()
        start_run(p, data, compile=False)
        sync(device)
        seconds = time.perf_counter() - t
        peak = probe_peak(device)
    return _estimate(p, device, 0.0, seconds, 0.0, peak,
                     f"'{p.method.name}' selects its set without iterations: the selection made once on {device} "
                     "and timed")


def estimate(p: Plan, data: ImageData, device: torch.device) -> Estimate:
    """Probe the run planned as ``p`` (up to three eager iterations, see the module's doc) and extrapolate."""
    if not p.method.iterative:
        return _selection_only(p, data, device)
    r = replay(p, data, device, iterations=3, memory=True, scaled=True)
    per_it = statistics.median(r.seconds[1:] or r.seconds)
    timed = len(r.seconds) - 1
    first = ("iteration 0 FLOP-counted" if r.fraction == 1 else
             f"the first of iteration 0's {round(1 / r.fraction)} inner steps FLOP-counted, scaled to the whole")
    probe = (f"{len(r.seconds)} eager iteration(s) replayed on {device}: {first}, "
             + (f"the median of {timed} more timed" if timed else
                "timed (the only one probed: FLOP counter's overhead included, an overestimate)")
             + ("; inner steps past the probe's budget scaled from the median step" if r.fraction < 1 else ""))
    return _estimate(p, device, per_it, per_it * p.iterations, r.flops, r.peak_memory_bytes, probe)


def _estimate(p: Plan, device: torch.device, per_it: float, total: float, flops: float, peak: int | None,
              probe: str) -> Estimate:
    """The estimate of what a probe measured, set against the device's memory (the advice when over)."""
    limit, limit_what = memory_limit(device)
    fits = None if limit is None or peak is None else peak <= limit
    return Estimate(seconds_per_iteration=per_it, seconds_total=total, iterations=p.iterations,
                    flops_per_iteration=flops, peak_memory_bytes=peak, memory_limit_bytes=limit,
                    memory_limit_from=limit_what, memory_measures=memory_measures(device), fits=fits,
                    advice=advice(p, peak, limit, limit_what) if fits is False and peak and limit else None,
                    probe=probe, device=str(device))


def estimate_and_keep(p: Plan, data: ImageData, device: torch.device) -> Estimate:
    """:func:`estimate`, kept in the user cache for the run of the same recipe, data and device to
    record beside what it measures."""
    from ddtool.runtime import machine

    est = estimate(p, data, device)
    machine.save_estimate(machine.estimate_key(p.recipe.sha256(), data.name, device), est.to_dict())
    return est


def describe(est: Estimate) -> list[str]:
    """The dry-run's lines: time, memory, and the advice when it does not fit."""
    mem = "not measured" if est.peak_memory_bytes is None else gib(est.peak_memory_bytes)
    limit = ("" if est.memory_limit_bytes is None
             else f" of {gib(est.memory_limit_bytes)} ({est.memory_limit_from})")
    time_part = (f"~{est.seconds_total:.3g} s, no iterations" if est.iterations == 0 else
                 f"{est.seconds_per_iteration:.3g} s per iteration, ~{est.seconds_total:.3g} s for "
                 f"{est.iterations} iterations (eager)")
    lines = [f"estimate: {time_part}, peak memory {mem}{limit}; from {est.probe}"]
    if est.advice:
        lines.append(est.advice)
    return lines
