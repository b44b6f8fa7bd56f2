"""A scaling model for class-sharded distillation under torch.distributed (issue 13).

    python -m bench.scaling_model [--t1 SECONDS ...]

Per unit of work ddtool's distributed distill exchanges (``ddtool/methods/sharding.py``):
  * DM iteration: one all-reduce of the image gradient, C x ipc x 3 x H x W fp32 values;
  * IDC inner step: the same all-reduce, plus ``net_steps`` all-reduces of the network's
    gradient (the data-parallel network updates).
A ring all-reduce moves 2 (N - 1) / N of the buffer through each link. The matching part of a
unit, T_match, splits over the classes and scales as 1 / N; the network updates split a real
batch of 64 images, which on a GPU is launch-bound, so T_net is taken not to shrink at all
(Amdahl's law; on a CPU it would). A unit then takes T_match / N + T_net + bytes x 2 (N - 1) / N /
bandwidth + latency x 2 (N - 1) per all-reduce, and the speed-up is (T_match + T_net) over that.
The bytes and parameter counts are computed from ddtool's own networks; the times and the link
bandwidths are inputs (assumptions, stated here), not measurements: no GPU has run ddtool yet.
"""

from __future__ import annotations

import argparse
import datetime

from ddtool.lookup import build_net
from ddtool.nets import NetSpec

LINKS = {  # effective all-reduce bandwidth per link, bytes/s, and per-hop latency, s (assumed)
    "NVLink (one node)": (150e9, 10e-6),
    "PCIe 4.0 (one node)": (20e9, 20e-6),
    "100 Gb/s InfiniBand (nodes)": (10e9, 30e-6),
}

# T_match and T_net on one GPU, seconds per unit: the IDC/Acc-DD papers' CIFAR-10 cost on an RTX 2080 (IDC
# 22.2 GPU-hours for 2,000 x 100 inner steps = 0.40 s per inner step, about half matching and
# half network updates as on this CPU, BENCHMARKS.md), with the matching half scaled by the
# classes; ImageNet-100 at 224 px is taken 49x the pixels of CIFAR (an assumption, untested)
CASES = [
    # name, classes, resolution, net, net_steps, (T_match, T_net) s of one IDC inner step on one GPU
    ("CIFAR-100 ipc 10, ConvNet-3", 100, 32, NetSpec("convnet", {"width": 128}), 32, (0.2 * 10, 0.2)),
    ("ImageNet-100 ipc 10, ResNetAP-10", 100, 224, NetSpec("resnetap10"), 32, (0.2 * 10 * 49, 0.2 * 49)),
]


def params(spec: NetSpec, classes: int, resolution: int) -> int:
    return sum(p.numel() for p in build_net(spec, 3, classes, resolution).parameters())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ipc", type=int, default=10)
    ap.add_argument("--t1", type=float, nargs="*", default=None,
                    help="override (T_match, T_net) of each case: 4 numbers, seconds")
    args = ap.parse_args()
    print(f"# bench.scaling_model  {datetime.date.today()}  (model, not a measurement)")
    print("| case | image gradient MB | network gradient MB x steps | T_match + T_net s (assumed) | link | "
          "speed-up 2 | 4 | 8 |")
    print("|---|---|---|---|---|---|---|---|")
    for k, (name, classes, res, spec, steps, (t_match, t_net)) in enumerate(CASES):
        if args.t1:
            t_match, t_net = args.t1[2 * k], args.t1[2 * k + 1]
        image = classes * args.ipc * 3 * res * res * 4
        net = params(spec, classes, res) * 4
        for link, (bw, lat) in LINKS.items():
            ups = []
            for n in (2, 4, 8):
                ring = 2 * (n - 1) / n
                comm = (image + steps * net) * ring / bw + (1 + steps) * 2 * (n - 1) * lat
                ups.append((t_match + t_net) / (t_match / n + t_net + comm))
            print(f"| {name} | {image / 1e6:.1f} | {net / 1e6:.2f} x {steps} | {t_match:.1f} + {t_net:.1f} | {link} | "
                  + " | ".join(f"{u:.1f}x" for u in ups) + " |")


if __name__ == "__main__":
    main()
