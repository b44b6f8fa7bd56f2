"""``ddtool eval``: train fresh networks on synthetic sets (or the real data, or a run's
checkpoints) and report real test accuracy."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Optional

import typer
from rich.table import Table

from ddtool.cli import options as o
from ddtool.cli.common import (RichReporter, console, err, get_store, guarded, join_processes, print_json,
                               prints_results, recipe_with)
from ddtool.cli.launch import Nproc, relaunch
from ddtool.cli.render import accuracy_cell
from ddtool.errors import UsageError
from ddtool.lookup import load_dataset
from ddtool.recipe import LEARNED
from ddtool.runtime.supervised import resolve_device


def lr_value(text: str | None) -> float | str | None:
    """--lr: a positive number or 'learned' (the recipe's range check names a bad one)."""
    if text is None or text.strip() == LEARNED:
        return None if text is None else LEARNED
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"--lr must be a number or '{LEARNED}', got {text!r}") from None


@guarded
def eval_cmd(
    refs: Annotated[Optional[list[str]], typer.Argument(help=(
        "Synthetic-set refs (KIND/NAME[:vN] or digest prefix); none needed with --full-data."))] = None,
    net: Annotated[Optional[str], typer.Option(help=(
        "Architecture(s) to train; a comma list (convnet3,resnet18,vgg11) prints a cross-architecture table. "
        "\\[default: the one it was distilled with]"))] = None,
    full_data: Annotated[bool, typer.Option("--full-data", help=(
        "Add the upper bound: train on the whole real train split (30 epochs unless --epochs). Works without "
        "REFS: then on --dataset, else the recipe's \\[data] dataset."))] = False,
    full_dataset: Annotated[Optional[str], typer.Option(
        "--dataset", help="With --full-data: the dataset. \\[default: the refs' own]")] = None,
    repeats: Annotated[Optional[int], typer.Option(help="Networks trained per set (mean ± std). \\[default: 5]")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs. \\[default: 300]")] = None,
    protocol: Annotated[Optional[str], typer.Option(help=(
        "dsa (DC/DSA/DM papers: lr x0.1 at half, one DSA operation per batch) or idc (IDC/Acc-DD train.py: "
        "lr x0.2 at 2/3 and 5/6, flip + colour + one of crop/scale/rotate per batch, CutMix p 0.5) or ncfm (NCFM's "
        "evaluate.py: AdamW, lr x0.5 at each fifth of the epochs, augmentation and CutMix as idc; its yaml: "
        "--lr 0.001, weight decay 0.01, batch 128, 2000 epochs)."))] = None,
    lr: Annotated[Optional[str], typer.Option(help=(
        "Learning rate of the trained networks, or 'learned': the step size the set learned and records "
        "(MTT's; its reference evaluates at it). \\[default: 0.01]"), metavar="LR|learned")] = None,
    batch: Annotated[Optional[int], typer.Option(help="Batch size. \\[default: 256]")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the first repeat.")] = None,
    labels: Annotated[Optional[str], typer.Option(help=(
        "auto (learned when the set carries label vectors, else hard), hard (the class of each image), learned "
        "(the set's own label vectors, e.g. DATM's, soft cross-entropy) or soft (a teacher's softmax(logits / T), "
        "KL loss x T²; needs --teacher). \\[default: auto; soft when --teacher is given]"))] = None,
    teacher: Annotated[Optional[str], typer.Option(help=(
        "Soft labels' teacher: pool/NAME[:vN]\\[#i] (model i of a pool, default 0), e.g. the pool "
        "'eval --full-data --save-teacher' stores."))] = None,
    temperature: Annotated[Optional[float], typer.Option(
        help="Temperature T of the soft labels. \\[default: 4]")] = None,
    save_teacher: Annotated[bool, typer.Option("--save-teacher", help=(
        "With --full-data: store the trained networks as the pool teacher-DATASET-NET, a --teacher for "
        "soft labels."))] = False,
    checkpoints: Annotated[bool, typer.Option("--checkpoints", help=(
        "Evaluate the checkpoints and final set of distill runs (REFS: run ids like 20261123-070141-distill-45a3a2, "
        "a unique prefix, or the synthetic sets they made) and store the accuracy curve; "
        "see 'ddtool inspect RUN_ID --curve'."))] = False,
    every: Annotated[Optional[int], typer.Option(help="With --checkpoints: only iterations divisible by K (and the final set).",
                                                 metavar="K")] = None,
    at: Annotated[Optional[str], typer.Option(help="With --checkpoints: only these iterations, e.g. 100,200.")] = None,
    flops: Annotated[bool, typer.Option("--flops/--no-flops", help=(
        "With --checkpoints: estimate FLOPs per outer iteration by replaying one under "
        "torch.utils.flop_counter (skipped when an iteration took over 10 s)."))] = True,
    dry_run: Annotated[bool, typer.Option("--dry-run", help=(
        "Check the sets and settings and print what would be trained (set, net, images, repeats, epochs, batch, "
        "lr, labels), then the expected seconds per epoch, per repeat and in total for all sets x repeats and the "
        "peak memory on the device, from a short probe (a few training steps of each set, scaled to the epochs; "
        "nothing is stored; a line names the fix when the estimate exceeds the device's memory)."))] = False,
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
    """Train fresh networks on synthetic sets and report real test accuracy."""
    from ddtool.nets import NetSpec
    from ddtool.runtime.evaluate.train_eval import evaluate

    if not dry_run:
        relaunch(nproc)  # --nproc N: this command line as N processes, then exit
    refs = refs or []
    if (not refs and not full_data) or (full_dataset and not full_data):
        raise UsageError("--dataset goes with --full-data (a synthetic set is evaluated on its own dataset)"
                         if full_dataset else
                         "eval needs synthetic-set refs, or --full-data (with --dataset) for the real-data bound")
    if teacher is not None and labels is None:
        labels = "soft"  # a teacher is only for soft labels
    if save_teacher and not full_data:
        raise UsageError("--save-teacher stores the full-data networks: add --full-data")
    r = recipe_with(recipe, set_, **{"eval.net": net, "eval.repeats": repeats, "eval.epochs": epochs,
                                    "eval.protocol": protocol, "eval.lr": lr_value(lr), "eval.batch": batch, "eval.seed": seed,
                                    "eval.labels": labels, "eval.teacher": teacher,
                                    "eval.temperature": temperature})
    if r.eval.labels == "soft" and not r.eval.teacher:
        raise UsageError("--labels soft needs --teacher pool/NAME[#i] (a pool's model, or the pool "
                         "'eval --full-data --save-teacher' stores)")
    if r.eval.labels == "soft" and checkpoints:
        raise UsageError("--labels soft evaluates synthetic sets; accuracy curves (--checkpoints) train on the run's own "
                         "label vectors (DATM) or on hard labels: --labels auto, learned or hard")
    if dry_run and checkpoints:
        raise UsageError("--dry-run plans the evaluation of sets and --full-data, not of a run's checkpoints; "
                         "drop --checkpoints or --dry-run")
    # under torchrun: each rank trains its block of the repeats (a dry-run plans on one process)
    dev = resolve_device(device) if dry_run else join_processes(device)
    store = get_store(write=not dry_run)
    spec = None
    nets = [n.strip() for n in r.eval.net.split(",") if n.strip()]  # --net a,b,c: cross-architecture
    if nets:
        from ddtool.plugins import registries

        for name in nets:
            registries().architecture.get(name)  # unknown names fail before any work
        spec = NetSpec(nets[0])
        if len(nets) > 1 and checkpoints:
            raise UsageError("--checkpoints evaluates with one --net; name a single architecture")
    if checkpoints:
        _eval_checkpoints(store, refs, r, dev, spec, every, at, flops, data_root, as_json)
        return
    if every is not None or at is not None:
        raise UsageError("--every and --at select checkpoints: add --checkpoints")
    if dry_run:
        _dry_run(store, refs, r, nets, dev, full_data, full_dataset, data_root, epochs, estimate, as_json)
        return
    results, cache = [], {}
    for ref, data, cfg, one in _set_evaluations(store, refs, r, nets, data_root, cache):
        results.append(evaluate(store, ref, data, cfg, dev, one, RichReporter()))
    if full_data:
        results += _full_data(store, r, nets, full_dataset or next(iter(cache), None), dev, data_root, epochs,
                              save_teacher)
    if not prints_results():
        return
    if as_json:
        print_json([{"ref": e.ref, "net": e.net, "accuracies": e.accuracies, "mean": e.mean, "std": e.std,
                     "seconds": e.seconds, "run": e.run_id, **({"soft": e.soft} if e.soft else {})}
                    for e in results])
        return
    _note_soft(results)
    if len(nets) > 1 or full_data:  # a table with one column per net (full-data rows name their epochs)
        _print_cross_arch(results, nets or list(dict.fromkeys(e.net for e in results)), r)
        return
    # the net and the repeats go into the title when every row shares them, so the table fits 80 columns
    nets_used = sorted({e.net for e in results})
    counts = sorted({len(e.accuracies) for e in results})
    shared = len(nets_used) == 1 and len(counts) == 1
    title = f"test accuracy ({r.eval.protocol} protocol, {r.eval.epochs} epochs"
    title += f", {nets_used[0]}, {counts[0]} repeats)" if shared else ")"
    table = Table(title=title)
    cols = ["set", "made by", "distill s", *([] if shared else ["net"]), "accuracy", *([] if shared else ["repeats"])]
    for col in cols:
        table.add_column(col, justify="left" if col in ("set", "made by") else "right", no_wrap=col != "made by",
                         overflow="fold" if col == "made by" else "ellipsis")
    runs = store.runs()
    for e in results:
        made_by, seconds = _made_by(store, e.ref, runs)
        cells = {"set": e.ref, "made by": made_by, "distill s": seconds, "net": e.net,
                 "accuracy": accuracy_cell(e.mean, e.std), "repeats": str(len(e.accuracies))}
        table.add_row(*(cells[c] for c in cols))
    console.print(table)
    err.print(f"eval runs: {', '.join(e.run_id for e in results)} "
              f"({', '.join(f'{e.seconds:.1f}' for e in results)} s)", highlight=False)


def _made_by(store, ref: str, runs: list) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """What made a set (method, its network selection and perturbation, iterations) and the wall
    seconds of the run that made it: the cost beside the accuracy."""
    from ddtool.store.meta import SyntheticMeta

    digest = store.resolve(ref, kind="synthetic").digest
    info = SyntheticMeta.from_metadata(store.blob_metadata(digest))
    what = info.method or "?"
    if info.selection and info.selection != "scratch":
        what += f" + {info.selection} pool"
    if info.schedule and info.schedule != "none":
        what += f", {info.schedule}"
    if info.iterations:
        what += f", {info.iterations} it"
    made, _ = store.runs_of(digest, runs)
    secs = next((rec.get("wall_seconds") for rec in reversed(made) if rec.get("command") == "distill"), None)
    return what, f"{secs:.1f}" if isinstance(secs, (int, float)) else "-"


def _no_run_id(ref: str) -> None:
    from ddtool.store.runs import is_run_id

    if is_run_id(ref):
        raise UsageError(f"'{ref}' is a run id; add --checkpoints to evaluate its checkpoints, "
                         "or give the synthetic set it made")


def _eval_checkpoints(store, refs, r, dev, spec, every, at, count_flops, data_root, as_json):  # type: ignore[no-untyped-def]
    """eval --checkpoints: one accuracy curve (an eval run record) per distill run."""
    from ddtool.inspect.chart import fmt_number
    from ddtool.runtime.evaluate.accuracy_curves import evaluate_curve
    from ddtool.store.runs import distill_run, select_points

    at_list = parse_at(at)
    runs = [distill_run(store, ref) for ref in refs]  # every name and selection resolves before any work
    for rec in runs:
        select_points(rec, every, at_list)
    curves, cache = [], {}
    for rec in runs:
        data_cfg = (rec.get("recipe") or {}).get("data") or {}
        dataset = data_cfg.get("dataset") or r.data.dataset
        if dataset not in cache:
            root = data_root or r.data.root or data_cfg.get("root") or None
            cache[dataset] = load_dataset(dataset, root, r.data.download)
        curves.append(evaluate_curve(store, rec["id"], cache[dataset], r.eval, dev, spec, RichReporter(), every,
                                     at_list, count_flops))
    if not prints_results():
        return
    if as_json:
        print_json([{"source_run": c.source_run, "run": c.run_id, "net": c.net, "seconds": c.seconds,
                     "flops_per_iteration": c.flops_per_iteration, "flops_note": c.flops_note,
                     "curve": [p.to_dict() for p in c.points]} for c in curves])
        return
    for c in curves:
        table = Table(title=f"{c.label}: accuracy curve ({r.eval.protocol} protocol, {r.eval.epochs} epochs, "
                            f"{c.seconds:.1f}s)")
        for col in ("iteration", "distill seconds", "FLOPs", "accuracy", "repeats"):
            table.add_column(col, justify="right")
        for p in c.points:
            table.add_row(str(p.iteration) + (" (final)" if p.final else ""),
                          f"{p.seconds:.1f}" if p.seconds is not None else "-",
                          fmt_number(p.flops) if p.flops is not None else "-",
                          accuracy_cell(p.mean, p.std), str(len(p.accuracies)))
        console.print(table)
        if c.flops_per_iteration is None:
            err.print(f"FLOPs {c.flops_note}", highlight=False)
    err.print(f"eval runs: {', '.join(c.run_id for c in curves)}; plot with 'ddtool inspect "
              f"{' '.join(c.source_run for c in curves)} --curve'", highlight=False, soft_wrap=True)


def _note_soft(results) -> None:  # type: ignore[no-untyped-def]
    """One line per soft-label result under the table: who made the soft labels, at what T, their storage."""
    from ddtool.runtime.report.tables import human_bytes

    for e in results:
        if e.soft:
            t = e.soft
            err.print(f"soft labels: teacher {t['ref']}#{t['model']} ({t['net']}{', full data' if t.get('full_data') else ''})"
                      f", T {t['temperature']:g}, KL loss x T²; {human_bytes(t['soft_label_bytes'])} of fp32 soft "
                      f"labels for {e.ref} on {e.net}", highlight=False, soft_wrap=True)


def _full_data(store, r, nets, dataset, dev, data_root, cli_epochs=None, save_teacher=False):  # type: ignore[no-untyped-def]
    """eval --full-data: the whole real train split per net (the recipe's [net] when none named)."""
    from ddtool.runtime.evaluate.train_eval import evaluate_full_data

    data = load_dataset(dataset or r.data.dataset, data_root or r.data.root or None, r.data.download)
    epochs = _full_data_epochs(r, cli_epochs)
    specs = _full_data_nets(r, nets)
    out = [evaluate_full_data(store, data, dataclasses.replace(r.eval, net=s.name, epochs=epochs), dev, s,
                              RichReporter(), **({"save_teacher": True} if save_teacher else {})) for s in specs]
    if save_teacher:
        for e in out:
            teacher = next((o["ref"] for o in store.run(e.run_id)["outputs"] if o.get("role") == "pool"), None)
            if teacher is None:  # under torchrun the first rank stores it and says so
                continue
            err.print(f"saved teacher {teacher} ({len(e.accuracies)} model(s)); use it with --labels soft "
                      f"--teacher {teacher}", highlight=False, soft_wrap=True)
    return out


def _full_data_epochs(r, cli_epochs: int | None) -> int:  # type: ignore[no-untyped-def]
    """The full-data bound's epochs: ``--epochs`` when given (whatever its value), else a recipe's or
    --set's ``eval.epochs`` when it differs from the default, else FULL_DATA_EPOCHS."""
    from ddtool.recipe import EvalSection
    from ddtool.runtime.evaluate.train_eval import FULL_DATA_EPOCHS

    if cli_epochs is not None:
        return cli_epochs
    return r.eval.epochs if r.eval.epochs != EvalSection().epochs else FULL_DATA_EPOCHS


def _full_data_nets(r, nets: list[str]) -> list:  # type: ignore[no-untyped-def]
    """The networks of the full-data bound: the named ones, else the recipe's [net]."""
    from ddtool.nets import NetSpec
    from ddtool.runtime.distill.planning import net_spec_of

    return [NetSpec(n) for n in nets] or [net_spec_of(r)]


def _set_evaluations(store, refs, r, nets, data_root, cache):  # type: ignore[no-untyped-def]
    """(ref, its dataset, the eval settings, the net or None for its own) for every set on every
    --net, as the run and --dry-run take them; ``cache`` keeps each dataset loaded once."""
    from ddtool.nets import NetSpec
    from ddtool.store.meta import SyntheticMeta

    for ref in refs:
        _no_run_id(ref)
        recorded = SyntheticMeta.from_metadata(store.blob_metadata(store.resolve(ref, kind="synthetic").digest))
        dataset = recorded.signature.dataset if recorded.signature.dataset is not None else r.data.dataset
        if dataset not in cache:
            cache[dataset] = load_dataset(dataset, data_root or r.data.root or None, r.data.download)
        for one in [NetSpec(n) for n in nets] or [None]:
            yield ref, cache[dataset], (dataclasses.replace(r.eval, net=one.name) if one else r.eval), one


def _dry_run(store, refs, r, nets, dev, full_data, full_dataset, data_root, cli_epochs, estimate,  # type: ignore[no-untyped-def]
             as_json) -> None:
    """eval --dry-run: every set (and the full-data bound) on every net, resolved and checked as the run
    would, then the probe's estimate; reads the store and the data, writes nothing."""
    from ddtool.runtime.evaluate.eval_plan import plan_full_data, plan_set

    planned, cache = [], {}
    for ref, data, cfg, one in _set_evaluations(store, refs, r, nets, data_root, cache):
        planned.append(plan_set(store, ref, data, cfg, dev, one))
    if full_data:
        dataset = full_dataset or next(iter(cache), None) or r.data.dataset
        data = cache.get(dataset) or load_dataset(dataset, data_root or r.data.root or None, r.data.download)
        cfg = dataclasses.replace(r.eval, epochs=_full_data_epochs(r, cli_epochs))
        planned += [plan_full_data(data, dataclasses.replace(cfg, net=s.name), s, dev)
                    for s in _full_data_nets(r, nets)]
    resolved: dict = {"plan": [p.row(dev) for p in planned], "device": str(dev)}
    est = None
    if estimate:
        from ddtool.runtime.evaluate.eval_plan import estimate_eval

        est = estimate_eval(planned, dev)
        resolved["estimate"] = est.to_dict()
    if not prints_results():
        return
    if as_json:
        print_json(resolved)
        return
    table = Table(title=f"eval plan ({dev})")
    cols = ["set", "net", "images", "repeats", "epochs", "batch", "protocol", "lr", "labels", "impl"]
    for col in cols:
        table.add_column(col, justify="left" if col in ("set", "net", "protocol", "labels", "impl") else "right")
    for row in resolved["plan"]:
        table.add_row(*(f"{row[c]:g}" if isinstance(row[c], float) else str(row[c]) for c in cols))
    console.print(table)
    if est is not None:
        from ddtool.runtime.dry_run_estimates import describe_training

        for line in describe_training(est, "evaluation"):
            console.print(line, style="yellow" if line == est.advice else None, markup=False, highlight=False,
                          soft_wrap=True)


def _print_cross_arch(results, nets, r) -> None:  # type: ignore[no-untyped-def]
    """Rows = sets, columns = nets, cells = mean ± std."""
    table = Table(title=f"test accuracy across architectures ({r.eval.protocol} protocol, {r.eval.repeats} repeats)")
    table.add_column("set", justify="left", no_wrap=True)
    for n in nets:
        table.add_column(n, justify="right")
    cells: dict[str, dict[str, str]] = {}
    for e in results:
        epochs = e.settings.get("epochs", r.eval.epochs)
        label = e.ref if epochs == r.eval.epochs else f"{e.ref} ({epochs} epochs)"
        cells.setdefault(label, {})[e.net] = accuracy_cell(e.mean, e.std, unit=False)
    for label, row in cells.items():
        table.add_row(label, *(row.get(n, "-") for n in nets))
    console.print(table)
    err.print(f"{r.eval.epochs} epochs per set; eval runs: {', '.join(e.run_id for e in results)}", highlight=False,
              soft_wrap=True)


def parse_at(text: str | None) -> list[int] | None:
    """``--at 100,200``: the iterations to evaluate."""
    if not text:
        return None
    try:
        return [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise UsageError(f"--at takes iterations separated by commas, e.g. 100,200 (got '{text}')")
