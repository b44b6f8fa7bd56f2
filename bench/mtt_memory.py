"""MTT's memory per ipc: the plain unroll against the checkpointed one (issue 12).

    python -m bench.mtt_memory [--ipc 1 10] [--steps 30] [--segment 10] [--width 128] [--under none|flop-counter|ddtool-counter|dispatch-mode]

One MTT matching loss and its backward to the images and the learnable step size, at CIFAR-10
shape (ConvNet-3, the whole synthetic set as the student's batch, as the reference runs it),
``--steps`` student steps from a random expert segment. Each (ipc, unroll) runs in a fresh
process; the figure is the process's peak resident memory during the step minus its resident
memory just before it (CPU), or torch's peak CUDA allocation (GPU). The image gradients of the two
unrolls are compared in the parent (relative difference of their norms' difference).

``--under flop-counter`` runs the step inside ``torch.utils.flop_counter.FlopCounterMode``, as a
distill run's first iteration runs (its record's ``flops_per_iteration``); ``dispatch-mode`` inside
a bare ``TorchDispatchMode`` that passes every operator through, which separates the counter's
module tracking from dispatching itself (issues 24, 25: the run records' checkpointed peaks);
``ddtool-counter`` inside ``ddtool.flop_count.FlopCounter``, what a run counts with since then
(the same formulas, no module tracking).
"""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import subprocess
import sys

import torch
from safetensors.torch import load_file, save_file

from bench.common import fake_data, machine
from bench.method_memory import DETACH  # the child's ru_maxrss starts from its own, not this process's


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _mode(under: str):
    """The context the step runs in (see the module's doc)."""
    import contextlib

    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    class PassThrough(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            return func(*args, **(kwargs or {}))

    from ddtool.flop_count import FlopCounter

    return {"none": contextlib.nullcontext, "flop-counter": lambda: FlopCounterMode(display=False),
            "ddtool-counter": FlopCounter, "dispatch-mode": PassThrough}[under]()


def one(ipc: int, steps: int, unroll: str, segment: int, width: int, device: str, under: str = "none") -> dict:
    from ddtool.methods.mtt import MTT, MTTOptions
    from ddtool.nets import NetSpec
    from ddtool.lookup import build_net
    from ddtool.recipe import load_recipe
    from ddtool.runtime.distill.planning import build_context
    from ddtool.trajectories import Trajectories, flat_params, param_layout

    dev = torch.device(device)
    data = fake_data(10, max(ipc, 10), 3, 32)
    recipe = load_recipe(None, ["distill.method=mtt", f"net.width={width}", f"distill.ipc={ipc}"])
    spec = NetSpec("convnet", {"width": width})
    torch.manual_seed(0)
    net = build_net(spec, 3, 10, 32)
    init = flat_params(net)
    snaps = torch.stack([init + 0.05 * e * torch.randn_like(init) for e in range(3)])
    traj = Trajectories(spec, param_layout(net), 2, ["e0"], loader={"e0": snaps}.__getitem__)
    method = MTT()
    ctx = build_context(recipe, data, dev, method=method, trajectories=traj,
                        options=MTTOptions(syn_steps=steps, expert_epochs=2, max_start_epoch=1, batch_syn=0,
                                                       unroll=unroll, segment=segment))
    syn = method.init_synthetic(ctx)
    images = syn.images.detach().clone().requires_grad_(True)
    lr = torch.tensor(0.01, requires_grad=True, device=dev)
    before = _rss_mib()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    torch.manual_seed(5)
    with _mode(under):
        loss = method.match(ctx, type(syn)(images, syn.labels, syn.ipc, syn.factor), lr, snaps[0].to(dev),
                            snaps[2].to(dev))
        loss.backward()
    peak = ((torch.cuda.max_memory_allocated(dev) - base) / 2**20 if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before)
    save_file({"grad": images.grad.cpu().contiguous()}, f"/tmp/mtt_memory_grad_{ipc}_{unroll}.safetensors")
    return {"ipc": ipc, "unroll": unroll, "peak_mib": round(peak, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ipc", type=int, nargs="+", default=[1, 10])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--segment", type=int, default=10)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--under", default="none", choices=("none", "flop-counter", "ddtool-counter", "dispatch-mode"),
                    help="run the step inside torch's FLOP counter or a pass-through dispatch mode")
    ap.add_argument("--one", nargs=2, metavar=("IPC", "UNROLL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(int(args.one[0]), args.steps, args.one[1], args.segment, args.width, args.device,
                             args.under)))
        return
    print(f"# bench.mtt_memory  {datetime.date.today()}  {machine()}  {args.steps} student steps, segment "
          f"{args.segment}, ConvNet-3 width {args.width}, CIFAR-10 shape, whole set per step, under {args.under}")
    print("| ipc | plain MiB | checkpointed MiB | ratio | image-gradient difference |")
    print("|---|---|---|---|---|")
    for ipc in args.ipc:
        peaks = {}
        for unroll in ("plain", "checkpointed"):
            out = subprocess.run([*DETACH, sys.executable, "-m", "bench.mtt_memory", "--one", str(ipc), unroll,
                                  "--steps", str(args.steps), "--segment", str(args.segment),
                                  "--width", str(args.width), "--device", args.device, "--under", args.under],
                                 capture_output=True, text=True, check=True)
            peaks[unroll] = json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]
        gp = load_file(f"/tmp/mtt_memory_grad_{ipc}_plain.safetensors")["grad"]
        gc = load_file(f"/tmp/mtt_memory_grad_{ipc}_checkpointed.safetensors")["grad"]
        diff = float((gc - gp).norm() / gp.norm())
        print(f"| {ipc} | {peaks['plain']:.0f} | {peaks['checkpointed']:.0f} | "
              f"{peaks['plain'] / max(peaks['checkpointed'], 1e-9):.1f}x | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
