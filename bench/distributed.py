"""2 processes x 1 thread (torch.distributed, gloo, class-sharded) vs 1 process x 2 threads: one
DM outer iteration and one IDC outer iteration, the two set-ups interleaved round by round.

    python -m bench.distributed [--rounds 3] [--steps 5] [--only dm,idc] [--classes 10] [--quick]

Each round launches one set-up as fresh processes (``torch.distributed.run`` for the 2-process
one); inside, after a warm-up step, ``--steps`` steps are timed between two barriers, so start-up
and process-group set-up are not counted. Prints the median seconds per step of each set-up and
their ratio (1x2 / 2x1: > 1 means the 2 processes are faster). The lead runs it; it is not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

SETUPS = {"1x2": (1, 2), "2x1": (2, 1)}  # name -> (processes, threads each)


def worker(case: str, classes: int, steps: int, quick: bool) -> None:
    """One set-up's timing, run in every process of it; rank 0 prints one JSON line."""
    import torch

    from bench.common import fake_data
    from ddtool.augment import Augmenter
    from ddtool.methods.dm import DM
    from ddtool.methods.idc import IDC, IDCOptions
    from ddtool.nets import NetSpec
    from ddtool.perturb import NoPerturbation
    from ddtool.recipe import DistillSection
    from ddtool.runtime.distributed import process_group as distributed
    from ddtool.runtime.distill.planning import build_context
    from ddtool.selection.builtin import Scratch

    device = distributed.init(torch.device("cpu"))
    width = 32 if quick else 128
    if case == "dm":
        method: Any = DM()
        data = fake_data(classes, 64 if quick else 256, 3, 32)
        cfg, options, augment = DistillSection(ipc=10, batch_real=64 if quick else 256), None, Augmenter()
    else:
        method = IDC()
        data = fake_data(classes, 64 if quick else 256, 3, 32)
        cfg = DistillSection(ipc=10, batch_real=16 if quick else 64)
        options = IDCOptions(factor=2, inner_loops=1 if quick else 2, net_steps=4 if quick else 32)
        augment = Augmenter("color_crop_cutout")
    torch.manual_seed(0)
    ctx = build_context(cfg, data, device, net_spec=NetSpec("convnet", {"width": width}), iterations=steps + 1,
                        selection=Scratch(), schedule=NoPerturbation(), options=options, method=method,
                        augment=augment)
    ctx.shard = distributed.class_shard(data.num_classes)  # type: ignore[attr-defined]
    syn = method.init_synthetic(ctx)
    syn.images.requires_grad_(True)
    opt = method.make_optimizer(ctx, syn)
    method.step(ctx, syn, opt, 0)  # warm-up
    distributed.barrier()
    start = time.perf_counter()
    for it in range(1, steps + 1):
        method.step(ctx, syn, opt, it)
    distributed.barrier()
    seconds = (time.perf_counter() - start) / steps
    if distributed.is_main():
        print(json.dumps({"case": case, "world": distributed.current().size, "threads": torch.get_num_threads(),
                          "seconds_per_step": seconds}), flush=True)
    distributed.shutdown()


def launch(setup: str, case: str, classes: int, steps: int, quick: bool) -> float:
    procs, threads = SETUPS[setup]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(key, None)
    args = ["--worker", "--case", case, "--classes", str(classes), "--steps", str(steps), *(["--quick"] if quick else [])]
    if procs == 1:
        cmd = [sys.executable, "-m", "bench.distributed", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}",
               "-m", "bench.distributed", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"{setup} {case} failed:\n{out.stderr[-2000:]}")
    return float(json.loads(lines[-1])["seconds_per_step"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--only", default="dm,idc")
    ap.add_argument("--quick", action="store_true", help="narrow net, small batches (a smoke check, not a measurement)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--case", default="dm", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.case, a.classes, a.steps, a.quick)
        return
    from bench.common import machine, median

    print(f"# bench.distributed {time.strftime('%Y-%m-%d %H:%M')} on {machine()}; {a.rounds} rounds x {a.steps} steps,"
          f" {a.classes} classes{' (quick)' if a.quick else ''}")
    for case in [c for c in a.only.split(",") if c]:
        times: dict[str, list[float]] = {s: [] for s in SETUPS}
        for _ in range(a.rounds):
            for setup in SETUPS:  # interleaved: a load change hits both set-ups alike
                times[setup].append(launch(setup, case, a.classes, a.steps, a.quick))
        one, two = median(times["1x2"]), median(times["2x1"])
        print(f"{case}: 1 process x 2 threads {one:.4f} s/step, 2 processes x 1 thread {two:.4f} s/step, "
              f"ratio (1x2 / 2x1) {one / two:.2f}")


if __name__ == "__main__":
    main()
