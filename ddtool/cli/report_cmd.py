"""``ddtool report``: one row per synthetic set — accuracy beside its random-real baseline, the
full-data bound, DD-Ranking's scores, the distillation's cost and the set's storage."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer
from rich.table import Table

from ddtool.cli import options as o
from ddtool.cli.common import RichReporter, console, err, get_store, guarded, print_json
from ddtool.errors import UsageError


@guarded
def report_cmd(
    sets: Annotated[Optional[list[str]], typer.Argument(help=(
        "Synthetic sets: refs (KIND/NAME[:vN]), digest prefixes, or distill run ids (the set each made)."),
        show_default=False)] = None,
    dataset: Annotated[Optional[str], typer.Option(help=(
        "Also every synthetic set of this dataset in the store (newest version of each name; the report's own "
        "random baselines left out)."))] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs per evaluation. \\[default: 300]")] = None,
    repeats: Annotated[Optional[int], typer.Option(help=(
        "Networks per set at least (more when the store holds more under the same settings). \\[default: 5]"))] = None,
    protocol: Annotated[Optional[str], typer.Option(help="dsa or idc, as for 'ddtool eval'. \\[default: dsa]")] = None,
    net: Annotated[Optional[str], typer.Option(help=(
        "Architecture to train. \\[default: the one each set was distilled with]"))] = None,
    baseline_subsets: Annotated[int, typer.Option(help=(
        "Random real subsets of the same ipc the baseline averages (seeds 0..N-1), made once and reused."))] = 3,
    full_epochs: Annotated[Optional[int], typer.Option(help=(
        "Epochs of the full-data bound (the whole train split). \\[default: 30]"))] = None,
    full_repeats: Annotated[int, typer.Option(help="Networks trained for the full-data bound.")] = 1,
    w: Annotated[float, typer.Option("--w", help="LRS weight: α = w·IOR − (1 − w)·HLR.")] = 0.5,
    ars: Annotated[bool, typer.Option("--ars", help=(
        "Also evaluate the sets and baselines without augmentation (eval.augment none; under idc CutMix stays, "
        "it is part of that protocol) and report DD-Ranking's ARS: twice the training."))] = False,
    gamma: Annotated[float, typer.Option(help="ARS weight of the augmented gap over the plain one.")] = 0.5,
    recipe: o.Recipe = None,
    set_: o.Set = None,
    device: o.Device = "auto",
    data_root: o.DataRoot = None,
    as_json: o.Json = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV (one row per set) on stdout.")] = False,
    as_markdown: Annotated[bool, typer.Option("--markdown", help="Print a Markdown table on stdout.")] = False,
) -> None:
    """Report synthetic sets: accuracy, random-real baseline, full-data bound, HLR/IOR/LRS, cost, storage."""
    from ddtool.runtime.python_api import report
    from ddtool.runtime.report import to_csv, to_markdown

    if as_json + as_csv + as_markdown > 1:
        raise UsageError("--json, --csv and --markdown each pick the output; give one")
    if not sets and dataset is None:
        raise UsageError("report needs sets: refs, distill run ids, or --dataset NAME")
    store = get_store(write=True)
    rows = report(sets or [], store, dataset=dataset, recipe=recipe, overrides=set_ or [], epochs=epochs,
                  repeats=repeats, protocol=protocol, net=net, baseline_subsets=baseline_subsets,
                  full_epochs=full_epochs, full_repeats=full_repeats, w=w, ars=ars, gamma=gamma, device=device,
                  data_root=data_root, reporter=RichReporter())
    if as_json:
        print_json([r.to_dict() for r in rows])
    elif as_csv:
        sys.stdout.write(to_csv(rows))
    elif as_markdown:
        sys.stdout.write(to_markdown(rows))
    else:
        _print_table(rows)


def _print_table(rows) -> None:  # type: ignore[no-untyped-def]
    """Two tables for 80 columns: the accuracies and scores, then what each set cost and weighs.
    What every row shares (settings, network, device) goes into the titles."""
    from ddtool.inspect.chart import fmt_number
    from ddtool.runtime.report import human_bytes

    def p1(x: float) -> str:
        return f"{100 * x:.1f}"

    def name(ref: str) -> str:  # every row is a synthetic set
        return ref.removeprefix("synthetic/")

    first = rows[0]
    nets, devices, counts = {r.net for r in rows}, {r.device for r in rows}, {r.repeats for r in rows}
    shared_net = f", {first.net}" if len(nets) == 1 else ""
    shared_n = f", {first.repeats} repeats" if len(counts) == 1 else ""
    scores = Table(title=f"accuracy % ({first.protocol}, {first.epochs} epochs{shared_net}{shared_n}; full data "
                         f"{first.full_epochs} epochs; LRS w {first.w:g})", show_edge=False)
    cols = ["set", *([] if shared_net else ["net"]), "ipc", "accuracy" if shared_n else "accuracy (n)", "random",
            "full", "HLR", "IOR", "LRS", *(["ARS"] if any(r.ars is not None for r in rows) else [])]
    for col in cols:
        scores.add_column(col, justify="left" if col in ("set", "net") else "right", overflow="fold",
                          no_wrap=col != "set", min_width=12 if col == "set" else None)
    for r in rows:
        acc = f"{p1(r.accuracy_mean)} ± {p1(r.accuracy_std)}"
        cells = {"set": name(r.ref), "net": r.net, "ipc": str(r.ipc), "accuracy": acc,
                 "accuracy (n)": f"{acc} ({r.repeats})", "random": f"{p1(r.random_mean)} ± {p1(r.random_std)}",
                 "full": p1(r.full_mean), "HLR": p1(r.hlr), "IOR": p1(r.ior), "LRS": f"{r.lrs:.1f}",
                 "ARS": "-" if r.ars is None else f"{r.ars:.1f}"}
        scores.add_row(*(cells[c] for c in cols))
    console.print(scores)
    shared_device = f" on {first.device}" if len(devices) == 1 and first.device else ""
    pools = any(r.pretrain_seconds is not None for r in rows)
    cost = Table(title=f"cost as recorded{shared_device}" + (" (seconds: distill+pool pretraining)" if pools else "")
                       + ", storage", show_edge=False)
    for col in ("set", "method", "recipe", "seconds", "FLOPs", "peak mem", "storage"):
        cost.add_column(col, justify="left" if col in ("set", "method", "recipe") else "right", overflow="fold",
                        no_wrap=col not in ("set", "method"), min_width=12 if col == "set" else None)
    for r in rows:
        seconds = "-" if r.distill_seconds is None else f"{r.distill_seconds:.1f}"
        if r.pretrain_seconds is not None:
            seconds += f"+{r.pretrain_seconds:.1f}"
        if not shared_device and r.device:
            seconds += f" ({r.device})"
        cost.add_row(name(r.ref), r.method, (r.recipe_sha256 or "-")[:8], seconds,
                     "-" if r.flops is None else fmt_number(r.flops),
                     "-" if r.peak_memory_bytes is None else human_bytes(r.peak_memory_bytes),
                     human_bytes(r.storage_bytes))
    console.print(cost)
    err.print(f"random: mean ± std of {first.random_subsets} random real subsets' mean accuracies; HLR = full − "
              "accuracy, IOR = accuracy − random (points), LRS in [0, 100]; --json has every repeat, seed and run",
              highlight=False, soft_wrap=True)
