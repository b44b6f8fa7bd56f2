"""``ddtool distill``: distil a synthetic set with a recipe (or resume an interrupted run)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from ddtool.cli import options as o
from ddtool.cli.common import (RichReporter, console, distributed_device, get_store, guarded, print_json,
                               prints_results, recipe_data, recipe_with)
from ddtool.cli.launch import Nproc, relaunch
from ddtool.runtime.supervised import resolve_device


@guarded
def distill_cmd(
    recipe: o.Recipe = None,
    set_: o.Set = None,
    pool: Annotated[Optional[str], typer.Option(help=(
        "Pool ref for pool-based selection (overrides \\[distill] pool). \\[default: the recipe's pool; if it is "
        "not in the store, the newest pool made for the same dataset and \\[net], named on stderr]"))] = None,
    name: Annotated[Optional[str], typer.Option(help=(
        "Artifact name (overrides \\[distill] name). \\[default: the recipe's top-level name, else the recipe "
        "file's name without .toml; 'recipe' without --recipe]"))] = None,
    method: Annotated[Optional[str], typer.Option(help="Matching method (overrides \\[distill] method).")] = None,
    ipc: Annotated[Optional[int], typer.Option(help="Images per class (overrides \\[distill] ipc).")] = None,
    iterations: Annotated[Optional[int], typer.Option(help="Outer iterations (overrides \\[distill] iterations).")] = None,
    dataset: Annotated[Optional[str], typer.Option(help="Dataset (overrides \\[data] dataset).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help=(
        "Validate the recipe and print the resolved plan and every \\[distill] value with where it came from "
        "(recipe, scale.DATASET, --set, the method's default, ipc scaling), then the expected seconds per iteration "
        "and in total and the peak memory on the device, from a short probe (up to three replayed iterations, about "
        "10 s; nothing is stored; a line "
        "names the fix when the estimate exceeds the device's memory)."))] = False,
    estimate: Annotated[bool, typer.Option("--estimate/--no-estimate", help=(
        "With --dry-run: probe the run for its time and memory estimate (--no-estimate: the plan only, "
        "without running any iteration)."))] = True,
    resume: Annotated[Optional[str], typer.Option(
        "--resume", metavar="RUN_ID",
        help="Continue an interrupted or crashed distill run from its last checkpoint, with its recorded recipe.")] = None,
    device: o.Device = "auto",
    data_root: o.DataRoot = None,
    as_json: o.Json = False,
    nproc: Nproc = None,
) -> None:
    """Distil a synthetic set with a recipe and store it as [bold]synthetic/NAME[/]."""
    from ddtool.runtime.distill import distill, plan

    if not dry_run:
        relaunch(nproc)  # --nproc N: this command line as N processes, then exit
    if resume is not None:
        _resume_distill(resume, device, data_root, as_json, recipe=recipe, set=set_, pool=pool, name=name,
                        method=method, ipc=ipc, iterations=iterations, dataset=dataset, dry_run=dry_run or None)
        return
    r = recipe_with(recipe, set_, **{"distill.method": method, "distill.ipc": ipc, "distill.iterations": iterations,
                                    "data.dataset": dataset, "distill.name": name})
    from ddtool.runtime.distill.planning import check_registered

    check_registered(r, distill=True)  # unknown names before the data (a download); plan() checks the rest
    dev = resolve_device(device)
    store = get_store(write=not dry_run)  # before the data (a download) and the work
    data = recipe_data(r, data_root)
    if dry_run:
        p = plan(store, r, data, pool, dev)
        resolved = {"recipe": p.recipe.to_dict(), "recipe_sha256": p.recipe.sha256(), "plan": p.describe(),
                    "device": str(dev), "distill": p.settings(), "notes": p.notes}
        est = None
        if estimate:
            from ddtool.runtime.distill.estimate import estimate_and_keep

            est = estimate_and_keep(p, data, dev)
            resolved["estimate"] = est.to_dict()
        if as_json:
            print_json(resolved)
            return
        console.print_json(data={k: v for k, v in resolved.items() if k not in ("distill", "estimate")})
        table = Table(title=f"\\[distill] as resolved for {p.method.name}")
        for col in ("key", "value", "from"):
            table.add_column(col)
        for key, entry in p.settings().items():
            table.add_row(key, str(entry["value"]), entry["from"])
        console.print(table)
        if est is not None:
            from ddtool.runtime.distill.estimate import describe

            for i, line in enumerate(describe(est)):
                console.print(line if i == 0 else f"[yellow]{line}[/]", markup=i > 0, highlight=False, soft_wrap=True)
        return
    with distributed_device(device) as dev:
        res = distill(store, r, data, dev, RichReporter(), pool_ref=pool)
    _print_distilled(res, as_json)


def _resume_distill(run_id: str, device: str, data_root: Path | None, as_json: bool, **others: Any) -> None:
    """``ddtool distill --resume RUN_ID``: the run's own recipe, pool and name; no other settings."""
    from ddtool.errors import UsageError
    from ddtool.runtime.distill import resume, resumable_run

    given = [k for k, v in others.items() if v is not None and v != []]
    if given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise UsageError(f"--resume continues a run with its recorded recipe; drop {flags}")
    store = get_store(write=True)
    _, r = resumable_run(store, run_id)
    data = recipe_data(r, data_root)
    with distributed_device(device) as dev:
        res = resume(store, run_id, data, dev, RichReporter())
    _print_distilled(res, as_json)


def _print_distilled(res: Any, as_json: bool) -> None:
    if not prints_results():
        return
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
