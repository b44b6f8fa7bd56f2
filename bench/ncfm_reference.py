"""Helpers of bench/ncfm_reference.sh (issue 24): NCFM's reference code (gszfwsb/NCFM) beside ddtool's.

The reference is run as it is, extracted from its mirror into a git-ignored folder and patched only
where a one-process CPU run needs it; the patches are the table :data:`PATCHES` (each names what it
replaces and why; nothing of the reference's code is kept in the project). Subcommands:

    python -m bench.ncfm_reference extract DEST            # git archive + the patches; idempotent
    python -m bench.ncfm_reference config DEST OUT.yaml --ipc 10 --set niter=200 ...
    python -m bench.ncfm_reference wrap REF.pt OUT.pt      # the reference's set for 'ddtool store import'
    python -m bench.ncfm_reference eval-log PRINT.log OUT.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from bench.reference_code import Patch, extract_patched

MIRROR = "/work/.mirror/gszfwsb+NCFM/repo"
COMMIT = "de92fb8"  # the commit ddtool/methods/ncfm.py cites
# the code and configs; asset/ and docs/ (the paper and the project page) are left in the mirror
TREES = ["NCFM", "argsprocessor", "condense", "condenser", "config", "data", "evaluation", "models",
         "pretrain", "utils", "requirements.txt"]

# (files, regex, replacement, matches expected, why). Applied in order to the extracted
# tree; a pattern that no longer matches fails the extraction, so the list stays exact.
PATCHES: list[Patch] = [
    ("**/*.py", r"\.cuda\((?:non_blocking=True)?\)", ".cpu()", 20,
     "cpu: tensors, models and losses stay on the CPU (.cuda() / .cuda(non_blocking=True))"),
    ("**/*.py", r"""(["'])cuda\1""", '"cpu"', 14,
     "cpu: the device string 'cuda' (device= defaults, .to('cuda'), Condenser(device='cuda'))"),
    ("utils/ddp.py", r"torch\.cuda\.set_device\(local_rank\)", "pass", 1,
     "cpu: no GPU to select"),
    ("utils/ddp.py", r'torch\.device\(f"cuda:\{local_rank\}"\)', 'torch.device("cpu")', 1,
     "cpu: the process's device"),
    ("**/*.py", r"device_ids=\[args\.rank\]", "device_ids=None", 3,
     "cpu: DistributedDataParallel takes no device_ids for a CPU module"),
    ("condenser/evaluate.py", r"output_device=args\.rank", "output_device=None", 1,
     "cpu: as device_ids"),
    ("utils/utils.py", r"from efficientnet_pytorch import EfficientNet",
     "try:\n    from efficientnet_pytorch import EfficientNet\nexcept ImportError:  # only net_type efficient\n"
     "    EfficientNet = None", 1,
     "environment: efficientnet_pytorch is not installed; only net_type 'efficient' uses it"),
    ("utils/utils.py", r"datasets\.CIFAR10\(\s*data_dir, download=True, train=True,",
     'datasets.ImageFolder(os.path.join(data_dir, "train"),', 1,
     "data: CIFAR-10 from the JPEG ImageFolder copy (train/) ddtool reads, not torchvision's pickles"),
    ("utils/utils.py", r"datasets\.CIFAR10\(\s*data_dir, train=False,",
     'datasets.ImageFolder(os.path.join(data_dir, "test"),', 1,
     "data: the test split likewise (test/)"),
    ("utils/init_script.py", r"np\.arange\(0, niter \+ 1, 1000\)\.tolist\(\)",
     "np.arange(0, niter + 1, 1000).tolist() + [niter]", 1,
     "budget: also save the set after the last iteration (it saves every 1000 only; the CPU budget is under 1000)"),
]

# the derived config's settings for a one-process CPU run (the rest is the shipped yaml's)
CPU_CONFIG = {"backend": "gloo", "workers": 0}


def extract(dest: Path) -> list[str]:
    """Extract the reference at :data:`COMMIT` into ``dest`` and apply :data:`PATCHES`
    (:func:`bench.reference_code.extract_patched`); returns one line per patch and file."""
    return extract_patched(dest, MIRROR, COMMIT, TREES, PATCHES, "bench/ncfm_reference.py")


def config(ref: Path, out: Path, ipc: int, settings: dict[str, str]) -> None:
    """``config/ipc{ipc}/cifar10.yaml`` of the reference with :data:`CPU_CONFIG` and ``settings``
    (flat keys, as the reference's ArgsProcessor flattens them) replaced."""
    import yaml

    cfg = yaml.safe_load((ref / f"config/ipc{ipc}/cifar10.yaml").read_text())
    todo = {**CPU_CONFIG, **{k: yaml.safe_load(v) for k, v in settings.items()}}
    for section in cfg.values():
        for key in list(section):
            if key in todo:
                section[key] = todo.pop(key)
    if todo:
        raise SystemExit(f"no such key in the reference's config: {', '.join(todo)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))


def wrap(src: Path, out: Path, factor: int) -> None:
    """The reference's saved set (a list [images in [0, 1] pixels, labels], stored multi-formation
    images) as a file 'ddtool store import' reads with the factor: a dict with ddtool metadata."""
    import torch

    images, labels = torch.load(src, map_location="cpu", weights_only=True)
    torch.save({"images": images.float(), "labels": labels.long(),
                "metadata": {"ddtool.factor": str(factor), "ddtool.method": "ncfm (reference code)"}}, out)


def eval_log(log: Path, out: Path) -> dict:
    """The per-repeat best accuracies of the reference's evaluation_script from its print.log."""
    text = log.read_text()
    m = re.search(r"All result: \[([^\]]*)\]", text)
    if not m:
        raise SystemExit(f"{log}: no 'All result' line (the evaluation did not finish)")
    accs = [float(x.strip(" '\"")) for x in m.group(1).split(",") if x.strip()]
    last = [float(x) for x in re.findall(r"The Last Evaluation Acc :([0-9.]+)", text)]
    mean = sum(accs) / len(accs)
    std = (sum((a - mean) ** 2 for a in accs) / len(accs)) ** 0.5  # np.std, as the reference prints
    res = {"protocol": "ncfm (reference evaluation_script.py)", "best_per_repeat": accs, "mean": mean,
           "std": std, "last_per_repeat": last,
           "note": "best test accuracy over the checks every epoch_eval_interval epochs and the last epoch"}
    out.write_text(json.dumps(res, indent=1) + "\n")
    return res


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.ncfm_reference")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("extract")
    e.add_argument("dest", type=Path)
    c = sub.add_parser("config")
    c.add_argument("ref", type=Path)
    c.add_argument("out", type=Path)
    c.add_argument("--ipc", type=int, default=10)
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    w = sub.add_parser("wrap")
    w.add_argument("src", type=Path)
    w.add_argument("out", type=Path)
    w.add_argument("--factor", type=int, default=2)
    g = sub.add_parser("eval-log")
    g.add_argument("log", type=Path)
    g.add_argument("out", type=Path)
    a = p.parse_args(argv)
    if a.cmd == "extract":
        print("\n".join(extract(a.dest)))
    elif a.cmd == "config":
        config(a.ref, a.out, a.ipc, dict(s.split("=", 1) for s in a.set))
    elif a.cmd == "wrap":
        wrap(a.src, a.out, a.factor)
    else:
        print(json.dumps(eval_log(a.log, a.out)))


if __name__ == "__main__":
    sys.exit(main())
