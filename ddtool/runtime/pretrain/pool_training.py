"""Train a pool of early-stage models (Acc-DD step 1) and store it as one artifact."""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Sequence

import torch

from ddtool.augment import Augmenter, DiffAugChain
from ddtool.data import ImageData
from ddtool.errors import UsageError
from ddtool.impl import resolve_impl
from ddtool.lookup import build_net, check_net
from ddtool.nets import NetSpec
from ddtool.pool import Pool
from ddtool.progress import Reporter, Silent
from ddtool.recipe import LR_CYCLE, PretrainSection, Recipe, lr_milestones
from ddtool.runtime.distill.planning import net_spec_of
from ddtool.runtime.distributed import process_group as distributed
from ddtool.runtime.evaluate.train_eval import normalized_train
from ddtool.runtime.run_records import io_entry, run_record
from ddtool.runtime.seeds import role_seed
from ddtool.runtime.supervised import TrainSettings, accuracy, train
from ddtool.store import Artifact, Store
from ddtool.store.meta import DatasetSignature
from ddtool.store.refs import check_name

# ddtool's first pools (pretrain.augment = "alternate", pretrain.lr_cycle = true): diversity from
# different learning rates and augmentation; model i takes the i-th entry of each cycle. The
# Acc-DD reference (pretrain.py) instead trains every model alike (lr 0.01, batch 64, IDC's
# DiffAug chain color_crop, CutMix p 0.5), diverse only by seed: the recipe default.
AUGMENT_CYCLE = (True, False)
ALTERNATE = "alternate"
TRAIN_PROBE = 10_000


@dataclass
class PretrainResult:
    pool: Pool
    artifact: Artifact
    run_id: str
    seconds: float


def model_augments(n: int, augment: str, augments: Sequence[str] | None = None) -> list[str]:
    """Each model's augmentation, as its metadata names it: ``dsa`` or ``none`` in turn for
    ``augment = "alternate"`` (AUGMENT_CYCLE), else its DiffAug-chain strategy (``augments[i % len]``
    for a diverse pool)."""
    if augment == ALTERNATE and not augments:
        return ["dsa" if AUGMENT_CYCLE[i % len(AUGMENT_CYCLE)] else "none" for i in range(n)]
    return [augments[i % len(augments)] if augments else augment for i in range(n)]


def train_pool(data: ImageData, spec: NetSpec, n: int, epochs: int, lr: float, batch: int, seed: int,
               device: torch.device, reporter: Reporter | None = None, impl: str = "auto",
               augment: str = ALTERNATE, cutmix: float = 0.0, lr_cycle: bool = True,
               lr_factors: Sequence[float] | None = None, augments: Sequence[str] | None = None,
               milestones: Sequence[Fraction] = (), gamma: float = 0.2) -> Pool:
    """Train ``n`` models of ``spec`` for ``epochs`` epochs, model i with seed ``role_seed("pool", seed, i)``
    (:mod:`ddtool.runtime.seeds`: never an evaluation network's ``seed + r``).

    ``augment = "alternate"``: one DSA operation per batch on every other model (AUGMENT_CYCLE);
    any other value is a strategy for IDC's DiffAug chain on every model (Acc-DD's pretrain.py
    uses ``color_crop``). ``cutmix``: CutMix probability per batch. ``lr_cycle``: model i trains
    at ``lr`` times the i-th entry of LR_CYCLE, else every model at ``lr``.

    Acc-DD Sec. 4.2's diverse pool (``pretrain.diverse``): ``lr_factors`` (replacing LR_CYCLE) and
    ``augments`` give model i ``lr * lr_factors[i % len]`` and the DiffAug chain
    ``augments[i % len]`` (replacing ``augment``); each model's values are in its metadata.

    ``milestones``: fractions of the epochs from which the lr is multiplied by ``gamma``
    (MultiStepLR stepped per epoch, :func:`ddtool.runtime.supervised.lr_at`; NCFM's pretraining:
    2/3 and 5/6, x0.2); in each model's metadata when given.

    ``impl`` (:mod:`ddtool.impl`): ``loop`` trains them one after the other; ``vectorized`` (or
    its alias ``stacked``) as one vmapped ensemble (same arithmetic, other random draws: each
    model still gets its own data order and augmentation); ``auto`` is ``loop`` on CPU and
    ``vectorized`` on CUDA, as for evaluation.
    Batch norm always takes the loop.
    """
    from ddtool.runtime import ensemble

    reporter = reporter or Silent()
    x = normalized_train(data, device)
    y = data.train_labels.to(device)
    steps_per_epoch = -(-x.shape[0] // batch)
    factors = lr_factors or (LR_CYCLE if lr_cycle else None)
    lrs = [lr * factors[i % len(factors)] if factors else lr for i in range(n)]
    alternate = augment == ALTERNATE and not augments
    strategies = model_augments(n, augment, augments)
    augs = [s == "dsa" for s in strategies] if alternate else []
    # each model's DiffAug chain (validating the operation names); the alternate pools use DSA instead
    chains = {} if alternate else {a: DiffAugChain(a) for a in set(strategies)}
    settings = TrainSettings(epochs=epochs, lr=lr, batch=batch, milestones=tuple(milestones), gamma=gamma,
                             cutmix=cutmix)
    # a pool without a schedule keeps the metadata (and digest) it had before pretrain.lr_milestones
    schedule = {"lr_milestones": [str(m) for m in milestones], "lr_gamma": gamma} if milestones else {}

    def build(i: int) -> torch.nn.Module:
        torch.manual_seed(role_seed("pool", seed, i))  # the loop then trains model i on the rest of this stream
        return build_net(spec, data.channels, data.num_classes, data.resolution).to(device)

    impl = resolve_impl(impl, device)
    # under torchrun each rank trains its block of the models (ddtool.runtime.distributed.process_group); model i is
    # seeded role_seed("pool", seed, i) wherever it runs, so the loop makes the same pool on any world size
    mine = distributed.shard(n)
    nets = [build(i) for i in mine] if impl == "vectorized" else []
    with reporter.task(f"pretraining {n} x {spec.name}", len(mine) * epochs) as task:
        if nets and alternate and ensemble.supports(nets, settings):
            torch.manual_seed(role_seed("pool", seed, mine[0]))
            losses = ensemble.train_stacked(nets, x, y, settings, Augmenter(),
                                            on_epoch=lambda e, l: task.advance(len(mine), loss=l),
                                            lr_scale=[lrs[i] / lr for i in mine], augmented=[augs[i] for i in mine])
        else:
            nets, losses = [], []
            for i in mine:
                net = build(i)
                one = replace(settings, lr=lrs[i])
                aug = (Augmenter() if augs[i] else None) if alternate else chains[strategies[i]]
                losses.append(train(net, x, y, one, aug,
                                    on_epoch=lambda e, l, _i=i: task.advance(1, loss=l, model=_i)))
                nets.append(net)
    # train accuracy on at most TRAIN_PROBE images spread over the split (class-ordered folders):
    # on CIFAR-10 the full pass cost a third of a 1-epoch pool's time on a CPU
    n_train = data.train_labels.shape[0]
    probe = torch.linspace(0, n_train - 1, min(n_train, TRAIN_PROBE)).long()
    models = []
    # seconds per model on a CPU (10k probe + 10k test images): a phase of its own, with its own ETA,
    # counted in images (a short description: the bar must fit 80 columns)
    per_model = len(probe) + data.test_labels.shape[0]
    with reporter.task(f"evaluating {len(nets)} x {spec.name}", len(nets) * per_model) as task:
        for i, net, loss in zip(mine, nets, losses):
            def step(k: int, _i: int = i) -> None:
                task.advance(k, model=_i)

            models.append({
                "index": i, "seed": role_seed("pool", seed, i), "lr": lrs[i],
                "augment": strategies[i],
                "cutmix": cutmix, "epochs": epochs, "batch": batch, "steps": epochs * steps_per_epoch, **schedule,
                "train_loss": loss,
                "train_acc": accuracy(net, data.train_images[probe], data.train_labels[probe], data.normalize,
                                      on_batch=step),
                "test_acc": accuracy(net, data.test_images, data.test_labels, data.normalize, on_batch=step),
            })
    states = [{k: v.detach().cpu().clone() for k, v in net.state_dict().items()} for net in nets]
    models, states = distributed.gather_shards(models), distributed.gather_shards(states)
    return Pool(spec, states, models, DatasetSignature.of(data))


def check_pool(recipe: Recipe, data: ImageData, name: str | None = None) -> tuple[NetSpec, str]:
    """(the network, the pool's name) of ``recipe``'s pool, every input checked (an unknown net or
    settings it rejects, a bad name, augmentation or diverse pool): what :func:`pretrain` and
    ``pretrain --dry-run`` refuse before any work."""
    spec = net_spec_of(recipe)
    p = recipe.pretrain
    name = check_name(name or p.name or f"{data.name.split(':')[0]}-{spec.name}")
    check_net(spec, data.channels, data.num_classes, data.resolution)  # an unknown net or settings it rejects
    if p.diverse and (p.lr_cycle or p.augment != PretrainSection.augment):
        raise UsageError("pretrain.diverse sets every model's learning rate and augmentation from "
                         "pretrain.lr_factors and pretrain.augments: leave pretrain.lr_cycle false and "
                         f"pretrain.augment at \"{PretrainSection.augment}\" (got {p.lr_cycle}, \"{p.augment}\")")
    for strategy in (p.augments if p.diverse else [p.augment] if p.augment != ALTERNATE else []):
        DiffAugChain(strategy)  # an unknown operation
    return spec, name


def pretrain(store: Store, recipe: Recipe, data: ImageData, device: torch.device,
             reporter: Reporter | None = None, name: str | None = None) -> PretrainResult:
    p = recipe.pretrain
    spec, name = check_pool(recipe, data, name)  # before the run record: a refused command leaves the store as it was
    with run_record(store, "pretrain", device, recipe=recipe.to_dict(), recipe_sha256=recipe.sha256()) as run:
        pool = train_pool(data, spec, p.n, p.epochs, p.lr, p.batch, p.seed, device, reporter, p.impl,
                          augment=p.augment, cutmix=p.cutmix, lr_cycle=p.lr_cycle,
                          lr_factors=p.lr_factors if p.diverse else None, augments=p.augments if p.diverse else None,
                          milestones=lr_milestones(p), gamma=p.lr_gamma)
        seconds = run.elapsed()
        pool = replace(pool, recipe_sha256=recipe.sha256(), seed=p.seed, epochs=p.epochs)
        # every rank holds the gathered pool; rank 0 stores it, the others learn its ref
        art = distributed.broadcast_object(store.put("pool", name, *pool.to_artifact()) if distributed.is_main() else None)
        pool.digest = art.digest
        accs = [m["test_acc"] for m in pool.models]
        run.complete(seconds, outputs=[io_entry(art, "pool")],
                     metrics={"test_acc_mean": sum(accs) / len(accs), "test_acc": accs})
    return PretrainResult(pool, art, run.id, seconds)
