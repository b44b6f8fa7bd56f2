"""Evaluation throughput: the reference's training loop against ddtool's, eager and compiled.

    python -m bench.eval_speed --ref .data/ref/dc [--images 100] [--epochs 40] [--rounds 2]

The reference is VICO-UoE/DatasetCondensation's ``evaluate_synset`` (its ``utils.py``, the loop
DC, DSA and DM evaluate with: ConvNet-3, SGD 0.01 / 0.9 / 5e-4, batch 256, DiffAugment per
batch), imported from a checkout given by ``--ref`` and run as it is on the CPU (its
``evaluate_synset`` trains ``epochs + 1`` epochs, so seconds are compared per epoch). Its
``utils.py`` imports scipy for the non-DSA augmentation only; without scipy a stub module stands
in (the DSA path never calls it). ddtool: ``runtime.supervised.train`` under the ``dsa`` protocol
(one DSA operation per batch), eager and with the compiled forward that ``eval.compile``
chooses, and under the ``idc`` protocol (IDC's chain per image, CutMix). CIFAR-10-shaped random
images (speed does not depend on content); all variants interleaved round by round after a
warm-up that also pays the compile, whose seconds are printed apart.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
import types
from pathlib import Path
from typing import Callable

import torch

from bench.common import interleaved, machine, median
from ddtool.augment import Augmenter
from ddtool.compiled import compiler_usable, forward_fn
from ddtool.lookup import build_net
from ddtool.nets import NetSpec
from ddtool.runtime.evaluate.train_eval import PROTOCOLS
from ddtool.runtime.supervised import TrainSettings, train


def reference(ref: Path):  # type: ignore[no-untyped-def]
    """The reference's ``utils`` and ``networks`` modules, imported from the checkout."""
    try:
        import scipy.ndimage.interpolation  # noqa: F401
    except ImportError:  # only DC's non-DSA augment uses it
        stub = types.ModuleType("scipy.ndimage.interpolation")
        stub.rotate = None  # type: ignore[attr-defined]
        for name in ("scipy", "scipy.ndimage"):
            sys.modules.setdefault(name, types.ModuleType(name))
        sys.modules["scipy.ndimage.interpolation"] = stub
    sys.path.insert(0, str(ref.resolve()))
    import networks  # type: ignore[import-not-found]
    import utils  # type: ignore[import-not-found]

    return utils, networks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", type=Path, default=Path(".data/ref/dc"), help="DatasetCondensation checkout")
    ap.add_argument("--images", type=int, default=100, help="synthetic images (100 = CIFAR-10 ipc 10)")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    device = torch.device("cpu")
    utils, networks = reference(args.ref)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(args.images, 3, 32, 32, generator=g)
    labels = torch.arange(args.images) % 10
    strategy = "color_crop_cutout_flip_scale_rotate"
    ref_args = types.SimpleNamespace(device="cpu", lr_net=0.01, epoch_eval_train=args.epochs - 1, batch_train=256,
                                     dsa=True, dsa_strategy=strategy, dsa_param=utils.ParamDiffAug(),
                                     dc_aug_param=None)
    test = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images[:10], labels[:10]), batch_size=10)

    def ref_run() -> None:
        net = networks.ConvNet(channel=3, num_classes=10, net_width=128, net_depth=3, net_act="relu",
                               net_norm="instancenorm", net_pooling="avgpooling", im_size=(32, 32))
        utils.evaluate_synset(0, net, images, labels, test, ref_args)  # epoch_eval_train + 1 = --epochs epochs

    spec = NetSpec("convnet", {"width": 128})
    dsa = TrainSettings(epochs=args.epochs, batch=256, milestones=PROTOCOLS["dsa"].milestones,
                        gamma=PROTOCOLS["dsa"].gamma)
    idc = TrainSettings(epochs=args.epochs, batch=256, milestones=PROTOCOLS["idc"].milestones,
                        gamma=PROTOCOLS["idc"].gamma, cutmix=PROTOCOLS["idc"].cutmix)

    def ours(settings: TrainSettings, augment: Callable, compiled: bool) -> Callable[[], None]:
        forward = forward_fn(True) if compiled else None
        return lambda: train(build_net(spec, 3, 10, 32), images, labels, settings, augment, forward=forward)

    fns: dict[str, Callable[[], object]] = {
        "reference evaluate_synset (DSA)": ref_run,
        "ddtool train, dsa protocol, eager": ours(dsa, Augmenter(strategy), False),
        "ddtool train, idc protocol, eager": ours(idc, PROTOCOLS["idc"].augmenter("color_crop_flip_scale_rotate"), False),
    }
    compile_s = {}
    if compiler_usable(device)[0]:
        fns["ddtool train, dsa protocol, compiled"] = ours(dsa, Augmenter(strategy), True)
        fns["ddtool train, idc protocol, compiled"] = ours(idc, PROTOCOLS["idc"].augmenter("color_crop_flip_scale_rotate"),
                                                          True)
        for name in [n for n in fns if n.endswith("compiled")]:
            t = time.perf_counter()
            fns[name]()  # the first call compiles (forward and backward graphs, once per process)
            compile_s[name] = time.perf_counter() - t
    times = interleaved(fns, args.rounds)
    base = median(times["reference evaluate_synset (DSA)"])
    print(f"# bench.eval_speed  {datetime.date.today()}  {machine()}  {args.images} images x {args.epochs} epochs, "
          f"batch 256, median of {args.rounds} interleaved rounds")
    print("| loop | s per epoch | vs reference |")
    print("|---|---|---|")
    for name, ts in times.items():
        s = median(ts)
        print(f"| {name} | {s / args.epochs:.4f} | {base / s:.2f}x |")
    for name, s in compile_s.items():
        print(f"# first call of '{name}' (compiles): {s:.1f} s")


if __name__ == "__main__":
    main()
