"""The looking verbs: inspect, store ls/show/rm, plugins."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from rich.table import Table
from rich.markup import escape
from rich.tree import Tree

from ddtool.cli import options as o
from ddtool.cli.common import console, err, get_store, guarded, print_json
from ddtool.store import Store

store_app = typer.Typer(help="List, show, remove, verify and clean artifacts in the store.", no_args_is_help=True)


def _rows(store: Store) -> list[dict[str, str]]:
    rows = []
    for art in store.list():
        try:
            meta = store.blob_metadata(art.digest)
        except Exception:
            meta = {}
        size = art.path.stat().st_size if art.path.exists() else 0
        rows.append({"ref": art.ref, "kind": art.kind, "digest": art.digest, "bytes": str(size),
                     "dataset": meta.get("ddtool.dataset", "?"), "method": meta.get("ddtool.method", ""),
                     "ipc": meta.get("ddtool.ipc", ""), "n": meta.get("ddtool.n", "")})
    return rows


def _print_listing(store: Store, as_json: bool) -> None:
    rows = _rows(store)
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print(f"the store at {store.root} is empty; start with 'ddtool pretrain' or 'ddtool distill'")
        return
    table = Table(title=f"store {store.root}")
    for col in ("ref", "kind", "digest", "dataset", "method/ipc", "size"):
        table.add_column(col)
    for r in rows:
        what = f"{r['method']} ipc={r['ipc']}" if r["kind"] == "synthetic" else f"{r['n']} models"
        table.add_row(r["ref"], r["kind"], r["digest"][:12], r["dataset"][:40], what, f"{int(r['bytes']) / 1024:.0f} KiB")
    console.print(table)


@store_app.command("ls")
@guarded
def store_ls(as_json: o.Json = False) -> None:
    """List every artifact version with its digest, dataset and method."""
    _print_listing(get_store(), as_json)


def _brief_metrics(rec: dict) -> dict:
    m = rec.get("metrics", {})
    out = {k: m[k] for k in ("mean", "std", "net", "repeats", "epochs", "protocol") if k in m}
    if rec.get("curve"):
        out["curve_points"] = len(rec["curve"])
        out["source_run"] = rec.get("source_run")
    return out


def lineage_info(store: Store, digest: str, depth: int = 2, runs: list | None = None) -> dict:
    """What an artifact was made from and what was made from it, ``depth`` levels each way."""
    runs = store.runs() if runs is None else runs
    meta = store.blob_metadata(digest)
    try:
        art_ref = store.resolve(digest).ref
    except Exception:
        art_ref = digest[:12]
    made = [r for r in runs if any(o.get("digest") == digest for o in r.get("outputs", []))]
    used = [r for r in runs if any(i.get("digest") == digest for i in r.get("inputs", []))]
    sources: dict = {"dataset": {"name": meta.get("ddtool.dataset"), "shape": meta.get("ddtool.shape"),
                                 "classes": len(meta["ddtool.classes"].split(",")) if meta.get("ddtool.classes") else None}}
    run = made[-1] if made else None
    pools = []
    if run is not None:
        sources["run"] = {"id": run["id"], "command": run["command"], "seconds": run.get("wall_seconds"),
                          "status": run.get("status")}
        if "recipe" in run:
            rc = run["recipe"]
            sources["recipe"] = {"name": rc.get("name"), "sha256": run.get("recipe_sha256"),
                                 "method": rc.get("distill", {}).get("method") if run["command"] == "distill" else None,
                                 "ipc": rc.get("distill", {}).get("ipc") if run["command"] == "distill" else None,
                                 "iterations": run.get("plan", {}).get("iterations")}
        sources["plugins"] = sorted(set(run.get("plugins", {}).values()))
        pools = [(i["ref"], i["digest"]) for i in run.get("inputs", []) if i.get("role") == "pool"]
        files = [i for i in run.get("inputs", []) if i.get("kind") == "file"]
        if files:
            sources["file"] = {"name": files[0]["ref"], "sha256": files[0]["digest"]}
    else:
        if meta.get("ddtool.recipe_sha256"):
            sources["recipe"] = {"sha256": meta["ddtool.recipe_sha256"]}
        pools = [(d[:12], d) for d in json.loads(meta.get("ddtool.parents", "[]"))]
    sources["pool"] = []
    for ref, d in pools:
        node: dict = {"ref": ref, "digest": d}
        if depth > 1 and store.blob_path(d).exists():
            node["made_from"] = lineage_info(store, d, depth - 1, runs)["made_from"]
        sources["pool"].append(node)
    products = []
    for r in used:
        entry: dict = {"run": r["id"], "command": r["command"], "status": r.get("status")}
        if r["command"] == "eval":
            entry["metrics"] = _brief_metrics(r)
        outs = []
        for o in r.get("outputs", []):
            child: dict = {"ref": o.get("ref"), "digest": o.get("digest")}
            if depth > 1 and store.blob_path(o["digest"]).exists():
                child["made_into"] = lineage_info(store, o["digest"], depth - 1, runs)["made_into"]
            outs.append(child)
        if outs:
            entry["outputs"] = outs
        products.append(entry)
    return {"ref": art_ref, "digest": digest, "kind": meta.get("ddtool.kind"), "made_from": sources,
            "made_into": products}


def _acc_text(m: dict) -> str:
    if "mean" not in m:
        return ""
    text = f" [bold]{100 * m['mean']:.2f} ± {100 * m['std']:.2f} %[/] on {m.get('net')}"
    if m.get("repeats"):
        text += f" ({m['repeats']} x {m.get('epochs')} epochs)"
    if m.get("curve_points"):
        text += f", curve of {m['curve_points']} points"
    return text


def _add_sources(node: Tree, src: dict) -> None:
    ds = src.get("dataset", {})
    if ds.get("name"):
        node.add(f"dataset [cyan]{escape(ds['name'])}[/] ({ds.get('classes')} classes, {ds.get('shape')})")
    for p in src.get("pool", []):
        child = node.add(f"pool [cyan]{escape(p['ref'])}[/] {p['digest'][:12]}")
        if "made_from" in p:
            _add_sources(child, p["made_from"])
    if "recipe" in src:
        rc = src["recipe"]
        what = ", ".join(f"{k} {rc[k]}" for k in ("method", "ipc", "iterations") if rc.get(k) is not None)
        node.add(f"recipe {escape(str(rc.get('name') or ''))} sha256 {str(rc.get('sha256'))[:12]}"
                 + (f" ({what})" if what else ""))
    if "file" in src:
        node.add(f"file {escape(src['file']['name'])} sha256 {src['file']['sha256'][:12]}")
    if "run" in src:
        r = src["run"]
        node.add(f"run {r['id']} ({r['command']}, {r.get('seconds') or 0:.1f}s, {r.get('status')})")
    if src.get("plugins"):
        node.add("plugins " + escape(", ".join(src["plugins"])))


def _add_products(node: Tree, items: list) -> None:
    for e in items:
        child = node.add(f"{e['command']} run {e['run']}{_acc_text(e.get('metrics', {}))}")
        for o in e.get("outputs", []):
            sub = child.add(f"[cyan]{escape(str(o['ref']))}[/] {str(o['digest'])[:12]}")
            _add_products(sub, o.get("made_into", []))


def lineage_tree(info: dict) -> Tree:
    tree = Tree(f"[bold]{escape(info['ref'])}[/] {info['digest'][:12]} ({info['kind']})")
    _add_sources(tree.add("[bold]made from[/]"), info["made_from"])
    made_into = tree.add("[bold]made into[/]")
    _add_products(made_into, info["made_into"])
    if not info["made_into"]:
        made_into.add("[dim]nothing yet[/]")
    return tree


def _cost(run: dict) -> str:  # type: ignore[type-arg]
    """'12.3s, 4.56 TFLOP, peak 1.2 GiB': what a run cost, from its record."""
    parts = [f"{run.get('wall_seconds') or 0:.1f}s"]
    if run.get("flops"):
        f = run["flops"]
        parts.append(f"{f / 1e12:.3g} TFLOP" if f >= 1e12 else f"{f / 1e9:.3g} GFLOP")
    for key, label in (("peak_rss_bytes", "peak RAM"), ("peak_cuda_bytes", "peak GPU")):
        if run.get(key):
            parts.append(f"{label} {run[key] / 2**30:.2f} GiB")
    return ", ".join(parts)


@store_app.command("show")
@guarded
def store_show(
    ref: Annotated[str, typer.Argument(help="KIND/NAME[:vN] or a digest prefix.")],
    tree: Annotated[bool, typer.Option("--tree", help="Lineage tree: dataset, pool, recipe hash, plugins it was made "
                                                      "from; runs and artifacts made from it (evals with accuracy).")] = False,
    as_json: o.Json = False,
) -> None:
    """Metadata and lineage of one artifact: the runs that made it and the runs that used it."""
    store = get_store()
    art = store.resolve(ref)
    if tree:
        info = lineage_info(store, art.digest)
        info["ref"] = art.ref
        print_json(info) if as_json else console.print(lineage_tree(info), highlight=False)
        return
    meta = store.blob_metadata(art.digest)
    made, used = store.lineage(art.digest)
    info = {
        "ref": art.ref, "digest": art.digest, "kind": art.kind, "metadata": meta,
        "parents": json.loads(meta.get("ddtool.parents", "[]")),
        "made_by": [{"run": r["id"], "command": r["command"], "seconds": r.get("wall_seconds"),
                     "flops": r.get("flops"), "peak_rss_bytes": r.get("peak_rss_bytes"),
                     "peak_cuda_bytes": r.get("peak_cuda_bytes"),
                     "inputs": r.get("inputs", [])} for r in made],
        "used_by": [{"run": r["id"], "command": r["command"], "metrics": r.get("metrics", {})} for r in used],
    }
    if as_json:
        print_json(info)
        return
    tree_ = Tree(f"[bold]{art.ref}[/] {art.digest}")
    md = tree_.add("metadata")
    for k, v in sorted(meta.items()):
        md.add(f"{k} = {v if len(v) < 120 else v[:117] + '...'}")
    parents = tree_.add("made from")
    for r in made:
        node = parents.add(f"run {r['id']} ({r['command']}, {_cost(r)})")
        for i in r.get("inputs", []):
            node.add(f"{i['role']}: {i['ref']} {i['digest'][:12]}")
    children = tree_.add("used by")
    for r in used:
        m = r.get("metrics", {})
        extra = f" acc {100 * m['mean']:.2f} ± {100 * m['std']:.2f} % on {m.get('net')}" if "mean" in m else ""
        children.add(f"run {r['id']} ({r['command']}){extra}")
    console.print(tree_)


@store_app.command("runs")
@guarded
def store_runs(
    command: Annotated[Optional[str], typer.Option(help="Only runs of this command: pretrain, distill, eval, import.")] = None,
    as_json: o.Json = False,
) -> None:
    """List run records: id, command, status, wall time, outputs and key metric."""
    runs = [r for r in get_store().runs() if command in (None, r.get("command"))]
    if as_json:
        print_json(runs)
        return
    table = Table(title="runs")
    for col in ("id", "command", "status", "seconds", "outputs", "metric"):
        table.add_column(col, no_wrap=col != "outputs")
    for r in runs:
        m = r.get("metrics", {})
        metric = (f"acc {100 * m['mean']:.2f} ± {100 * m['std']:.2f} %" if "mean" in m
                  else f"loss {m['final_loss']:.4g}" if isinstance(m.get("final_loss"), float) else "")
        seconds = r.get("wall_seconds")
        table.add_row(r["id"], r.get("command", "?"), r.get("status", "?"),
                      f"{seconds:.1f}" if isinstance(seconds, (int, float)) else "",
                      ", ".join(o["ref"] for o in r.get("outputs", [])), metric)
    console.print(table)


@store_app.command("rm")
@guarded
def store_rm(ref: Annotated[str, typer.Argument(help="KIND/NAME:vN removes one version; KIND/NAME all of them.")]) -> None:
    """Remove artifact refs (and their blobs once nothing refers to them)."""
    removed = get_store().remove(ref)
    for art in removed:
        console.print(f"removed {art.ref} ({art.digest[:12]})")


@store_app.command("verify")
@guarded
def store_verify(as_json: o.Json = False) -> None:
    """Re-hash every blob and check every ref and run record; exit 1 listing each problem."""
    from rich.markup import escape

    from ddtool.cli.common import err
    from ddtool.store.integrity import verify

    report = verify(get_store())
    if as_json:
        print_json(report.to_dict())
    else:
        console.print(report.summary(), highlight=False)
        extra = [f"{len(report.temp_files)} leftover temp files" if report.temp_files else "",
                 f"{len(report.unreferenced)} unreferenced blobs" if report.unreferenced else ""]
        if any(extra):
            console.print(f"note: {', '.join(e for e in extra if e)}; 'ddtool store gc' removes them", highlight=False)
    for problem in report.problems:
        err.print(f"[bold red]problem:[/] {escape(problem)}", highlight=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)


@store_app.command("gc")
@guarded
def store_gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be removed; remove nothing.")] = False,
    as_json: o.Json = False,
) -> None:
    """Remove blobs no ref or run record uses and temp files left by crashed writes."""
    from ddtool.store.integrity import gc

    report = gc(get_store(), dry_run=dry_run)
    if as_json:
        print_json(report.to_dict())
        return
    verb = "would remove" if dry_run else "removed"
    for digest, size in report.blobs:
        console.print(f"{verb} blob {digest[:12]} ({size} bytes)", highlight=False)
    for path, size in report.temp_files:
        console.print(f"{verb} temp file {path} ({size} bytes)", highlight=False)
    n = len(report.blobs) + len(report.temp_files)
    console.print(f"{'would free' if dry_run else 'freed'} {report.bytes_freed} bytes ({n} file{'' if n == 1 else 's'})",
                  highlight=False)


@store_app.command("export")
@guarded
def store_export(
    ref: Annotated[str, typer.Argument(help="Synthetic set: KIND/NAME[:vN] or a digest prefix.")],
    dest: Annotated[Path, typer.Argument(help="imagefolder: a new or empty folder; npz: a file (or a folder for NAME-vN.npz).")],
    fmt: Annotated[Literal["imagefolder", "npz"], typer.Option("--format", "-f", help=(
        "imagefolder: one PNG per training image (IDC multi-formation sets are [bold]decoded[/]), denormalised "
        "to uint8, in DIR/CLASS/NNNN.png, plus DIR/labels.csv (path,label,class). npz: images float32 "
        "normalised exactly as stored (not decoded), labels int64, metadata as a JSON string array."))] = "npz",
    as_json: o.Json = False,
) -> None:
    """Write a synthetic set for other tools: PNGs in class folders, or one .npz file."""
    from ddtool.store.exchange import export_set

    info = export_set(get_store(), ref, dest, fmt)
    if as_json:
        print_json(info)
        return
    what = (f"{info['files']} PNGs" + (" (decoded)" if info["decoded"] else "") if fmt == "imagefolder"
            else f"images {info['images']}")
    console.print(f"exported {info['ref']} ({info['digest'][:12]}) as {fmt} to {info['path']}: {what}", highlight=False)


@store_app.command("import")
@guarded
def store_import(
    file: Annotated[Path, typer.Argument(help=".npz (read with allow_pickle=False) or .pt (torch.load weights_only=True).")],
    dataset: Annotated[str, typer.Option(help="The dataset the images belong to (digits, imagefolder:PATH...).")],
    name: Annotated[Optional[str], typer.Option(help="Artifact name (default: the file's name).")] = None,
    normalized: Annotated[Optional[bool], typer.Option("--normalized/--unit-range", help=(
        "Float images are already normalised with the dataset's mean/std (--normalized) or pixels in [0, 1] "
        "(--unit-range). Default: ddtool-exported files are normalised; otherwise detect by range: all values "
        "in [0, 1] means pixels, anything outside means normalised. uint8 images are always pixels 0..255."),
        show_default=False)] = None,
    data_root: o.DataRoot = None,
    as_json: o.Json = False,
) -> None:
    """Store images and labels from other dataset-distillation code as [bold]synthetic/NAME[/] (method 'imported').

    Files: .npz with arrays images and labels; .pt with a dict {"images", "labels"}, a pair (images, labels),
    or DC/DSA/DM's {"data": \\[\\[images, labels], ...]} (the first).
    Images are [N, C, H, W] (or NHWC) of the dataset's shape.
    """
    from ddtool.data import load_dataset
    from ddtool.store.exchange import import_set

    data = load_dataset(dataset, data_root)
    res = import_set(get_store(), file, data, name, normalized)
    if as_json:
        print_json({"ref": res.artifact.ref, "digest": res.artifact.digest, "run": res.run_id, "count": res.count,
                    "ipc": res.ipc, "detected": res.detected, "notes": res.notes})
        return
    table = Table(title=f"imported {res.artifact.ref}", show_header=False)
    for k, v in (("ref", res.artifact.ref), ("digest", res.artifact.digest[:12]), ("images", res.count),
                 ("ipc", res.ipc), ("range", res.detected), ("run", res.run_id), *(("note", n) for n in res.notes)):
        table.add_row(k, str(v))
    console.print(table)


def _print_pool(art, meta: dict, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    models = json.loads(meta["ddtool.models"])
    if as_json:
        print_json({"ref": art.ref, "digest": art.digest, "net": json.loads(meta["ddtool.net"]), "models": models})
        return
    table = Table(title=f"{art.ref}: {meta['ddtool.n']} x {json.loads(meta['ddtool.net'])['name']} on {meta['ddtool.dataset']}")
    for col in ("model", "seed", "lr", "augment", "epochs", "train acc", "test acc"):
        table.add_column(col, justify="right")
    for m in models:
        table.add_row(str(m["index"]), str(m["seed"]), f"{m['lr']:.4g}", m["augment"], str(m["epochs"]),
                      f"{100 * m['train_acc']:.1f}%", f"{100 * m['test_acc']:.1f}%")
    console.print(table)


def _inspect_curves(store: Store, refs: list[str], x: str, png: Path | None, color: str, as_json: bool) -> None:
    from ddtool.inspect.chart import fmt_number, render_chart, save_chart_png
    from ddtool.inspect.curves import load_series

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


def _console_for(color: str):  # type: ignore[no-untyped-def]
    """The data console, or one forced to a colour system (rich then emits that system's codes)."""
    from rich.console import Console

    if color == "auto":
        return console
    return Console(color_system=None if color == "none" else color, width=console.width, highlight=False)


ColorOpt = Annotated[Literal["auto", "truecolor", "256", "standard", "none"], typer.Option(
    "--color",
    help="Colours of the terminal drawing: auto (what the terminal supports), truecolor, 256, standard (16), "
         "or none (a grey-scale glyph ramp, no escape codes).")]


@guarded
def inspect_cmd(
    refs: Annotated[Optional[list[str]], typer.Argument(
        help="Artifact to show (none lists the store); with --curve one or more distill run ids or synthetic refs.",
        show_default=False)] = None,
    png: Annotated[Optional[Path], typer.Option(help="Also write the grid (or chart) as a PNG file (FILE.png).")] = None,
    max_per_class: Annotated[Optional[int], typer.Option(help="Show at most this many images per class.")] = None,
    size: Annotated[int, typer.Option(help="Largest side, in pixels, an image is drawn at in the terminal.")] = 32,
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
    """Show a synthetic set as an image grid (one row per class), a pool's models, accuracy curves, or the store."""
    from ddtool.errors import UsageError
    from ddtool.inspect.chart import check_png_path
    from ddtool.inspect.grid import color_mode_of, grid_images, render_grid, save_png

    if png is not None:
        check_png_path(png)  # before any work
    store = get_store()
    if not refs:
        if curve:
            raise UsageError("--curve needs one or more distill run ids (distill prints them; the store keeps them "
                             "under runs/) or the synthetic sets they made")
        _print_listing(store, as_json)
        return
    if curve:
        _inspect_curves(store, refs, x, png, color, as_json)
        return
    if len(refs) > 1:
        raise UsageError(f"inspect shows one artifact at a time (got {len(refs)}); several only with --curve")
    if max_per_class is not None and max_per_class < 1:
        raise UsageError(f"--max-per-class must be >= 1, got {max_per_class}")
    art, tensors, meta = store.load(refs[0])
    if art.kind == "pool":
        _print_pool(art, meta, as_json)
        return
    classes = (meta["ddtool.classes"].split(",") if meta.get("ddtool.classes")
               else [str(c) for c in range(int(tensors["labels"].max()) + 1)])
    real_data = None
    if real:
        from ddtool.data import load_dataset

        if not meta.get("ddtool.dataset"):
            raise UsageError(f"'{art.ref}' does not say which dataset it was made from; --real needs one")
        real_data = load_dataset(meta["ddtool.dataset"], data_root)
    images, labels, real_set = grid_images(tensors, meta, decoded, real_data, max_per_class)
    if as_json:
        print_json({"ref": art.ref, "digest": art.digest, "shape": list(images.shape), "classes": classes,
                    "decoded": decoded, "real": real_set is not None})
    else:
        out = _console_for(color)
        mode = "none" if color == "none" else color_mode_of(out.color_system)
        factor = int(meta.get("ddtool.factor", "1"))
        note = f" factor={factor}" + (" (decoded)" if decoded else "") if factor > 1 else ""
        out.print(f"[bold]{art.ref}[/] {meta.get('ddtool.method', '?')} ipc={meta.get('ddtool.ipc')}{note} "
                  f"on {meta.get('ddtool.dataset')}" + ("  [dim](synthetic │ real)[/]" if real_set else ""),
                  highlight=False)
        out.print(render_grid(images, labels, classes, width=out.width, max_per_class=max_per_class,
                              max_size=size, color=mode, real=real_set), end="")
    if png is not None:
        w, h = save_png(images, labels, png, max_per_class=max_per_class, real=real_set, num_classes=len(classes))
        err.print(f"wrote {png} ({w}x{h})", highlight=False)


@guarded
def plugins_cmd(
    kind: Annotated[Optional[str], typer.Option(help="Only this kind: method, selection, schedule, dataset, architecture.")] = None,
    as_json: o.Json = False,
) -> None:
    """Every registered method, selection strategy, schedule, dataset and architecture, and where it came from."""
    from ddtool.errors import UsageError
    from ddtool.plugins import KINDS, registries

    regs = registries()
    if kind is not None and kind not in KINDS:
        raise UsageError(f"unknown kind '{kind}'; choose one of {', '.join(KINDS)}")
    rows = [{"kind": k, "name": e.name, "aliases": list(e.aliases), "plugin": e.source,
             "distribution": e.distribution, "description": getattr(e.obj, "description", "")}
            for k in KINDS if kind in (None, k) for e in regs.kind(k)]
    if as_json:
        print_json(rows)
        return
    table = Table(title="registered plugins")
    for col in ("kind", "name", "aliases", "from", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["kind"], r["name"], ", ".join(r["aliases"]), r["distribution"], r["description"])
    console.print(table)
