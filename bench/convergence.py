"""How fast does a selection strategy converge? Seed 003 Fig. 2a's claim, measured.

    python -m bench.convergence [--dataset digits] [--every 20] [--repeats 3] [--set KEY=VALUE ...]
        [--store DIR --trajectories trajectories/NAME]

Seed 003 (DynaDistill) Fig. 2a: on CIFAR-10 ipc 1, MTT + DynaDistill reaches 50.49 % at iteration
500 where MTT needs 1300 for 50.84 %. This script makes one set of expert trajectories, distils with
``recipes/mtt.toml`` (the baseline) and ``recipes/mtt_dynadistill.toml`` on them, both checkpointed
every ``--every`` iterations and with the same seed, evaluates every checkpoint (the curve of
``ddtool eval --checkpoints``), and reports, for each recipe, the first iteration whose mean accuracy
reaches ``--fraction`` (default 0.95) of the baseline's final accuracy, with its wall seconds into the
distillation. The recipes' own dataset scale applies (digits: ``[scale.digits]``); ``--set`` adds
overrides to both (for example a reduced CIFAR-10 budget). A fresh store in a temp folder unless
``--store`` names one; ``--trajectories`` distils both on experts that store already holds instead
of training new ones (CIFAR-10 experts take minutes per epoch on a CPU). Each curve point trains at
the step size learned by its iteration (the recipes' ``eval.lr = "learned"``).
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time
from dataclasses import dataclass

import torch

from bench.common import add_run_args, bench_store, machine
from ddtool.lookup import load_dataset
from ddtool.recipe import load_recipe
from ddtool.runtime.distill.loop import distill
from ddtool.runtime.evaluate.accuracy_curves import CurvePoint, evaluate_curve
from ddtool.runtime.pretrain.expert_trajectories import pretrain_trajectories

BASELINE, CANDIDATE = "recipes/mtt.toml", "recipes/mtt_dynadistill.toml"


@dataclass
class Reached:
    """The first curve point at or above the target, if any."""

    iteration: int | None
    seconds: float | None
    accuracy: float | None  # mean over the repeats, 0..1


def first_reaching(points: list[CurvePoint], target: float) -> Reached:
    """The earliest point (by iteration) whose mean accuracy is at least ``target`` (0..1)."""
    for p in sorted(points, key=lambda p: p.iteration):
        if p.mean >= target:
            return Reached(p.iteration, p.seconds, p.mean)
    return Reached(None, None, None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--baseline", default=BASELINE)
    ap.add_argument("--candidate", default=CANDIDATE)
    ap.add_argument("--every", type=int, default=20, help="checkpoint (and evaluate) every K iterations")
    ap.add_argument("--repeats", type=int, default=3, help="networks trained per checkpoint")
    ap.add_argument("--fraction", type=float, default=0.95, help="target: this fraction of the baseline's final")
    ap.add_argument("--trajectories", default="", help="experts already in --store (trajectories/NAME) instead of new ones")
    add_run_args(ap, "recipe override for both runs and the experts (repeatable)")
    args = ap.parse_args()
    device = torch.device(args.device)
    data = load_dataset(args.dataset)
    store = bench_store(args.store)
    over = [f"data.dataset=\"{args.dataset}\"", f"eval.repeats={args.repeats}",
            f"distill.checkpoint_every={args.every}", *args.set]
    print(f"# bench.convergence  {datetime.date.today()}  {machine()}  dataset={args.dataset}")
    print(f"# {vars(args)}")
    if args.trajectories:
        over.append(f'distill.options.trajectories="{args.trajectories}"')
        print(f"# experts: {store.resolve(args.trajectories).ref} (already in the store)", flush=True)
    else:
        t = time.perf_counter()
        pretrain_trajectories(store, load_recipe(args.baseline, over), data, device)
        print(f"# experts ({args.baseline}'s [pretrain]) in {time.perf_counter() - t:.1f}s", flush=True)
    curves: dict[str, list[CurvePoint]] = {}
    for path in (args.baseline, args.candidate):
        recipe = load_recipe(path, over)
        res = distill(store, recipe, data, device, name=path.rsplit("/", 1)[-1].removesuffix(".toml"))
        curve = evaluate_curve(store, res.run_id, data, recipe.eval, device, count_flops=False)
        curves[path] = curve.points
        print(f"# {path}: distilled in {res.seconds:.1f}s (run {res.run_id}); curve:", flush=True)
        for p in curve.points:
            print(f"#   iteration {p.iteration:5d}  {100 * p.mean:6.2f} ± {100 * p.std:.2f}  ({p.seconds or 0:.1f}s, "
                  f"lr {p.lr:.6g})", flush=True)
    final = max(curves[args.baseline], key=lambda p: p.iteration).mean
    target = args.fraction * final
    print(f"\nTarget: {args.fraction:g} x the baseline's final {100 * final:.2f} % = {100 * target:.2f} %\n")
    print("| recipe | final accuracy % | first iteration at the target | seconds to it |")
    print("|---|---|---|---|")
    for path, points in curves.items():
        last = max(points, key=lambda p: p.iteration)
        hit = first_reaching(points, target)
        accs = [100 * a for a in last.accuracies]
        spread = statistics.pstdev(accs) if len(accs) > 1 else 0.0
        print(f"| {path} | {statistics.fmean(accs):.2f} ± {spread:.2f} | "
              f"{'not reached' if hit.iteration is None else hit.iteration} | "
              f"{'-' if hit.seconds is None else f'{hit.seconds:.1f}'} |")


if __name__ == "__main__":
    main()
