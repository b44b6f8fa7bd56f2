"""Estimates before a run, shared by the verbs' ``--dry-run``: the memory limit, the estimate's
fields, and the probe of a few training steps that ``eval`` and ``pretrain`` are made of.

``distill --dry-run`` replays outer iterations (:mod:`ddtool.runtime.distill.estimate`); ``eval``
and ``pretrain`` train plain networks, so their probe (:func:`training_estimate`) trains a fresh
network of the run's kind for a few steps on the run's own images, settings and augmentation
(the stacked ensemble of all of them when the run stacks them), and scales:

* one batch timed first: the first call of a process pays one-off costs (lazy initialisation,
  the augmentation's and the kernels' first calls: 3 s of a 4.4 s digits trajectories run on the
  2-core CPU) that the run pays once too: its excess over the steady rate is the job's
  ``warmup_seconds``, added once to its total;
* one batch under ``torch.utils.flop_counter`` (its FLOPs), then, while the probe has taken at
  most ``PROBE_BUDGET_S``, up to ``PROBE_STEPS`` batches timed alone: their seconds per image,
  times the images of an epoch, are the seconds per epoch (a set no larger than that is timed
  whole, over several epochs: ``PROBE_STEPS`` steps, and more up to ``MIN_TIMED_S``);
* testing: one forward pass over up to ``TEST_PROBE`` test images, timed, scaled to what the run
  tests (each network once trained; an expert after every epoch too);
* peak memory and its limit as distill's: the CUDA allocator's peak during the probe, or this
  process's peak resident memory on a CPU, against the GPU's memory or the RAM available now.

An "iteration" of these estimates is one epoch as the run trains it: of one network, or of the
whole stacked ensemble when the run trains its networks as one (``impl = "vectorized"``).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

import torch

from ddtool.data import ImageData
from ddtool.flop_count import FlopCounter
from ddtool.lookup import build_net
from ddtool.nets import NetSpec
from ddtool.runtime import ensemble
from ddtool.runtime.run_records import peak_memory
from ddtool.runtime.supervised import BatchAugment, TrainSettings, accuracy, train

PROBE_BUDGET_S = 10.0  # time more steps only when the first (counted) one took at most this
PROBE_STEPS = 3  # batches timed after the counted one
TEST_PROBE = 1024  # test images timed (one accuracy() batch)
MIN_TIMED_S = 0.2  # a small set's timed epochs are repeated up to about this long
MAX_TIMED_EPOCHS = 100


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so a wall clock measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def memory_limit(device: torch.device) -> tuple[int | None, str]:
    """(bytes the run may use on ``device``, what they are): the GPU's total memory; on a CPU the
    RAM available now plus what this process holds (freed when it exits); None where unknown."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory), f"{torch.cuda.get_device_name(device)} memory"
    try:
        with open("/proc/meminfo") as f:
            avail = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
        with open("/proc/self/status") as f:
            rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration, ValueError):
        return None, "unknown (no /proc/meminfo)"
    return avail + rss, "available RAM"


def gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB"


def memory_measures(device: torch.device) -> str:
    """What a probe's peak memory is on ``device`` (the run record's ``peak_cuda_bytes`` / ``peak_rss_bytes``)."""
    return ("peak CUDA allocation during the probe (torch.cuda.max_memory_allocated)" if device.type == "cuda"
            else "peak resident memory of this process through the probe (ru_maxrss: data, libraries, tensors)")


def probe_peak(device: torch.device) -> int:
    """The peak :func:`memory_measures` names, now."""
    got = peak_memory(device)
    return got["peak_cuda_bytes"] if device.type == "cuda" else got["peak_rss_bytes"]


def over_memory(peak: int, limit: int, limit_what: str, fixes: list[str]) -> str:
    """The one line of an estimate over its limit: by how much, and ``fixes``, what lowers the run's memory."""
    return f"estimated peak memory {gib(peak)} exceeds the {limit_what} ({gib(limit)}); try " + "; ".join(fixes)


@dataclass
class Estimate:
    """What a ``--dry-run`` expects of the run (the ``estimate`` of its ``--json``)."""

    seconds_per_iteration: float
    seconds_total: float
    iterations: int
    flops_per_iteration: float
    peak_memory_bytes: int | None
    memory_limit_bytes: int | None
    memory_limit_from: str
    memory_measures: str
    fits: bool | None  # None: no limit known
    advice: str | None
    probe: str  # how the numbers were obtained
    device: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainingEstimate(Estimate):
    """An eval or pretrain dry-run's estimate: distill's fields (an iteration is an epoch, see the
    module's doc), the unit, and one part per kind of network the run trains."""

    unit: str = "epoch"
    parts: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class TrainingJob:
    """Networks a run trains alike, as it trains them: what the probe replays a few steps of."""

    what: str  # e.g. "synthetic/s:v1 on convnet"
    role: str  # what one network is to the user: "repeat", "model", "expert"
    data: ImageData  # the architecture's input and classes, and the test split
    spec: NetSpec
    images: torch.Tensor  # normalised, on the device, as training reads them
    labels: torch.Tensor  # class indices, or soft targets [N, classes]
    settings: TrainSettings  # with the run's epochs
    augment: BatchAugment | None
    networks: int
    stackable: bool  # the run may train them as one ensemble (ensemble.train_stacked) under impl
    impl: str  # loop | vectorized (resolved)
    tested_after: int = 0  # images each network is tested on once trained
    tested_per_epoch: int = 0  # images tested after every epoch (and once before: expert trajectories)


@dataclass
class JobProbe:
    """What probing one :class:`TrainingJob` measured, scaled to the job."""

    stacked: bool
    seconds_per_epoch: float  # of one network, or of the stacked ensemble
    flops_per_epoch: float
    seconds_total: float  # the epochs, the testing and the warm-up
    epochs_run: int  # iterations: epochs as the run trains them
    peak_memory_bytes: int
    timed_steps: int  # 0: past the budget, the first batch's rate is used (its warm-up included)
    warmup_seconds: float = 0.0  # the first call's excess over the steady rate

    def part(self, job: TrainingJob) -> dict[str, Any]:
        return {"what": job.what, "networks": job.networks, "role": job.role, "epochs": job.settings.epochs,
                "images": int(job.images.shape[0]), "batch": job.settings.batch, "stacked": self.stacked,
                "seconds_per_epoch": self.seconds_per_epoch,
                "seconds_per_network": (self.seconds_total - self.warmup_seconds) / job.networks,
                "warmup_seconds": self.warmup_seconds, "seconds_total": self.seconds_total,
                "flops_per_epoch": self.flops_per_epoch}


def probe_job(job: TrainingJob, device: torch.device, budget_s: float = PROBE_BUDGET_S) -> JobProbe:
    """Train a fresh network (or the stacked ensemble) of ``job`` for a few steps and scale them to
    the job (see the module's doc). The caller's RNG state is left as it was."""
    n = int(job.images.shape[0])
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        nets = [build_net(job.spec, job.data.channels, job.data.num_classes, job.data.resolution).to(device)
                for _ in range(job.networks if job.impl == "vectorized" and job.stackable else 1)]
        stacked = len(nets) > 1 and ensemble.supports(nets, job.settings)
        nets = nets if stacked else nets[:1]

        def run(images: int, epochs: int = 1) -> float:
            x, y, settings = job.images[:images], job.labels[:images], replace(job.settings, epochs=epochs)
            sync(device)
            t = time.perf_counter()
            if stacked:
                ensemble.train_stacked(nets, x, y, settings, job.augment)
            else:
                train(nets[0], x, y, settings, job.augment)
            sync(device)
            return time.perf_counter() - t

        started = time.perf_counter()
        counted = min(n, job.settings.batch)
        first = run(counted)  # with the process's one-off costs, if this is its first training
        with FlopCounter() as counter:
            run(counted)
        flops_per_epoch = float(counter.get_total_flops()) * n / max(counted, 1)
        timed_steps, per_image = 0, first / max(counted, 1)
        if time.perf_counter() - started <= budget_s:
            images = min(n, PROBE_STEPS * job.settings.batch)
            steps = -(-images // job.settings.batch)
            # a set of fewer batches is timed over several epochs (PROBE_STEPS steps at least), and over
            # more while they take under MIN_TIMED_S: one step of a tiny set is a few noisy milliseconds
            epochs = -(-PROBE_STEPS // steps) if images == n else 1
            seconds = run(images, epochs)
            if images == n and seconds < MIN_TIMED_S:
                epochs = min(MAX_TIMED_EPOCHS, max(epochs + 1, math.ceil(epochs * MIN_TIMED_S / max(seconds, 1e-6))))
                seconds = run(images, epochs)
            timed_steps, per_image = steps * epochs, seconds / max(images * epochs, 1)
        per_test = 0.0
        if job.tested_after or job.tested_per_epoch:
            m = min(int(job.data.test_labels.shape[0]), TEST_PROBE)
            sync(device)
            t = time.perf_counter()
            accuracy(nets[0], job.data.test_images[:m], job.data.test_labels[:m], job.data.normalize)
            sync(device)
            per_test = (time.perf_counter() - t) / max(m, 1)
        peak = probe_peak(device)
    epochs, copies = job.settings.epochs, job.networks
    per_epoch = per_image * n + (copies if stacked else 1) * job.tested_per_epoch * per_test
    epochs_run = epochs if stacked else epochs * copies
    tests = copies * (job.tested_after + job.tested_per_epoch) * per_test  # after training; experts once before
    warmup = max(0.0, first - per_image * counted)
    return JobProbe(stacked, per_epoch, flops_per_epoch, per_epoch * epochs_run + tests + warmup, epochs_run, peak,
                    timed_steps, warmup)


def training_estimate(jobs: list[TrainingJob], device: torch.device,
                      fixes: Callable[[list[dict[str, Any]]], list[str]],
                      budget_s: float = PROBE_BUDGET_S) -> TrainingEstimate:
    """Probe each job (see the module's doc) and add them up; over the device's memory, the advice
    names ``fixes(parts)``: what lowers this run's memory, phrased for its verb (``parts`` say
    which jobs train stacked)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    probes = [probe_job(job, device, budget_s) for job in jobs]
    total = sum(p.seconds_total for p in probes)
    iterations = sum(p.epochs_run for p in probes)
    per_it = sum(p.seconds_per_epoch * p.epochs_run for p in probes) / max(iterations, 1)
    flops = sum(p.flops_per_epoch * p.epochs_run for p in probes) / max(iterations, 1)
    peak = max((p.peak_memory_bytes for p in probes), default=None)
    limit, limit_what = memory_limit(device)
    fits = None if limit is None or peak is None else peak <= limit
    untimed = sum(p.timed_steps == 0 for p in probes)
    parts = [p.part(j) for p, j in zip(probes, jobs)]
    probe = (f"{len(jobs)} kind(s) of network probed on {device}, eager: a first batch timed (its warm-up "
             f"added once), one FLOP-counted, then up to {PROBE_STEPS} batches timed and scaled to the epochs; "
             f"testing timed on up to {TEST_PROBE} test images"
             + (f"; {untimed} past the probe's budget timed on the first batch only (its warm-up included, an "
                "overestimate)" if untimed else ""))
    return TrainingEstimate(
        seconds_per_iteration=per_it, seconds_total=total, iterations=iterations, flops_per_iteration=flops,
        peak_memory_bytes=peak, memory_limit_bytes=limit, memory_limit_from=limit_what,
        memory_measures=memory_measures(device), fits=fits,
        advice=over_memory(peak, limit, limit_what, fixes(parts)) if fits is False and peak and limit else None,
        probe=probe, device=str(device), parts=parts)


def describe_training(est: TrainingEstimate, verb: str) -> list[str]:
    """A training dry-run's lines: one per kind of network, the total and the memory, and the advice
    when it does not fit."""
    lines = []
    for part in est.parts:
        epochs = f"{part['epochs']} epoch{'' if part['epochs'] == 1 else 's'}"
        lines.append(f"estimate: {part['what']}: {part['seconds_per_epoch']:.3g} s per epoch, "
                     f"{part['seconds_per_network']:.3g} s per {part['role']} ({epochs} and testing), "
                     f"~{part['seconds_total']:.3g} s for {part['networks']} {part['role']}s "
                     f"({'stacked as one ensemble' if part['stacked'] else 'one at a time'}; "
                     f"{part['warmup_seconds']:.2g} s of it first-call warm-up)")
    mem = "not measured" if est.peak_memory_bytes is None else gib(est.peak_memory_bytes)
    limit = "" if est.memory_limit_bytes is None else f" of {gib(est.memory_limit_bytes)} ({est.memory_limit_from})"
    lines.append(f"estimate: ~{est.seconds_total:.3g} s for the whole {verb} ({est.iterations} epochs, eager), "
                 f"peak memory {mem}{limit}; from {est.probe}")
    if est.advice:
        lines.append(est.advice)
    return lines
