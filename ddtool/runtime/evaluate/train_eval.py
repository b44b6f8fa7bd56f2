"""Evaluate a synthetic set: train fresh networks on it, test them on the real test split."""

from __future__ import annotations

import copy
import dataclasses
import json
import statistics
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable

import torch
from torch import nn

from ddtool.augment import Augmenter, DiffAugChain
from ddtool.compiled import forward_fn
from ddtool.data import ImageData
from ddtool.errors import UsageError
from ddtool.flop_count import FlopCounter
from ddtool.impl import resolve_impl
from ddtool.lookup import build_net, check_net
from ddtool.nets import NetSpec
from ddtool.progress import Reporter, Silent
from ddtool.recipe import LEARNED, EvalSection
from ddtool.runtime import ensemble
from ddtool.runtime.autocompile import AutoCompile
from ddtool.runtime.distributed import process_group as distributed
from ddtool.runtime.run_records import io_entry, run_record
from ddtool.runtime.seeds import role_seed
from ddtool.runtime.supervised import BatchAugment, TrainSettings, accuracy, train
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
    optimizer: str = "sgd"  # sgd (eval.lr, eval.momentum, eval.weight_decay) | adamw (eval.lr, eval.weight_decay)

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
    # NCFM's condenser/evaluate.py (gszfwsb/NCFM de92fb8): AdamW (eval_optimizer: adamw, adamw_lr 1e-3,
    # no weight decay given: AdamW's 0.01; evaluate.py:45-46), MultiStepLR at 1/5, 2/5, 3/5 and 4/5 of
    # the epochs with gamma 0.5 (evaluate.py:55-64), CutMix p 0.5 with beta 1 (mixup: cut, mix_p,
    # beta; utils/train_val.py:29-44), DiffAug(batch=False) over dsa_strategy less cutout (flip and
    # colour always, then one of crop/scale/rotate; init_script.py:162-163, evaluate.py:75-76).
    # Its yaml's evaluation_epochs 2000 and batch_size 128 are [eval] epochs and batch (recipes/ncfm.toml).
    "ncfm": Protocol((Fraction(1, 5), Fraction(2, 5), Fraction(3, 5), Fraction(4, 5)), 0.5, 0.5, True, "adamw"),
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
    soft: dict[str, Any] = field(default_factory=dict)  # soft labels: the teacher, T, soft_label_bytes


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


def in_data_normalization(images: torch.Tensor, syn: SyntheticSet, data: ImageData) -> torch.Tensor:
    """``images`` of ``syn`` in ``data``'s normalisation: a set stored under other per-channel
    constants (its recorded mean/std) is moved to the ones the test split is normalised with."""
    mean, std = syn.info.mean, syn.info.std
    if not mean or not std or data.zca is not None or len(mean) != data.channels or (
            max(abs(a - b) for a, b in zip((*mean, *std), (*data.mean, *data.std))) < 1e-6):
        return images
    m0 = torch.tensor(mean, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    s0 = torch.tensor(std, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    m1, s1 = data.stats(images.device, images.dtype)
    return (images * s0 + m0 - m1) / s1


def with_learned_lr(cfg: EvalSection, learned: float | None, what: str) -> EvalSection:
    """``cfg`` with ``eval.lr = "learned"`` replaced by the step size ``what`` learned (MTT records
    one in its sets and checkpoints); a set without one is a usage error. Other lrs pass as they are."""
    if cfg.lr != LEARNED:
        return cfg
    if learned is None:
        raise UsageError(f"{what} records no learned step size (eval.lr = \"learned\" is for sets of methods that "
                         "learn one, such as mtt); give a number: --lr 0.01 or --set eval.lr=0.01")
    if not learned > 0:  # the step size is learned unconstrained: a set can end with one SGD cannot take
        raise UsageError(f"{what} learned a step size of {learned:g}, which cannot train a network; give a "
                         "number: --lr 0.01 or --set eval.lr=0.01")
    return dataclasses.replace(cfg, lr=learned)


def full_data_lr(cfg: EvalSection) -> EvalSection:
    """``cfg`` for the full-data bound: the real data learned no step size, so ``eval.lr =
    "learned"`` trains it at the default one."""
    return dataclasses.replace(cfg, lr=EvalSection.lr) if cfg.lr == LEARNED else cfg


def check_eval(spec: NetSpec, cfg: EvalSection, data: ImageData) -> None:
    """Refuse, before an eval run record is written, what would fail the run: an unknown (or
    uninstalled plugin's) architecture, settings it rejects, an unknown protocol or augmentation."""
    if cfg.protocol not in PROTOCOLS:
        raise UsageError(f"unknown evaluation protocol '{cfg.protocol}'; choose {' or '.join(PROTOCOLS)}")
    PROTOCOLS[cfg.protocol].augmenter(cfg.augment)  # an unknown operation
    check_net(spec, data.channels, data.num_classes, data.resolution)


def training_inputs(syn: SyntheticSet, data: ImageData, cfg: EvalSection, device: torch.device,
                    targets: torch.Tensor | None = None
                    ) -> tuple[TrainSettings, torch.Tensor, torch.Tensor, BatchAugment]:
    """What every repeat of an evaluation under ``cfg`` (its lr a number) trains with: the settings
    of its protocol, the set's images in ``data``'s normalisation and its labels (or ``targets``) on
    ``device``, and the augmentation (also what ``eval --dry-run`` probes)."""
    proto = PROTOCOLS[cfg.protocol]
    # a teacher's targets are temperature-scaled (Hinton's loss); a set's own learned labels train at T = 1
    settings = TrainSettings(epochs=cfg.epochs, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                             batch=cfg.batch, milestones=proto.milestones, gamma=proto.gamma, cutmix=proto.cutmix,
                             optimizer=proto.optimizer,
                             temperature=cfg.temperature if targets is not None and cfg.labels == "soft" else 1.0)
    images, labels = syn.decoded()
    images, labels = in_data_normalization(images.detach().to(device), syn, data), \
        (labels if targets is None else targets).to(device)
    return settings, images, labels, proto.augmenter(cfg.augment)


def evaluate_set(syn: SyntheticSet, data: ImageData, spec: NetSpec, cfg: EvalSection, device: torch.device,
                 reporter: Reporter | None = None, label: str = "", targets: torch.Tensor | None = None,
                 trained: list[Any] | None = None, compile_info: dict[str, Any] | None = None,
                 seed_of: Callable[[int], int] | None = None) -> list[float]:
    """Accuracy on the real test split of ``cfg.repeats`` fresh networks trained on ``syn``.

    ``targets``: soft labels ([N, classes] probabilities of the decoded images) to train on
    instead of the set's labels (``ddtool.runtime.evaluate.soft_labels``); ``trained`` gets the networks;
    ``compile_info`` gets what ``eval.compile`` decided (``ddtool.runtime.autocompile``);
    ``seed_of(r)``: repeat r's seed (default ``cfg.seed + r``)."""
    reporter = reporter or Silent()
    cfg = with_learned_lr(cfg, syn.info.learned_lr, label or "the set")
    settings, images, labels, augment = training_inputs(syn, data, cfg, device, targets)
    # under torchrun each rank trains its block of the repeats (ddtool.runtime.distributed.process_group); repeat r
    # is seeded cfg.seed + r wherever it runs, so the loop gives the same accuracies on any world size
    mine = distributed.shard(cfg.repeats)
    seed_of = seed_of or (lambda r: cfg.seed + r)
    nets = []
    for r in mine:
        torch.manual_seed(seed_of(r))
        nets.append(build_net(spec, data.channels, data.num_classes, data.resolution).to(device))
    impl = resolve_impl(cfg.impl, device)
    with reporter.task(f"evaluating {label} on {spec.name}".strip(), len(mine) * cfg.epochs) as task:
        if nets and impl == "vectorized" and ensemble.supports(nets, settings) and targets is None:  # soft: the loop
            torch.manual_seed(seed_of(mine[0]))  # one stream for the stacked repeats of this rank
            ensemble.train_stacked(nets, images, labels, settings, augment,
                                   on_epoch=lambda e, l: task.advance(len(mine), loss=l))
        else:
            # decided on all the repeats, so every process decides as one process would
            compiler = _train_compiler(cfg, nets, images, cfg.repeats, device, reporter)
            forward = forward_fn(True) if compiler.compiled else None

            def on_epoch(epoch: int, loss: float) -> None:
                task.advance(1, loss=loss)
                compiler.after()  # times the first two compiled epochs (the compile cost)
                compiler.before()

            for r, net in zip(mine, nets):
                torch.manual_seed(seed_of(r))
                compiler.before()
                train(net, images, labels, settings, augment, on_epoch=on_epoch, forward=forward)
            if compile_info is not None:
                compile_info.update(compiler.info)
    if trained is not None:
        # across processes the networks travel as host copies (a pickled CUDA tensor names its rank's device)
        trained.extend(distributed.gather_shards([copy.deepcopy(n).cpu() for n in nets])
                       if distributed.current().size > 1 else nets)
    return distributed.gather_shards([accuracy(net, data.test_images, data.test_labels, data.normalize) for net in nets])


def _train_compiler(cfg: EvalSection, nets: list[nn.Module], images: torch.Tensor, repeats: int,
                    device: torch.device, reporter: Reporter) -> AutoCompile:
    """``eval.compile`` for the training loop, decided before training from its planned FLOPs:
    forward and backward of every image, every epoch, every repeat (about 3x a forward)."""
    compiler = AutoCompile(cfg.compile, device, note=getattr(reporter, "note", lambda _line: None))
    if compiler.start() or compiler.decided or not nets:
        return compiler
    probe, net = images[: min(len(images), cfg.batch)], nets[0]
    was = net.training
    net.eval()  # no batch-norm statistics move: the probe leaves the network as built
    with torch.no_grad(), FlopCounter() as counter:
        net(probe)
    net.train(was)
    per_image = counter.get_total_flops() / max(len(probe), 1)
    compiler.decide(3 * per_image * len(images) * cfg.epochs * repeats)
    return compiler


@dataclass
class ResolvedSet:
    """The evaluation of one stored set as it will run: its network, its settings with the lr a
    number and the labels decided, and the soft targets with where they came from."""

    art: Artifact
    syn: SyntheticSet
    spec: NetSpec
    cfg: EvalSection
    targets: torch.Tensor | None
    teacher_inputs: list[dict[str, str]]
    soft: dict[str, Any]
    lr_learned: bool  # eval.lr was "learned": the record says where the number came from


def resolve_set(store: Store, ref: str, data: ImageData, cfg: EvalSection, device: torch.device,
                net: NetSpec | None = None) -> ResolvedSet:
    """What :func:`evaluate` (and ``eval --dry-run``) resolves of ``ref`` before training; reads the
    store only (a teacher's soft targets are computed on ``device``)."""
    from ddtool.runtime.evaluate.soft_labels import resolve_labels, soft_setup

    art, syn = load_synthetic(store, ref)
    check_data(syn.signature, data, ref)
    spec = net or (NetSpec(cfg.net) if cfg.net else net_of(syn, ref))
    learned = cfg.lr == LEARNED
    cfg = with_learned_lr(cfg, syn.info.learned_lr, f"'{ref}'")  # the record holds the number trained at
    cfg = resolve_labels(cfg, syn, f"'{ref}'")  # and the labels it trained on
    targets, teacher_in, soft = soft_setup(store, cfg, syn, data, device)
    return ResolvedSet(art, syn, spec, cfg, targets, teacher_in, soft, learned)


def evaluate(store: Store, ref: str, data: ImageData, cfg: EvalSection, device: torch.device,
             net: NetSpec | None = None, reporter: Reporter | None = None) -> EvalResult:
    r = resolve_set(store, ref, data, cfg, device, net)
    return _recorded(store, r.syn, data, r.spec, r.cfg, device, reporter, r.art.ref,
                     inputs=[io_entry(r.art, "synthetic"), *r.teacher_inputs],
                     fields={"soft": r.soft} if r.soft else None,
                     metrics={**({"lr_from": LEARNED} if r.lr_learned else {}), **_label_metrics(r.soft)} or None,
                     targets=r.targets)


def _label_metrics(soft: dict[str, Any]) -> dict[str, Any]:
    """What an eval record's metrics say about soft or learned labels (nothing for hard ones)."""
    if not soft:
        return {}
    if soft["labels"] == "learned":
        return {"labels": "learned", "label_kind": soft["label_kind"], "soft_label_bytes": soft["soft_label_bytes"]}
    return {"labels": "soft", "teacher": soft["ref"], "temperature": soft["temperature"],
            "soft_label_bytes": soft["soft_label_bytes"]}


def _recorded(store: Store, syn: SyntheticSet, data: ImageData, spec: NetSpec, cfg: EvalSection,
              device: torch.device, reporter: Reporter | None, label: str, inputs: list[dict[str, str]],
              fields: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None,
              targets: torch.Tensor | None = None, save: Callable[[list[Any], list[float], str], list[dict[str, str]]]
              | None = None, seed_of: Callable[[int], int] | None = None) -> EvalResult:
    """``evaluate_set`` inside an eval run record (``fields``: more of the record; ``metrics``: more
    of its metrics; ``targets``: soft labels; ``save``: stores the trained networks, returns outputs)."""
    check_eval(spec, cfg, data)  # a refused evaluation leaves no run record
    with run_record(store, "eval", device, settings=json.loads(json.dumps(cfg.__dict__)),
                    net=json.loads(spec.to_json()), inputs=inputs, **(fields or {})) as run:
        trained: list[Any] | None = [] if save is not None else None
        compiled: dict[str, Any] = {}
        accs = evaluate_set(syn, data, spec, cfg, device, reporter, label=label, targets=targets, trained=trained,
                            compile_info=compiled, seed_of=seed_of)
        if compiled:
            run.record["compile"] = compiled
        result = EvalResult(label, spec.name, accs, run.elapsed(), run.id, dict(cfg.__dict__),
                            (fields or {}).get("soft") or {})
        outputs = save(trained or [], accs, run.id) if save is not None and distributed.is_main() else []  # rank 0 writes
        run.complete(result.seconds, **({"outputs": outputs} if outputs else {}), metrics={
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


def full_data_cfg(cfg: EvalSection) -> EvalSection:
    """``cfg`` as the full-data bound trains: hard labels (the real data is the bound), a number for its lr."""
    return full_data_lr(dataclasses.replace(cfg, labels="hard", teacher=""))


def full_data_set(data: ImageData, device: torch.device) -> SyntheticSet:
    """The whole real train split as a set, normalised on ``device``: what the full-data bound trains on."""
    ipc = max(data.class_counts()) if data.num_classes else 0
    return SyntheticSet(normalized_train(data, device), data.train_labels.to(device), ipc)


def evaluate_full_data(store: Store, data: ImageData, cfg: EvalSection, device: torch.device,
                       net: NetSpec, reporter: Reporter | None = None, save_teacher: bool = False) -> EvalResult:
    """The upper-bound reference point: fresh networks trained on the whole real train split.

    The same protocol as a synthetic set (``evaluate_set``: optimiser, lr schedule, DSA
    augmentation, CutMix under ``idc``), with ``cfg.epochs`` epochs over the real data. The eval
    run record has no synthetic input; its metrics say ``full_data`` and the dataset. ``save_teacher``
    stores the trained networks as the pool ``teacher-DATASET-NET`` (an output of the record), a
    teacher for soft-label evaluation. Hard labels always: the real data is the bound.
    """
    from ddtool.runtime.evaluate.soft_labels import teacher_name, teacher_pool

    cfg = full_data_cfg(cfg)
    # a saved teacher's networks start from seeds of their own: with eval.seed + i, evaluation
    # repeat i of a set trained on its soft labels would start from teacher i's initial weights
    seed_of = (lambda i: role_seed("teacher", cfg.seed, i)) if save_teacher else (lambda i: cfg.seed + i)

    def save(nets: list[Any], accs: list[float], run_id: str) -> list[dict[str, str]]:
        models = [{"index": i, "seed": seed_of(i), "test_acc": a, "full_data": True, "epochs": cfg.epochs,
                   "protocol": cfg.protocol, "eval_run": run_id} for i, a in enumerate(accs)]
        pool = teacher_pool(nets, net, data, models, cfg.seed, cfg.epochs)
        return [io_entry(store.put("pool", teacher_name(data, net), *pool.to_artifact()), "pool")]

    syn = full_data_set(data, device)
    labels = syn.labels
    full = {"full_data": True, "dataset": data.name}
    # a teacher run's repeats are not eval.seed + i: the report does not read them back as such
    seeds = {"teacher_seeds": [seed_of(i) for i in range(cfg.repeats)]} if save_teacher else {}
    return _recorded(store, syn, data, net, cfg, device, reporter, f"full:{data.name}", inputs=[], fields=full,
                     metrics={**full, "train_images": int(labels.shape[0]), **seeds},
                     save=save if save_teacher else None, seed_of=seed_of)
