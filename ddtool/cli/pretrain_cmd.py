"""``ddtool pretrain``: train a pool of early-stage models (or, with ``--trajectories``, MTT expert
trajectories) and store it."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ddtool.cli import options as o
from ddtool.cli.common import (RichReporter, console, distributed_device, get_store, guarded, print_json,
                               prints_results, recipe_data, recipe_with)
from ddtool.cli.launch import Nproc, relaunch
from ddtool.cli.render import pool_table
from ddtool.errors import UsageError


@guarded
def pretrain_cmd(
    epochs: Annotated[Optional[int], typer.Option(help="Epochs per model (early stage: 2 on CIFAR). \\[default: 2]")] = None,
    n: Annotated[Optional[int], typer.Option("--n", help="Models in the pool. \\[default: 5]")] = None,
    dataset: Annotated[Optional[str], typer.Option(help="Dataset name or imagefolder:PATH. \\[default: digits]")] = None,
    net: Annotated[Optional[str], typer.Option(help="Architecture (see 'ddtool plugins'). \\[default: convnet]")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Base learning rate; models use multiples of it.")] = None,
    seed: Annotated[Optional[int], typer.Option(help=(
        "Seed of the pool (or experts): model i trains from a seed derived from it and i, apart from the "
        "seeds evaluation uses. \\[default: 0]"))] = None,
    name: Annotated[Optional[str], typer.Option(help="Pool name in the store. \\[default: DATASET-NET]")] = None,
    trajectories: Annotated[bool, typer.Option(
        "--trajectories", help="Train expert trajectories for the 'mtt' method instead (MTT's buffer.py: SGD lr 0.01, "
        "no momentum, batch 256, DSA; a snapshot every epoch), stored as trajectories/NAME.")] = False,
    resume: Annotated[Optional[str], typer.Option(
        "--resume", metavar="RUN_ID", help=(
            "Go on with an interrupted or killed 'pretrain --trajectories' run (its id is in the interruption "
            "line and 'ddtool store runs'): its stored experts are kept, the rest trained with its recorded "
            "recipe; the result is the uninterrupted run's."))] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help=(
        "Check the recipe and print what would be trained (artifact, net, models, epochs, batch, lr, augmentation), "
        "then the expected seconds per epoch, per model and in total (trajectories: with each expert's test after "
        "every epoch) and the peak memory on the device, from a short probe (a few training steps, scaled to the "
        "epochs; nothing is stored; a line names the fix when the estimate exceeds the device's memory)."))] = False,
    estimate: Annotated[bool, typer.Option("--estimate/--no-estimate", help=(
        "With --dry-run: probe for the time and memory estimate (--no-estimate: the plan only, without "
        "training any step)."))] = True,
    recipe: o.Recipe = None,
    set_: o.Set = None,
    device: o.Device = "auto",
    data_root: o.DataRoot = None,
    as_json: o.Json = False,
    nproc: Nproc = None,
) -> None:
    """Train a pool of early-stage models and store it as [bold]pool/NAME[/] (--trajectories: expert
    trajectories as [bold]trajectories/NAME[/])."""
    from ddtool.runtime.pretrain.pool_training import pretrain

    if dry_run and resume is not None:
        raise UsageError("--dry-run plans a new run; drop --resume (it goes on with a run's recorded recipe)")
    if not dry_run:
        relaunch(nproc)  # --nproc N: this command line as N processes, then exit
    if resume is not None:
        given = [flag for flag, value in (("--epochs", epochs), ("--n", n), ("--dataset", dataset), ("--net", net),
                                          ("--lr", lr), ("--seed", seed), ("--name", name), ("--recipe", recipe),
                                          ("--set", set_)) if value not in (None, [])]
        if given:
            raise UsageError(f"--resume goes on with the run's recorded recipe; drop {', '.join(given)}")
        store = get_store(write=True)
        from ddtool.recipe import recipe_from_record
        from ddtool.runtime.distill.resuming import resumable_run

        from ddtool.runtime.pretrain.expert_trajectories import trajectories_run

        rec, _ = resumable_run(store, resume, command="pretrain", accept=trajectories_run)
        data = recipe_data(recipe_from_record(rec["recipe"]), data_root)
        with distributed_device(device) as dev:
            _trajectories(store, None, data, dev, as_json, resume=resume)
        return
    r = recipe_with(recipe, set_, **{"pretrain.epochs": epochs, "pretrain.n": n, "data.dataset": dataset,
                                    "net.name": net, "pretrain.lr": lr, "pretrain.seed": seed, "pretrain.name": name})
    if r.pretrain.name:
        from ddtool.store.refs import check_name

        check_name(r.pretrain.name)  # before training, not after it
    from ddtool.runtime.distill.planning import check_registered

    check_registered(r)  # an unknown --net before the data (a download); pretrain() builds it before its record
    store = get_store(write=not dry_run)  # before the data (a download) and the training
    data = recipe_data(r, data_root)
    if dry_run:
        _dry_run(r, data, trajectories, device, estimate, as_json)
        return
    if trajectories:
        with distributed_device(device) as dev:  # under torchrun each process trains its block of the experts
            _trajectories(store, r, data, dev, as_json)
        return
    with distributed_device(device) as dev:
        res = pretrain(store, r, data, dev, RichReporter())
    if not prints_results():
        return
    if as_json:
        print_json({"ref": res.artifact.ref, "digest": res.artifact.digest, "run": res.run_id,
                    "seconds": res.seconds, "models": res.pool.models})
        return
    console.print(pool_table(f"{res.artifact.ref}  ({res.artifact.digest[:12]}, {res.seconds:.1f}s)", res.pool.models))


def _dry_run(r, data, trajectories: bool, device: str, estimate: bool, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    """pretrain --dry-run: the plan, checked as the run checks it, and the probe's estimate; writes nothing."""
    from ddtool.runtime.pretrain.pretrain_plan import plan_pretrain
    from ddtool.runtime.supervised import resolve_device

    dev = resolve_device(device)  # one process: --nproc's split is not planned
    planned = plan_pretrain(r, data, trajectories)
    resolved = {"recipe": planned.recipe.to_dict(), "recipe_sha256": planned.recipe.sha256(),
                "plan": planned.describe(dev), "device": str(dev)}
    est = None
    if estimate:
        from ddtool.runtime.pretrain.pretrain_plan import estimate_pretrain

        est = estimate_pretrain(planned, dev)
        resolved["estimate"] = est.to_dict()
    if as_json:
        print_json(resolved)
        return
    console.print_json(data={k: v for k, v in resolved.items() if k not in ("recipe", "estimate")})
    if est is not None:
        from ddtool.runtime.dry_run_estimates import describe_training

        for line in describe_training(est, "pretrain"):
            console.print(line, style="yellow" if line == est.advice else None, markup=False, highlight=False,
                          soft_wrap=True)


def _trajectories(store, recipe, data, device, as_json: bool, resume: str | None = None) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table

    from ddtool.runtime.seeds import role_seed
    from ddtool.runtime.pretrain.expert_trajectories import pretrain_trajectories, resume_trajectories

    res = (resume_trajectories(store, resume, data, device, RichReporter()) if resume is not None
           else pretrain_trajectories(store, recipe, data, device, RichReporter()))
    if not prints_results():
        return
    traj = res.trajectories
    accs = traj.test_acc.tolist() if traj.test_acc is not None else [[] for _ in traj.experts]
    if as_json:
        print_json({"ref": res.artifact.ref, "digest": res.artifact.digest, "run": res.run_id, "seconds": res.seconds,
                    "training": traj.training, "experts": [{"index": i, "seed": role_seed("expert", traj.seed or 0, i), "digest": d,
                                                            "test_acc": accs[i]} for i, d in enumerate(traj.experts)]})
        return
    table = Table(title=f"{res.artifact.ref}  ({res.artifact.digest[:12]}, {res.seconds:.1f}s, {traj.epochs} epochs, "
                        f"lr {traj.training.get('lr')}, batch {traj.training.get('batch')})")
    for col in ("expert", "seed", "blob", "test acc epoch 0", "test acc last"):
        table.add_column(col, justify="right")
    for i, d in enumerate(traj.experts):
        table.add_row(str(i), str(role_seed("expert", traj.seed or 0, i)), d[:12], f"{100 * accs[i][0]:.1f}%", f"{100 * accs[i][-1]:.1f}%")
    console.print(table)
