"""The looking verbs: inspect, store ls/show/rm, plugins."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer
from rich.table import Table
from rich.tree import Tree

from ddtool.cli import options as o
from ddtool.cli.common import console, get_store, guarded, print_json
from ddtool.store import Store

store_app = typer.Typer(help="List, show and remove artifacts in the store.", no_args_is_help=True)


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


@store_app.command("show")
@guarded
def store_show(ref: Annotated[str, typer.Argument(help="KIND/NAME[:vN] or a digest prefix.")], as_json: o.Json = False) -> None:
    """Metadata and lineage of one artifact: the runs that made it and the runs that used it."""
    store = get_store()
    art = store.resolve(ref)
    meta = store.blob_metadata(art.digest)
    made, used = store.lineage(art.digest)
    info = {
        "ref": art.ref, "digest": art.digest, "kind": art.kind, "metadata": meta,
        "parents": json.loads(meta.get("ddtool.parents", "[]")),
        "made_by": [{"run": r["id"], "command": r["command"], "seconds": r.get("wall_seconds"),
                     "inputs": r.get("inputs", [])} for r in made],
        "used_by": [{"run": r["id"], "command": r["command"], "metrics": r.get("metrics", {})} for r in used],
    }
    if as_json:
        print_json(info)
        return
    tree = Tree(f"[bold]{art.ref}[/] {art.digest}")
    md = tree.add("metadata")
    for k, v in sorted(meta.items()):
        md.add(f"{k} = {v if len(v) < 120 else v[:117] + '...'}")
    parents = tree.add("made from")
    for r in made:
        node = parents.add(f"run {r['id']} ({r['command']}, {r.get('wall_seconds', 0):.1f}s)")
        for i in r.get("inputs", []):
            node.add(f"{i['role']}: {i['ref']} {i['digest'][:12]}")
    children = tree.add("used by")
    for r in used:
        m = r.get("metrics", {})
        extra = f" acc {100 * m['mean']:.2f} ± {100 * m['std']:.2f} % on {m.get('net')}" if "mean" in m else ""
        children.add(f"run {r['id']} ({r['command']}){extra}")
    console.print(tree)


@store_app.command("rm")
@guarded
def store_rm(ref: Annotated[str, typer.Argument(help="KIND/NAME:vN removes one version; KIND/NAME all of them.")]) -> None:
    """Remove artifact refs (and their blobs once nothing refers to them)."""
    removed = get_store().remove(ref)
    for art in removed:
        console.print(f"removed {art.ref} ({art.digest[:12]})")


@guarded
def inspect_cmd(
    ref: Annotated[Optional[str], typer.Argument(help="Artifact to show; none lists the store.")] = None,
    png: Annotated[Optional[Path], typer.Option(help="Also write the grid as a PNG file.")] = None,
    max_per_class: Annotated[Optional[int], typer.Option(help="Show at most this many images per class.")] = None,
    size: Annotated[int, typer.Option(help="Largest side, in pixels, an image is drawn at in the terminal.")] = 32,
    as_json: o.Json = False,
) -> None:
    """Show a synthetic set as an image grid (one row per class), a pool's models, or the store."""
    from ddtool.inspect.grid import render_grid, save_png

    store = get_store()
    if ref is None:
        _print_listing(store, as_json)
        return
    art, tensors, meta = store.load(ref)
    if art.kind == "pool":
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
        return
    classes = meta.get("ddtool.classes", "").split(",")
    mean = torch.tensor(json.loads(meta["ddtool.mean"])).view(1, -1, 1, 1)
    std = torch.tensor(json.loads(meta["ddtool.std"])).view(1, -1, 1, 1)
    images = (tensors["images"] * std + mean).clamp(0, 1)
    labels = tensors["labels"]
    if as_json:
        print_json({"ref": art.ref, "digest": art.digest, "shape": list(images.shape), "classes": classes})
    else:
        console.print(f"[bold]{art.ref}[/] {meta.get('ddtool.method', '?')} ipc={meta.get('ddtool.ipc')} "
                      f"on {meta.get('ddtool.dataset')}", highlight=False)
        console.print(render_grid(images, labels, classes, width=console.width, max_per_class=max_per_class,
                                  max_size=size))
    if png is not None:
        w, h = save_png(images, labels, png)
        from ddtool.cli.common import err

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
