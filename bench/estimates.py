"""The dry-run estimators' error: ``distill``, ``eval`` and ``pretrain --dry-run`` against the run each
estimates, per shipped recipe.

    python -m bench.estimates [--verbs distill eval pretrain] [--recipes quickstart dm ...] [--all]
        [--set KEY=VALUE ...] [--store DIR] [--device cpu]

For each recipe, at its own dataset scale (the embedded digits: ``[scale.digits]``): what it needs
first (``ddtool pretrain``, with ``--trajectories`` for MTT), then ``ddtool distill --dry-run --json``
and ``ddtool distill --json``, each as its own process (as a user runs them: the dry-run's peak
resident memory and the run's are each a whole process's), in a fresh store and a fresh
``DDTOOL_CACHE`` (so the run finds exactly this dry-run's estimate). The run record's ``estimate``
holds both sides (:mod:`ddtool.runtime.distill.estimate`); this prints them as a Markdown table with
the ratios actual / estimate. Threads are the processes' own (set ``OMP_NUM_THREADS=1`` for the
recipes' measured walls' setting). The default recipes are fast ones; ``--all`` runs every shipped
recipe (tens of minutes on a 2-core CPU).

``--verbs eval`` distils the recipe's set first (as above), then runs ``ddtool eval SET --recipe
NAME --dry-run --json`` and ``ddtool eval SET --recipe NAME --json``; ``--verbs pretrain`` runs
``ddtool pretrain --recipe NAME`` (``--trajectories`` where the recipe needs experts) the same two
ways. Their table sets the dry-run's estimate (``seconds_total``, ``peak_memory_bytes``) beside the
run record's ``wall_seconds`` and peak memory (``peak_cuda_bytes`` on CUDA, else ``peak_rss_bytes``;
the record's wall starts after the data are loaded, as the probe's figures do).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench.common import add_run_args, bench_store, machine

FAST = ["quickstart", "dm", "dc"]
VERBS = ("distill", "eval", "pretrain")


class Failed(RuntimeError):
    """A ddtool command of one recipe failed: that recipe's row says so, the others are measured."""


def _ddtool(store: str, cache: str, *args: str) -> tuple[dict[str, Any], float]:
    """Run ``ddtool --store STORE ARGS --json`` as its own process; (its JSON, its wall seconds)."""
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "ddtool", "--store", store, *args, "--json"], capture_output=True,
                         text=True, env={**os.environ, "DDTOOL_CACHE": cache})
    seconds = time.perf_counter() - t
    if out.returncode != 0:
        raise Failed(f"ddtool {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout), seconds


def measure(name: str, store: str, sets: list[str], device: str) -> dict[str, Any]:
    """One recipe: its prerequisite, the dry-run, the run; the run record's estimate and actual."""
    from ddtool.runtime.recipe_catalog import shipped_recipes
    from ddtool.store import Store

    info = {r.name: r for r in shipped_recipes()}[name]
    cache = tempfile.mkdtemp(prefix="ddtool-bench-cache-")
    extra = [a for s in sets for a in ("--set", s)]
    if info.first:  # e.g. "ddtool pretrain --trajectories --recipe mtt"
        _ddtool(store, cache, *info.first.split()[1:], *extra)
    dry, dry_s = _ddtool(store, cache, "distill", "--recipe", name, *extra, "--device", device, "--dry-run")
    run, _ = _ddtool(store, cache, "distill", "--recipe", name, *extra, "--device", device)
    record = Store(store).run(run["run"])
    est, actual = record["estimate"]["estimated"], record["estimate"]["actual"]
    if est is None or est != dry["estimate"]:
        raise Failed(f"{name}: the run did not find its dry-run's estimate")
    return {"recipe": name, "iterations": est["iterations"], "dry_run_s": dry_s, "estimate": est, "actual": actual,
            "wall_s": record["wall_seconds"], "compiled": record.get("compile", {}).get("compiled")}


def measure_training(verb: str, name: str, store: str, sets: list[str], device: str) -> dict[str, Any]:
    """One recipe's ``eval`` (of the set it distils) or ``pretrain``: the dry-run's estimate beside the run record."""
    from ddtool.runtime.recipe_catalog import shipped_recipes
    from ddtool.store import Store

    info = {r.name: r for r in shipped_recipes()}[name]
    cache = tempfile.mkdtemp(prefix="ddtool-bench-cache-")
    extra = [a for s in sets for a in ("--set", s)]
    if verb == "eval":
        if info.first:
            _ddtool(store, cache, *info.first.split()[1:], *extra)
        made, _ = _ddtool(store, cache, "distill", "--recipe", name, *extra, "--device", device)
        args = ["eval", made["ref"], "--recipe", name, *extra, "--device", device]
    else:
        args = ["pretrain", "--recipe", name, *(["--trajectories"] if "--trajectories" in info.first else []),
                *extra, "--device", device]
    dry, dry_s = _ddtool(store, cache, *args, "--dry-run")
    run, _ = _ddtool(store, cache, *args)
    record = Store(store).run((run[0] if verb == "eval" else run)["run"])
    peak = record.get("peak_cuda_bytes", record.get("peak_rss_bytes"))
    return {"verb": verb, "recipe": name, "estimate": dry["estimate"], "dry_run_s": dry_s,
            "wall_s": record["wall_seconds"], "peak": peak}


def training_table(rows: list[dict[str, Any]]) -> str:
    head = ("| verb | recipe | networks x epochs | s/epoch est. | total s est. | run wall s | actual/est. "
            "| peak MiB est. | peak MiB actual | actual/est. | dry-run s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    mib = lambda n: f"{n / 2**20:.0f}" if n else "n/a"  # noqa: E731
    for r in rows:
        e = r["estimate"]
        shape = ", ".join(f"{p['networks']} x {p['epochs']}" + (" stacked" if p["stacked"] else "") for p in e["parts"])
        lines.append(
            f"| {r['verb']} | {r['recipe']} | {shape} | {e['seconds_per_iteration']:.3g} | {e['seconds_total']:.3g} | "
            f"{r['wall_s']:.3g} | {_ratio(r['wall_s'], e['seconds_total'])} | {mib(e['peak_memory_bytes'])} | "
            f"{mib(r['peak'])} | {_ratio(r['peak'], e['peak_memory_bytes'])} | {r['dry_run_s']:.0f} |")
    return "\n".join(lines)


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "n/a"


def _num(x: float | None, fmt: str = ".3g") -> str:
    return "n/a" if x is None else format(x, fmt)


TABLE_HEAD = ("| recipe | iterations | s/it est. | s/it actual | actual/est. | total s est. | run wall s "
              "| peak MiB est. | peak MiB actual | actual/est. | dry-run s |")


def table_line(r: dict[str, Any]) -> str:
    """One recipe's row (a coreset has no iterations: its seconds per iteration read n/a); a failed
    recipe's row says what failed."""
    if "failed" in r:
        return f"| {r['recipe']} | failed: {r['failed'].splitlines()[-1][:200]} |" + " |" * 9
    e, a = r["estimate"], r["actual"]
    mib = lambda n: f"{n / 2**20:.0f}" if n else "n/a"  # noqa: E731
    per_it = e["seconds_per_iteration"] if e["iterations"] else None
    return (f"| {r['recipe']} | {r['iterations']} | {_num(per_it)} | "
            f"{_num(a['seconds_per_iteration'])} | {_ratio(a['seconds_per_iteration'], per_it)} | "
            f"{e['seconds_total']:.0f} | {r['wall_s']:.0f} | {mib(e['peak_memory_bytes'])} | "
            f"{mib(a['peak_memory_bytes'])} | {_ratio(a['peak_memory_bytes'], e['peak_memory_bytes'])} | "
            f"{r['dry_run_s']:.0f} |")


def table(rows: list[dict[str, Any]]) -> str:
    return "\n".join([TABLE_HEAD, "|" + "---|" * (TABLE_HEAD.count("|") - 1), *map(table_line, rows)])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", nargs="+", default=FAST, help=f"shipped recipes to measure (default: {FAST})")
    ap.add_argument("--all", action="store_true", help="every shipped recipe (tens of minutes on a 2-core CPU)")
    ap.add_argument("--verbs", nargs="+", default=["distill"], choices=VERBS,
                    help="whose dry-run to measure (default: distill)")
    add_run_args(ap, "override for every recipe (e.g. distill.iterations=50)")
    args = ap.parse_args(argv)
    if args.all:
        from ddtool.runtime.recipe_catalog import shipped_recipes

        args.recipes = [r.name for r in shipped_recipes()]
    store = str(bench_store(args.store).root)
    print(f"# bench.estimates, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {machine()}, "
          f"load {os.getloadavg()[0]:.1f}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    rows, trained = [], []
    for name in args.recipes:
        for verb in args.verbs:
            try:
                if verb == "distill":
                    rows.append(measure(name, store, args.set, args.device))
                else:
                    trained.append(measure_training(verb, name, store, args.set, args.device))
            except Failed as exc:  # the other recipes are still measured; the table says this one failed
                if verb != "distill":
                    raise
                rows.append({"recipe": name, "failed": str(exc)})
            # each row as it comes, so a run cut off keeps what it measured
            print(f"{verb} {name}: " + (table_line(rows[-1]) if verb == "distill" else "done"), file=sys.stderr,
                  flush=True)
    print("\n\n".join(t for t in (table(rows) if rows else "", training_table(trained) if trained else "") if t))


if __name__ == "__main__":
    main()
