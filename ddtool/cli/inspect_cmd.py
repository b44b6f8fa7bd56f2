"""``ddtool inspect``: a synthetic set as an image grid, a pool's models, a distill run's selection
choices, accuracy curves, or the store."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from ddtool.cli import options as o
from ddtool.cli.common import console, err, get_store, guarded, print_json
from ddtool.cli.render import pool_table, print_listing
from ddtool.store import Artifact, Store
from ddtool.store.meta import PoolMeta


def _print_pool(art: Artifact, meta: dict[str, str], as_json: bool) -> None:
    info = PoolMeta.from_metadata(meta)
    net = json.loads(info.net) if info.net is not None else None
    models = info.models or []
    if as_json:
        print_json({"ref": art.ref, "digest": art.digest, "net": net, "models": models})
        return
    name = net["name"] if net else "?"
    console.print(pool_table(f"{art.ref}: {info.n} x {name} on {info.signature.dataset}", models))


def _inspect_curves(store: Store, refs: list[str], x: str, png: Path | None, color: str, as_json: bool) -> None:
    from ddtool.inspect.chart import fmt_number, render_chart, save_chart_png
    from ddtool.inspect.curve_series import load_series

    series, records = load_series(store, refs, x)
    x_label = {"iteration": "outer-loop step", "seconds": "wall seconds of distillation",
               "flops": "estimated FLOPs of distillation"}[x]
    if as_json:
        print_json([{"name": s.name, "x": x, "xs": s.xs, "accuracy_percent": s.ys, "std_percent": s.errs,
                     "eval_run": r["id"], "source_run": r["source_run"], "flops_note": r.get("flops_note")}
                    for s, r in zip(series, records)])
    else:
        out = _console_for(color)
        out.print(render_chart(series, width=out.width, height=16, x_label=x_label, color=color != "none"),
                  highlight=False, end="")
    if png is not None:
        w, h = save_chart_png(series, png, x_label=x_label, title="test accuracy during distillation",
                              x_format=fmt_number)
        err.print(f"wrote {png} ({w}x{h})", highlight=False)


def _inspect_trajectories(art, tensors, png: Path | None, color: str, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    """Expert trajectories: each expert's test accuracy per epoch as a curve (mean, std, first experts)."""
    from ddtool.inspect.chart import render_chart, save_chart_png
    from ddtool.inspect.trajectory_series import trajectory_series, trajectory_summary

    series = trajectory_series(tensors)
    if as_json:
        print_json({"ref": art.ref, "digest": art.digest, **trajectory_summary(tensors)})
    else:
        out = _console_for(color)
        out.print(f"[bold]{art.ref}[/] expert test accuracy per epoch (epoch 0: the initialisation)")
        out.print(render_chart(series, width=out.width, height=16, x_label="expert epoch", color=color != "none"),
                  highlight=False, end="")
    if png is not None:
        w, h = save_chart_png(series, png, x_label="expert epoch", title=f"{art.ref}: expert test accuracy")
        err.print(f"wrote {png} ({w}x{h})", highlight=False)


def _inspect_selection(store: Store, run_id: str, as_json: bool) -> None:
    """A distill run's selection choices (DynaDistill's log): entropy and how often each model was chosen."""
    from rich.table import Table

    from ddtool.inspect.selection import selection_summary

    info = selection_summary(store, store.run(run_id.strip()))
    if as_json:
        print_json(info)
        return
    source = f" over {info['from']}" if info["from"] else ""
    console.print(
        f"[bold]run {info['run']}[/]: {info['selection']}{source}, {info['loops']} outer loops "
        f"({info['first']}..{info['last']}), m = {info['m']}; entropy of a choice {info['entropy_bits']:.2f} bits "
        f"(uniform: {info['max_entropy_bits']:.2f}) over {info['scored_loops']} scored loops; "
        f"of the choices over the run {info['choice_entropy_bits']:.2f} bits", highlight=False)
    table = Table()
    for col in (info["kind"], "candidate in", "chosen", "share of loops"):
        table.add_column(col, justify="right")
    for row in info["chosen"]:
        table.add_row(str(row["index"]), str(row["candidate"]), str(row["chosen"]), f"{100 * row['share']:.1f}%")
    console.print(table)


def _console_for(color: str):  # type: ignore[no-untyped-def]
    """The data console, or one forced to a colour system (rich then emits that system's codes)."""
    from rich.console import Console

    if color == "auto":
        return console
    return Console(color_system=None if color == "none" else color, width=console.width, highlight=False)


def _grid_lines(out, title: str) -> int | None:  # type: ignore[no-untyped-def]
    """Lines the grid may take: the screen's height less the title, a note (up to two lines) and
    the shell's prompt; None (every line) when the output is no terminal and LINES is unset: a
    pipe or a file gets the whole grid."""
    from rich.text import Text

    if not out.is_terminal and not os.environ.get("LINES", "").isdigit():
        return None
    title_lines = -(-Text.from_markup(title).cell_len // max(out.width, 1))
    return max(1, out.height - title_lines - 2 - 1)


ColorOpt = Annotated[Literal["auto", "truecolor", "256", "standard", "none"], typer.Option(
    "--color",
    help="Colours of the terminal drawing: auto (what the terminal supports), truecolor, 256, standard (16), "
         "or none (a grey-scale glyph ramp, no escape codes).")]


@guarded
def inspect_cmd(
    refs: Annotated[Optional[list[str]], typer.Argument(
        help="Artifact to show (none lists the store), or a distill run id: what its selection chose (DynaDistill: "
             "the entropy of its choices, how often each pool model or expert was a candidate and was chosen); "
             "with --curve one or more distill run ids or synthetic refs.",
        show_default=False)] = None,
    png: Annotated[Optional[Path], typer.Option(help="Also write the grid (or chart) as a PNG file (FILE.png).")] = None,
    max_per_class: Annotated[Optional[int], typer.Option(help=(
        "Show at most this many images per class (in the PNG too), every class. Default: in the terminal, as "
        "many as fit the screen (a note says what was left out); in the PNG, all of them."), show_default=False)] = None,
    size: Annotated[Optional[int], typer.Option(help=(
        "Side, in pixels, of the images in the terminal (smaller only if one would not fit the width); every "
        "class is drawn. Default: fitted to the screen, from 8 (or the set's size, if smaller) to 32."),
        show_default=False)] = None,
    color: ColorOpt = "auto",
    real: Annotated[bool, typer.Option("--real", help="Show real training images of each class beside the synthetic ones.")] = False,
    decoded: Annotated[bool, typer.Option("--decoded", help="Show IDC's decoded training images (factor x factor per stored image).")] = False,
    curve: Annotated[bool, typer.Option("--curve", help="Plot test accuracy against the outer-loop step "
                                                        "(from 'ddtool eval RUN_ID --checkpoints').")] = False,
    x: Annotated[Literal["iteration", "seconds", "flops"], typer.Option("--x",
                                   help="x axis of --curve.")] = "iteration",
    data_root: o.DataRoot = None,
    as_json: o.Json = False,
) -> None:
    """Show a synthetic set as an image grid, a pool's models, a run's selection choices, accuracy
    curves, or the store.

    The terminal grid is fitted to the screen: image size, images per class and classes side by
    side, with a note on what was left out (--size and --max-per-class override; a pipe or a file
    gets every image). --png writes every image, one column per class.
    """
    from ddtool.errors import UsageError
    from ddtool.inspect.chart import check_png_path
    from ddtool.inspect.grid import color_mode_of, fit_terminal, grid_images, render_grid, save_png
    from ddtool.inspect.label_vectors import label_lines, top_labels
    from ddtool.synthetic import SyntheticSet

    if png is not None:
        check_png_path(png)  # before any work
    store = get_store()
    if not refs:
        if curve:
            raise UsageError("--curve needs one or more distill run ids (distill prints them; the store keeps them "
                             "under runs/) or the synthetic sets they made")
        print_listing(store, as_json)
        return
    if curve:
        _inspect_curves(store, refs, x, png, color, as_json)
        return
    from ddtool.store.runs import is_run_id

    if len(refs) == 1 and is_run_id(refs[0]):
        _inspect_selection(store, refs[0], as_json)
        return
    if len(refs) > 1:
        raise UsageError(f"inspect shows one artifact at a time (got {len(refs)}); several only with --curve")
    if max_per_class is not None and max_per_class < 1:
        raise UsageError(f"--max-per-class must be >= 1, got {max_per_class}")
    if size is not None and size < 2:
        raise UsageError(f"--size must be at least 2 pixels (one terminal line), got {size}")
    art, tensors, meta = store.load(refs[0])
    if art.kind == "pool":
        _print_pool(art, meta, as_json)
        return
    if art.kind == "trajectories":
        _inspect_trajectories(art, tensors, png, color, as_json)
        return
    if art.kind != "synthetic":  # checkpoints...: nothing to draw yet
        raise UsageError(f"inspect draws synthetic sets and lists pools; '{art.ref}' is a {art.kind} artifact: "
                         f"'ddtool store show {art.ref}' shows it")
    syn = SyntheticSet.from_artifact(tensors, meta, art.digest)
    classes = syn.signature.class_names() or [str(c) for c in range(int(syn.labels.max()) + 1)]
    real_data = None
    if real:
        from ddtool.lookup import load_dataset

        if not syn.signature.dataset:
            raise UsageError(f"'{art.ref}' does not say which dataset it was made from; --real needs one")
        real_data = load_dataset(syn.signature.dataset, data_root)
    images, labels, real_set = grid_images(syn, decoded, real_data, max_per_class)
    tops = top_labels(syn)
    if as_json:
        print_json({"ref": art.ref, "digest": art.digest, "shape": list(images.shape), "classes": classes,
                    "decoded": decoded, "real": real_set is not None,
                    **({"label_kind": syn.info.label_kind,
                        "top_labels": [{"index": t.index, "label": t.label, "top": t.top, "confidence": t.confidence}
                                       for t in tops]} if tops else {})})
    else:
        out = _console_for(color)
        mode = "none" if color == "none" else color_mode_of(out.color_system)
        info = syn.info
        note = f" factor={syn.factor}" + (" (decoded)" if decoded else "") if syn.factor > 1 else ""
        title = (f"[bold]{art.ref}[/] {'?' if info.method is None else info.method} ipc={info.ipc}{note} "
                 f"on {info.signature.dataset}" + ("  [dim](synthetic │ real)[/]" if real_set else ""))
        out.print(title, highlight=False)
        lines = _grid_lines(out, title)
        layout, left_out = fit_terminal(images, labels, classes, out.width, lines, real_set, size, max_per_class,
                                        screen=f"{out.width}x{out.height}" if lines is not None else None)
        out.print(render_grid(images, labels, classes, color=mode, real=real_set, layout=layout), end="")
        if left_out:
            out.print(f"[dim]{left_out}[/]", highlight=False)
        if tops:  # the set's own label vectors: each image's top class ('=': its own) and confidence
            out.print(f"[bold]learned labels[/] ({syn.info.label_kind}): top class and confidence per image",
                      highlight=False)
            for line in label_lines(tops, classes, max_per_class):
                out.print(line, highlight=False, soft_wrap=True)
    if png is not None:
        w, h = save_png(images, labels, png, max_per_class=max_per_class, real=real_set, num_classes=len(classes))
        err.print(f"wrote {png} ({w}x{h})", highlight=False)
