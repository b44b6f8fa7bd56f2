"""``pretrain --dry-run``: the pool (or expert trajectories) a recipe would train, checked as the run
checks it, and its estimate."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch

from ddtool.augment import Augmenter, DiffAugChain
from ddtool.data import ImageData
from ddtool.impl import resolve_impl
from ddtool.nets import NetSpec
from ddtool.recipe import Recipe, lr_milestones
from ddtool.runtime.dry_run_estimates import TrainingEstimate, TrainingJob, training_estimate
from ddtool.runtime.evaluate.train_eval import normalized_train
from ddtool.runtime.pretrain.expert_trajectories import check_experts, expert_recipe, expert_settings
from ddtool.runtime.pretrain.pool_training import ALTERNATE, TRAIN_PROBE, check_pool, model_augments
from ddtool.runtime.supervised import TrainSettings


@dataclass
class PlannedPretrain:
    """What ``ddtool pretrain`` would train: ``recipe`` as the run records it (the buffer's values
    filled in for experts), the network and the artifact's name."""

    recipe: Recipe
    data: ImageData
    spec: NetSpec
    name: str
    trajectories: bool

    @property
    def kind(self) -> str:
        return "trajectories" if self.trajectories else "pool"

    def describe(self, device: torch.device) -> dict[str, Any]:
        """The plan (``--json``'s ``plan``)."""
        p = self.recipe.pretrain
        out = {"artifact": f"{self.kind}/{self.name}", "dataset": self.data.name, "net": self.spec.name,
               "train_images": int(self.data.train_labels.shape[0]), "models": p.n, "epochs": p.epochs,
               "batch": p.batch, "lr": p.lr, "seed": p.seed, "cutmix": p.cutmix}
        if self.trajectories:
            return {**out, "augment": p.augment, "impl": "loop", "snapshots": p.epochs + 1}
        return {**out, "augment": model_augments(p.n, p.augment, p.augments if p.diverse else None),
                "lr_cycle": p.lr_cycle, "diverse": p.diverse, "impl": resolve_impl(p.impl, device),
                **({"lr_milestones": p.lr_milestones, "lr_gamma": p.lr_gamma} if p.lr_milestones else {})}


def plan_pretrain(recipe: Recipe, data: ImageData, trajectories: bool) -> PlannedPretrain:
    """The pool or the experts ``recipe`` makes, every input checked as :func:`pretrain` (or
    :func:`pretrain_trajectories`) checks it before its run record; writes nothing."""
    if trajectories:
        recipe = expert_recipe(recipe)
        spec, name, _ = check_experts(recipe, data)
    else:
        spec, name = check_pool(recipe, data)
    return PlannedPretrain(recipe, data, spec, name, trajectories)


def jobs_of(planned: PlannedPretrain, device: torch.device) -> list[TrainingJob]:
    """The models as the probe trains them: the experts alike; a pool's models grouped by their
    augmentation (an "alternate" pool may train all of them as one stacked ensemble)."""
    p, data = planned.recipe.pretrain, planned.data
    x, y = normalized_train(data, device), data.train_labels.to(device)
    tests = int(data.test_labels.shape[0])
    if planned.trajectories:
        return [TrainingJob(what=f"experts x {planned.spec.name}", role="expert", data=data, spec=planned.spec,
                            images=x, labels=y, settings=expert_settings(planned.recipe),
                            augment=Augmenter(p.augment), networks=p.n, stackable=False, impl="loop",
                            tested_per_epoch=tests)]
    settings = TrainSettings(epochs=p.epochs, lr=p.lr, batch=p.batch, milestones=lr_milestones(p), gamma=p.lr_gamma,
                             cutmix=p.cutmix)
    tested = min(int(data.train_labels.shape[0]), TRAIN_PROBE) + tests  # train accuracy's probe and the test split
    impl = resolve_impl(p.impl, device)
    alternate = p.augment == ALTERNATE and not p.diverse
    augments = model_augments(p.n, p.augment, p.augments if p.diverse else None)

    def job(what: str, augment: Any, networks: int, stackable: bool) -> TrainingJob:
        return TrainingJob(what=what, role="model", data=data, spec=planned.spec, images=x, labels=y,
                           settings=settings, augment=augment, networks=networks, stackable=stackable, impl=impl,
                           tested_after=tested)

    if alternate and impl == "vectorized":  # one ensemble (every member augmented: the slower bound)
        return [job(f"pool x {planned.spec.name}", Augmenter(), p.n, True)]
    # as train_pool: "dsa" / "none" in turn for an alternate pool, else each model's DiffAug chain
    return [job(f"pool x {planned.spec.name}, augment {a}",
                (Augmenter() if a == "dsa" else None) if alternate else DiffAugChain(a), count, False)
            for a, count in Counter(augments).items()]


def fixes(planned: PlannedPretrain, parts: list[dict[str, Any]], device: torch.device) -> list[str]:
    """What lowers a pretrain's memory: a smaller batch; the models one at a time where they are stacked."""
    out = [f"a smaller batch: --set pretrain.batch=N (now {planned.recipe.pretrain.batch})"]
    if any(part["stacked"] for part in parts):
        out.append(f"one model at a time instead of {planned.recipe.pretrain.n} stacked: --set pretrain.impl=loop, "
                   "or fewer models (--n)")
    out.append("fewer processes (--nproc: each holds its own copy)" if device.type == "cpu"
               else "fewer processes per GPU")
    return out


def estimate_pretrain(planned: PlannedPretrain, device: torch.device) -> TrainingEstimate:
    """Probe the planned models (:func:`ddtool.runtime.dry_run_estimates.training_estimate`): seconds per
    epoch, per model and in total, and the peak memory."""
    return training_estimate(jobs_of(planned, device), device, lambda parts: fixes(planned, parts, device))
