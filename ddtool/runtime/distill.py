"""Distil a synthetic set: resolve the plugins a recipe names, run the loop, store the result.

The loop is the runtime's, not the method's, so every method gets progress, periodic
checkpoints (kept as blobs listed in the run record), a NaN guard and Ctrl-C handling.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from ddtool import __version__
from ddtool.augment import Augmenter
from ddtool.context import DistillContext
from ddtool.data import ImageData
from ddtool.errors import DDToolError, UsageError
from ddtool.nets import build_net
from ddtool.plugins import registries
from ddtool.pool import Pool
from ddtool.progress import Reporter, Silent
from ddtool.recipe import Recipe
from ddtool.runtime.pretrain import net_spec_of
from ddtool.runtime.records import io_entry, new_record
from ddtool.store import Artifact, Store
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


def plan(store: Store, recipe: Recipe, data: ImageData, pool_ref: str | None = None) -> Plan:
    """Resolve and check the recipe against the registries, the store and the data."""
    cfg = recipe.distill
    regs = registries()
    method = regs.method.get(cfg.method)
    selection = copy.deepcopy(regs.selection.get(cfg.selection))
    schedule = regs.schedule.get(cfg.schedule)
    options = method.parse_options(cfg.options)
    spec = net_spec_of(recipe)
    build_net(spec, data.channels, data.num_classes, data.resolution)  # a bad [net] fails before any work
    pool = pool_art = None
    ref = pool_ref or cfg.pool
    if ref:
        pool_art, tensors, meta = store.load(ref, kind="pool")
        pool = Pool.from_artifact(tensors, meta, pool_art.digest)
        pool.check_compatible(data, spec, ref)
    if getattr(selection, "needs_pool", False) and pool is None:
        raise UsageError(
            f"selection '{selection.name}' needs a model pool: run 'ddtool pretrain' and set "
            "[distill] pool = \"pool/NAME\" (or pass --pool)"
        )
    need = cfg.ipc * method.factor**2
    smallest = min(data.class_counts())
    if cfg.init == "real" and smallest < need:
        c = data.class_counts().index(smallest)
        raise UsageError(
            f"distill.ipc={cfg.ipc} needs {need} real images per class, but class '{data.classes[c]}' "
            f"has {smallest}; lower distill.ipc"
        )
    iterations = cfg.iterations or method.default_iterations(cfg.ipc) if method.iterative else 0
    every = cfg.checkpoint_every or max(1, iterations // 10)
    impl = "vectorized" if cfg.impl == "auto" else cfg.impl
    return Plan(method, selection, schedule, options, pool, pool_art, iterations, every, impl)


def _checkpoint(store: Store, syn: SyntheticSet, opt: torch.optim.Optimizer, it: int) -> str:
    tensors = {"images": syn.images.detach(), "labels": syn.labels, "rng": torch.get_rng_state()}
    buf = opt.state.get(syn.images, {}).get("momentum_buffer")
    if buf is not None:
        tensors["momentum"] = buf
    return store.put_blob(tensors, {"ddtool.kind": "checkpoint", "ddtool.iteration": str(it)})


def distill(store: Store, recipe: Recipe, data: ImageData, device: torch.device,
            reporter: Reporter | None = None, pool_ref: str | None = None, name: str | None = None) -> DistillResult:
    reporter = reporter or Silent()
    cfg = recipe.distill
    p = plan(store, recipe, data, pool_ref)
    torch.manual_seed(cfg.seed)
    ctx = DistillContext(data=data, cfg=cfg, net_spec=net_spec_of(recipe), device=device, iterations=p.iterations,
                         selection=p.selection, schedule=p.schedule, pool=p.pool, options=p.options, impl=p.impl,
                         augment=Augmenter(cfg.augment), method=p.method)
    syn = p.method.init_synthetic(ctx)
    syn.images.requires_grad_(True)
    opt = p.method.make_optimizer(ctx, syn)
    record = new_record(store, "distill", recipe=recipe.to_dict(), recipe_sha256=recipe.sha256(),
                        device=str(device), plan=p.describe(), checkpoints=[])
    if p.pool_artifact is not None:
        record["inputs"].append(io_entry(p.pool_artifact, "pool"))
    store.write_run(record)  # a crash still leaves a trace of the run
    losses: list[float] = []
    start = time.perf_counter()
    it = 0
    try:
        with reporter.task(f"distilling {cfg.method} ipc={cfg.ipc}", p.iterations) as task:
            for it in range(p.iterations):
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
                    digest = _checkpoint(store, syn, opt, it + 1)
                    record["checkpoints"].append({"iteration": it + 1, "digest": digest,
                                                  "seconds": time.perf_counter() - start})
    except KeyboardInterrupt:
        digest = _checkpoint(store, syn, opt, it)
        record["checkpoints"].append({"iteration": it, "digest": digest, "seconds": time.perf_counter() - start})
        record.update(status="interrupted", wall_seconds=time.perf_counter() - start)
        store.write_run(record)
        raise
    except DDToolError as exc:
        record.update(status="failed", error=str(exc), wall_seconds=time.perf_counter() - start)
        store.write_run(record)
        raise
    seconds = time.perf_counter() - start
    parents = [p.pool_artifact.digest] if p.pool_artifact else []
    meta = {
        **data.signature(),
        "ddtool.ipc": str(cfg.ipc), "ddtool.method": p.method.name, "ddtool.selection": p.selection.name,
        "ddtool.schedule": p.schedule.name, "ddtool.factor": str(syn.factor),
        "ddtool.mean": json.dumps(list(data.mean)), "ddtool.std": json.dumps(list(data.std)),
        "ddtool.net": ctx.net_spec.to_json(), "ddtool.arch": ctx.net_spec.name,
        "ddtool.parents": json.dumps(parents), "ddtool.recipe_sha256": recipe.sha256(),
        "ddtool.seed": str(cfg.seed), "ddtool.iterations": str(p.iterations), "ddtool.version": __version__,
    }
    art = store.put("synthetic", name or cfg.name or recipe.name,
                    {"images": syn.images.detach(), "labels": syn.labels}, meta)
    record["outputs"].append(io_entry(art, "synthetic"))
    record.update(status="complete", wall_seconds=seconds,
                  metrics={"final_loss": losses[-1] if losses else None, "iterations": p.iterations})
    store.write_run(record)
    return DistillResult(syn, art, record["id"], seconds, losses)
