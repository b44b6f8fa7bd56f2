"""Four ways to compute one class's matching-loss gradient with respect to the synthetic images.

    python -m bench.matching_forms [--rounds 5] [--compiled]
    python -m bench.matching_forms --joint [--rounds 7]

One class at IDC's CIFAR-10 settings (64 real and 40 synthetic images of 32x32x3, ConvNet-3
width 128, MSE over the convolution weights), the distance D(g_real, g_syn(x)) and dD/dx by:

* ``double_backward``: autograd's grad with ``create_graph``, then a grad of the distance (the
  per-class loop, ``ddtool.methods.matching``);
* ``func_grad_of_grad``: ``torch.func.grad`` of the distance of ``torch.func.grad``
  (``matching.syn_distance_and_grad``, what ``distill.compile`` compiles);
* ``reverse_over_forward``: with v = dD/dg_syn held constant, dD/dx = d/dx <grad_theta L, v>, the
  directional derivative of L along v taken forward-mode (``torch.func.jvp`` over the
  parameters), then one reverse pass to x;
* ``forward_over_reverse``: the same mixed derivative as the jvp along v of grad_x L.

Each is checked against the double backward (relative to its largest entry), then all are timed
interleaved, median of ``--rounds``; ``--compiled`` times the three torch.func forms under
torch.compile as well (minutes of compiling on a CPU; the first call's seconds are printed).
``--joint`` times instead the compiled class as ddtool runs it (the real side's first-order
gradients through the compiled forward and autograd, then the compiled synthetic side) against
both sides in one compiled graph.
"""

from __future__ import annotations

import argparse
import datetime
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, grad_and_value, jvp

from bench.common import interleaved, machine, median
from ddtool.compiled import forward_fn
from ddtool.methods import matching
from ddtool.methods.matching import match_distance, syn_distance_and_grad
from ddtool.nets.convnet import ConvNet

Result = tuple[torch.Tensor, torch.Tensor]


def forms(net: torch.nn.Module, label: torch.Tensor) -> dict[str, Callable[..., Result]]:
    names = [n for n, _ in net.named_parameters()]
    matched = {n for n, p in net.named_parameters() if p.dim() > 2}

    def ce(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(net, p, (x,)), label.expand(x.shape[0]))

    def double_backward(params: dict[str, torch.Tensor], xr: torch.Tensor, xs: torch.Tensor) -> Result:
        ps = list(net.parameters())
        x = xs.clone().requires_grad_(True)
        g_real = [g.detach() for g in torch.autograd.grad(F.cross_entropy(net(xr), label.expand(len(xr))), ps)]
        g_syn = torch.autograd.grad(F.cross_entropy(net(x), label.expand(len(x))), ps, create_graph=True)
        d = match_distance(g_real, g_syn, "mse", include_linear=False)
        return d.detach(), torch.autograd.grad(d, x)[0]

    def func_grad_of_grad(params: dict[str, torch.Tensor], xr: torch.Tensor, xs: torch.Tensor) -> Result:
        g_real = grad(ce)(params, xr)
        return syn_distance_and_grad(net, params, [g_real[n] for n in names], xs, label, "mse", False)

    def direction(params: dict[str, torch.Tensor], xr: torch.Tensor, xs: torch.Tensor
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        g_real, g_syn = grad(ce)(params, xr), grad(ce)(params, xs)
        d = match_distance([g_real[n] for n in names], [g_syn[n] for n in names], "mse", include_linear=False)
        # dD/dg_syn of the MSE, closed form; zero on what the distance does not match
        v = {n: 2 * (g_syn[n] - g_real[n]) if n in matched else torch.zeros_like(g_syn[n]) for n in names}
        return d, v

    def reverse_over_forward(params: dict[str, torch.Tensor], xr: torch.Tensor, xs: torch.Tensor) -> Result:
        d, v = direction(params, xr, xs)
        return d, grad(lambda x: jvp(lambda q: ce(q, x), (params,), (v,))[1])(xs)

    def forward_over_reverse(params: dict[str, torch.Tensor], xr: torch.Tensor, xs: torch.Tensor) -> Result:
        d, v = direction(params, xr, xs)
        return d, jvp(lambda q: grad(ce, argnums=1)(q, xs), (params,), (v,))[1]

    return {"double_backward": double_backward, "func_grad_of_grad": func_grad_of_grad,
            "reverse_over_forward": reverse_over_forward, "forward_over_reverse": forward_over_reverse}


def joint_vs_split(net: torch.nn.Module, xr: torch.Tensor, xs: torch.Tensor, label: torch.Tensor,
                   rounds: int) -> None:
    names = [n for n, _ in net.named_parameters()]

    def split() -> Result:
        g_real = matching._class_grads_loop(net, xr, int(label), create_graph=False, forward=forward_fn(True))
        params = {n: p.detach() for n, p in net.named_parameters()}
        return matching._compiled_syn_distance_and_grad(net, params, g_real, xs, label, "mse", False)

    def both(net: torch.nn.Module, params: dict[str, torch.Tensor], xr: torch.Tensor, xs: torch.Tensor,
             label: torch.Tensor) -> Result:
        g = grad(lambda p: F.cross_entropy(functional_call(net, p, (xr,)), label.expand(xr.shape[0])))(params)
        return syn_distance_and_grad(net, params, [g[n] for n in names], xs, label, "mse", False)

    both_compiled = torch.compile(both)

    def joint() -> Result:
        return both_compiled(net, {n: p.detach() for n, p in net.named_parameters()}, xr, xs, label)

    print("| variant | first call s |")
    print("|---|---|")
    for name, fn in (("split (ddtool)", split), ("joint", joint)):
        t = time.perf_counter()
        fn()
        print(f"| {name} | {time.perf_counter() - t:.2f} |", flush=True)
    times = interleaved({"split": split, "joint": joint}, rounds, warmup=1)
    s, j = median(times["split"]), median(times["joint"])
    print(f"\nsplit {s:.3f} s, joint {j:.3f} s (medians of {rounds}): split / joint = {s / j:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--compiled", action="store_true", help="also the torch.func forms under torch.compile")
    ap.add_argument("--joint", action="store_true", help="compiled: the real side apart (as ddtool) vs in one graph")
    args = ap.parse_args()
    print(f"# bench.matching_forms  {datetime.datetime.now():%Y-%m-%d %H:%M}  {machine()}")
    torch.manual_seed(0)
    net = ConvNet(3, 10, 32)
    xr, xs = torch.randn(64, 3, 32, 32), torch.randn(40, 3, 32, 32)
    params = {n: p.detach() for n, p in net.named_parameters()}
    label = torch.tensor(3)
    if args.joint:
        joint_vs_split(net, xr, xs, label, args.rounds)
        return
    fns = forms(net, label)
    if args.compiled:
        fns |= {name + "+compile": torch.compile(fn) for name, fn in list(fns.items()) if name != "double_backward"}
    d0, g0 = fns["double_backward"](params, xr, xs)
    print("| form | first call s | loss: rel. difference | dD/dx: max difference / max entry |")
    print("|---|---|---|---|")
    for name, fn in fns.items():
        t = time.perf_counter()
        d, g = fn(params, xr, xs)
        first = time.perf_counter() - t
        print(f"| {name} | {first:.2f} | {float((d - d0).abs() / d0.abs()):.1e} "
              f"| {float((g - g0).abs().max() / g0.abs().max()):.1e} |", flush=True)
    times = interleaved({name: (lambda fn=fn: fn(params, xr, xs)) for name, fn in fns.items()}, args.rounds, warmup=0)
    base = median(times["double_backward"])
    print()
    print("| form | median s | double_backward / form |")
    print("|---|---|---|")
    for name in fns:
        print(f"| {name} | {median(times[name]):.3f} | {base / median(times[name]):.2f}x |")


if __name__ == "__main__":
    main()
