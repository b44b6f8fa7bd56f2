"""Method table: test accuracy and distillation time of every method at equal budgets.

    python -m bench.methods --dataset digits --ipc 1 10 [--outer 40] [--repeats 5] [--rows dm,idc,...]

Each row distils with ddtool's runtime (a fresh store in a temp folder), evaluates the result
with ``--repeats`` fresh networks and prints one Markdown table row. IDC and the Acc-DD rows
("ours") share the same outer-loop budget ``--outer``; "ours 1/5" gets a fifth of it, the
paper's claim being that it keeps IDC's accuracy. A pool of early-stage models is pretrained
once per run (``--pool-n`` models, ``--pool-epochs`` epochs) and its time is reported apart — twice: the
diverse pool of the Acc-DD recipes (``pretrain.diverse = true``) and one whose models differ by seed only
(the DynaDistill, DREAM+ + DynaDistill and herding recipes).
"""

from __future__ import annotations

import argparse
import datetime
import re
import statistics
import tempfile
import time

import torch

from bench.common import machine
from ddtool.lookup import load_dataset
from ddtool.recipe import load_recipe
from ddtool.runtime.distill import distill
from ddtool.runtime.evaluate.train_eval import evaluate
from ddtool.runtime.pretrain.pool_training import pretrain
from ddtool.store import Store

MTT_RECIPE = "recipes/mtt.toml"


def rows(outer: int, dm_iters: int, idc_inner: int, idc_net_steps: int, factor: int,
         dc_lr: float, idc_lr: float) -> dict[str, list[str]]:
    idc = ["distill.method=\"idc\"", f"distill.options.inner_loops={idc_inner}",
           f"distill.options.net_steps={idc_net_steps}", f"distill.options.factor={factor}",
           f"distill.lr_img={idc_lr}", "distill.lr_img_scale=\"none\"", "distill.batch_real=64"]
    # Acc-DD rows on the diverse pool its recipes ship (issue 23: pretrain.diverse = true); IDC + DynaDistill,
    # DREAM+ + DynaDistill, herding and the "seed-only" row on the pool that differs by seed only, as their recipes
    pool = ["distill.pool=\"pool/bench-diverse\"", "distill.schedule=\"gaussian\"", "distill.alpha=1.0"]
    seed_pool = ["distill.pool=\"pool/bench\""]
    return {
        "random": ["distill.method=\"random\""],
        "herding": ["distill.method=\"herding\"", *seed_pool],
        "dc": ["distill.method=\"dc\"", f"distill.iterations={outer}", f"distill.lr_img={dc_lr}"],
        "dsa": ["distill.method=\"dsa\"", f"distill.iterations={outer}", f"distill.lr_img={dc_lr}"],
        "dm": ["distill.method=\"dm\"", f"distill.iterations={dm_iters}", "distill.lr_img=1.0"],
        "dm+ours": ["distill.method=\"dm\"", f"distill.iterations={max(1, dm_iters // 5)}", "distill.lr_img=1.0",
                    "distill.selection=\"random\"", *pool],
        "idc": [*idc, f"distill.iterations={outer}"],
        "ours": [*idc, f"distill.iterations={outer}", "distill.selection=\"random\"", *pool],
        # issue 23's CIFAR-10 arms at this scale: the perturbation schedules, the pool's diversity, DynaDistill
        # against its random-selection control on the same pool, raw vs z-scored scores
        "ours two_direction": [*idc, f"distill.iterations={outer}", "distill.selection=\"random\"", *pool,
                               "distill.schedule=\"two_direction\""],
        "ours seed-only pool": [*idc, f"distill.iterations={outer}", "distill.selection=\"random\"", *pool,
                                *seed_pool],
        "idc+random (control)": [*idc, f"distill.iterations={outer}", "distill.selection=\"random\"", *seed_pool,
                                 "distill.schedule=\"none\""],
        "idc+dynadistill": [*idc, f"distill.iterations={outer}", "distill.selection=\"dynadistill\"", *seed_pool,
                            "distill.schedule=\"none\""],
        "idc+dd write-back": [*idc, f"distill.iterations={outer}", "distill.selection=\"dynadistill\"", *seed_pool,
                              "distill.schedule=\"none\"", "distill.options.dynadistill.write_back=true"],
        "idc+dynadistill zscore": [*idc, f"distill.iterations={outer}", "distill.selection=\"dynadistill\"",
                                   *seed_pool, "distill.schedule=\"none\"",
                                   "distill.options.dynadistill.normalize=\"zscore\""],
        "ours-wavg": [*idc, f"distill.iterations={outer}", "distill.selection=\"weight_average\"", *pool],
        "ours+dynadistill": [*idc, f"distill.iterations={outer}", "distill.selection=\"dynadistill\"", *pool],
        # issue 11 item 8: DynaDistill's settings, one change each from the row above
        "ours+dd prefer low": [*idc, f"distill.iterations={outer}", "distill.selection=\"dynadistill\"", *pool,
                               "distill.options.dynadistill.prefer=\"low\""],
        # Algorithm 1 as written: the trained network goes back into the pool (the default before issue 23's table)
        "ours+dd write-back": [*idc, f"distill.iterations={outer}", "distill.selection=\"dynadistill\"", *pool,
                               "distill.options.dynadistill.write_back=true"],
        "ours+dd own draws": [*idc, f"distill.iterations={outer}", "distill.selection=\"dynadistill\"", *pool,
                              "distill.options.dynadistill.shared_draw=false"],
        # DREAM+ (seed 003 Eq. 3) at IDC's budget: representative real batches, re-clustered every 5 inner steps
        "dream": [*idc, f"distill.iterations={outer}", "distill.method=\"dream\"", "distill.options.interval=5"],
        # DREAM+ + DynaDistill as recipes/dream_dynadistill.toml: the pool's (trained) candidates are not warmed
        # up again; no perturbation schedule (the row measures what its label says, issue 23)
        "dream+dynadistill": [*idc, f"distill.iterations={outer}", "distill.method=\"dream\"",
                              "distill.options.interval=5", "distill.options.warmup_epochs=0",
                              "distill.selection=\"dynadistill\"", *seed_pool,
                              "distill.schedule=\"none\""],
        # MTT from recipes/mtt.toml's digits scale (experts made once per run, see TRAJECTORY_ROWS)
        "mtt": [],
        "mtt+dynadistill": ["distill.selection=\"dynadistill\""],
        "ours 1/5": [*idc, f"distill.iterations={max(1, outer // 5)}", "distill.selection=\"random\"", *pool],
    }


TRAJECTORY_ROWS = ("mtt", "mtt+dynadistill")  # rows that run recipes/mtt.toml on its experts


def artifact_name(ipc: int, row: str) -> str:
    """The set's store name for one row: the label with what a store name may not hold replaced."""
    return f"b{ipc}-" + re.sub(r"[^A-Za-z0-9._-]+", "-", row.replace("+", "p")).strip("-")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--ipc", type=int, nargs="+", default=[1, 10])
    ap.add_argument("--outer", type=int, default=40, help="outer loops of DC/DSA/IDC/ours")
    ap.add_argument("--dm-iters", type=int, default=400)
    ap.add_argument("--idc-inner", type=int, default=10)
    ap.add_argument("--idc-net-steps", type=int, default=1)
    ap.add_argument("--dc-lr", type=float, default=0.1,
                    help="DC/DSA image lr (0.1 in the papers for 28-32 px; 8x8 digits needs far less)")
    ap.add_argument("--idc-lr", type=float, default=0.01,
                    help="IDC/Acc-DD image lr in pixel units (papers: 1e-3/1e-2/5e-2 at ipc 1/10/50)")
    ap.add_argument("--idc-factor", type=int, default=2, help="multi-formation factor (1 suits 8x8 digits)")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=300, help="evaluation epochs")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pool-n", type=int, default=5)
    ap.add_argument("--pool-epochs", type=int, default=2)
    ap.add_argument("--rows", default="", help="comma list of rows (default: all)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="extra recipe override for every row (repeatable)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    data = load_dataset(args.dataset)
    store = Store(tempfile.mkdtemp(prefix="ddtool-bench-"))
    base = [f"data.dataset=\"{args.dataset}\"", f"net.width={args.width}", f"eval.epochs={args.epochs}",
            f"eval.repeats={args.repeats}", f"pretrain.n={args.pool_n}", f"pretrain.epochs={args.pool_epochs}",
            "pretrain.name=\"bench\"", *args.set]
    print(f"# bench.methods  {datetime.date.today()}  {machine()}  dataset={args.dataset}")
    print(f"# {vars(args)}")
    t = time.perf_counter()
    pretrain(store, load_recipe(None, [*base, "pretrain.diverse=false"]), data, device)
    print(f"# pool/bench (seeds differ): {args.pool_n} models x {args.pool_epochs} epochs in "
          f"{time.perf_counter() - t:.1f}s")
    t = time.perf_counter()
    pretrain(store, load_recipe(None, [*base, "pretrain.diverse=true", "pretrain.name=\"bench-diverse\""]), data,
             device)
    print(f"# pool/bench-diverse (Acc-DD Sec. 4.2: lr, augmentation and seed differ): {args.pool_n} models x "
          f"{args.pool_epochs} epochs in {time.perf_counter() - t:.1f}s")
    table = rows(args.outer, args.dm_iters, args.idc_inner, args.idc_net_steps, args.idc_factor, args.dc_lr,
                 args.idc_lr)
    chosen = [r for r in args.rows.split(",") if r] or list(table)
    # MTT keeps its recipe's own digits scale (experts, unroll, width) and only shares the evaluation
    mtt_base = [f"data.dataset=\"{args.dataset}\"", f"eval.epochs={args.epochs}", f"eval.repeats={args.repeats}",
                *args.set]
    if any(r in TRAJECTORY_ROWS for r in chosen):
        from ddtool.runtime.pretrain.expert_trajectories import pretrain_trajectories

        t = time.perf_counter()
        pretrain_trajectories(store, load_recipe(MTT_RECIPE, mtt_base), data, device)
        print(f"# trajectories: recipes/mtt.toml's digits scale in {time.perf_counter() - t:.1f}s")
    print("| method | ipc | accuracy % (mean ± std) | distill s |")
    print("|---|---|---|---|")
    for ipc in args.ipc:
        for name in chosen:
            recipe = (load_recipe(MTT_RECIPE, [*mtt_base, f"distill.ipc={ipc}", *table[name]]) if name in TRAJECTORY_ROWS
                      else load_recipe(None, [*base, f"distill.ipc={ipc}", *table[name]]))
            res = distill(store, recipe, data, device, name=artifact_name(ipc, name))
            ev = evaluate(store, res.artifact.ref, data, recipe.eval, device)
            accs = [100 * a for a in ev.accuracies]
            print(f"| {name} | {ipc} | {statistics.fmean(accs):.1f} ± {statistics.pstdev(accs):.1f} | "
                  f"{res.seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
