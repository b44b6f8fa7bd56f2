"""IDC's inner step, the reference code's beside ddtool's, timed interleaved in one run (issue 27).

    python -m bench.idc_reference_step --setup              # extract + patch the reference (idempotent)
    python -m bench.idc_reference_step [--rounds 3] [--ipc 10]

The reference (snu-mllab/Efficient-Dataset-Condensation, ``condense.py``) is extracted from its
mirror (the ``fetch`` tool's ``github:snu-mllab/Efficient-Dataset-Condensation``) into the
git-ignored ``.data/ref/idc`` and patched only where a CPU run in this environment needs it
(:data:`PATCHES`); nothing of it is kept in the project. Its arguments are its own ``argument.py``
parsing the README's CIFAR command (:data:`REF_ARGV`), its objects are built by its own classes
and functions, and its inner step is :func:`reference_fns`: the class loop and the network update
of ``condense()``'s inner loop, the smallest extraction of code that is inline there (less its
timing stamps). ddtool's side is bench.step's IDC case (:func:`bench.step.idc_fns`): the eager
default (matching ``loop``, ``network``) and ``distill.compile = true`` (``compiled``,
``network_compiled``). All six parts run round by round after one warm-up round (compiles happen
there), on random CIFAR-10-shaped data (256 images per class).
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
from pathlib import Path
from typing import Callable

import torch

from bench.common import fake_data, interleaved, machine, median
from bench.reference_code import Patch, extract_patched

MIRROR = "/work/.mirror/snu-mllab+Efficient-Dataset-Condensation/repo"
COMMIT = "ceac95ab96d5127b5d24fb62f86c1390d213031f"  # HEAD of the mirror on 2026-12-07
# the modules condense.py imports, and argument.py; continual-learning/, speech/ and images/ stay in the mirror
TREES = ["condense.py", "argument.py", "data.py", "train.py", "test.py", "coreset.py", "misc", "models"]
DEFAULT_DEST = Path(".data/ref/idc")
# the README's command for CIFAR: python condense.py --reproduce -d [dataset] -f [factor] --ipc [image/class]
REF_ARGV = ["--reproduce", "-d", "cifar10", "-f", "2"]

# (files, regex, replacement, matches expected, why); a pattern that no longer matches as often
# stops the extraction (bench.reference_code)
PATCHES: list[Patch] = [
    ("*.py|misc/*.py|models/*.py", r"\.cuda\(\)", ".cpu()", 19,
     "cpu: tensors, models and losses stay on the CPU (train_epoch moves each batch with .cuda() "
     "when the loader's device is 'cpu')"),
    ("*.py|misc/*.py|models/*.py", r"""(["'])cuda\1""", "'cpu'", 12,
     "cpu: the device string 'cuda' (train.py's module-level normalisation tensors, device= defaults "
     "such as random_indices' in CutMix, .to('cuda'))"),
    ("misc/utils.py", r"\bnp\.int\(", "int(", 2,
     "environment: NumPy >= 1.24 has no np.int (rand_bbox, the CutMix box of the network update)"),
    ("train.py|test.py", r"from efficientnet_pytorch import EfficientNet",
     "try:\n    from efficientnet_pytorch import EfficientNet\nexcept ImportError:  # only net_type efficient\n"
     "    EfficientNet = None", 2,
     "environment: efficientnet_pytorch is not installed; only net_type 'efficient' uses it"),
]

PARTS = ("match", "network")
# (row label, matching variant, network variant): ddtool's variants are bench.step.idc_fns' names
SIDES = [("reference code (condense.py)", "ref_match", "ref_network"),
         ("ddtool, eager default (matching loop)", "loop", "network"),
         ("ddtool, distill.compile = true", "compiled", "network_compiled")]


def extract(dest: Path) -> list[str]:
    """Extract the reference at :data:`COMMIT` into ``dest`` and apply :data:`PATCHES`."""
    if not Path(MIRROR).exists():
        raise SystemExit(f"no mirror at {MIRROR}: fetch github:snu-mllab/Efficient-Dataset-Condensation first")
    return extract_patched(dest, MIRROR, COMMIT, TREES, PATCHES, "bench/idc_reference_step.py")


def reference_fns(ref: Path, classes: int, ipc: int, per_class: int = 256) -> dict[str, Callable[[], object]]:
    """The reference's inner step as two callables, ``ref_match`` (every class's matching and image
    update) and ``ref_network`` (the network update: net_epoch x train_epoch over n_data real
    images), on state built by the reference's own classes as ``condense()`` builds it."""
    sys.path.insert(0, str(ref.resolve()))
    argv = sys.argv
    sys.argv = ["condense.py", *REF_ARGV, "--ipc", str(ipc)]
    try:
        from argument import args  # the reference's own parsing and defaults (module-level)
    finally:
        sys.argv = argv
    import torch.nn as nn
    from condense import Synthesizer, diffaug, matchloss
    from data import ClassMemDataLoader, TensorDataset
    from train import define_model, train_epoch

    if args.nclass != classes:
        raise SystemExit(f"the reference's CIFAR-10 arguments have {args.nclass} classes, not {classes}")
    data = fake_data(classes, per_class, 3, 32)
    # what torchvision's CIFAR10 with ToTensor gives load_resized_data: floats in [0, 1]
    trainset = TensorDataset(data.train_images.float() / 255, data.train_labels)
    trainset.nclass = classes
    loader_real = ClassMemDataLoader(trainset, batch_size=args.batch_real, device="cpu")  # load_memory: True
    synset = Synthesizer(args, classes, 3, 32, 32, device="cpu")
    synset.init(loader_real, init_type=args.init)
    aug, aug_rand = diffaug(args, device="cpu")
    optim_img = torch.optim.SGD(synset.parameters(), lr=args.lr_img, momentum=args.mom_img)
    torch.manual_seed(0)
    model = define_model(args, classes).to("cpu")
    model.train()
    optim_net = torch.optim.SGD(model.parameters(), args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    criterion = nn.CrossEntropyLoss()

    def match() -> None:  # condense.py, condense(): "# Update synset", less the ts.stamp calls
        for c in range(classes):
            img, lab = loader_real.class_sample(c)
            img_syn, lab_syn = synset.sample(c, max_size=args.batch_syn_max)
            n = img.shape[0]
            img_aug = aug(torch.cat([img, img_syn]))
            loss = matchloss(args, img_aug[:n], img_aug[n:], lab, lab_syn, model)
            loss.item()  # the reference sums it into its log
            optim_img.zero_grad()
            loss.backward()
            optim_img.step()

    def network() -> None:  # condense.py, condense(): "# Net update"
        for _ in range(args.net_epoch):
            train_epoch(args, loader_real, model, criterion, optim_net, n_data=args.n_data, aug=aug_rand,
                        mixup=args.mixup_net)

    return {"ref_match": match, "ref_network": network}


def table(times: dict[str, list[float]]) -> str:
    """The Markdown table of :data:`SIDES` from each part's per-round seconds: each part's median, the
    step (the sum of the two medians), the reference's step over each side's step (above 1x: that
    side is faster than the reference), and the same ratio taken round by round (median, range):
    a round's parts ran one after the other, so its ratio sees one load."""
    med = {k: median(v) for k, v in times.items()}
    rounds = range(len(times["ref_match"]))
    ref_steps = [times["ref_match"][i] + times["ref_network"][i] for i in rounds]
    lines = ["| inner step | matching s | network update s | inner step s | reference / this "
             "| per round: median (range) |", "|---|---|---|---|---|---|"]
    for label, m, n in SIDES:
        step = med[m] + med[n]
        per = sorted(ref_steps[i] / (times[m][i] + times[n][i]) for i in rounds)
        lines.append(f"| {label} | {med[m]:.3f} | {med[n]:.3f} | {step:.3f} | **{(med['ref_match'] + med['ref_network']) / step:.2f}x** "
                     f"| {median(per):.2f}x ({per[0]:.2f}–{per[-1]:.2f}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.idc_reference_step", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setup", action="store_true", help="only extract and patch the reference; print the patch log")
    ap.add_argument("--ref", type=Path, default=DEFAULT_DEST, help=f"the extraction (default {DEFAULT_DEST})")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ipc", type=int, default=10)
    a = ap.parse_args(argv)
    log = extract(a.ref)
    if a.setup:
        print("\n".join(log))
        return
    from bench.step import idc_fns

    device = torch.device("cpu")  # the reference is patched for the CPU only
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"# bench.idc_reference_step  {datetime.datetime.now():%Y-%m-%d %H:%M}  commit {commit}  {machine()}  "
          f"reference {COMMIT[:7]}  ipc {a.ipc}  rounds {a.rounds}", flush=True)
    fns = {**reference_fns(a.ref, 10, a.ipc),
           **idc_fns(10, a.ipc, device, variants=["loop", "network", "compiled", "network_compiled"])}
    times = interleaved(fns, a.rounds)
    print(" ".join(f"{k}={','.join(f'{t:.3f}' for t in v)}" for k, v in times.items()), flush=True)
    print(table(times))


if __name__ == "__main__":
    sys.exit(main())
