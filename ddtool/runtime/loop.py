"""The distillation loop: run a planned recipe's iterations and store the synthetic set.

The loop is the runtime's, not the method's, so every method gets progress, periodic
checkpoints (kept as blobs listed in the run record), a NaN guard and Ctrl-C handling.
"""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch.utils.flop_counter import FlopCounterMode

from ddtool import __version__
from ddtool.context import DistillContext
from ddtool.data import ImageData
from ddtool.errors import DDToolError, UsageError
from ddtool.methods.base import MatchingMethod
from ddtool.methods.sharding import PeerLost
from ddtool.progress import Reporter, Silent
from ddtool.recipe import Recipe
from ddtool.runtime import checkpoint, distributed
from ddtool.runtime.autocompile import AutoCompile
from ddtool.runtime.plan import Plan, build_context, plan
from ddtool.runtime.records import io_entry, run_record
from ddtool.store import Artifact, Store
from ddtool.store.meta import DatasetSignature, SyntheticMeta
from ddtool.synthetic import SyntheticSet

if TYPE_CHECKING:
    from ddtool.runtime.resume import ResumePoint


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


def start_run(recipe: Recipe, data: ImageData, device: torch.device, p: Plan
              ) -> tuple[DistillContext, SyntheticSet, torch.optim.Optimizer]:
    """The start of a run of ``recipe`` as planned: seeded, its context, the initial synthetic set
    (requiring grad) and the set's optimizer, drawing what the run draws."""
    torch.manual_seed(recipe.distill.seed)
    ctx = build_context(recipe, data, device, plan=p)
    ctx.shard = distributed.class_shard(data.num_classes)  # type: ignore[attr-defined]
    syn = p.method.init_synthetic(ctx)
    syn.images.requires_grad_(True)
    ctx.synthetic = syn  # strategies that rank models on the current set (dynadistill) read it
    opt = p.method.make_optimizer(ctx, syn)
    ctx.optimizer = opt  # where a method's score evaluates the images (IDC's per-class momentum)
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
            reporter: Reporter | None = None, pool_ref: str | None = None, name: str | None = None,
            _resume: ResumePoint | None = None) -> DistillResult:
    from ddtool.store.refs import check_name

    reporter = reporter or Silent()
    art_name = check_name(name or recipe.distill.name or recipe.name)  # fails before any work, not after the last step
    p = plan(store, recipe, data, pool_ref, device)
    recipe = p.recipe or recipe  # with the method's defaults filled in: what is recorded and hashed
    cfg = recipe.distill
    for note in p.notes:
        reporter.note(note)
    _check_world(p.method)
    ctx, syn, opt = start_run(recipe, data, device, p)
    compiler = AutoCompile(cfg.compile, ctx.device, note=getattr(reporter, "note", lambda _line: None))
    ctx.compile = compiler.start()
    fields = dict(recipe=recipe.to_dict(), recipe_sha256=recipe.sha256(), plan=p.describe(), checkpoints=[],
                  artifact_name=art_name, pid=os.getpid(), host=socket.gethostname(),
                  inputs=[io_entry(art, role) for art, role in p.inputs()])
    if _resume is not None:
        _resume.note(fields)
    # a resumed run starts at its checkpoint, and its seconds (checkpoints', wall_seconds) go on counting
    first, elapsed = (_resume.iteration, _resume.seconds) if _resume is not None else (0, 0.0)
    losses: list[float] = []
    with run_record(store, "distill", device, elapsed=elapsed, **fields) as run:
        record = run.record
        record["compile"] = compiler.info  # filled in as the run decides (ddtool.runtime.autocompile)
        main = distributed.is_main()  # only rank 0 writes: the record, checkpoints, the artifact
        if _resume is not None and main:
            _resume.mark_parent(store, run.id)
        if _resume is not None and _resume.tensors is not None:  # every rank reads it, none writes
            checkpoint.restore(_resume.tensors, syn, opt, p.selection, device)  # last: it sets the RNG state
        snapshot: tuple[int, dict[str, torch.Tensor]] | None = None  # (iteration, the state at its start)

        def interrupted() -> RunInterrupted:
            # Ctrl-C can land anywhere inside a step (RNG drawn, images half-updated): save the state
            # at the start of the interrupted iteration, which --resume redoes from scratch
            last = checkpoint.last_iteration(record)
            # a Ctrl-C right after a periodic checkpoint (before the next iteration took its
            # snapshot) must not put an older state after it
            if snapshot is not None and (last is None or snapshot[0] > last) and main:
                checkpoint.save(store, record, snapshot[1], snapshot[0], run.elapsed())
            else:
                run.write()
            return RunInterrupted(run.id, checkpoint.last_iteration(record))

        run.on_interrupt = interrupted
        run.oom_hint = "lower distill.batch_real or the synthetic batch"
        run.where = f"iteration {first}"
        # progress counts inner steps where a method has them (IDC), so the ETA is known within seconds
        per = max(1, p.method.progress_steps(p.options))
        with reporter.task(f"distilling {cfg.method} ipc={cfg.ipc}", p.iterations * per) as task:
            if first:
                task.advance(first * per)
            ticks = [0]

            def inner_step() -> None:
                if ticks[0] < per - 1:  # the last one is advanced with the iteration's loss
                    ticks[0] += 1
                    task.advance(1)

            ctx.on_inner_step = inner_step
            try:
                for it in range(first, p.iterations):
                    run.where = f"iteration {it}"
                    ticks[0] = 0
                    snapshot = (it, checkpoint.state(syn, opt, p.selection, device))
                    compiler.before()
                    if it == first:  # count one iteration's FLOPs; the rest run without the counter
                        with FlopCounterMode(display=False) as counter:
                            loss = p.method.step(ctx, syn, opt, it)
                        mine = int(counter.get_total_flops())
                        # each process counted its share: the run's FLOPs are their sum
                        record["flops_per_iteration"] = sum(distributed.all_gather_object(mine))
                        # "auto" decides here, from the work left (the same on every run of the recipe);
                        # across processes from rank 0's share, so that every process runs the same kernels
                        ctx.compile = distributed.broadcast_object(compiler.decide(mine * (p.iterations - it - 1), at=it))
                    else:
                        loss = p.method.step(ctx, syn, opt, it)
                    compiler.after()
                    chosen = p.selection.log()
                    if chosen is not None and main:  # one compact entry per outer loop (dynadistill's choice)
                        record.setdefault("selection_log", []).append({"it": it, **chosen})
                    if not math.isfinite(loss):
                        last = checkpoint.last_iteration(record)
                        raise DDToolError(
                            f"loss became {loss} at iteration {it}; stopped"
                            + (f", last good checkpoint at iteration {last}" if last is not None else "")
                            + " (try a smaller distill.lr_img)"
                        )
                    losses.append(loss)
                    task.advance(per - ticks[0], loss=loss)
                    if (it + 1) % p.checkpoint_every == 0 and it + 1 < p.iterations:
                        # right after an iteration: the images, optimizer, selection and RNG state
                        # determine the rest of the run
                        if main:
                            checkpoint.save(store, record, checkpoint.state(syn, opt, p.selection, device), it + 1,
                                            run.elapsed())
            except PeerLost as exc:  # a rank died: the run is failed, resumable from its last checkpoint
                last = checkpoint.last_iteration(record)
                where = f"its checkpoint at iteration {last}" if last is not None else "the start (no checkpoint yet)"
                raise PeerLost(f"{exc}; run {run.id} failed and can go on from {where}: "
                               f"ddtool distill --resume {run.id}") from None
        seconds = run.elapsed()
        run.where = ""
        info = SyntheticMeta(
            signature=DatasetSignature.of(data), method=p.method.name, selection=p.selection.name,
            schedule=p.schedule.name, mean=data.mean, std=data.std, net=ctx.net_spec.to_json(),
            parents=tuple(art.digest for art, _ in p.inputs()), recipe_sha256=recipe.sha256(),
            seed=cfg.seed, iterations=p.iterations, version=__version__, learned_lr=checkpoint.learned_lr(opt))
        stored = SyntheticSet(syn.images, syn.labels, cfg.ipc, syn.factor, info)  # the ipc the recipe asked for
        # every rank holds the whole set (ddtool.methods.sharding); rank 0 stores it, the others learn its ref
        art = distributed.broadcast_object(store.put("synthetic", art_name, *stored.to_artifact()) if main else None)
        record["outputs"].append(io_entry(art, "synthetic"))
        per_it = record.get("flops_per_iteration")
        run.complete(seconds, flops=per_it * p.iterations if per_it is not None else None,
                     metrics={"final_loss": losses[-1] if losses else None, "iterations": p.iterations})
    return DistillResult(syn, art, run.id, seconds, losses)
