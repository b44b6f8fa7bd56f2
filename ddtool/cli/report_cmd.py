"""``ddtool report``: one row per synthetic set — accuracy beside its random-real baseline, the
full-data bound, DD-Ranking's scores, the distillation's cost and the set's storage."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ddtool.cli import options as o
from ddtool.cli.common import RichReporter, console, err, get_store, guarded, print_json, recipe_file
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
    protocol: Annotated[Optional[str], typer.Option(help="dsa, idc or ncfm, as for 'ddtool eval'. \\[default: dsa]")] = None,
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
    teacher: Annotated[Optional[str], typer.Option(help=(
        "Also train on this teacher's soft labels (pool/NAME[:vN]\\[#i], as 'eval --teacher') and show soft-label "
        "accuracy beside the hard one, with the soft labels' storage; for a set with learned labels, the random "
        "baseline of its learned-label IOR."))] = None,
    temperature: Annotated[Optional[float], typer.Option(help=(
        "Temperature of the soft labels. \\[default: 4]"))] = None,
    recipe: o.Recipe = None,
    set_: o.Set = None,
    device: o.Device = "auto",
    data_root: o.DataRoot = None,
    as_json: o.Json = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV (one row per set) on stdout.")] = False,
    as_markdown: Annotated[bool, typer.Option("--markdown", help="Print a Markdown table on stdout.")] = False,
    figure: Annotated[Optional[Path], typer.Option(help=(
        "Also draw accuracy against distillation cost, one point per set, the Pareto front marked, as PNG, SVG "
        "or PDF (by the extension)."), metavar="FILE")] = None,
) -> None:
    """Report synthetic sets: accuracy, random-real baseline, full-data bound, HLR/IOR/LRS, cost, storage."""
    from ddtool.runtime.python_api import report
    from ddtool.runtime.report.tables import to_csv, to_markdown

    if as_json + as_csv + as_markdown > 1:
        raise UsageError("--json, --csv and --markdown each pick the output; give one")
    if not sets and dataset is None:
        raise UsageError("report needs sets: refs, distill run ids, or --dataset NAME")
    if figure is not None:
        from ddtool.inspect.chart import check_figure_path

        check_figure_path(figure)  # before any work
    soft = [f"eval.{k}={json.dumps(v)}" for k, v in (("labels", "soft" if teacher else None), ("teacher", teacher),
                                                      ("temperature", temperature)) if v is not None]
    recipe_path = recipe_file(recipe)  # a shipped recipe's name, or a file
    store = get_store(write=True)
    rows = report(sets or [], store, dataset=dataset, recipe=recipe_path, overrides=[*(set_ or []), *soft], epochs=epochs,
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
    if figure is not None:
        _figure(rows, figure)


def _print_cross_arch(rows, name, p1) -> None:  # type: ignore[no-untyped-def]
    """The sets on other networks, as 'eval --net' recorded them under the report's settings."""
    from ddtool.runtime.report.tables import cross_nets

    nets = cross_nets(rows)
    if not nets:
        return
    table = Table(title="across architectures (recorded by 'eval --net', same settings; hard labels)",
                  show_edge=False)
    for col in ("set", "own net", *nets):
        table.add_column(col, justify="left" if col in ("set", "own net") else "right", overflow="fold",
                         min_width=12 if col == "set" else None)
    for r in rows:
        cells = [f"{p1(r.cross_arch[n]['mean'])} ± {p1(r.cross_arch[n]['std'])} ({r.cross_arch[n]['repeats']})"
                 if n in r.cross_arch else "-" for n in nets]
        table.add_row(name(r.ref), f"{r.net} {p1(r.accuracy_mean)}", *cells)
    console.print(table)


def _print_learned(rows, name, p1) -> None:  # type: ignore[no-untyped-def]
    """Sets that carry their own label vectors: hard beside learned, DD-Ranking's soft-label scores."""
    from ddtool.runtime.report.tables import human_bytes

    table = Table(title="learned labels (the set's own; random: the subsets on the teacher's soft labels, T 1)",
                  show_edge=False)
    for col in ("set", "kind", "hard", "learned", "random", "IOR", "LRS", "labels"):
        table.add_column(col, justify="left" if col in ("set", "kind") else "right", overflow="fold",
                         no_wrap=col not in ("set", "kind"), min_width=12 if col == "set" else None)
    for r in rows:
        table.add_row(name(r.ref), r.label_kind or "-", f"{p1(r.accuracy_mean)} ± {p1(r.accuracy_std)}",
                      f"{p1(r.learned_mean)} ± {p1(r.learned_std or 0.0)}",
                      "-" if r.learned_random_mean is None else p1(r.learned_random_mean),
                      "-" if r.learned_ior is None else p1(r.learned_ior),
                      "-" if r.learned_lrs is None else f"{r.learned_lrs:.1f}", human_bytes(r.learned_label_bytes or 0))
    console.print(table)


def _figure(rows, path: Path) -> None:  # type: ignore[no-untyped-def]
    from ddtool.inspect.figures import cost_seconds, save_report_figure

    if all(cost_seconds(r) is None for r in rows):
        raise UsageError("no set has a recorded distillation cost (its distill run is not in this store), so "
                         "there is nothing to plot against it; drop --figure")
    (w, h), left_out, front = save_report_figure(rows, path)
    note = f"; left out (no recorded cost): {', '.join(left_out)}" if left_out else ""
    err.print(f"wrote {path} ({w}x{h}: {len(rows) - len(left_out)} sets, {front} on the Pareto front{note})",
              highlight=False, soft_wrap=True)


def _print_table(rows) -> None:  # type: ignore[no-untyped-def]
    """Two tables for 80 columns: the accuracies and scores, then what each set cost and weighs.
    What every row shares (settings, network, device) goes into the titles."""
    from ddtool.inspect.chart import fmt_number
    from ddtool.runtime.report.tables import human_bytes

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
    soft = any(r.soft_mean is not None for r in rows)
    if soft:  # a third table, hard and soft side by side, so that each fits 80 columns
        # one --temperature per report: it goes into the title
        temperature = next(r.temperature for r in rows if r.soft_mean is not None)
        labels = Table(title=f"hard and soft labels (soft: the teacher's softmax(logits / T), T {temperature:g}, "
                             "KL loss x T²; random and LRS on the same soft labels)", show_edge=False)
        for col in ("set", "teacher", "hard", "soft", "random", "LRS", "bytes"):
            labels.add_column(col, justify="left" if col in ("set", "teacher") else "right", overflow="fold",
                              no_wrap=col not in ("set", "teacher"), min_width=12 if col == "set" else None)
        for r in rows:
            if r.soft_mean is None:
                continue
            teacher = (r.teacher or "").removeprefix("pool/")
            labels.add_row(name(r.ref), f"{teacher}#{r.teacher_model}",
                           f"{p1(r.accuracy_mean)} ± {p1(r.accuracy_std)}",
                           f"{p1(r.soft_mean)} ± {p1(r.soft_std or 0.0)}",
                           "-" if r.soft_random_mean is None else p1(r.soft_random_mean),
                           "-" if r.soft_lrs is None else f"{r.soft_lrs:.1f}", human_bytes(r.soft_label_bytes or 0))
        console.print(labels)
    learned = [r for r in rows if r.learned_mean is not None]
    if learned:
        _print_learned(learned, name, p1)
    _print_cross_arch(rows, name, p1)
    err.print(f"random: mean ± std of {first.random_subsets} random real subsets' mean accuracies; HLR = full − "
              "accuracy, IOR = accuracy − random (points), LRS in [0, 100]; --json has every repeat, seed and run",
              highlight=False, soft_wrap=True)
    if soft:
        err.print("soft labels: bytes = fp32, N (training images) x classes x 4 (--json: the total with the images); "
                  "random: the same subsets on the teacher's soft labels; LRS from IOR = soft − that random and "
                  "the hard HLR", highlight=False, soft_wrap=True)
    if learned:
        err.print("learned labels: the set's own label vectors (eval.labels learned, T 1), their bytes counted in "
                  "storage; random: the same subsets on the teacher's soft labels at T 1 (DD-Ranking's soft-label "
                  "IOR); LRS from that IOR and the hard HLR; '-': no --teacher", highlight=False, soft_wrap=True)
