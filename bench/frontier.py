"""Accuracy against seconds: several methods, one machine, one evaluation protocol (issue 27).

    python -m bench.frontier [--dataset imagefolder:.data/cifar10+norm=cifar] [--methods dm,idc,ours,...]
        [--budget 7200|paper] [--spacing 900] [--protocol idc --epochs 300 --repeats 2] [--device cpu]
        [--store .data/frontier-store] [--out bench/results/frontier] [--set KEY=VALUE ...]
        [--set-for METHOD KEY=VALUE ...] [--plot-only]

Per method, each step resumable (a run cut off by a session's end goes on where it stopped):

1. what its recipe needs first (a pool or expert trajectories: ``ddtool recipes``' "first"
   command), its seconds taken from the pretraining run's record;
2. ``ddtool distill --dry-run --json``: the estimated seconds per outer iteration, from which the
   iterations that fill ``--budget`` seconds of distillation (at least 1; the estimate's error is
   the run's, see ``bench.estimates``); ``--budget paper``: the recipe's own iterations at this
   dataset's scale (the paper's budget on CIFAR-10: hours on a GPU, ``bash bench/gpu.sh --frontier``);
3. ``ddtool distill`` at those iterations with ``distill.checkpoint_seconds = --spacing``, so that
   every method has a point about every ``--spacing`` seconds (a cut-off run: ``--resume``);
4. ``ddtool eval RUN --checkpoints``: every checkpoint and the final set under one protocol.

Then ``frontier.csv`` (one line per point: distillation seconds, the pretraining seconds before
them, accuracy mean and std over the repeats) and ``frontier.png`` / ``frontier.svg``: accuracy
against seconds, each curve shifted by its method's pretraining seconds (a bar in its colour
along the bottom), so a method that needs a pool or experts pays for them on the same axis. ``state.json``
in ``--out`` holds each method's runs; commit ``--out`` (the store is scratch).

The recipes run at the dataset's scale: their top level is the paper's budget, a
``[scale.NAME]`` table replaces it for the dataset NAME (the embedded digits: minutes). Methods
are the shipped recipes below; ``--set-for METHOD KEY=VALUE`` changes one method's recipe.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

METHODS = {  # frontier name -> shipped recipe (each at its paper's budget; the iterations follow --budget)
    "dm": "dm",
    "idc": "idc",
    "ours": "ours10",  # Acc-DD: IDC on an early-stage pool with perturbation
    "dream": "dream",
    "mtt": "mtt",
    "ncfm": "ncfm",
    "datm": "datm",
}
DEFAULT_METHODS = ("dm", "idc", "ours", "dream", "mtt", "ncfm", "datm")
CSV_FIELDS = ("method", "recipe", "iteration", "final", "distill_s", "pretrain_s", "total_s", "accuracy_pct",
              "std_pct", "repeats", "protocol", "epochs")

Ddtool = Callable[..., dict[str, Any] | list[Any]]


def ddtool_process(store: str, device: str) -> Ddtool:
    """``ddtool --store STORE -q ARGS --json`` as its own process (as a user runs it); its JSON."""
    def run(*args: str) -> dict[str, Any] | list[Any]:
        cmd = [sys.executable, "-m", "ddtool", "--store", store, "-q", *args, "--json"]
        if args[0] != "recipes":
            cmd += ["--device", device]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"ddtool {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()[-800:]}")
        return json.loads(out.stdout)
    return run


def budget_arg(text: str) -> float | None:
    """``--budget``: seconds (> 0), or ``paper`` (None: the recipes' own iterations)."""
    if text == "paper":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is neither seconds nor 'paper'") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("the budget must be more than 0 seconds")
    return value


def iterations_for(budget_s: float, seconds_per_iteration: float) -> int:
    """The outer iterations that fill ``budget_s`` seconds at the estimated rate, at least one."""
    if not seconds_per_iteration > 0:
        return 1
    return max(1, math.floor(budget_s / seconds_per_iteration))


@dataclass
class Settings:
    dataset: str
    budget_s: float | None  # None: each recipe's own iterations (--budget paper)
    spacing_s: float
    protocol: str
    epochs: int
    repeats: int
    sets: list[str]  # --set for every method
    sets_for: dict[str, list[str]]  # --set-for METHOD

    def overrides(self, method: str) -> list[str]:
        return [a for s in [*self.sets, *self.sets_for.get(method, [])] for a in ("--set", s)]


class State:
    """``state.json``: what each method has done (written after every step)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.exists() else {}

    def of(self, method: str) -> dict[str, Any]:
        return self.data.setdefault(method, {})

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True) + "\n")
        tmp.replace(self.path)


def _first_command(recipe: str) -> list[str]:
    """The pretraining a shipped recipe needs first (``ddtool recipes``), as arguments; [] for none."""
    from ddtool.runtime.recipe_catalog import shipped_recipes

    first = {r.name: r.first for r in shipped_recipes()}[recipe]
    return first.split()[1:] if first else []


def latest_distill(store_root: str, name: str) -> dict[str, Any] | None:
    """The newest distill run making the set ``name`` (its newest part when it was resumed), or None."""
    from ddtool.store import Store

    store = Store(Path(store_root))
    runs = [r for r in store.runs() if r.get("command") == "distill" and r.get("artifact_name") == name]
    if not runs:
        return None
    rec = max(runs, key=lambda r: (r.get("created", ""), r["id"]))
    while rec.get("resumed_by"):
        rec = store.run(rec["resumed_by"][-1])
    return rec


def run_method(method: str, s: Settings, state: State, ddtool: Ddtool, store_root: str,
               log: Callable[[str], None] = print) -> None:
    """Steps 1-4 of the module docstring for one method, skipping what ``state`` says is done."""
    st, recipe = state.of(method), METHODS[method]
    st["recipe"] = recipe
    common = ["--dataset", s.dataset, *s.overrides(method)]
    first = _first_command(recipe)
    if first and "pretrain_s" not in st:
        log(f"{method}: pretraining ({' '.join(first)})")
        out = ddtool(*first, *common)
        st.update(pretrain_run=out["run"], pretrain_s=float(out["seconds"]), pretrain_ref=out["ref"])
        state.save()
    st.setdefault("pretrain_s", 0.0)
    if "iterations" not in st:
        dry = ddtool("distill", "--recipe", recipe, *common, "--dry-run")
        est = dry["estimate"]
        paper = int(dry["plan"]["iterations"])  # type: ignore[index]
        st.update(estimate_s_per_it=est["seconds_per_iteration"],
                  iterations=paper if s.budget_s is None else iterations_for(s.budget_s, est["seconds_per_iteration"]))
        state.save()
    if "distilled" not in st:
        from ddtool.store.runs import final_output

        rec = latest_distill(store_root, f"frontier-{method}")
        if rec is not None and rec.get("status") == "complete" and final_output(rec):
            # done before the state was written (a session cut between the two)
            st.update(distill_run=rec["id"], distilled=final_output(rec)["ref"],  # type: ignore[index]
                      distill_s=float(rec.get("wall_seconds") or 0.0))
        elif rec is not None and rec.get("checkpoints"):
            log(f"{method}: resuming distill run {rec['id']}")
            out = ddtool("distill", "--resume", rec["id"])
            st.update(distill_run=out["run"], distilled=out["ref"], distill_s=float(out["seconds"]))
        else:
            planned = st["iterations"] * float(st.get("estimate_s_per_it") or 0.0)
            log(f"{method}: distilling {st['iterations']} iterations (~{planned:.0f} s estimated)")
            out = ddtool("distill", "--recipe", recipe, *common, "--name", f"frontier-{method}",
                         "--set", f"distill.iterations={st['iterations']}",
                         "--set", f"distill.checkpoint_seconds={s.spacing_s}")
            st.update(distill_run=out["run"], distilled=out["ref"], distill_s=float(out["seconds"]))
        state.save()
    if "eval_run" not in st:
        log(f"{method}: evaluating every checkpoint ({s.protocol}, {s.epochs} epochs x {s.repeats})")
        (curve,) = ddtool("eval", st["distill_run"], "--checkpoints",
                          "--protocol", s.protocol, "--epochs", str(s.epochs), "--repeats", str(s.repeats),
                          "--no-flops")
        st.update(eval_run=curve["run"], curve=curve["curve"], protocol=s.protocol, epochs=s.epochs)
        state.save()


def rows(state: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One CSV line per evaluated point of every method, seconds counted from the start of its
    pretraining (``total_s`` = pretraining + distillation seconds)."""
    out = []
    for method, st in state.items():
        for p in st.get("curve", []):
            pre = float(st.get("pretrain_s", 0.0))
            seconds = float(p["seconds"] or 0.0)
            out.append({"method": method, "recipe": st.get("recipe", ""), "iteration": p["iteration"],
                        "final": bool(p.get("final")), "distill_s": round(seconds, 1), "pretrain_s": round(pre, 1),
                        "total_s": round(pre + seconds, 1), "accuracy_pct": round(100 * p["mean"], 2),
                        "std_pct": round(100 * p["std"], 2), "repeats": len(p["accuracies"]),
                        "protocol": st.get("protocol", ""), "epochs": st.get("epochs", "")})
    return out


def write_csv(points: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        w.writerows(points)


def draw(points: list[dict[str, Any]], stem: Path, title: str) -> list[Path]:
    """The figure, as ``stem``.png and .svg: accuracy against seconds per method, each curve
    shifted by its pretraining seconds, which a bar in its colour along the bottom marks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    by_method: dict[str, list[dict[str, Any]]] = {}
    for p in points:
        by_method.setdefault(p["method"], []).append(p)
    for method, pts in by_method.items():
        pts = sorted(pts, key=lambda p: p["total_s"])
        xs, ys = [p["total_s"] for p in pts], [p["accuracy_pct"] for p in pts]
        line = ax.errorbar(xs, ys, yerr=[p["std_pct"] for p in pts], marker="o", ms=4, capsize=2, label=method)
        if pts[0]["pretrain_s"] > 0:  # the pretraining it paid for first: a bar along the bottom, no accuracy
            k = len([m for m in by_method if m < method])
            ax.plot([0, pts[0]["pretrain_s"]], [0.02 + 0.025 * k] * 2, transform=ax.get_xaxis_transform(), lw=4,
                    color=line.lines[0].get_color(), solid_capstyle="butt")
    ax.set_xlabel("seconds (pretraining of pools / experts, bars at the bottom, + distillation)")
    ax.set_ylabel("test accuracy %")
    ax.set_title("\n".join(textwrap.wrap(title, 100)), fontsize=9)  # a long dataset spec overflowed the figure
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for p in paths:
        fig.savefig(p, dpi=120)
    plt.close(fig)
    return paths


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="imagefolder:.data/cifar10+norm=cifar")
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"from {', '.join(METHODS)}")
    ap.add_argument("--budget", type=budget_arg, default=7200.0,
                    help="distillation seconds per method (default 2 h), or 'paper': each recipe's own iterations")
    ap.add_argument("--spacing", type=float, default=900.0, help="seconds between checkpoints")
    ap.add_argument("--protocol", default="idc")
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--store", default=".data/frontier-store")
    ap.add_argument("--out", type=Path, default=Path("bench/results/frontier"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="for every method")
    ap.add_argument("--set-for", nargs=2, action="append", default=[], metavar=("METHOD", "KEY=VALUE"))
    ap.add_argument("--plot-only", action="store_true", help="the CSV and figure from state.json, nothing run")
    args = ap.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods + [m for m, _ in args.set_for] if m not in METHODS]
    if unknown:
        ap.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    sets_for: dict[str, list[str]] = {}
    for m, kv in args.set_for:
        sets_for.setdefault(m, []).append(kv)
    s = Settings(args.dataset, args.budget, args.spacing, args.protocol, args.epochs, args.repeats, args.set, sets_for)
    args.out.mkdir(parents=True, exist_ok=True)
    state = State(args.out / "state.json")
    if not args.plot_only:
        ddtool = ddtool_process(args.store, args.device)
        for m in methods:
            run_method(m, s, state, ddtool, args.store, log=lambda line: print(line, file=sys.stderr, flush=True))
    points = rows({m: st for m, st in state.data.items() if m in methods})
    write_csv(points, args.out / "frontier.csv")
    when = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}"
    title = (f"{args.dataset}: accuracy against seconds ({args.protocol} protocol, {args.epochs} epochs x "
             f"{args.repeats}; {when}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")
    for p in draw(points, args.out / "frontier", title) if points else []:
        print(p)
    print(args.out / "frontier.csv")


if __name__ == "__main__":
    main()
