"""The physical limit: FLOPs per step and achieved FLOP/s against the CPU's fp32 peak.

    python -m bench.physical [--rounds 2] [--flop-per-cycle N] [--ghz 2.6]
    python -m bench.physical --profile [--top 12]   # where the eager time goes, operator by operator

For the DM iteration (CIFAR-10 shape, ipc 10, batch_real 256, per-class loop) and the IDC inner
step (factor 2, real batch 64, then 32 network updates of 64 real images), eager and with
``distill.compile`` (when a C++ compiler is present): FLOPs counted by torch's FlopCounterMode
(convolutions and matrix products; element-wise work is not counted, so the achieved figure is a
lower bound on what the core does), seconds as the median of interleaved rounds after a warm-up.

Peak = threads x GHz x fp32 FLOP per cycle and core. The FLOP per cycle come from this machine
(:mod:`bench.cpu_peak`: the vector unit /proc/cpuinfo's flags declare, capped by
``ONEDNN_MAX_CPU_ISA``, beside torch's CPU capability; 2 FMA pipes assumed): AVX2 + FMA is
8 lanes x 2 FLOP x 2 pipes = 32, AVX-512 64. The header line says what was detected and what was
assumed; ``--flop-per-cycle`` overrides it (a core that splits wide instructions over narrower
pipes) and the line says so. GHz defaults to /proc/cpuinfo's "cpu MHz" (the current clock, not
the boost one: where the core boosts, the percentages are upper bounds).
"""

from __future__ import annotations

import argparse
import datetime

import torch

from bench import cpu_peak
from bench.common import fake_data, flops_of, interleaved, machine, median
from ddtool.augment import Augmenter
from ddtool.compiled import compiler_usable
from ddtool.lookup import build_net
from ddtool.methods.dm import DM
from ddtool.methods.idc import IDC, IDCOptions
from ddtool.nets import NetSpec
from ddtool.perturb import NoPerturbation
from ddtool.recipe import DistillSection
from ddtool.runtime.distill.planning import build_context
from ddtool.selection.builtin import Scratch
from ddtool.synthetic import init_synthetic


def steps(device: torch.device, compiled: bool) -> dict[str, object]:
    """name -> zero-argument function running one step (eager, and compiled when asked)."""
    spec = NetSpec("convnet", {"width": 128})
    out: dict[str, object] = {}
    dm_data = fake_data(10, 256, 3, 32)
    idc_data = fake_data(10, 256, 3, 32)
    dm_syn = init_synthetic(dm_data, 10, "real", device=device)
    dm_syn.images.requires_grad_(True)
    opts = IDCOptions(factor=2, net_steps=32)
    idc = IDC()
    for flag in (False, True) if compiled else (False,):
        tag = " + compile" if flag else ""
        dm_ctx = build_context(DistillSection(ipc=10, batch_real=256, compile=flag), dm_data, device, net_spec=spec,
                               iterations=1, selection=Scratch(), schedule=NoPerturbation(), impl="loop",
                               augment=Augmenter())
        out["DM iteration" + tag] = (lambda ctx=dm_ctx: DM().step(
            ctx, dm_syn, torch.optim.SGD([dm_syn.images], lr=1.0, momentum=0.5), 0))
        ctx = build_context(DistillSection(ipc=10, batch_real=64, compile=flag), idc_data, device, net_spec=spec,
                            iterations=1, selection=Scratch(), schedule=NoPerturbation(), options=opts, impl="loop",
                            augment=Augmenter("color_crop_cutout"))
        syn = idc.init_synthetic(ctx)
        syn.images.requires_grad_(True)
        net = build_net(spec, 3, 10, 32).to(device)
        opt = torch.optim.SGD([syn.images], lr=0.005, momentum=0.5)
        net_opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        ops = idc.net_ops(ctx, opts)

        def inner(ctx=ctx, syn=syn, net=net, opt=opt, net_opt=net_opt, ops=ops) -> None:
            idc.image_update(ctx, syn, opt, net)
            idc.train_net(ctx, net, net_opt, opts, ops)

        out["IDC inner step" + tag] = inner
    return out


def profile(fns: dict[str, object], top: int) -> None:
    """One warm call, then one call under torch.profiler per eager step: the operators with the most
    self CPU time, as a share of the step, and the share by family (what a fused kernel could save)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    families = {"convolution": ("conv",), "group/instance norm": ("group_norm", "instance_norm", "batch_norm"),
                "pooling": ("pool",), "matmul/linear": ("addmm", "mm", "linear", "bmm"),
                "augmentation sampling": ("grid_sampler", "affine_grid")}
    for name, fn in fns.items():
        if "compile" in name:
            continue
        fn()  # type: ignore[operator]
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()  # type: ignore[operator]
        events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
        total = sum(e.self_cpu_time_total for e in events)
        print(f"\n### {name}: {total / 1e6:.2f} s of self CPU time\n")
        print("| operator | calls | self s | share |")
        print("|---|---|---|---|")
        for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]:
            print(f"| `{e.key}` | {e.count} | {e.self_cpu_time_total / 1e6:.3f} | "
                  f"{100 * e.self_cpu_time_total / total:.1f} % |")
        shares = {fam: sum(e.self_cpu_time_total for e in events if any(k in e.key for k in keys))
                  for fam, keys in families.items()}
        rest = total - sum(shares.values())
        print("\nby family: " + ", ".join(f"{fam} {100 * v / total:.0f} %" for fam, v in shares.items())
              + f", everything else (element-wise, copies, autograd bookkeeping) {100 * rest / total:.0f} %")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved timed rounds; each step's median is reported")
    ap.add_argument("--flop-per-cycle", type=float, default=None,
                    help="fp32 FLOP per cycle and core (default: detected, see bench.cpu_peak; e.g. 32 for "
                         "AVX2 + FMA, 64 for AVX-512 with two 512-bit FMA pipes)")
    ap.add_argument("--ghz", type=float, default=0.0, help="clock (default: /proc/cpuinfo's cpu MHz)")
    ap.add_argument("--no-compile", action="store_true", help="time the eager steps only")
    ap.add_argument("--profile", action="store_true", help="profile each eager step instead of timing")
    ap.add_argument("--top", type=int, default=12, help="operators listed per step with --profile")
    args = ap.parse_args()
    device = torch.device("cpu")
    if args.profile:
        print(f"# bench.physical --profile  {datetime.date.today()}  {machine()}")
        profile(steps(device, compiled=False), args.top)
        return
    ghz = args.ghz or cpu_peak.clock_ghz(cpu_peak.read_cpuinfo())
    per_cycle, how = cpu_peak.flop_per_cycle_line(cpu_peak.this_machine(), args.flop_per_cycle)
    if per_cycle is None or not ghz:
        ap.error(f"no peak: {how if per_cycle is None else 'no clock in /proc/cpuinfo'}; "
                 "pass --flop-per-cycle and --ghz")
    peak = torch.get_num_threads() * ghz * per_cycle
    print(f"# bench.physical  {datetime.date.today()}  {machine()}  peak {peak:.0f} GFLOP/s "
          f"({torch.get_num_threads()} threads x {ghz:.2f} GHz{' (--ghz)' if args.ghz else ''} x {per_cycle:g} FLOP/cycle)")
    print(f"# FLOP/cycle: {how}", flush=True)  # before the minutes of timing: what the peak assumes
    fns = steps(device, compiled=not args.no_compile and compiler_usable(device)[0])
    flops = {name: flops_of(fn) for name, fn in fns.items() if "compile" not in name}
    times = interleaved(fns, args.rounds)  # type: ignore[arg-type]
    print("| step, CIFAR-10 shape, ipc 10 | GFLOP | s | GFLOP/s | % of peak |")
    print("|---|---|---|---|---|")
    for name, ts in times.items():
        gflop = flops[name.replace(" + compile", "")] / 1e9
        s = median(ts)
        print(f"| {name} | {gflop:.1f} | {s:.3f} | {gflop / s:.1f} | {100 * gflop / s / peak:.0f} % |")


if __name__ == "__main__":
    main()
