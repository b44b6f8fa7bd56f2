"""Evaluate a synthetic set: train fresh networks on it, test them on the real test split."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import torch

from ddtool.augment import Augmenter, DiffAugChain
from ddtool.data import ImageData
from ddtool.errors import UsageError
from ddtool.impl import resolve_impl
from ddtool.nets import NetSpec, build_net
from ddtool.progress import Reporter, Silent
from ddtool.recipe import EvalSection
from ddtool.runtime.records import io_entry, run_record
from ddtool.runtime import ensemble
from ddtool.runtime.train import BatchAugment, TrainSettings, accuracy, train
from ddtool.store import Artifact, Store
from ddtool.store.meta import DatasetSignature
from ddtool.synthetic import SyntheticSet

@dataclass(frozen=True)
class Protocol:
    """How a synthetic set is trained on at evaluation: the lr schedule, CutMix and augmentation."""

    milestones: tuple[Fraction, ...]  # fractions of the epochs where the lr is multiplied by gamma
    gamma: float
    cutmix: float  # probability per batch
    chain: bool  # True: IDC's DiffAug chain (flip, colour, then one more op); False: one DSA op per batch

    def augmenter(self, strategy: str) -> BatchAugment:
        if not self.chain:
            return Augmenter(strategy)
        # IDC's argument.py removes cutout from the strategy when CutMix is on
        ops = [o for o in Augmenter(strategy).ops if not (self.cutmix > 0 and o == "cutout")]
        return DiffAugChain("_".join(ops) or "none")


PROTOCOLS = {
    # DC/DSA/DM papers: lr x0.1 at half of the epochs, one DSA operation per batch
    "dsa": Protocol((Fraction(1, 2),), 0.1, 0.0, False),
    # IDC's and Acc-DD's train.py: MultiStepLR(milestones=[2E//3, 5E//6], gamma=0.2), CutMix
    # p 0.5 (mix_p on CIFAR), DiffAug(batch=False) over the strategy (flip and colour always)
    "idc": Protocol((Fraction(2, 3), Fraction(5, 6)), 0.2, 0.5, True),
}


class RepeatedAccuracy:
    """``mean`` and ``std`` of the test accuracies of networks trained on one set (``accuracies``)."""

    accuracies: list[float]

    @property
    def mean(self) -> float:
        return mean_std(self.accuracies)[0]

    @property
    def std(self) -> float:
        return mean_std(self.accuracies)[1]


@dataclass
class EvalResult(RepeatedAccuracy):
    ref: str
    net: str
    accuracies: list[float]
    seconds: float
    run_id: str = ""
    settings: dict[str, Any] = field(default_factory=dict)


def mean_std(accuracies: list[float]) -> tuple[float, float]:
    """Mean and population std over repeats (0 std for a single repeat), as the papers report."""
    std = statistics.pstdev(accuracies) if len(accuracies) > 1 else 0.0
    return statistics.fmean(accuracies), std


def load_synthetic(store: Store, ref: str) -> tuple[Artifact, SyntheticSet]:
    art, tensors, meta = store.load(ref, kind="synthetic")
    return art, SyntheticSet.from_artifact(tensors, meta, art.digest)


def check_data(signature: DatasetSignature, data: ImageData, ref: str) -> None:
    """Refuse a set distilled from another dataset than ``data``."""
    diff = signature.difference(DatasetSignature.of(data))
    if diff is not None:
        label, have, want = diff
        raise UsageError(f"'{ref}' was distilled from {label} '{have}', not '{want}'; evaluate it on its own dataset")


def net_of(syn: SyntheticSet, ref: str) -> NetSpec:
    """The network a stored set records (the default to evaluate it with)."""
    if syn.net is None:
        raise UsageError(f"'{ref}' does not record the network it was distilled with; name one with --net")
    return syn.net


def evaluate_set(syn: SyntheticSet, data: ImageData, spec: NetSpec, cfg: EvalSection, device: torch.device,
                 reporter: Reporter | None = None, label: str = "") -> list[float]:
    """Accuracy on the real test split of ``cfg.repeats`` fresh networks trained on ``syn``."""
    reporter = reporter or Silent()
    proto = PROTOCOLS[cfg.protocol]
    settings = TrainSettings(epochs=cfg.epochs, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                             batch=cfg.batch, milestones=proto.milestones, gamma=proto.gamma, cutmix=proto.cutmix)
    images, labels = syn.decoded()
    images, labels = images.detach().to(device), labels.to(device)
    augment = proto.augmenter(cfg.augment)
    nets = []
    for r in range(cfg.repeats):
        torch.manual_seed(cfg.seed + r)
        nets.append(build_net(spec, data.channels, data.num_classes, data.resolution).to(device))
    impl = resolve_impl(cfg.impl, device)
    with reporter.task(f"evaluating {label} on {spec.name}".strip(), cfg.repeats * cfg.epochs) as task:
        if impl == "vectorized" and ensemble.supports(nets, settings):
            torch.manual_seed(cfg.seed)
            ensemble.train_stacked(nets, images, labels, settings, augment,
                                   on_epoch=lambda e, l: task.advance(cfg.repeats, loss=l))
        else:
            for r, net in enumerate(nets):
                torch.manual_seed(cfg.seed + r)
                train(net, images, labels, settings, augment, on_epoch=lambda e, l: task.advance(1, loss=l))
    return [accuracy(net, data.test_images, data.test_labels, data.normalize) for net in nets]


def evaluate(store: Store, ref: str, data: ImageData, cfg: EvalSection, device: torch.device,
             net: NetSpec | None = None, reporter: Reporter | None = None) -> EvalResult:
    art, syn = load_synthetic(store, ref)
    check_data(syn.signature, data, ref)
    spec = net or (NetSpec(cfg.net) if cfg.net else net_of(syn, ref))
    return _recorded(store, syn, data, spec, cfg, device, reporter, art.ref, inputs=[io_entry(art, "synthetic")])


def _recorded(store: Store, syn: SyntheticSet, data: ImageData, spec: NetSpec, cfg: EvalSection,
              device: torch.device, reporter: Reporter | None, label: str, inputs: list[dict[str, str]],
              fields: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None) -> EvalResult:
    """``evaluate_set`` inside an eval run record (``fields``: more of the record; ``metrics``: more
    of its metrics)."""
    with run_record(store, "eval", device, settings=json.loads(json.dumps(cfg.__dict__)),
                    net=json.loads(spec.to_json()), inputs=inputs, **(fields or {})) as run:
        accs = evaluate_set(syn, data, spec, cfg, device, reporter, label=label)
        result = EvalResult(label, spec.name, accs, run.elapsed(), run.id, dict(cfg.__dict__))
        run.complete(result.seconds, metrics={
            "accuracies": accs, "mean": result.mean, "std": result.std, "net": spec.name, "repeats": cfg.repeats,
            "epochs": cfg.epochs, "protocol": cfg.protocol, **(metrics or {})})
    return result


FULL_DATA_EPOCHS = 30  # whole real train split: far more steps per epoch than a synthetic set


def normalized_train(data: ImageData, device: torch.device, chunk: int = 8192) -> torch.Tensor:
    """The whole real train split as normalised float on ``device``, built chunk by chunk."""
    x = data.train_images
    out = torch.empty(x.shape, dtype=torch.float32, device=device)
    for start in range(0, x.shape[0], chunk):
        out[start : start + chunk] = data.normalize(x[start : start + chunk].to(device))
    return out


def evaluate_full_data(store: Store, data: ImageData, cfg: EvalSection, device: torch.device,
                       net: NetSpec, reporter: Reporter | None = None) -> EvalResult:
    """The upper-bound reference point: fresh networks trained on the whole real train split.

    The same protocol as a synthetic set (``evaluate_set``: optimiser, lr schedule, DSA
    augmentation, CutMix under ``idc``), with ``cfg.epochs`` epochs over the real data. The eval
    run record has no synthetic input; its metrics say ``full_data`` and the dataset.
    """
    images = normalized_train(data, device)
    labels = data.train_labels.to(device)
    ipc = max(data.class_counts()) if data.num_classes else 0
    syn = SyntheticSet(images, labels, ipc)
    full = {"full_data": True, "dataset": data.name}
    return _recorded(store, syn, data, net, cfg, device, reporter, f"full:{data.name}", inputs=[], fields=full,
                     metrics={**full, "train_images": int(labels.shape[0])})
