"""Distil a synthetic set: resolve the plugins a recipe names, run the loop, store the result.

The loop is the runtime's, not the method's, so every method gets progress, periodic
checkpoints (kept as blobs listed in the run record), a NaN guard and Ctrl-C handling.
"""

from __future__ import annotations

import copy
import math
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from ddtool import __version__
from ddtool.augment import Augmenter
from ddtool.context import DistillContext
from ddtool.data import ImageData
from ddtool.errors import DDToolError, UsageError
from ddtool.impl import resolve_impl
from ddtool.nets import build_net
from ddtool.plugins import registries
from ddtool.pool import Pool
from ddtool.progress import Reporter, Silent
from ddtool.recipe import Recipe, recipe_from_dict
from ddtool.runtime.pretrain import net_spec_of
from ddtool.runtime.records import io_entry, new_record, peak_memory
from ddtool.store import Artifact, Store
from ddtool.store.meta import DatasetSignature, SyntheticMeta, checkpoint_metadata
from ddtool.synthetic import SyntheticSet


@dataclass
class DistillResult:
    synthetic: SyntheticSet
    artifact: Artifact
    run_id: str
    seconds: float
    losses: list[float]


@dataclass
class Plan:
    """Everything a recipe resolves to before any work starts (also what --dry-run prints)."""

    method: Any
    selection: Any
    schedule: Any
    options: Any
    pool: Pool | None
    pool_artifact: Artifact | None
    iterations: int
    checkpoint_every: int
    impl: str

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method.name, "selection": self.selection.name, "schedule": self.schedule.name,
            "pool": self.pool_artifact.ref if self.pool_artifact else None,
            "iterations": self.iterations, "checkpoint_every": self.checkpoint_every, "impl": self.impl,
        }


def plan(store: Store, recipe: Recipe, data: ImageData, pool_ref: str | None = None,
         device: torch.device | str = "cpu") -> Plan:
    """Resolve and check the recipe against the registries, the store and the data."""
    cfg = recipe.distill
    regs = registries()
    method = regs.method.get(cfg.method)
    selection = copy.deepcopy(regs.selection.get(cfg.selection))
    schedule = regs.schedule.get(cfg.schedule)
    # a sub-table of [distill.options] named after the selection strategy is the strategy's own
    # (e.g. [distill.options.dynadistill]); the rest belongs to the method
    method_raw = dict(cfg.options)
    selection.configure(method_raw.pop(selection.name, None))
    options = method.parse_options(method_raw)
    spec = net_spec_of(recipe)
    build_net(spec, data.channels, data.num_classes, data.resolution)  # a bad [net] fails before any work
    pool = pool_art = None
    ref = pool_ref or cfg.pool
    if ref:
        pool_art, tensors, meta = store.load(ref, kind="pool")
        pool = Pool.from_artifact(tensors, meta, pool_art.digest)
        pool.check_compatible(data, spec, ref)
    if selection.needs_pool and pool is None:
        raise UsageError(
            f"selection '{selection.name}' needs a model pool: run 'ddtool pretrain' and set "
            "[distill] pool = \"pool/NAME\" (or pass --pool)"
        )
    # a method whose multi-formation factor is a setting (IDC) says which one this run uses
    factor = method.factor_for(options, data.resolution)
    need = cfg.ipc * factor**2
    smallest = min(data.class_counts())
    if cfg.init == "real" and smallest < need:
        c = data.class_counts().index(smallest)
        raise UsageError(
            f"distill.ipc={cfg.ipc} needs {need} real images per class, but class '{data.classes[c]}' "
            f"has {smallest}; lower distill.ipc"
        )
    iterations = cfg.iterations or method.default_iterations(cfg.ipc) if method.iterative else 0
    every = cfg.checkpoint_every or max(1, iterations // 10)
    impl = resolve_impl(cfg.impl, device)
    return Plan(method, selection, schedule, options, pool, pool_art, iterations, every, impl)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a distill run, raised once its resumable checkpoint is saved."""

    def __init__(self, run_id: str, iteration: int | None) -> None:
        super().__init__(run_id)
        self.run_id = run_id
        self.iteration = iteration  # the checkpoint's iteration (None: interrupted before the first)


def _state(syn: SyntheticSet, opt: torch.optim.Optimizer, selection: Any, device: torch.device) -> dict[str, torch.Tensor]:
    """Everything the rest of a run depends on, taken between two iterations: the images, the
    optimizer state (SGD's buffer of the images as ``momentum``; anything else as
    ``optim.<param index>.<key>``), the selection strategy's ``state()`` (as ``selection.*``) and
    the RNG state (``rng``, plus ``rng.cuda`` on CUDA). Copies, so later steps do not change it."""
    tensors = {"images": syn.images.detach().clone(), "labels": syn.labels, "rng": torch.get_rng_state()}
    if device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    params = [q for group in opt.param_groups for q in group["params"]]
    for i, q in enumerate(params):
        for key, value in opt.state.get(q, {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = torch.tensor(value)
            if not isinstance(value, torch.Tensor):
                continue
            name = "momentum" if q is syn.images and key == "momentum_buffer" else f"optim.{i}.{key}"
            tensors[name] = value.detach().clone()
    for key, value in selection.state().items():
        tensors[f"selection.{key}"] = value.detach().clone()
    return tensors


def _restore(tensors: dict[str, torch.Tensor], syn: SyntheticSet, opt: torch.optim.Optimizer, selection: Any,
             device: torch.device) -> None:
    """Put a checkpoint back: the inverse of ``_state``. Call it last before the loop (RNG)."""
    if tensors["images"].shape != syn.images.shape or not torch.equal(tensors["labels"].cpu(), syn.labels.cpu()):
        raise DDToolError(
            f"the checkpoint holds images {tuple(tensors['images'].shape)}, but this run makes "
            f"{tuple(syn.images.shape)}; resume with the data the run was started with"
        )
    with torch.no_grad():
        syn.images.copy_(tensors["images"].to(syn.images.device))
    params = [q for group in opt.param_groups for q in group["params"]]
    for key, value in tensors.items():
        if key == "momentum":
            opt.state[syn.images]["momentum_buffer"] = value.to(syn.images.device)
        elif key.startswith("optim."):
            _, index, name = key.split(".", 2)
            q = params[int(index)]
            opt.state[q][name] = value if name == "step" else value.to(q.device)
    selection.load_state({k[len("selection."):]: v for k, v in tensors.items() if k.startswith("selection.")})
    torch.set_rng_state(tensors["rng"])
    if "rng.cuda" in tensors and device.type == "cuda":
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)


def _checkpoint(store: Store, record: dict[str, Any], tensors: dict[str, torch.Tensor], it: int,
                seconds: float) -> str:
    """Store a checkpoint blob and list it in the run record on disk, under one lock (gc keeps it)."""
    with store.lock():
        digest = store.put_blob(tensors, checkpoint_metadata(it))
        if not record["checkpoints"] or record["checkpoints"][-1]["iteration"] != it:
            record["checkpoints"].append({"iteration": it, "digest": digest, "seconds": seconds})
        store.write_run(record)  # a crash (even SIGKILL) can resume from here
    return digest


@dataclass
class _ResumePoint:
    parent: dict[str, Any]  # the run record being continued
    checkpoint: dict[str, Any] | None  # its checkpoint entry ({iteration, digest}); None: start over
    tensors: dict[str, torch.Tensor] | None
    skipped: list[str]  # checkpoints that could not be read


def resumable_run(store: Store, run_id: str) -> tuple[dict[str, Any], Recipe]:
    """The record and recipe of a distill run that ``--resume`` can continue, or a one-line error."""
    from ddtool.store.refs import check_name

    try:
        check_name(run_id)
    except UsageError:
        raise UsageError(
            f"invalid run id '{run_id}': a run id is the name of a file in the store's runs/ folder "
            "without .json (letters, digits, '.', '_' or '-')"
        ) from None
    try:
        rec = store.run(run_id)
    except (OSError, ValueError) as exc:
        raise DDToolError(f"run record '{run_id}' is unreadable ({exc}); see 'ddtool store verify'") from None
    rid = rec.get("id", run_id)
    if rec.get("command") != "distill":
        raise UsageError(f"run {rid} is a {rec.get('command')} run; only distill runs can be resumed")
    if rec.get("status") == "complete":
        made = ", ".join(o.get("ref", "?") for o in rec.get("outputs", []))
        raise UsageError(f"run {rid} is complete (it made {made or 'its artifact'}); there is nothing to resume")
    if rec.get("resumed_by"):
        raise UsageError(f"run {rid} was already resumed by run {rec['resumed_by'][-1]}; resume that run instead")
    pid = rec.get("pid")
    if (rec.get("status") == "running" and isinstance(pid, int) and pid != os.getpid()
            and rec.get("host") == socket.gethostname() and _alive(pid)):
        raise UsageError(f"run {rid} still appears to be running (process {pid}); stop it before resuming it")
    if "recipe" not in rec:
        raise DDToolError(f"run record {rid} has no recipe; it cannot be resumed")
    return rec, recipe_from_dict(rec["recipe"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def resume(store: Store, run_id: str, data: ImageData, device: torch.device,
           reporter: Reporter | None = None) -> DistillResult:
    """Continue an interrupted, failed or crashed distill run from its last readable checkpoint.

    The run's recorded recipe, pool and artifact name are used again; on CPU the result is
    bit-identical to an uninterrupted run (CUDA kernels need not be deterministic). Seconds go on
    from the checkpoint's, so checkpoint ``seconds`` and ``wall_seconds`` count the whole run.
    A new run record is written with ``resumed_from`` (the parent run, iteration and
    checkpoint); the parent gets ``resumed_by``.
    """
    parent, recipe = resumable_run(store, run_id)
    entry = tensors = None
    skipped: list[str] = []
    for candidate in reversed(parent.get("checkpoints") or []):
        try:
            tensors, _ = store.read_blob(candidate["digest"])
        except (DDToolError, KeyError, TypeError):
            skipped.append(str(candidate.get("digest", "?"))[:12])
            continue
        entry = candidate
        break
    pool_ref = next((i["digest"] for i in parent.get("inputs", []) if i.get("role") == "pool"), None)
    return distill(store, recipe, data, device, reporter, pool_ref=pool_ref, name=parent.get("artifact_name"),
                   _resume=_ResumePoint(parent, entry, tensors, skipped))


def distill(store: Store, recipe: Recipe, data: ImageData, device: torch.device,
            reporter: Reporter | None = None, pool_ref: str | None = None, name: str | None = None,
            _resume: _ResumePoint | None = None) -> DistillResult:
    from ddtool.store.refs import check_name

    reporter = reporter or Silent()
    cfg = recipe.distill
    art_name = check_name(name or cfg.name or recipe.name)  # fails before any work, not after the last step
    p = plan(store, recipe, data, pool_ref, device)
    torch.manual_seed(cfg.seed)
    ctx = DistillContext(data=data, cfg=cfg, net_spec=net_spec_of(recipe), device=device, iterations=p.iterations,
                         selection=p.selection, schedule=p.schedule, pool=p.pool, options=p.options, impl=p.impl,
                         augment=Augmenter(cfg.augment), method=p.method)
    syn = p.method.init_synthetic(ctx)
    syn.images.requires_grad_(True)
    ctx.synthetic = syn  # strategies that rank models on the current set (dynadistill) read it
    opt = p.method.make_optimizer(ctx, syn)
    record = new_record(store, "distill", recipe=recipe.to_dict(), recipe_sha256=recipe.sha256(),
                        device=str(device), plan=p.describe(), checkpoints=[], artifact_name=art_name,
                        pid=os.getpid(), host=socket.gethostname())
    if p.pool_artifact is not None:
        record["inputs"].append(io_entry(p.pool_artifact, "pool"))
    first = 0
    elapsed = 0.0  # seconds the runs before this one spent reaching ``first`` (a resume goes on counting)
    if _resume is not None:
        ckpt = _resume.checkpoint
        first = int(ckpt["iteration"]) if ckpt else 0
        if ckpt and isinstance(ckpt.get("seconds"), (int, float)):
            elapsed = float(ckpt["seconds"])
        record["resumed_from"] = {"run": _resume.parent["id"], "iteration": first,
                                  "checkpoint": ckpt["digest"] if ckpt else None}
        if _resume.skipped:
            record["resumed_from"]["unreadable_checkpoints"] = _resume.skipped
        if ckpt:
            # the checkpoint continued from, with the run that wrote it
            record["checkpoints"].append({**ckpt, "run": ckpt.get("run", _resume.parent["id"])})
            record["inputs"].append({"ref": ckpt["digest"][:12], "digest": ckpt["digest"], "kind": "checkpoint",
                                     "role": "checkpoint"})
    store.write_run(record)  # a crash still leaves a trace of the run
    if _resume is not None:
        with store.lock():
            parent = store.run(_resume.parent["id"])
            parent["resumed_by"] = [*parent.get("resumed_by", []), record["id"]]
            store.write_run(parent)
        if _resume.tensors is not None:
            _restore(_resume.tensors, syn, opt, p.selection, device)  # last: it sets the RNG state
    losses: list[float] = []
    start = time.perf_counter() - elapsed  # checkpoint seconds and wall_seconds stay monotonic across resumes
    it = first
    snapshot: tuple[int, dict[str, torch.Tensor]] | None = None  # (iteration, the state at its start)
    try:
        with reporter.task(f"distilling {cfg.method} ipc={cfg.ipc}", p.iterations) as task:
            if first:
                task.advance(first)
            for it in range(first, p.iterations):
                snapshot = (it, _state(syn, opt, p.selection, device))
                if it == first:  # count one iteration's FLOPs; the rest run without the counter
                    with FlopCounterMode(display=False) as counter:
                        loss = p.method.step(ctx, syn, opt, it)
                    record["flops_per_iteration"] = int(counter.get_total_flops())
                else:
                    loss = p.method.step(ctx, syn, opt, it)
                if not math.isfinite(loss):
                    last = record["checkpoints"][-1]["iteration"] if record["checkpoints"] else None
                    raise DDToolError(
                        f"loss became {loss} at iteration {it}; stopped"
                        + (f", last good checkpoint at iteration {last}" if last is not None else "")
                        + " (try a smaller distill.lr_img)"
                    )
                losses.append(loss)
                task.advance(1, loss=loss)
                if (it + 1) % p.checkpoint_every == 0 and it + 1 < p.iterations:
                    # right after an iteration: the images, optimizer, selection and RNG state
                    # determine the rest of the run
                    _checkpoint(store, record, _state(syn, opt, p.selection, device), it + 1,
                                time.perf_counter() - start)
    except KeyboardInterrupt:
        # Ctrl-C can land anywhere inside a step (RNG drawn, images half-updated): save the state
        # at the start of the interrupted iteration, which --resume redoes from scratch
        record.update(status="interrupted", wall_seconds=time.perf_counter() - start)
        if snapshot is not None:
            _checkpoint(store, record, snapshot[1], snapshot[0], time.perf_counter() - start)
        else:
            store.write_run(record)
        last = record["checkpoints"][-1]["iteration"] if record["checkpoints"] else None
        raise RunInterrupted(record["id"], last) from None
    except DDToolError as exc:
        record.update(status="failed", error=str(exc), wall_seconds=time.perf_counter() - start)
        store.write_run(record)
        raise
    except torch.cuda.OutOfMemoryError:
        message = f"out of memory on CUDA at iteration {it}"
        record.update(status="failed", error=message, wall_seconds=time.perf_counter() - start)
        store.write_run(record)
        raise DDToolError(f"{message}; lower distill.batch_real or the synthetic batch") from None
    except Exception as exc:
        # a bug (ddtool's or a plugin's) keeps its traceback, but the record must not stay "running"
        record.update(status="failed", error=f"{type(exc).__name__} at iteration {it}: {exc}",
                      wall_seconds=time.perf_counter() - start)
        store.write_run(record)
        raise
    seconds = time.perf_counter() - start
    info = SyntheticMeta(
        signature=DatasetSignature.of(data), method=p.method.name, selection=p.selection.name,
        schedule=p.schedule.name, mean=data.mean, std=data.std, net=ctx.net_spec.to_json(),
        parents=(p.pool_artifact.digest,) if p.pool_artifact else (), recipe_sha256=recipe.sha256(),
        seed=cfg.seed, iterations=p.iterations, version=__version__)
    stored = SyntheticSet(syn.images, syn.labels, cfg.ipc, syn.factor, info)  # the ipc the recipe asked for
    art = store.put("synthetic", art_name, *stored.to_artifact())
    record["outputs"].append(io_entry(art, "synthetic"))
    per_it = record.get("flops_per_iteration")
    record.update(status="complete", wall_seconds=seconds, **peak_memory(device),
                  flops=per_it * p.iterations if per_it is not None else None,
                  metrics={"final_loss": losses[-1] if losses else None, "iterations": p.iterations})
    store.write_run(record)
    return DistillResult(syn, art, record["id"], seconds, losses)
