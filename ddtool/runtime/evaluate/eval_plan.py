"""``eval --dry-run``: what an evaluation would train, resolved as the run resolves it, and its estimate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ddtool.data import ImageData
from ddtool.impl import resolve_impl
from ddtool.nets import NetSpec
from ddtool.recipe import EvalSection
from ddtool.runtime.dry_run_estimates import TrainingEstimate, TrainingJob, training_estimate
from ddtool.runtime.evaluate.train_eval import (check_eval, full_data_cfg, full_data_set, resolve_set,
                                                training_inputs)
from ddtool.store import Store
from ddtool.synthetic import SyntheticSet


@dataclass
class PlannedEval:
    """One set (or the full-data bound) on one network, as the run would train it."""

    label: str  # the set's ref, or full:DATASET
    data: ImageData
    syn: SyntheticSet
    spec: NetSpec
    cfg: EvalSection  # lr a number, labels decided
    targets: torch.Tensor | None = None

    def row(self, device: torch.device) -> dict[str, Any]:
        """The plan's line for this evaluation (``--json``'s ``plan`` entries)."""
        c = self.cfg
        return {"set": self.label, "dataset": self.data.name, "net": self.spec.name,
                "images": int(self.syn.decoded()[0].shape[0]), "repeats": c.repeats, "epochs": c.epochs,
                "batch": c.batch, "protocol": c.protocol, "lr": c.lr, "labels": c.labels,
                "impl": resolve_impl(c.impl, device), "seed": c.seed}


def plan_set(store: Store, ref: str, data: ImageData, cfg: EvalSection, device: torch.device,
             net: NetSpec | None = None) -> PlannedEval:
    """``ref`` on ``net`` (default: its own), checked and resolved as :func:`evaluate` does; writes nothing."""
    r = resolve_set(store, ref, data, cfg, device, net)
    check_eval(r.spec, r.cfg, data)
    return PlannedEval(r.art.ref, data, r.syn, r.spec, r.cfg, r.targets)


def plan_full_data(data: ImageData, cfg: EvalSection, spec: NetSpec, device: torch.device) -> PlannedEval:
    """The full-data bound on ``spec`` (``cfg.epochs`` epochs over the whole train split)."""
    cfg = full_data_cfg(cfg)
    check_eval(spec, cfg, data)
    return PlannedEval(f"full:{data.name}", data, full_data_set(data, device), spec, cfg)


def job_of(p: PlannedEval, device: torch.device) -> TrainingJob:
    """The repeats of one planned evaluation, as the probe trains them."""
    settings, images, labels, augment = training_inputs(p.syn, p.data, p.cfg, device, p.targets)
    return TrainingJob(what=f"{p.label} on {p.spec.name}", role="repeat", data=p.data, spec=p.spec, images=images,
                       labels=labels, settings=settings, augment=augment, networks=p.cfg.repeats,
                       stackable=p.targets is None, impl=resolve_impl(p.cfg.impl, device),
                       tested_after=int(p.data.test_labels.shape[0]))


def fixes(planned: list[PlannedEval], parts: list[dict[str, Any]], device: torch.device) -> list[str]:
    """What lowers an evaluation's memory: a smaller batch; fewer repeats at once where they are stacked."""
    batches = sorted({p.cfg.batch for p in planned})
    out = [f"a smaller batch: --batch (now {', '.join(map(str, batches))})"]
    stacked = sorted({part["networks"] for part in parts if part["stacked"]})
    if stacked:
        out.append(f"one repeat at a time instead of {', '.join(map(str, stacked))} stacked: --set eval.impl=loop, "
                   "or fewer --repeats")
    out.append("fewer processes (--nproc: each holds its own copy)" if device.type == "cpu"
               else "fewer processes per GPU")
    return out


def estimate_eval(planned: list[PlannedEval], device: torch.device) -> TrainingEstimate:
    """Probe every planned evaluation (:func:`ddtool.runtime.dry_run_estimates.training_estimate`): seconds
    per epoch, per repeat and in total, and the peak memory."""
    return training_estimate([job_of(p, device) for p in planned], device,
                             lambda parts: fixes(planned, parts, device))
