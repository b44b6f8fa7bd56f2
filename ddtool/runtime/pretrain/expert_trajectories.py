"""Train expert trajectories (MTT's ``buffer.py``) and store them: ``ddtool pretrain --trajectories``.

Every expert is a fresh network (expert i from seed ``role_seed("expert", pretrain.seed, i)``) trained on the whole
real train split with plain SGD, as the MTT reference's ``buffer.py`` does: lr 0.01, momentum 0,
weight decay 0, batch 256, a DSA operation per batch drawn from all six with parameters per sample,
no learning-rate decay; its parameters are snapshotted before training and after every epoch.
``[pretrain]`` gives ``n``, ``epochs``, ``lr``, ``seed`` and ``name``; its ``batch``, ``augment``
and ``cutmix`` apply when the recipe or ``--set`` states them (their defaults are the pool's,
Acc-DD's), else the buffer's values. The recorded recipe holds the values used.

Each expert's blob is written as soon as it is trained and listed in the run record's
``checkpoints`` (so ``store gc`` keeps it while the run goes on, and a killed run leaves the
finished experts behind); the index that names them is written last, and the run record then
names the index instead. ``ddtool pretrain --resume RUN_ID`` (:func:`resume_trajectories`) goes on
from a killed run: its stored experts are kept, the others trained, and since expert i always
trains from the same seed the index is the one an uninterrupted run makes.
Under torchrun the experts are split across the processes (each trains its block; rank 0 stores
them as every round of one expert per process ends), and make the same experts as one process.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import torch

from ddtool.augment import DEFAULT_STRATEGY, Augmenter
from ddtool.data import ImageData
from ddtool.errors import DDToolError, UsageError
from ddtool.lookup import build_net, check_net
from ddtool.nets import NetSpec
from ddtool.progress import Reporter, Silent
from ddtool.recipe import Recipe
from ddtool.runtime.distill.planning import net_spec_of
from ddtool.runtime.distributed import process_group as distributed
from ddtool.runtime.evaluate.train_eval import normalized_train
from ddtool.runtime.run_records import io_entry, run_record
from ddtool.runtime.seeds import role_seed
from ddtool.runtime.supervised import TrainSettings, accuracy, train
from ddtool.store import Artifact, Store
from ddtool.store.meta import TRAJECTORIES_KIND, DatasetSignature
from ddtool.store.refs import check_name
from ddtool.trajectories import Layout, Trajectories, check_parameters_only, expert_artifact, flat_params, param_layout

# MTT buffer.py: SGD(lr_teacher 0.01, momentum=0, weight_decay=0), batch_train 256, DSA with
# dsa_strategy color_crop_cutout_flip_scale_rotate (one operation per batch), no --decay, no CutMix
BUFFER_DEFAULTS = {"batch": 256, "augment": DEFAULT_STRATEGY, "cutmix": 0.0}
MOMENTUM = 0.0
WEIGHT_DECAY = 0.0


@dataclass
class TrajectoriesResult:
    trajectories: Trajectories
    artifact: Artifact
    run_id: str
    seconds: float


def expert_recipe(recipe: Recipe) -> Recipe:
    """The recipe with the buffer's ``batch``, ``augment`` and ``cutmix`` where ``[pretrain]`` does
    not state them (what the run records and hashes); refuses settings experts cannot take."""
    p = recipe.pretrain
    values = {k: v for k, v in BUFFER_DEFAULTS.items() if f"pretrain.{k}" not in recipe.origins}
    p = replace(p, **values)
    if p.augment == "alternate":
        raise UsageError("pretrain.augment = \"alternate\" is for pools; experts take a DSA strategy "
                         f"(MTT: \"{DEFAULT_STRATEGY}\") or \"none\"")
    Augmenter(p.augment)  # an unknown operation is a usage error before any work
    if p.lr_cycle:
        raise UsageError("pretrain.lr_cycle is for pools; every expert trains at pretrain.lr (MTT's buffer.py), "
                         "so set it to false for --trajectories")
    if p.lr_milestones:
        raise UsageError("pretrain.lr_milestones is for pools; an expert's trajectory is matched at one lr "
                         "(MTT's buffer.py), so leave it empty (lr_milestones = []) for --trajectories")
    out = replace(recipe, pretrain=p)
    out.origins = {**recipe.origins, **{f"pretrain.{k}": "MTT buffer.py default" for k in values}}
    return out


def check_experts(recipe: Recipe, data: ImageData, name: str | None = None) -> tuple[NetSpec, str, Layout]:
    """(the network, the index's name, the parameter layout) of the experts of ``recipe`` (its
    buffer values filled in: :func:`expert_recipe`), refused in one line when the name or the
    network cannot make a trajectory: what :func:`pretrain_trajectories` and ``pretrain --dry-run`` check first."""
    spec: NetSpec = net_spec_of(recipe)
    name = check_name(name or recipe.pretrain.name or f"{data.name.split(':')[0]}-{spec.name}")
    probe = check_net(spec, data.channels, data.num_classes, data.resolution)
    check_parameters_only(probe, "an expert trajectory")
    return spec, name, param_layout(probe)


def expert_settings(recipe: Recipe) -> TrainSettings:
    """How every expert of ``recipe`` (its buffer values filled in) trains: plain SGD at pretrain.lr, no decay."""
    p = recipe.pretrain
    return TrainSettings(epochs=p.epochs, lr=p.lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY, batch=p.batch,
                         milestones=(), cutmix=p.cutmix)


def train_expert(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, data: ImageData, settings: TrainSettings,
                 augment: Augmenter, on_epoch: Callable[[int, float, float], None] | None = None
                 ) -> tuple[torch.Tensor, list[float], list[float]]:
    """Train ``net`` and return its snapshots ``[epochs + 1, P]`` (host), the loss of every epoch
    and the test accuracy before training and after every epoch."""
    snaps = [flat_params(net).cpu()]
    accs = [accuracy(net, data.test_images, data.test_labels, data.normalize)]
    losses: list[float] = []

    def after_epoch(epoch: int, loss: float) -> None:
        snaps.append(flat_params(net).cpu())
        losses.append(loss)
        accs.append(accuracy(net, data.test_images, data.test_labels, data.normalize))
        if on_epoch is not None:
            on_epoch(epoch, loss, accs[-1])

    train(net, x, y, settings, augment, on_epoch=after_epoch)
    return torch.stack(snaps), losses, accs


class TrajectoriesInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) while experts train: the finished ones are stored and listed in the run
    record, from which ``ddtool pretrain --resume RUN_ID`` goes on."""

    def __init__(self, run_id: str, finished: int, total: int) -> None:
        super().__init__(run_id)
        self.run_id, self.finished, self.total = run_id, finished, total


def finished_experts(store: Store, record: dict[str, Any], signature: DatasetSignature
                     ) -> dict[int, tuple[str, list[float], list[float]]]:
    """The experts a (killed) trajectories run stored: index -> (blob digest, test accuracy per
    epoch, train loss per epoch), for the entries whose blob is readable; one trained on other
    data than ``signature`` is a usage error (the index would mix two datasets)."""
    out = {}
    for e in record.get("checkpoints") or []:
        if not {"expert", "digest", "test_acc", "train_loss"} <= e.keys():
            continue  # written before the accuracies were recorded: trained again
        try:
            meta = store.blob_metadata(e["digest"])
        except (DDToolError, OSError, KeyError):
            continue
        had = DatasetSignature.from_metadata(meta)
        if had != signature:
            raise UsageError(f"run {record.get('id')}'s experts were trained on {had.dataset} {had.shape}, not on "
                             f"{signature.dataset} {signature.shape}; resume with the data the run used (--data-root)")
        out[int(e["expert"])] = (e["digest"], list(e["test_acc"]), list(e["train_loss"]))
    return out


def _release_ancestors(store: Store, record: dict[str, Any]) -> None:
    """Once a resumed run's index names every expert, the interrupted runs it continued stop
    listing theirs, so that 'store rm' of the index and 'store gc' can free them."""
    parent = (record.get("resumed_from") or {}).get("run")
    with store.lock():
        while parent:
            rec = store.run(parent)
            rec["checkpoints"] = []
            store.write_run(rec)
            parent = (rec.get("resumed_from") or {}).get("run")


def pretrain_trajectories(store: Store, recipe: Recipe, data: ImageData, device: torch.device,
                          reporter: Reporter | None = None, name: str | None = None,
                          _resume: dict[str, Any] | None = None) -> TrajectoriesResult:
    """Train ``[pretrain] n`` experts for ``[pretrain] epochs`` epochs and store them as
    ``trajectories/NAME`` (``NAME``: ``name``, else ``[pretrain] name``, else DATASET-NET).
    ``_resume``: the record of a killed run of the same recipe, whose finished experts are kept
    (:func:`resume_trajectories`)."""
    reporter = reporter or Silent()
    recipe = recipe if _resume is not None else expert_recipe(recipe)  # a recorded recipe holds the values used
    p = recipe.pretrain
    # every input is checked before the run record: a refused command leaves the store as it was
    spec, name, layout = check_experts(recipe, data, name)
    settings = expert_settings(recipe)
    training = {"lr": p.lr, "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY, "batch": p.batch, "epochs": p.epochs,
                "augment": p.augment, "cutmix": p.cutmix, "zca": getattr(data, "zca", None) is not None}
    signature = DatasetSignature.of(data)
    x = normalized_train(data, device)
    y = data.train_labels.to(device)
    # expert -> (digest, test accs, losses): a resumed run keeps the ones its parent stored, as rank 0
    # reads them (every rank must plan the same rounds)
    done = distributed.broadcast_object(finished_experts(store, _resume, signature)
                                        if _resume is not None and distributed.is_main() else {})
    fields: dict[str, Any] = {"artifact_name": name, "checkpoints": [
        {"expert": i, "digest": d, "test_acc": a, "train_loss": l, "run": _resume["id"]}  # type: ignore[index]
        for i, (d, a, l) in sorted(done.items())]}
    if _resume is not None:
        fields["resumed_from"] = {"run": _resume["id"], "experts": sorted(done)}
    with run_record(store, "pretrain", device, recipe=recipe.to_dict(), recipe_sha256=recipe.sha256(),
                    artifact_kind=TRAJECTORIES_KIND, **fields) as run:
        record = run.record
        if _resume is not None and distributed.is_main():
            from ddtool.runtime.distill.checkpoint import mark_resumed_by

            mark_resumed_by(store, _resume["id"], run.id)

        def interrupted() -> TrajectoriesInterrupted:
            run.write()  # "interrupted", with the experts stored so far
            return TrajectoriesInterrupted(run.id, len(record["checkpoints"]), p.n)

        run.on_interrupt = interrupted
        # under torchrun each rank trains its block of the experts left (expert i seeded
        # role_seed("expert", seed, i) wherever it runs: the same experts on any world size, resumed
        # or not); after every round of one expert per rank, rank 0 receives the round's and stores them
        todo = [i for i in range(p.n) if i not in done]
        mine = [todo[j] for j in distributed.shard(len(todo))]
        rounds = -(-len(todo) // distributed.current().size)
        with reporter.task(f"training {len(mine)} of {p.n} experts x {spec.name}" if len(mine) < p.n
                           else f"training {p.n} experts x {spec.name}", len(mine) * p.epochs) as task:
            for k in range(rounds):
                trained = None
                if k < len(mine):
                    i = mine[k]
                    run.where = f"expert {i}"
                    torch.manual_seed(role_seed("expert", p.seed, i))  # expert i trains on the rest of this stream
                    net = build_net(spec, data.channels, data.num_classes, data.resolution).to(device)
                    trained = (i, *train_expert(
                        net, x, y, data, settings, Augmenter(p.augment),
                        on_epoch=lambda e, loss, acc, _i=i: task.advance(1, loss=loss, acc=acc, expert=_i)))
                for got in distributed.gather_to_main(trained) or []:  # rank 0 gets the round's experts
                    if got is None:
                        continue
                    i, snaps, losses, accs = got
                    with store.lock():  # blob and record under one lock: gc keeps the expert from here on
                        digest = store.put_blob(*expert_artifact(snaps, signature, spec, role_seed("expert", p.seed, i)))
                        record["checkpoints"].append({"expert": i, "digest": digest, "seconds": run.elapsed(),
                                                      "test_acc": accs, "train_loss": losses})
                        run.write()
                    done[i] = (digest, accs, losses)
        done = distributed.broadcast_object(done)
        digests = [done[i][0] for i in range(p.n)]
        test_acc, train_loss = [done[i][1] for i in range(p.n)], [done[i][2] for i in range(p.n)]
        run.where = ""
        seconds = run.elapsed()
        traj = Trajectories(spec, layout, p.epochs, digests, training, torch.tensor(test_acc), torch.tensor(train_loss),
                            signature, recipe_sha256=recipe.sha256(), seed=p.seed)
        art = distributed.broadcast_object(
            store.put(TRAJECTORIES_KIND, name, *traj.to_artifact()) if distributed.is_main() else None)
        traj.digest = art.digest
        record["checkpoints"] = []  # the index names the experts now: 'store rm' + 'gc' can free them
        if _resume is not None and distributed.is_main():
            _release_ancestors(store, record)
        final = [a[-1] for a in test_acc]
        run.complete(seconds, outputs=[io_entry(art, TRAJECTORIES_KIND)],
                     metrics={"test_acc_mean": sum(final) / len(final), "test_acc": final,
                              "experts": len(digests), "epochs": p.epochs})
    return TrajectoriesResult(traj, art, run.id, seconds)


def trajectories_run(rec: dict[str, Any]) -> None:
    """Refuse a pretrain run that trained a pool: only trajectories runs resume."""
    if rec.get("artifact_kind") != TRAJECTORIES_KIND:
        raise UsageError(f"run {rec.get('id')} trained a pool; only 'pretrain --trajectories' runs can be resumed "
                         "(a pool is short: run the pretrain again)")


def resume_trajectories(store: Store, run_id: str, data: ImageData, device: torch.device,
                        reporter: Reporter | None = None) -> TrajectoriesResult:
    """Go on with an interrupted, failed or killed ``pretrain --trajectories`` run: its recorded
    recipe and name, its finished experts kept (a new run record with ``resumed_from``; the parent
    gets ``resumed_by``)."""
    from ddtool.recipe import recipe_from_record
    from ddtool.runtime.distill.resuming import resumable_run

    rec, _ = resumable_run(store, run_id, command="pretrain", accept=trajectories_run)
    recipe = recipe_from_record(rec["recipe"])
    return pretrain_trajectories(store, recipe, data, device, reporter, name=rec.get("artifact_name"), _resume=rec)
