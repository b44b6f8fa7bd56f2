"""How IDC's multi-formation init downsizes real images, measured: the initial set alone, evaluated.

    python -m bench.init_downsizing --dataset imagefolder:.data/cifar10 [--ipc 10] [--epochs 300]

For every class, ipc x factor^2 real images (the same ones for every variant) are downsized and
tiled into ipc stored images (factor 2), with no distillation at all, and the set is evaluated
under the IDC protocol (ConvNet-3 width 128, batch 64, one repeat per variant, seed 0). Variants:
``nearest`` (IDC's ``F.interpolate`` default, ddtool's init since issue 11) and ``bilinear``
(antialiased, ddtool's init before). Prints one Markdown row per variant.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from bench.common import machine
from ddtool.lookup import load_dataset
from ddtool.nets import NetSpec
from ddtool.recipe import EvalSection
from ddtool.runtime.evaluate.train_eval import evaluate_set
from ddtool.synthetic import SyntheticSet, encode_real


def bilinear(real: torch.Tensor, factor: int) -> torch.Tensor:
    """ddtool's init before issue 11: antialiased bilinear downsizing, then the same tiling."""
    n, c, h, w = real.shape
    small = F.interpolate(real, size=(h // factor, w // factor), mode="bilinear", align_corners=False, antialias=True)
    k = n // (factor * factor)
    return small.view(k, factor, factor, c, h // factor, w // factor).permute(0, 3, 1, 4, 2, 5).reshape(k, c, h, w)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="imagefolder:.data/cifar10")
    ap.add_argument("--ipc", type=int, default=10)
    ap.add_argument("--factor", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--variants", default="nearest,bilinear")
    args = ap.parse_args()
    data = load_dataset(args.dataset)
    f, ipc = args.factor, args.ipc
    gen = torch.Generator().manual_seed(1)
    picks = [torch.as_tensor(data.class_indices(c)) for c in range(data.num_classes)]
    picks = [idx[torch.randperm(len(idx), generator=gen)[:ipc * f * f]] for idx in picks]
    encoders = {"nearest": encode_real, "bilinear": bilinear}
    cfg = EvalSection(protocol="idc", epochs=args.epochs, batch=64, repeats=1, seed=0)
    spec = NetSpec("convnet", {"norm": "instance", "width": 128})
    print(f"# {machine()}; {args.dataset}, ipc {ipc}, factor {f}, {args.epochs} epochs, IDC protocol, 1 repeat")
    print("| downsizing | accuracy % | eval s |\n|---|---|---|")
    for name in args.variants.split(","):
        images = torch.cat([encoders[name](data.normalize(data.train_images[idx]), f) for idx in picks])
        labels = torch.arange(data.num_classes).repeat_interleave(ipc)
        t = time.perf_counter()
        acc = evaluate_set(SyntheticSet(images, labels, ipc, f), data, spec, cfg, torch.device("cpu"))
        print(f"| {name} | {100 * acc[0]:.2f} | {time.perf_counter() - t:.0f} |", flush=True)


if __name__ == "__main__":
    main()
