"""``ddtool store ...``: list, show, remove, verify, clean, export and import artifacts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from ddtool.cli import options as o
from ddtool.cli.common import console, err, get_store, guarded, print_json
from ddtool.cli.render import accuracy_cell, print_listing
from ddtool.store.meta import parents_of
from ddtool.store.refs import KINDS

store_app = typer.Typer(help="List, show, remove, verify and clean artifacts in the store.", no_args_is_help=True)


@store_app.command("ls")
@guarded
def store_ls(as_json: o.Json = False) -> None:
    """List every artifact version with its digest, dataset and method."""
    print_listing(get_store(), as_json)


def _acc_text(m: dict) -> str:
    if "mean" not in m:
        return ""
    text = f" [bold]{accuracy_cell(m['mean'], m['std'])}[/] on {m.get('net')}"
    if m.get("repeats"):
        text += f" ({m['repeats']} x {m.get('epochs')} epochs)"
    if m.get("curve_points"):
        text += f", curve of {m['curve_points']} points"
    return text


def _add_sources(node: Tree, src: dict) -> None:
    ds = src.get("dataset", {})
    if ds.get("name"):
        node.add(f"dataset [cyan]{escape(ds['name'])}[/] ({ds.get('classes')} classes, {ds.get('shape')})")
    for kind in KINDS:  # every stored artifact it was made from: pools, expert trajectories, sets
        for p in src.get(kind, []):
            child = node.add(f"{kind} [cyan]{escape(p['ref'])}[/] {p['digest'][:12]}")
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
        for out in e.get("outputs", []):
            sub = child.add(f"[cyan]{escape(str(out['ref']))}[/] {str(out['digest'])[:12]}")
            _add_products(sub, out.get("made_into", []))


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
    tree: Annotated[bool, typer.Option("--tree", help="Lineage tree: dataset, pools, trajectories, recipe hash, "
                                                      "plugins it was made from; runs and artifacts made from it (evals with accuracy).")] = False,
    as_json: o.Json = False,
) -> None:
    """Metadata and lineage of one artifact: the runs that made it and the runs that used it."""
    store = get_store()
    art = store.resolve(ref)
    if tree:
        info = store.lineage(art.digest, depth=2)
        info["ref"] = art.ref
        print_json(info) if as_json else console.print(lineage_tree(info), highlight=False)
        return
    meta = store.blob_metadata(art.digest)
    made, used = store.runs_of(art.digest)
    info = {
        "ref": art.ref, "digest": art.digest, "kind": art.kind, "metadata": meta,
        "parents": parents_of(meta),
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
        extra = f" acc {accuracy_cell(m['mean'], m['std'])} on {m.get('net')}" if "mean" in m else ""
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
        metric = (f"acc {accuracy_cell(m['mean'], m['std'])}" if "mean" in m
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
    fmt: Annotated[Literal["imagefolder", "npz", "hf"], typer.Option("--format", "-f", help=(
        "imagefolder: one PNG per training image (IDC multi-formation sets are [bold]decoded[/]), denormalised "
        "to uint8, in DIR/CLASS/NNNN.png, plus DIR/labels.csv (path,label,class). npz: images float32 "
        "normalised exactly as stored (not decoded), labels int64, metadata as a JSON string array. "
        "hf: a folder datasets.load_dataset(DIR) loads (DIR/train/CLASS/NNNN.png + metadata.jsonl), with a "
        "dataset card (README.md) generated from the store: how the set was made, its recorded evaluations, "
        "and the stored artifact itself (DIR/ddtool/synthetic.safetensors) for 'store import DIR'."))] = "npz",
    report: Annotated[Optional[Path], typer.Option(help=(
        "--format hf: a 'ddtool report --json' file; the set's row (random baseline, IOR, cost, storage) "
        "goes into the card."))] = None,
    teacher: Annotated[Optional[str], typer.Option(help=(
        "--format hf: also write each image's soft label (softmax of this teacher's logits / --temperature): "
        "pool/NAME[:vN][#i]."))] = None,
    temperature: Annotated[float, typer.Option(help="--format hf with --teacher: the soft labels' temperature.")] = 4.0,
    data_root: o.DataRoot = None,
    as_json: o.Json = False,
) -> None:
    """Write a synthetic set for other tools: PNGs in class folders, one .npz file, or a Hugging Face
    dataset folder with its card."""
    from ddtool.errors import UsageError
    from ddtool.runtime.exchange.formats import export_set

    if fmt != "hf" and (report is not None or teacher):
        raise UsageError("--report and --teacher go with --format hf")
    if fmt == "hf":
        from ddtool.runtime.exchange.hf_folder import export_hf

        rows = None
        if report is not None:
            try:
                rows = json.loads(report.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise UsageError(f"--report {report}: not a readable 'ddtool report --json' file ({exc})") from None
        info = export_hf(get_store(), ref, dest, rows, teacher, temperature, data_root)
        if as_json:
            print_json(info)
            return
        console.print(f"exported {info['ref']} ({info['digest'][:12]}) as a datasets folder to {info['path']}: "
                      f"{info['files']} PNGs" + (" (decoded)" if info["decoded"] else "")
                      + f", card with {info['evaluations']} evaluation(s)"
                      + (" and the report row" if info["report"] else "")
                      + (", soft labels" if info["soft_labels"] else ""), highlight=False)
        return
    info = export_set(get_store(), ref, dest, fmt)
    if as_json:
        print_json(info)
        return
    what = (f"{info['files']} PNGs" + (" (decoded)" if info["decoded"] else "") if fmt == "imagefolder"
            else f"images {info['images']}")
    console.print(f"exported {info['ref']} ({info['digest'][:12]}) as {fmt} to {info['path']}: {what}", highlight=False)
    if info.get("zca"):
        console.print(f"note: {info['zca']}", highlight=False)


_KIND_HELP = (
    "What FILE holds. synthetic: a set's images and labels (.npz, .pt, or a folder 'store export --format hf' "
    "wrote), stored as synthetic/NAME. trajectories: expert trajectories in the format of MTT's buffer.py and "
    "DATM's buffer_FTD.py (a replay_buffer_N.pt file, or the folder of them: each a list of experts, each a list "
    "of epochs from epoch 0, each the parameters in model.parameters() order; read with torch.load "
    "weights_only=True), checked against the \\[net] of --recipe/--net/--set and stored as trajectories/NAME for "
    "the mtt and datm methods.")


@store_app.command("import")
@guarded
def store_import(
    file: Annotated[Path, typer.Argument(help=".npz (read with allow_pickle=False), .pt (torch.load weights_only=True), "
                                              "or a folder 'store export --format hf' wrote; --kind trajectories: "
                                              "a replay_buffer_N.pt file or the folder holding them.")],
    kind: Annotated[Literal["synthetic", "trajectories"], typer.Option("--kind", help=_KIND_HELP)] = "synthetic",
    dataset: Annotated[Optional[str], typer.Option(help="The dataset the images belong to (digits, imagefolder:PATH...); "
                                                        "not for a --format hf folder, whose card says it. "
                                                        "--kind trajectories: the dataset the experts were trained "
                                                        "on (cifar10+zca for experts of ZCA-whitened CIFAR-10), "
                                                        "over the recipe's.")] = None,
    name: Annotated[Optional[str], typer.Option(help="Artifact name (default: the file's name; --kind trajectories: "
                                                     "the recipe's \\[pretrain] name, else DATASET-NET).")] = None,
    normalized: Annotated[Optional[bool], typer.Option("--normalized/--unit-range", help=(
        "Float images are already normalised with the dataset's mean/std (--normalized) or pixels in [0, 1] "
        "(--unit-range). Default: ddtool-exported files are normalised; otherwise detect by range: all values "
        "in [0, 1] means pixels, anything outside means normalised. uint8 images are always pixels 0..255."),
        show_default=False)] = None,
    learned_lr: Annotated[Optional[float], typer.Option("--learned-lr", help=(
        "The step size learned with the set (MTT's and DATM's syn_lr: eval.lr = \"learned\" trains at it), over "
        "what the file says. Default: a ddtool file's metadata, else a scalar learned_lr, syn_lr or lr entry of "
        "the file."), show_default=False)] = None,
    net: Annotated[Optional[str], typer.Option(help="--kind trajectories: the experts' architecture, over the "
                                                    "recipe's \\[net] name.")] = None,
    recipe: o.Recipe = None,
    set_: o.Set = None,
    data_root: o.DataRoot = None,
    as_json: o.Json = False,
) -> None:
    """Store images and labels from other dataset-distillation code as [bold]synthetic/NAME[/] (method 'imported'),
    or with --kind trajectories their expert trajectories as [bold]trajectories/NAME[/].

    Files: .npz with arrays images and labels; .pt with a dict {"images", "labels"}, a pair (images, labels),
    or DC/DSA/DM's {"data": \\[\\[images, labels], ...]} (the first).
    Images are [N, C, H, W] (or NHWC) of the dataset's shape.
    Expert buffers (--kind trajectories): MTT's and DATM's replay_buffer_N.pt, of the network of --recipe.
    """
    from ddtool.errors import UsageError

    if kind == "trajectories":
        if normalized is not None or learned_lr is not None:
            raise UsageError("--normalized, --unit-range and --learned-lr are for sets; drop them with --kind "
                             "trajectories")
        _import_trajectories(file, dataset, name, net, recipe, set_, data_root, as_json)
        return
    if recipe is not None or set_ or net is not None:
        raise UsageError("--recipe, --set and --net name the experts' network: they go with --kind trajectories")
    from ddtool.lookup import load_dataset
    from ddtool.runtime.exchange.formats import import_set
    from ddtool.runtime.exchange.hf_folder import import_hf, is_hf_folder

    store = get_store(write=True)  # before the data (a download)
    if is_hf_folder(file):
        got = import_hf(store, file, name)
        if as_json:
            print_json(got)
            return
        console.print(f"imported {got['ref']} ({got['digest'][:12]}) from {got['read']}; the card's lineage and "
                      f"{got['card_evaluations']} evaluation(s) are in run {got['run']}", highlight=False)
        return
    if file.is_dir():
        if any(file.glob("replay_buffer_*.pt")):
            raise UsageError(f"'{file}' holds expert buffers (replay_buffer_*.pt); import them with --kind "
                             "trajectories --recipe RECIPE")
        raise UsageError(f"'{file}' is a folder without README.md: import takes a .npz or .pt file, or a folder "
                         "'ddtool store export --format hf' wrote")
    if dataset is None:
        raise UsageError("--dataset is needed for a .npz or .pt file (the dataset its images belong to)")
    data = load_dataset(dataset, data_root)
    res = import_set(store, file, data, name, normalized, learned_lr)
    if as_json:
        print_json({"ref": res.artifact.ref, "digest": res.artifact.digest, "run": res.run_id, "count": res.count,
                    "ipc": res.ipc, "detected": res.detected, "notes": res.notes})
        return
    table = Table(title=f"imported {res.artifact.ref}", show_header=False)
    for k, v in (("ref", res.artifact.ref), ("digest", res.artifact.digest[:12]), ("images", res.count),
                 ("ipc", res.ipc), ("range", res.detected), ("run", res.run_id), *(("note", n) for n in res.notes)):
        table.add_row(k, str(v))
    console.print(table)


def _import_trajectories(file: Path, dataset: Optional[str], name: Optional[str], net: Optional[str],
                         recipe: Optional[str], set_: Optional[list[str]], data_root: Optional[Path],
                         as_json: bool) -> None:
    """store import --kind trajectories: the recipe's network and dataset, then the runtime's import."""
    from ddtool.cli.common import recipe_data, recipe_with
    from ddtool.errors import UsageError
    from ddtool.runtime.distill.planning import check_registered
    from ddtool.runtime.exchange.expert_buffers import import_trajectories
    from ddtool.runtime.pretrain.expert_trajectories import check_experts

    if dataset is None and recipe is None:
        raise UsageError("--kind trajectories needs --dataset or a --recipe naming one (the data the experts were "
                         "trained on)")
    r = recipe_with(recipe, set_, **{"data.dataset": dataset, "net.name": net})
    check_registered(r)  # an unknown --net before the data (a download)
    store = get_store(write=True)
    data = recipe_data(r, data_root)
    spec, name, _ = check_experts(r, data, name)
    res = import_trajectories(store, file, data, spec, name)
    traj = res.trajectories
    if as_json:
        print_json({"ref": res.artifact.ref, "digest": res.artifact.digest, "run": res.run_id, "experts": len(traj),
                    "epochs": traj.epochs, "net": spec.to_json(), "files": res.files})
        return
    table = Table(title=f"imported {res.artifact.ref}", show_header=False)
    for k, v in (("ref", res.artifact.ref), ("digest", res.artifact.digest[:12]), ("experts", len(traj)),
                 ("epochs", traj.epochs), ("net", spec.to_json()), ("dataset", data.name), ("run", res.run_id),
                 *(("file", f"{f['name']} ({f['experts']} experts, sha256 {f['sha256'][:12]})") for f in res.files)):
        table.add_row(k, escape(str(v)))
    console.print(table)


# -- sharing between stores (ddtool.store.remote) --------------------------------------------------
_REMOTE_HELP = ("Another store: a folder, file://PATH, or any fsspec URL (s3://, gs://, hf://... with that "
                "filesystem's package installed: pip install 'ddtool\\[s3]', 'ddtool\\[gcs]', 'ddtool\\[hf]').")
_Refs = Annotated[Optional[list[str]], typer.Argument(
    help="KIND/NAME (latest version), KIND/NAME:vN or a digest prefix; the last argument is REMOTE.",
    metavar="REF... REMOTE", show_default=False)]
_Lineage = Annotated[bool, typer.Option("--with-lineage", help=(
    "Also what the artifacts were made from (pool, expert trajectories, teacher, recursively), the run records "
    "that made them or evaluated them, and every blob those records name (checkpoints included)."))]
_All = Annotated[bool, typer.Option("--all", help="Every ref and run record of the sending store.")]
_Force = Annotated[bool, typer.Option("--force", help=(
    "Replace ref versions (and run records) the receiving store holds with other content; without it such a "
    "transfer is refused before anything is sent."))]


def _transfer(verb: str, args: list[str] | None, lineage: bool, everything: bool, force: bool, as_json: bool) -> None:
    from ddtool.errors import UsageError
    from ddtool.store import remote

    args = list(args or [])
    if not args:
        raise UsageError(f"missing REMOTE: ddtool store {verb} REF... REMOTE (or --all REMOTE)")
    *refs, where = args
    store = get_store(write=verb == "pull")
    res = (remote.push if verb == "push" else remote.pull)(store, where, refs, lineage, everything, force)
    if as_json:
        print_json(res.to_dict())
        return
    for ref in res.refs:
        console.print(f"{'pushed' if verb == 'push' else 'pulled'} {ref}", highlight=False)
    moved = "sent" if verb == "push" else "fetched"
    console.print(f"{res.blobs_sent} blob{'s' if res.blobs_sent != 1 else ''} {moved} ({res.bytes_sent} bytes), "
                  f"{res.blobs_already} already there; {res.runs_sent} run record(s) {moved}, {res.runs_already} "
                  f"already there; {len(res.refs_already)} ref(s) already up to date", highlight=False)


_PUSH_HELP = ("Send artifacts to another store: [bold]ddtool store push REF... REMOTE[/]. Only blobs the remote "
              "lacks are sent; its refs change last, once every blob is there (an interrupted push leaves no ref: "
              "rerun it).\n\nREMOTE: " + _REMOTE_HELP)
_PULL_HELP = ("Fetch artifacts from another store: [bold]ddtool store pull REF... REMOTE[/]. Every blob is checked "
              "against its digest before it is stored; refs are added last (an interrupted pull leaves no ref: "
              "rerun it).\n\nREMOTE: " + _REMOTE_HELP)


@store_app.command("push", help=_PUSH_HELP)
@guarded
def store_push(args: _Refs = None, lineage: _Lineage = False, everything: _All = False, force: _Force = False,
               as_json: o.Json = False) -> None:
    _transfer("push", args, lineage, everything, force, as_json)


@store_app.command("pull", help=_PULL_HELP)
@guarded
def store_pull(args: _Refs = None, lineage: _Lineage = False, everything: _All = False, force: _Force = False,
               as_json: o.Json = False) -> None:
    _transfer("pull", args, lineage, everything, force, as_json)
