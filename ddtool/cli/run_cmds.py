"""The work verbs: pretrain, distill, eval."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from ddtool.cli import options as o
from ddtool.cli.common import RichReporter, console, err, get_store, guarded, print_json
from ddtool.data import load_dataset
from ddtool.recipe import Recipe, load_recipe
from ddtool.runtime.train import resolve_device


def _recipe(path: Path | None, sets: list[str] | None, **shortcuts: Any) -> Recipe:
    """A recipe file (or the defaults) plus --set overrides plus the command's own options."""
    extra = [f"{key}={json.dumps(value)}" for key, value in shortcuts.items() if value is not None]
    return load_recipe(path, [*(sets or []), *extra])


def _data(recipe: Recipe, data_root: Path | None):  # type: ignore[no-untyped-def]
    return load_dataset(recipe.data.dataset, data_root or recipe.data.root or None, recipe.data.download)


@guarded
def pretrain_cmd(
    epochs: Annotated[Optional[int], typer.Option(help="Epochs per model (early stage: 2 on CIFAR). [default: 2]")] = None,
    n: Annotated[Optional[int], typer.Option("--n", help="Models in the pool. [default: 5]")] = None,
    dataset: Annotated[Optional[str], typer.Option(help="Dataset name or imagefolder:PATH. [default: digits]")] = None,
    net: Annotated[Optional[str], typer.Option(help="Architecture (see 'ddtool plugins'). [default: convnet]")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Base learning rate; models use multiples of it.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the first model; model i uses seed + i.")] = None,
    name: Annotated[Optional[str], typer.Option(help="Pool name in the store. [default: DATASET-NET]")] = None,
    recipe: o.Recipe = None,
    set_: o.Set = None,
    device: o.Device = "auto",
    data_root: o.DataRoot = None,
    as_json: o.Json = False,
) -> None:
    """Train a pool of early-stage models and store it as [bold]pool/NAME[/]."""
    from ddtool.runtime.pretrain import pretrain

    r = _recipe(recipe, set_, **{"pretrain.epochs": epochs, "pretrain.n": n, "data.dataset": dataset,
                                "net.name": net, "pretrain.lr": lr, "pretrain.seed": seed, "pretrain.name": name})
    dev = resolve_device(device)
    data = _data(r, data_root)
    res = pretrain(get_store(), r, data, dev, RichReporter())
    if as_json:
        print_json({"ref": res.artifact.ref, "digest": res.artifact.digest, "run": res.run_id,
                    "seconds": res.seconds, "models": res.pool.models})
        return
    table = Table(title=f"{res.artifact.ref}  ({res.artifact.digest[:12]}, {res.seconds:.1f}s)")
    for col in ("model", "seed", "lr", "augment", "epochs", "train acc", "test acc"):
        table.add_column(col, justify="right")
    for m in res.pool.models:
        table.add_row(str(m["index"]), str(m["seed"]), f"{m['lr']:.4g}", m["augment"], str(m["epochs"]),
                      f"{100 * m['train_acc']:.1f}%", f"{100 * m['test_acc']:.1f}%")
    console.print(table)


@guarded
def distill_cmd(
    recipe: o.Recipe = None,
    set_: o.Set = None,
    pool: Annotated[Optional[str], typer.Option(help="Pool ref for pool-based selection (overrides [distill] pool).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Artifact name. [default: the recipe's name]")] = None,
    method: Annotated[Optional[str], typer.Option(help="Matching method (overrides [distill] method).")] = None,
    ipc: Annotated[Optional[int], typer.Option(help="Images per class (overrides [distill] ipc).")] = None,
    iterations: Annotated[Optional[int], typer.Option(help="Outer iterations (overrides [distill] iterations).")] = None,
    dataset: Annotated[Optional[str], typer.Option(help="Dataset (overrides [data] dataset).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate the recipe and print the resolved plan; run nothing.")] = False,
    device: o.Device = "auto",
    data_root: o.DataRoot = None,
    as_json: o.Json = False,
) -> None:
    """Distil a synthetic set with a recipe and store it as [bold]synthetic/NAME[/]."""
    from ddtool.runtime.distill import distill, plan

    r = _recipe(recipe, set_, **{"distill.method": method, "distill.ipc": ipc, "distill.iterations": iterations,
                                "data.dataset": dataset, "distill.name": name})
    dev = resolve_device(device)
    data = _data(r, data_root)
    store = get_store()
    if dry_run:
        resolved = {"recipe": r.to_dict(), "recipe_sha256": r.sha256(), "plan": plan(store, r, data, pool).describe(),
                    "device": str(dev)}
        print_json(resolved) if as_json else console.print_json(data=resolved)
        return
    res = distill(store, r, data, dev, RichReporter(), pool_ref=pool)
    summary = {"ref": res.artifact.ref, "digest": res.artifact.digest, "run": res.run_id,
               "iterations": len(res.losses), "seconds": res.seconds,
               "final_loss": res.losses[-1] if res.losses else None}
    if as_json:
        print_json(summary)
        return
    table = Table(title="distilled", show_header=False)
    for k, v in summary.items():
        table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    console.print(table)


@guarded
def eval_cmd(
    refs: Annotated[list[str], typer.Argument(help="Synthetic-set refs (KIND/NAME[:vN] or digest prefix).")],
    net: Annotated[Optional[str], typer.Option(help="Architecture to train. [default: the one it was distilled with]")] = None,
    repeats: Annotated[Optional[int], typer.Option(help="Networks trained per set (mean ± std). [default: 5]")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs. [default: 300]")] = None,
    protocol: Annotated[Optional[str], typer.Option(help="dsa (lr x0.1 at half) or idc (x0.1 at 2/3, 5/6, CutMix).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate. [default: 0.01]")] = None,
    batch: Annotated[Optional[int], typer.Option(help="Batch size. [default: 256]")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the first repeat.")] = None,
    recipe: o.Recipe = None,
    set_: o.Set = None,
    device: o.Device = "auto",
    data_root: o.DataRoot = None,
    as_json: o.Json = False,
) -> None:
    """Train fresh networks on synthetic sets and report real test accuracy."""
    from ddtool.nets import NetSpec
    from ddtool.runtime.evaluate import evaluate

    r = _recipe(recipe, set_, **{"eval.net": net, "eval.repeats": repeats, "eval.epochs": epochs,
                                "eval.protocol": protocol, "eval.lr": lr, "eval.batch": batch, "eval.seed": seed})
    dev = resolve_device(device)
    store = get_store()
    spec = None
    if r.eval.net:
        from ddtool.plugins import registries

        registries().architecture.get(r.eval.net)  # unknown names fail before any work
        spec = NetSpec(r.eval.net)
    results, cache = [], {}
    for ref in refs:
        meta = store.blob_metadata(store.resolve(ref, kind="synthetic").digest)
        dataset = meta.get("ddtool.dataset", r.data.dataset)
        if dataset not in cache:
            cache[dataset] = load_dataset(dataset, data_root or r.data.root or None, r.data.download)
        results.append(evaluate(store, ref, cache[dataset], r.eval, dev, spec, RichReporter()))
    if as_json:
        print_json([{"ref": e.ref, "net": e.net, "accuracies": e.accuracies, "mean": e.mean, "std": e.std,
                     "seconds": e.seconds, "run": e.run_id} for e in results])
        return
    table = Table(title=f"test accuracy ({r.eval.protocol} protocol, {r.eval.epochs} epochs)")
    for col in ("set", "net", "accuracy", "repeats", "seconds"):
        table.add_column(col, justify="right" if col != "set" else "left")
    for e in results:
        table.add_row(e.ref, e.net, f"{100 * e.mean:.2f} ± {100 * e.std:.2f} %", str(len(e.accuracies)),
                      f"{e.seconds:.1f}")
    console.print(table)
    err.print(f"eval runs: {', '.join(e.run_id for e in results)}", highlight=False)
