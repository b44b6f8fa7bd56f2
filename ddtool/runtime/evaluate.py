"""Evaluate a synthetic set: train fresh networks on it, test them on the real test split."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ddtool.augment import Augmenter
from ddtool.data import ImageData
from ddtool.errors import UsageError
from ddtool.nets import NetSpec, build_net
from ddtool.progress import Reporter, Silent
from ddtool.recipe import EvalSection
from ddtool.runtime.records import io_entry, new_record
from ddtool.runtime.train import TrainSettings, accuracy, train
from ddtool.store import Artifact, Store
from ddtool.synthetic import SyntheticSet

PROTOCOLS = {
    "dsa": {"milestones": (0.5,), "cutmix": 0.0},  # DM/DSA papers
    "idc": {"milestones": (2 / 3, 5 / 6), "cutmix": 0.5},  # IDC
}


@dataclass
class EvalResult:
    ref: str
    net: str
    accuracies: list[float]
    seconds: float
    run_id: str = ""
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies)

    @property
    def std(self) -> float:
        return statistics.pstdev(self.accuracies) if len(self.accuracies) > 1 else 0.0


def load_synthetic(store: Store, ref: str) -> tuple[Artifact, SyntheticSet, dict[str, str]]:
    art, tensors, meta = store.load(ref, kind="synthetic")
    labels = tensors["labels"]
    ipc = int(meta.get("ddtool.ipc", 0)) or int(torch.bincount(labels).max())
    return art, SyntheticSet(tensors["images"], labels, ipc, int(meta.get("ddtool.factor", "1"))), meta


def check_data(meta: dict[str, str], data: ImageData, ref: str) -> None:
    for key, value in data.signature().items():
        if meta.get(key) != value:
            raise UsageError(
                f"'{ref}' was distilled from {key.split('.')[1]} '{meta.get(key)}', not '{value}'; "
                "evaluate it on its own dataset"
            )


def evaluate_set(syn: SyntheticSet, data: ImageData, spec: NetSpec, cfg: EvalSection, device: torch.device,
                 reporter: Reporter | None = None, label: str = "") -> list[float]:
    """Accuracy on the real test split of ``cfg.repeats`` fresh networks trained on ``syn``."""
    reporter = reporter or Silent()
    proto = PROTOCOLS[cfg.protocol]
    settings = TrainSettings(epochs=cfg.epochs, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                             batch=cfg.batch, milestones=proto["milestones"], cutmix=proto["cutmix"])
    images, labels = syn.decoded()
    images, labels = images.detach().to(device), labels.to(device)
    augment = Augmenter(cfg.augment)
    accs = []
    with reporter.task(f"evaluating {label} on {spec.name}".strip(), cfg.repeats * cfg.epochs) as task:
        for r in range(cfg.repeats):
            torch.manual_seed(cfg.seed + r)
            net = build_net(spec, data.channels, data.num_classes, data.resolution).to(device)
            train(net, images, labels, settings, augment, on_epoch=lambda e, l: task.advance(1, loss=l))
            accs.append(accuracy(net, data.test_images, data.test_labels, data.normalize))
    return accs


def evaluate(store: Store, ref: str, data: ImageData, cfg: EvalSection, device: torch.device,
             net: NetSpec | None = None, reporter: Reporter | None = None) -> EvalResult:
    art, syn, meta = load_synthetic(store, ref)
    check_data(meta, data, ref)
    spec = net or (NetSpec(cfg.net) if cfg.net else NetSpec.from_json(meta["ddtool.net"]))
    record = new_record(store, "eval", device=str(device), settings=json.loads(json.dumps(cfg.__dict__)),
                        net=json.loads(spec.to_json()))
    record["inputs"].append(io_entry(art, "synthetic"))
    start = time.perf_counter()
    accs = evaluate_set(syn, data, spec, cfg, device, reporter, label=art.ref)
    seconds = time.perf_counter() - start
    result = EvalResult(art.ref, spec.name, accs, seconds, record["id"], dict(cfg.__dict__))
    record.update(status="complete", wall_seconds=seconds,
                  metrics={"accuracies": accs, "mean": result.mean, "std": result.std, "net": spec.name,
                           "repeats": cfg.repeats, "epochs": cfg.epochs, "protocol": cfg.protocol})
    store.write_run(record)
    return result
