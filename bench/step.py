"""Vectorised vs looped: one matching step and one evaluation, timed interleaved in one run.

    python -m bench.step [--device cpu|cuda] [--rounds 3] [--quick] [--only dm,idc,eval,pool]
                         [--idc-variants loop,compiled,...]

Prints the median time of each implementation, their ratio (loop / vectorised: > 1 means
the default is faster) and the achieved FLOP/s of the vectorised path.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
from typing import Callable, Sequence

import torch

from bench.common import fake_data, flops_of, interleaved, machine, median
from ddtool.augment import Augmenter
from ddtool.lookup import build_net
from ddtool.methods.dm import DM
from ddtool.methods.idc import IDC, IDCOptions
from ddtool.nets import NetSpec
from ddtool.perturb import NoPerturbation
from ddtool.recipe import DistillSection
from ddtool.runtime import ensemble
from ddtool.runtime.distill.planning import build_context
from ddtool.runtime.supervised import TrainSettings, train
from ddtool.selection.builtin import Scratch
from ddtool.synthetic import init_synthetic


def dm_case(classes: int, ipc: int, batch_real: int, device: torch.device, rounds: int, *, width: int = 128,
            compiled: bool = True) -> dict[str, float]:
    """One DM iteration, vectorised vs loop vs loop + torch.compile (``compiled=False`` leaves the
    last out: no ``compiled_s``)."""
    data = fake_data(classes, max(batch_real, ipc), 3, 32)
    spec = NetSpec("convnet", {"width": width})
    out = {}
    impls = ("vectorized", "loop", "compiled") if compiled else ("vectorized", "loop")
    ctxs = {impl: build_context(DistillSection(ipc=ipc, batch_real=batch_real, compile=impl == "compiled"), data,
                                device, net_spec=spec, iterations=1, selection=Scratch(), schedule=NoPerturbation(),
                                impl="loop" if impl == "compiled" else impl, augment=Augmenter())
            for impl in impls}
    syn = init_synthetic(data, ipc, "real", device=device)
    syn.images.requires_grad_(True)
    method = DM()

    def run(impl: str):  # type: ignore[no-untyped-def]
        def go() -> None:
            opt = torch.optim.SGD([syn.images], lr=1.0, momentum=0.5)
            method.step(ctxs[impl], syn, opt, 0)
        return go

    times = interleaved({impl: run(impl) for impl in impls}, rounds)
    out["vectorized_s"], out["loop_s"] = median(times["vectorized"]), median(times["loop"])
    if compiled:
        out["compiled_s"] = median(times["compiled"])
    out["ratio"] = out["loop_s"] / out["vectorized_s"]
    out["gflops"] = flops_of(run("vectorized")) / 1e9
    out["gflop_per_s"] = out["gflops"] / out["vectorized_s"]
    return out


IDC_VARIANTS = ("vectorized", "loop", "compiled", "compiled_real", "network", "network_compiled", "network_bf16")


def idc_fns(classes: int, ipc: int, device: torch.device, net_steps: int = 32, *, width: int = 128,
            variants: Sequence[str] = IDC_VARIANTS) -> dict[str, Callable[[], object]]:
    """The callables :func:`idc_case` times, one per variant in ``variants`` (each does one matching
    part or one network part of the inner step on state shared by all), for a bench that interleaves
    them with others (bench/idc_reference_step.py)."""
    data = fake_data(classes, 256, 3, 32)
    spec = NetSpec("convnet", {"width": width})
    opts = IDCOptions(factor=2, net_steps=net_steps)
    settings = {"vectorized": ("vectorized", False, "fp32", opts), "loop": ("loop", False, "fp32", opts),
                "compiled": ("loop", True, "fp32", opts),
                "compiled_real": ("loop", True, "fp32", dataclasses.replace(opts, compile_matching=False)),
                "bf16": ("loop", False, "bf16", opts)}
    ctxs = {name: build_context(DistillSection(ipc=ipc, batch_real=64, compile=comp, precision=precision), data,
                                device, net_spec=spec, iterations=1, selection=Scratch(), schedule=NoPerturbation(),
                                options=o, impl=impl, augment=Augmenter("color_crop_cutout"))
            for name, (impl, comp, precision, o) in settings.items()}
    method = IDC()
    syn = method.init_synthetic(ctxs["loop"])
    syn.images.requires_grad_(True)
    torch.manual_seed(0)
    net = build_net(spec, 3, classes, 32).to(device)
    opt = torch.optim.SGD([syn.images], lr=0.01, momentum=0.5)
    net_opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    ops = method.net_ops(ctxs["loop"], opts)

    def match(impl: str) -> Callable[[], object]:
        return lambda: method.image_update(ctxs[impl], syn, opt, net)

    def network(impl: str) -> Callable[[], object]:
        return lambda: method.train_net(ctxs[impl], net, net_opt, opts, ops)

    every = {"vectorized": lambda: match("vectorized"), "loop": lambda: match("loop"),
             "compiled": lambda: match("compiled"), "compiled_real": lambda: match("compiled_real"),
             "network": lambda: network("loop"), "network_compiled": lambda: network("compiled"),
             "network_bf16": lambda: network("bf16")}
    return {v: every[v]() for v in variants}


def idc_case(classes: int, ipc: int, device: torch.device, rounds: int, net_steps: int = 32, *, width: int = 128,
             compiled: bool = True, variants: Sequence[str] = IDC_VARIANTS) -> dict[str, float]:
    """One IDC inner step at the reference's CIFAR settings (factor 2, real batch 64, <= 128 decoded
    images per class, MSE over the conv weights, then ``net_steps`` x 64 real images of network
    training), split into its matching part and its network part, ``variants`` of each timed
    interleaved: matching ``vectorized``, ``loop`` (the CPU default), ``compiled`` (the loop under
    ``distill.compile``: the double backward compiled too) and ``compiled_real`` (only the real
    side compiled, ``compile_matching = false``); the network update in fp32, compiled and under
    bf16 autocast. ``compiled=False`` leaves the compiled variants out; ``match_gflops`` /
    ``network_gflops``: the FLOPs of each part."""
    variants = [v for v in variants if compiled or "compiled" not in v]
    fns = idc_fns(classes, ipc, device, net_steps, width=width, variants=[*variants, "loop", "network"])
    times = interleaved({v: fns[v] for v in variants}, rounds)
    out = {k + "_s": median(v) for k, v in times.items()}
    if "loop" in variants and "vectorized" in variants:
        out["ratio"] = out["loop_s"] / out["vectorized_s"]
    out["match_gflops"] = flops_of(fns["loop"]) / 1e9
    out["network_gflops"] = flops_of(fns["network"]) / 1e9
    return out


def pool_case(n: int, epochs: int, device: torch.device, rounds: int) -> dict[str, float]:
    """``pretrain``'s pool: n digits ConvNets trained stacked vs one after the other."""
    from ddtool.lookup import load_dataset
    from ddtool.runtime.pretrain.pool_training import train_pool

    data = load_dataset("digits")
    spec = NetSpec("convnet", {"width": 64})
    times = interleaved({impl: (lambda impl=impl: train_pool(data, spec, n, epochs, 0.01, 128, 0, device, impl=impl))
                         for impl in ("stacked", "loop")}, rounds)
    s, lp = median(times["stacked"]), median(times["loop"])
    return {"stacked_s": s, "loop_s": lp, "ratio": lp / s}


def eval_case(classes: int, ipc: int, repeats: int, epochs: int, res: int, channels: int, device: torch.device,
              rounds: int, *, width: int = 128) -> dict[str, float]:
    """``repeats`` fresh networks trained on ``classes * ipc`` images for ``epochs`` epochs, as one
    stacked ensemble vs one after the other; ``gflops``: the training FLOPs of all repeats."""
    spec = NetSpec("convnet", {"width": width})
    torch.manual_seed(0)
    nets = [build_net(spec, channels, classes, res).to(device) for _ in range(repeats)]
    x = torch.randn(classes * ipc, channels, res, res, device=device)
    y = torch.arange(classes, device=device).repeat_interleave(ipc)
    settings = TrainSettings(epochs=epochs, batch=256)
    aug = Augmenter()

    def stacked() -> None:
        ensemble.train_stacked([copy.deepcopy(n) for n in nets], x, y, settings, aug)

    def looped() -> None:
        for n in nets:
            train(copy.deepcopy(n), x, y, settings, aug)

    times = interleaved({"stacked": stacked, "loop": looped}, rounds)
    s, lp = median(times["stacked"]), median(times["loop"])
    # every epoch does the same arithmetic: count one epoch of one network, not the whole run
    one_epoch = flops_of(lambda: train(copy.deepcopy(nets[0]), x, y, TrainSettings(epochs=1, batch=256), aug))
    return {"stacked_s": s, "loop_s": lp, "ratio": lp / s, "gflops": one_epoch * epochs * repeats / 1e9}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="only the small cases")
    ap.add_argument("--only", default="dm,idc,eval,pool", help="comma list of parts to run")
    ap.add_argument("--idc-variants", default="", help="comma list of the IDC variants to time (default all: "
                    + ",".join(IDC_VARIANTS) + ")")
    args = ap.parse_args()
    device = torch.device(args.device)
    print(f"# bench.step  {datetime.date.today()}  {machine()}  device={device}")
    cpu = device.type == "cpu"
    dm_cases = [(10, 1, 256), (10, 10, 256), (10, 50, 256)]
    dm_cases += [(100, 1, 32 if cpu else 256), (100, 10, 32 if cpu else 256)] if not args.quick else []
    parts = set(args.only.split(","))
    if "dm" in parts:
        print("| step | classes | ipc | batch_real | vectorised s | loop s | loop + compile s | loop/vectorised "
              "| loop/(loop + compile) | GFLOP | GFLOP/s (vectorised) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
    for classes, ipc, br in dm_cases if "dm" in parts else []:
        r = dm_case(classes, ipc, br, device, args.rounds)
        print(f"| dm | {classes} | {ipc} | {br} | {r['vectorized_s']:.3f} | {r['loop_s']:.3f} | {r['compiled_s']:.3f} "
              f"| {r['ratio']:.2f}x | {r['loop_s'] / r['compiled_s']:.2f}x | {r['gflops']:.1f} | {r['gflop_per_s']:.1f} |",
              flush=True)
    if "idc" in parts:
        variants = args.idc_variants.split(",") if args.idc_variants else IDC_VARIANTS
        print()
        print("| IDC inner step | classes | ipc | matching: vectorised s | loop s | loop + compile s "
              "| loop + compile, real side only s | loop/(loop + compile) "
              "| network (32 x 64 real): fp32 s | + compile s | bf16 s |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for classes, ipc in [(10, 1), (10, 10)] + ([(10, 50), (100, 10)] if not args.quick else []):
            r = idc_case(classes, ipc, device, args.rounds, variants=variants)

            def cell(key: str) -> str:
                return f"{r[key + '_s']:.3f}" if key + "_s" in r else "-"

            ratio = f"{r['loop_s'] / r['compiled_s']:.2f}x" if "loop_s" in r and "compiled_s" in r else "-"
            print(f"| idc | {classes} | {ipc} | {cell('vectorized')} | {cell('loop')} | {cell('compiled')} "
                  f"| {cell('compiled_real')} | {ratio} | {cell('network')} | {cell('network_compiled')} "
                  f"| {cell('network_bf16')} |", flush=True)
    if "pool" in parts:
        print()
        print("| pretrain pool | data | models x epochs | stacked s | loop s | loop/stacked |")
        print("|---|---|---|---|---|---|")
        r = pool_case(5, 2, device, args.rounds)
        print(f"| pool | digits, ConvNet width 64 | 5 x 2 | {r['stacked_s']:.3f} | {r['loop_s']:.3f} | {r['ratio']:.2f}x |",
              flush=True)
    if "eval" in parts:
        print()
        print("| eval (5 repeats) | data | ipc | epochs | stacked s | loop s | loop/stacked |")
        print("|---|---|---|---|---|---|---|")
    eval_cases = [("digits 8x8x1", 10, 1, 8, 1), ("digits 8x8x1", 10, 10, 8, 1), ("cifar10 32x32x3", 10, 10, 32, 3)]
    for name, classes, ipc, res, ch in eval_cases if "eval" in parts else []:
        epochs = 20 if res == 8 else 5
        r = eval_case(classes, ipc, 5, epochs, res, ch, device, args.rounds)
        print(f"| eval | {name} | {ipc} | {epochs} | {r['stacked_s']:.3f} | {r['loop_s']:.3f} | {r['ratio']:.2f}x |",
              flush=True)


if __name__ == "__main__":
    main()
