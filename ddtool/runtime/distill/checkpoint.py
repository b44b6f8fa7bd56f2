"""The resumable state of a distill run: taken between two iterations, stored as a checkpoint
blob listed in the run record, and where a run starts (:class:`StartPoint`: the start of a fresh
run, or a checkpoint that ``--resume`` found, :mod:`ddtool.runtime.distill.resuming`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ddtool.context import DistillContext
from ddtool.errors import DDToolError
from ddtool.methods.base import MatchingMethod
from ddtool.selection.base import SelectionStrategy
from ddtool.store import Store
from ddtool.store.meta import checkpoint_metadata
from ddtool.synthetic import LEARNED_LR_STATE, SyntheticSet


@dataclass(frozen=True)
class StartPoint:
    """Where a distill run starts: iteration 0 of a fresh run (the default), or a checkpoint of an
    earlier run that ``--resume`` continues. The loop consumes it as it is; it calls nothing back."""

    iteration: int = 0
    seconds: float = 0.0  # what the runs before spent reaching ``iteration`` (a resume goes on counting)
    # the checkpoint's tensors (:func:`state`: images, optimizer, selection and RNG state); None: the
    # run's own start (a fresh run, or a resume of a run that wrote no readable checkpoint)
    state: dict[str, torch.Tensor] | None = None
    parent: str | None = None  # the id of the run it continues (None: a fresh run)
    checkpoint: dict[str, Any] | None = None  # the parent's checkpoint entry ({iteration, digest, seconds})
    unreadable: tuple[str, ...] = ()  # checkpoints of the parent that could not be read (digest prefixes)

    def record_fields(self, fields: dict[str, Any]) -> None:
        """Add to a resumed run's record ``fields`` where it resumes from (``resumed_from``) and the
        checkpoint it continues (listed with the run that wrote it, and as an input)."""
        if self.parent is None:
            return
        ckpt = self.checkpoint
        fields["resumed_from"] = {"run": self.parent, "iteration": self.iteration,
                                  "checkpoint": ckpt["digest"] if ckpt else None}
        if self.unreadable:
            fields["resumed_from"]["unreadable_checkpoints"] = list(self.unreadable)
        if ckpt:
            fields["checkpoints"].append({**ckpt, "run": ckpt.get("run", self.parent)})
            fields["inputs"].append({"ref": ckpt["digest"][:12], "digest": ckpt["digest"], "kind": "checkpoint",
                                     "role": "checkpoint"})


def mark_resumed_by(store: Store, parent_id: str, run_id: str) -> None:
    """Record in run ``parent_id`` that run ``run_id`` resumed it (distill and trajectories runs)."""
    with store.lock():
        parent = store.run(parent_id)
        parent["resumed_by"] = [*parent.get("resumed_by", []), run_id]
        store.write_run(parent)


def state(syn: SyntheticSet, opt: torch.optim.Optimizer, selection: SelectionStrategy,
          device: torch.device, method: MatchingMethod | None = None,
          ctx: DistillContext | None = None) -> dict[str, torch.Tensor]:
    """Everything the rest of a run depends on, taken between two iterations: the images (and the
    set's label vectors when its method learns them: ``soft_labels``), the optimizer state (SGD's
    buffer of the images as ``momentum``; anything else as ``optim.<param index>.<key>``), the
    selection strategy's ``state()`` (as ``selection.*``), the method's ``state(ctx)`` (as
    ``method.*``, with ``method`` and ``ctx`` given) and the RNG state (``rng``, plus ``rng.cuda``
    on CUDA). Copies, so later steps do not change it."""
    tensors = {"images": syn.images.detach().clone(), "labels": syn.labels, "rng": torch.get_rng_state()}
    if syn.soft_labels is not None:  # a method that learns labels: their values, as the images'
        tensors["soft_labels"] = syn.soft_labels.detach().clone()
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
    if method is not None and ctx is not None:
        for key, value in method.state(ctx).items():
            tensors[f"method.{key}"] = value.detach().clone()
    return tensors


def restore(tensors: dict[str, torch.Tensor], syn: SyntheticSet, opt: torch.optim.Optimizer,
            selection: SelectionStrategy, device: torch.device, method: MatchingMethod | None = None,
            ctx: DistillContext | None = None) -> None:
    """Put a checkpoint back: the inverse of :func:`state`. Call it last before the loop (RNG)."""
    if tensors["images"].shape != syn.images.shape or not torch.equal(tensors["labels"].cpu(), syn.labels.cpu()):
        raise DDToolError(
            f"the checkpoint holds images {tuple(tensors['images'].shape)}, but this run makes "
            f"{tuple(syn.images.shape)}; resume with the data the run was started with"
        )
    if ("soft_labels" in tensors) != (syn.soft_labels is not None) or (
            syn.soft_labels is not None and tensors["soft_labels"].shape != syn.soft_labels.shape):
        raise DDToolError("the checkpoint's label vectors do not fit the set this run makes (a method that learns "
                          "labels, or not); resume with the recipe and plugins the run was started with")
    with torch.no_grad():
        syn.images.copy_(tensors["images"].to(syn.images.device))
        if syn.soft_labels is not None:
            syn.soft_labels.copy_(tensors["soft_labels"].to(syn.soft_labels.device))
    params = [q for group in opt.param_groups for q in group["params"]]
    for key, value in tensors.items():
        if key == "momentum":
            opt.state[syn.images]["momentum_buffer"] = value.to(syn.images.device)
        elif key.startswith("optim."):
            _, index, name = key.split(".", 2)
            q = params[int(index)]
            opt.state[q][name] = value if name == "step" else value.to(q.device)
    selection.load_state({k[len("selection."):]: v for k, v in tensors.items() if k.startswith("selection.")})
    if method is not None and ctx is not None:
        method.load_state(ctx, {k[len("method."):]: v.to(device) for k, v in tensors.items()
                                if k.startswith("method.")})
    torch.set_rng_state(tensors["rng"])
    if "rng.cuda" in tensors and device.type == "cuda":
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)


def save(store: Store, record: dict[str, Any], tensors: dict[str, torch.Tensor], it: int, seconds: float) -> str:
    """Store a checkpoint blob and list it in the run record on disk, under one lock (gc keeps it)."""
    with store.lock():
        digest = store.put_blob(tensors, checkpoint_metadata(it))
        if not record["checkpoints"] or record["checkpoints"][-1]["iteration"] != it:
            record["checkpoints"].append({"iteration": it, "digest": digest, "seconds": seconds})
        store.write_run(record)  # a crash (even SIGKILL) can resume from here
    return digest


def learned_lr(opt: torch.optim.Optimizer) -> float | None:
    """The step size the method learned (its optimizer state's ``LEARNED_LR_STATE``), if any."""
    for values in opt.state.values():
        if LEARNED_LR_STATE in values:
            return float(values[LEARNED_LR_STATE])
    return None


def learned_lr_in(tensors: dict[str, torch.Tensor]) -> float | None:
    """The learned step size a checkpoint holds (as :func:`state` saved the optimizer state), if any."""
    suffix = "." + LEARNED_LR_STATE
    for key, value in tensors.items():
        if key.startswith("optim.") and key.endswith(suffix):
            return float(value)
    return None


def last_iteration(record: dict[str, Any]) -> int | None:
    """The iteration of the run's latest checkpoint (None: it has none yet)."""
    return record["checkpoints"][-1]["iteration"] if record["checkpoints"] else None
