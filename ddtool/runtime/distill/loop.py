"""The distillation loop: run a planned recipe's iterations and store the synthetic set.

The loop is the runtime's, not the method's, so every method gets progress, periodic
checkpoints (kept as blobs listed in the run record), a NaN guard and Ctrl-C handling. It reads
one way: plan -> start (the context, built once, and the set) -> iterate from a
:class:`~ddtool.runtime.distill.checkpoint.StartPoint` -> store.
"""

from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ddtool.flop_count import FlopCounter
from ddtool.version import __version__
from ddtool.context import DistillContext
from ddtool.data import ImageData
from ddtool.errors import DDToolError, UsageError
from ddtool.methods.base import MatchingMethod
from ddtool.collective import PeerLost
from ddtool.progress import Reporter, Silent
from ddtool.recipe import Recipe
from ddtool.runtime.distill import checkpoint
from ddtool.runtime.distributed import process_group as distributed
from ddtool.runtime import machine
from ddtool.runtime.autocompile import AutoCompile
from ddtool.runtime.distill.checkpoint import StartPoint
from ddtool.runtime.distill.planning import Plan, context_of, plan
from ddtool.runtime.run_records import Run, io_entry, peak_memory, run_record
from ddtool.store import Artifact, Store
from ddtool.store.meta import DatasetSignature, SyntheticMeta
from ddtool.synthetic import SyntheticSet


@dataclass
class DistillResult:
    synthetic: SyntheticSet
    artifact: Artifact
    run_id: str
    seconds: float
    losses: list[float]


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a distill run, raised once its resumable checkpoint is saved."""

    def __init__(self, run_id: str, iteration: int | None) -> None:
        super().__init__(run_id)
        self.run_id = run_id
        self.iteration = iteration  # the checkpoint's iteration (None: interrupted before the first)


def start_run(p: Plan, data: ImageData, *, compile: bool | None = None,
              on_inner_step: Callable[[], None] | None = None
              ) -> tuple[DistillContext, SyntheticSet, torch.optim.Optimizer]:
    """The start of a run planned as ``p``: seeded, its context (built once, from the plan), the
    initial synthetic set (requiring grad) and the set's optimizer, drawing what the run draws."""
    torch.manual_seed(p.cfg.seed)
    ctx = context_of(p, data, compile=compile, on_inner_step=on_inner_step)
    syn = p.method.init_synthetic(ctx)
    syn.images.requires_grad_(True)
    opt = p.method.make_optimizer(ctx, syn)
    # strategies that rank models on the current set (dynadistill) read it; a method's score reads
    # where the optimizer's next update evaluates the images (IDC's per-class momentum)
    ctx.synthetic, ctx.optimizer = syn, opt
    return ctx, syn, opt


def _check_world(method: MatchingMethod) -> None:
    """Refuse, before any work, a method that cannot split its classes across the launched processes
    (it does not declare ``class_sharded``)."""
    size = distributed.current().size
    if size == 1 or method.class_sharded:
        return
    if method.trajectories_option is not None:
        why = "trajectory matching does not split by class"
    else:
        why = "it does not split its classes across processes"
    raise UsageError(f"method '{method.name}' runs in one process ({why}) but {size} were launched: "
                     "run it without torchrun or --nproc")


def distill(store: Store, recipe: Recipe, data: ImageData, device: torch.device,
            reporter: Reporter | None = None, pool_ref: str | None = None, name: str | None = None, *,
            start: StartPoint | None = None) -> DistillResult:
    """Distil ``recipe``'s synthetic set from ``data`` and store it as ``synthetic/NAME``; ``start``:
    where the run starts (a fresh run by default; ``--resume`` passes a checkpoint's)."""
    from ddtool.store.refs import check_name

    reporter = reporter or Silent()
    art_name = check_name(name or recipe.distill.name or recipe.name)  # fails before any work, not after the last step
    p = plan(store, recipe, data, pool_ref, device)
    for note in p.notes:
        reporter.note(note)
    _check_world(p.method)
    start = start or StartPoint()
    compiler = AutoCompile(p.cfg.compile, p.device, note=getattr(reporter, "note", lambda _line: None))
    progress = _Progress(max(1, p.method.progress_steps(p.options)))
    ctx, syn, opt = start_run(p, data, compile=compiler.start(), on_inner_step=progress.inner_step)
    with run_record(store, "distill", device, elapsed=start.seconds, **_record_fields(p, art_name, start)) as run:
        run.record["compile"] = compiler.info  # filled in as the run decides (ddtool.runtime.autocompile)
        # a dry-run's estimate of this recipe, data and device, beside what the run measures (store_set)
        run.record["estimate"] = {"estimated": machine.saved_estimate(
            machine.estimate_key(p.recipe.sha256(), data.name, device)), "actual": None}
        if start.parent is not None and distributed.is_main():
            checkpoint.mark_resumed_by(store, start.parent, run.id)
        if start.state is not None:  # every rank reads it, none writes
            checkpoint.restore(start.state, syn, opt, p.selection, p.device, p.method, ctx)  # last: it sets the RNG state
        running = _Running(store, p, ctx, syn, opt, run, compiler, progress)
        running.iterate(start.iteration, reporter)
        art = running.store_set(data, art_name)
    return DistillResult(syn, art, run.id, running.seconds, running.losses)


def _record_fields(p: Plan, art_name: str, start: StartPoint) -> dict[str, Any]:
    """What the run record says from its start: the recipe as resolved, the plan, its inputs, and
    where it resumes from."""
    fields = dict(recipe=p.recipe.to_dict(), recipe_sha256=p.recipe.sha256(), plan=p.describe(), checkpoints=[],
                  artifact_name=art_name, pid=os.getpid(), host=socket.gethostname(),
                  inputs=[io_entry(art, role) for art, role in p.inputs()])
    start.record_fields(fields)
    return fields


@dataclass
class _Progress:
    """A run's progress in ticks: ``per`` per outer iteration, so a method with inner steps (IDC)
    shows its ETA within seconds (it calls ``ctx.inner_step_done()`` after each)."""

    per: int
    task: Any = None
    ticks: int = 0  # inner steps advanced in the current iteration

    def inner_step(self) -> None:
        if self.task is not None and self.ticks < self.per - 1:  # the last one is advanced with the loss
            self.ticks += 1
            self.task.advance(1)

    def iteration_done(self, loss: float) -> None:
        self.task.advance(self.per - self.ticks, loss=loss)


@dataclass
class _Running:
    """A distill run under way: the state its iterations move, and what they write."""

    store: Store
    p: Plan
    ctx: DistillContext
    syn: SyntheticSet
    opt: torch.optim.Optimizer
    run: Run
    compiler: AutoCompile
    progress: _Progress
    main: bool = field(default_factory=distributed.is_main)  # only rank 0 writes: record, checkpoints, artifact
    losses: list[float] = field(default_factory=list)
    snapshot: tuple[int, dict[str, torch.Tensor]] | None = None  # (iteration, the state at its start)
    seconds: float = 0.0  # the run's, once its iterations are done
    iteration_seconds: float | None = None  # mean wall seconds of the outer iterations this process ran

    def iterate(self, first: int, reporter: Reporter) -> None:
        """Outer iterations ``first`` .. the plan's last, with progress, checkpoints and the NaN guard."""
        p = self.p
        self.run.on_interrupt = self.interrupted
        self.run.oom_hint = "lower distill.batch_real or the synthetic batch"
        self.run.where = f"iteration {first}"
        with reporter.task(f"distilling {p.cfg.method} ipc={p.cfg.ipc}", p.iterations * self.progress.per) as task:
            self.progress.task = task
            if first:
                task.advance(first * self.progress.per)
            try:
                started = time.perf_counter()
                for it in range(first, p.iterations):
                    self.iteration(it, counted=it == first)
                if p.iterations > first:
                    self.iteration_seconds = (time.perf_counter() - started) / (p.iterations - first)
            except PeerLost as exc:  # a rank died: the run is failed, resumable from its last checkpoint
                last = checkpoint.last_iteration(self.run.record)
                where = f"its checkpoint at iteration {last}" if last is not None else "the start (no checkpoint yet)"
                raise PeerLost(f"{exc}; run {self.run.id} failed and can go on from {where}: "
                               f"ddtool distill --resume {self.run.id}") from None

    def iteration(self, it: int, counted: bool) -> None:
        """One outer iteration: the method's step, then what the run keeps of it."""
        self.run.where = f"iteration {it}"
        self.progress.ticks = 0
        self.snapshot = (it, checkpoint.state(self.syn, self.opt, self.p.selection, self.p.device,
                                                  self.p.method, self.ctx))
        self.compiler.before()
        loss = self.counted_step(it) if counted else self.p.method.step(self.ctx, self.syn, self.opt, it)
        self.compiler.after()
        chosen = self.p.selection.log()
        if chosen is not None and self.main:  # one compact entry per outer loop (dynadistill's choice)
            self.run.record.setdefault("selection_log", []).append({"it": it, **chosen})
        if not math.isfinite(loss):
            last = checkpoint.last_iteration(self.run.record)
            raise DDToolError(f"loss became {loss} at iteration {it}; stopped"
                              + (f", last good checkpoint at iteration {last}" if last is not None else "")
                              + " (try a smaller distill.lr_img)")
        self.losses.append(loss)
        self.progress.iteration_done(loss)
        if self.checkpoint_due(it) and it + 1 < self.p.iterations and self.main:
            # right after an iteration: the images, optimizer, selection and RNG state determine the rest of the run
            checkpoint.save(self.store, self.run.record, checkpoint.state(self.syn, self.opt, self.p.selection,
                                                                          self.p.device, self.p.method, self.ctx), it + 1, self.run.elapsed())

    def checkpoint_due(self, it: int) -> bool:
        """Whether iteration ``it`` ends with a checkpoint: every ``checkpoint_every`` iterations, and
        with ``checkpoint_seconds`` once that many wall seconds of the run passed since the last one
        (a resumed run counts from its last checkpoint's recorded seconds)."""
        if (it + 1) % self.p.checkpoint_every == 0:
            return True
        if not self.p.checkpoint_seconds:
            return False
        points = self.run.record["checkpoints"]
        last = (points[-1].get("seconds") or 0.0) if points else 0.0
        return self.run.elapsed() - last >= self.p.checkpoint_seconds

    def counted_step(self, it: int) -> float:
        """The first iteration of the run, under the FLOP counter (the rest run without it); a
        ``compile = "auto"`` run decides here whether the rest compiles."""
        started = time.perf_counter()
        with FlopCounter() as counter:
            loss = self.p.method.step(self.ctx, self.syn, self.opt, it)
        seconds = time.perf_counter() - started
        mine = int(counter.get_total_flops())
        # each process counted its share: the run's FLOPs are their sum
        self.run.record["flops_per_iteration"] = sum(distributed.all_gather_object(mine))
        # "auto" decides from the work left (the same on every run of the recipe); across processes
        # from rank 0's share, so that every process runs the same kernels
        self.ctx.compile = distributed.broadcast_object(
            self.compiler.decide(mine * (self.p.iterations - it - 1), at=it, eager=(mine, seconds)))
        return loss

    def interrupted(self) -> RunInterrupted:
        """Ctrl-C can land anywhere inside a step (RNG drawn, images half-updated): save the state at
        the start of the interrupted iteration, which --resume redoes from scratch."""
        record = self.run.record
        last = checkpoint.last_iteration(record)
        # a Ctrl-C right after a periodic checkpoint (before the next iteration took its snapshot)
        # must not put an older state after it
        if self.snapshot is not None and (last is None or self.snapshot[0] > last) and self.main:
            checkpoint.save(self.store, record, self.snapshot[1], self.snapshot[0], self.run.elapsed())
        else:
            self.run.write()
        return RunInterrupted(self.run.id, checkpoint.last_iteration(record))

    def store_set(self, data: ImageData, art_name: str) -> Artifact:
        """Store the distilled set (rank 0; the others learn its ref) and complete the run record."""
        p, syn, record = self.p, self.syn, self.run.record
        seconds = self.seconds = self.run.elapsed()
        self.run.where = ""
        info = SyntheticMeta(
            signature=DatasetSignature.of(data), method=p.method.name, selection=p.selection.name,
            schedule=p.schedule.name, mean=data.mean, std=data.std, net=p.net_spec.to_json(),
            parents=tuple(art.digest for art, _ in p.inputs()), recipe_sha256=p.recipe.sha256(),
            seed=p.cfg.seed, iterations=p.iterations, version=__version__, learned_lr=checkpoint.learned_lr(self.opt),
            label_kind=syn.info.label_kind if syn.soft_labels is not None else None)
        # the ipc the recipe asked for; label vectors when the method learned them
        stored = SyntheticSet(syn.images, syn.labels, p.cfg.ipc, syn.factor, info, soft_labels=syn.soft_labels)
        # every rank holds the whole set (ddtool.methods.sharding); rank 0 stores it, the others learn its ref
        art = distributed.broadcast_object(self.store.put("synthetic", art_name, *stored.to_artifact())
                                           if self.main else None)
        record["outputs"].append(io_entry(art, "synthetic"))
        per_it = record.get("flops_per_iteration")
        peak = peak_memory(p.device)
        record["estimate"]["actual"] = {  # what the dry-run's estimate is measured against
            "seconds_per_iteration": self.iteration_seconds,
            "peak_memory_bytes": peak.get("peak_cuda_bytes", peak["peak_rss_bytes"])}
        self.run.complete(seconds, flops=per_it * p.iterations if per_it is not None else None,
                          metrics={"final_loss": self.losses[-1] if self.losses else None,
                                   "iterations": p.iterations})
        return art
