"""``ddtool pretrain``: train a pool of early-stage models and store it."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ddtool.cli import options as o
from ddtool.cli.common import RichReporter, console, get_store, guarded, print_json, recipe_data, recipe_with
from ddtool.cli.render import pool_table
from ddtool.runtime.train import resolve_device


@guarded
def pretrain_cmd(
    epochs: Annotated[Optional[int], typer.Option(help="Epochs per model (early stage: 2 on CIFAR). \\[default: 2]")] = None,
    n: Annotated[Optional[int], typer.Option("--n", help="Models in the pool. \\[default: 5]")] = None,
    dataset: Annotated[Optional[str], typer.Option(help="Dataset name or imagefolder:PATH. \\[default: digits]")] = None,
    net: Annotated[Optional[str], typer.Option(help="Architecture (see 'ddtool plugins'). \\[default: convnet]")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Base learning rate; models use multiples of it.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the first model; model i uses seed + i.")] = None,
    name: Annotated[Optional[str], typer.Option(help="Pool name in the store. \\[default: DATASET-NET]")] = None,
    recipe: o.Recipe = None,
    set_: o.Set = None,
    device: o.Device = "auto",
    data_root: o.DataRoot = None,
    as_json: o.Json = False,
) -> None:
    """Train a pool of early-stage models and store it as [bold]pool/NAME[/]."""
    from ddtool.runtime.pretrain import pretrain

    r = recipe_with(recipe, set_, **{"pretrain.epochs": epochs, "pretrain.n": n, "data.dataset": dataset,
                                    "net.name": net, "pretrain.lr": lr, "pretrain.seed": seed, "pretrain.name": name})
    if r.pretrain.name:
        from ddtool.store.refs import check_name

        check_name(r.pretrain.name)  # before training, not after it
    dev = resolve_device(device)
    store = get_store(write=True)  # before the data (a download) and the training
    data = recipe_data(r, data_root)
    res = pretrain(store, r, data, dev, RichReporter())
    if as_json:
        print_json({"ref": res.artifact.ref, "digest": res.artifact.digest, "run": res.run_id,
                    "seconds": res.seconds, "models": res.pool.models})
        return
    console.print(pool_table(f"{res.artifact.ref}  ({res.artifact.digest[:12]}, {res.seconds:.1f}s)", res.pool.models))
