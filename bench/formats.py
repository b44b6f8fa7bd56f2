"""Memory format and precision of one ConvNet-3 step: NCHW vs channels_last, fp32 vs bf16 autocast.

    python -m bench.formats [--device cpu|cuda] [--rounds 5] [--batch 64] [--width 128]

Times a training step (forward + backward) and a no-grad forward at CIFAR shape, interleaved,
and prints each case's median and its speed relative to fp32 NCHW. This is the measurement
behind which flags ddtool offers per device (``distill.precision``; channels_last is not used).
"""

from __future__ import annotations

import argparse
import copy
import datetime

import torch
import torch.nn.functional as F

from bench.common import interleaved, machine, median
from ddtool.lookup import build_net
from ddtool.nets import NetSpec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--width", type=int, default=128)
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    net = build_net(NetSpec("convnet", {"width": args.width}), 3, 10, 32).to(device)
    nets = {"nchw": net, "channels_last": copy.deepcopy(net).to(memory_format=torch.channels_last)}
    x = torch.randn(args.batch, 3, 32, 32, device=device)
    xs = {"nchw": x, "channels_last": x.contiguous(memory_format=torch.channels_last)}
    y = torch.randint(0, 10, (args.batch,), device=device)

    def case(fmt: str, bf16: bool, train: bool):  # type: ignore[no-untyped-def]
        def go() -> None:
            with torch.set_grad_enabled(train), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out = nets[fmt](xs[fmt])
            if train:
                F.cross_entropy(out.float(), y).backward()
        return go

    cases = {f"{kind} {fmt} {'bf16' if bf16 else 'fp32'}": case(fmt, bf16, kind == "train step")
             for kind in ("train step", "forward") for fmt in ("nchw", "channels_last") for bf16 in (False, True)}
    times = interleaved(cases, args.rounds)
    print(f"# bench.formats  {datetime.date.today()}  {machine()}  device={device}  batch={args.batch}")
    print("| case | median ms | speed vs fp32 NCHW |")
    print("|---|---|---|")
    for name, ts in times.items():
        base = median(times[name.split()[0] + " " + name.split()[1] + " nchw fp32"] if name.startswith("train")
                      else times["forward nchw fp32"])
        print(f"| {name} | {1000 * median(ts):.1f} | {base / median(ts):.2f}x |")


if __name__ == "__main__":
    main()
