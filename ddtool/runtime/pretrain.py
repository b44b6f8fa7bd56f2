"""Train a pool of early-stage models (Acc-DD step 1) and store it as one artifact."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ddtool.augment import Augmenter
from ddtool.data import ImageData
from ddtool.nets import NetSpec, build_net
from ddtool.pool import Pool
from ddtool.progress import Reporter, Silent
from ddtool.recipe import Recipe
from ddtool.runtime.evaluate import normalized_train
from ddtool.runtime.records import io_entry, new_record, peak_memory
from ddtool.runtime.train import TrainSettings, accuracy, train
from ddtool.store import Artifact, Store

# Diversity across the pool (Acc-DD trains its early-stage models with different learning
# rates, seeds and augmentation): model i takes the i-th entry of each cycle.
LR_CYCLE = (1.0, 0.5, 2.0, 0.75, 1.5)
AUGMENT_CYCLE = (True, False)


@dataclass
class PretrainResult:
    pool: Pool
    artifact: Artifact
    run_id: str
    seconds: float


def net_spec_of(recipe: Recipe) -> NetSpec:
    n = recipe.net
    options = {"width": n.width, "norm": n.norm}
    if n.depth:
        options["depth"] = n.depth
    return NetSpec(n.name, options)


def train_pool(data: ImageData, spec: NetSpec, n: int, epochs: int, lr: float, batch: int, seed: int,
               device: torch.device, reporter: Reporter | None = None) -> Pool:
    reporter = reporter or Silent()
    x = normalized_train(data, device)
    y = data.train_labels.to(device)
    states, models = [], []
    steps_per_epoch = -(-x.shape[0] // batch)
    with reporter.task(f"pretraining {n} x {spec.name}", n * epochs) as task:
        for i in range(n):
            model_seed = seed + i
            torch.manual_seed(model_seed)
            net = build_net(spec, data.channels, data.num_classes, data.resolution).to(device)
            model_lr = lr * LR_CYCLE[i % len(LR_CYCLE)]
            aug = AUGMENT_CYCLE[i % len(AUGMENT_CYCLE)]
            settings = TrainSettings(epochs=epochs, lr=model_lr, batch=batch, milestones=())
            loss = train(net, x, y, settings, Augmenter() if aug else None,
                         on_epoch=lambda e, l, _i=i: task.advance(1, loss=l, model=_i))
            models.append({
                "index": i, "seed": model_seed, "lr": model_lr, "augment": "dsa" if aug else "none",
                "epochs": epochs, "batch": batch, "steps": epochs * steps_per_epoch, "train_loss": loss,
                "train_acc": accuracy(net, data.train_images, data.train_labels, data.normalize),
                "test_acc": accuracy(net, data.test_images, data.test_labels, data.normalize),
            })
            states.append({k: v.detach().cpu().clone() for k, v in net.state_dict().items()})
    return Pool(spec, states, models, data.signature())


def pretrain(store: Store, recipe: Recipe, data: ImageData, device: torch.device,
             reporter: Reporter | None = None, name: str | None = None) -> PretrainResult:
    spec = net_spec_of(recipe)
    p = recipe.pretrain
    name = name or p.name or f"{data.name.split(':')[0]}-{spec.name}"
    record = new_record(store, "pretrain", recipe=recipe.to_dict(), recipe_sha256=recipe.sha256(),
                        device=str(device))
    start = time.perf_counter()
    pool = train_pool(data, spec, p.n, p.epochs, p.lr, p.batch, p.seed, device, reporter)
    seconds = time.perf_counter() - start
    meta = {**pool.metadata(), "ddtool.recipe_sha256": recipe.sha256(), "ddtool.seed": str(p.seed),
            "ddtool.arch": spec.name, "ddtool.epochs": str(p.epochs)}
    art = store.put("pool", name, pool.to_tensors(), meta)
    pool.digest = art.digest
    accs = [m["test_acc"] for m in pool.models]
    record.update(outputs=[io_entry(art, "pool")], wall_seconds=seconds, status="complete", **peak_memory(device),
                  metrics={"test_acc_mean": sum(accs) / len(accs), "test_acc": accs})
    store.write_run(record)
    return PretrainResult(pool, art, record["id"], seconds)
