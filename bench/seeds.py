"""How much does a recipe's accuracy depend on the distillation's own seed?

    python -m bench.seeds --recipe recipes/mtt.toml --seeds 0 1 2 3 [--set KEY=VALUE ...] [--repeats 3]

Evaluation repeats (fresh networks on one synthetic set) measure the evaluation's noise only; two
distillations of the same recipe with different ``distill.seed`` (other real images at init, other
batches, other augmentation draws) can differ by far more. This script distils the recipe once per
seed on one shared pool or set of expert trajectories (made once, from the recipe's ``[pretrain]``,
when the recipe needs one), evaluates each set with ``--repeats`` networks, and prints one row per
seed and the mean ± std over seeds: the figure to quote for a method, beside the per-set spread.
A fresh store in a temp folder unless ``--store`` names one.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time

import torch

from bench.common import add_run_args, bench_store, machine
from ddtool.lookup import load_dataset
from ddtool.recipe import load_recipe
from ddtool.runtime.distill.loop import distill
from ddtool.runtime.evaluate.train_eval import evaluate
from ddtool.runtime.pretrain.expert_trajectories import pretrain_trajectories
from ddtool.runtime.pretrain.pool_training import pretrain


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--repeats", type=int, default=3, help="evaluation networks per set")
    add_run_args(ap, "recipe override for every run and the pretraining (repeatable)")
    args = ap.parse_args()
    device = torch.device(args.device)
    base = load_recipe(args.recipe, args.set)
    data = load_dataset(base.data.dataset)
    store = bench_store(args.store)
    print(f"# bench.seeds  {datetime.date.today()}  {machine()}  {args.recipe}  dataset={data.name}")
    print(f"# {vars(args)}")
    t = time.perf_counter()
    if "trajectories" in base.distill.options:
        pretrain_trajectories(store, base, data, device)
        print(f"# experts ({args.recipe}'s [pretrain]) in {time.perf_counter() - t:.1f}s", flush=True)
    elif base.distill.pool:
        pretrain(store, base, data, device)
        print(f"# pool ({args.recipe}'s [pretrain]) in {time.perf_counter() - t:.1f}s", flush=True)
    print("| distill seed | accuracy % (mean ± std over evaluation repeats) | distill s |")
    print("|---|---|---|")
    means = []
    for seed in args.seeds:
        recipe = load_recipe(args.recipe, [*args.set, f"distill.seed={seed}", f"eval.repeats={args.repeats}"])
        res = distill(store, recipe, data, device, name=f"seed{seed}")
        ev = evaluate(store, res.artifact.ref, data, recipe.eval, device)
        accs = [100 * a for a in ev.accuracies]
        means.append(statistics.fmean(accs))
        print(f"| {seed} | {means[-1]:.2f} ± {statistics.pstdev(accs):.2f} | {res.seconds:.1f} |", flush=True)
    spread = statistics.stdev(means) if len(means) > 1 else 0.0
    print(f"\nOver {len(means)} distillation seeds: {statistics.fmean(means):.2f} ± {spread:.2f} % "
          f"(min {min(means):.2f}, max {max(means):.2f})")


if __name__ == "__main__":
    main()
