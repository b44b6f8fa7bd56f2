"""Helpers of bench/datm_reference.sh (issue 25): DATM's reference code (NUS-HPC-AI-Lab/DATM) beside ddtool's.

The reference is run as it is, extracted from its mirror into a git-ignored folder and patched only
where a one-process CPU run needs it; the patches are the table :data:`PATCHES` (each names what it
replaces and why; nothing of the reference's code is kept in the project). Two modules it imports
are not in ddtool's environment: kornia and yacs are installed beside it (``pip install --target``,
see the shell script), and wandb, which it only logs to, is replaced by :data:`WANDB_STUB`, a
do-nothing module written into the extraction. Subcommands:

    python -m bench.datm_reference extract DEST [--seeded]      # git archive + patches + stub; idempotent
    python -m bench.datm_reference config DEST OUT.yaml --ipc 10 --set Iteration=100 ...
    python -m bench.datm_reference import-experts BUFFER_DIR --store S --dataset D --name N
    python -m bench.datm_reference ref-set DIR IT OUT.pt        # the reference's saved set, for 'store import'
    python -m bench.datm_reference ddtool-set SET.npz OUTDIR    # a ddtool set as evaluation.py's three files
    python -m bench.datm_reference eval-log OUT.json LOG...     # evaluation.py's accuracies
    python -m bench.datm_reference check-zca DATA_DIR DATASET OUT.json   # the two whitenings, compared
    python -m bench.datm_reference table [RESULTS] [--base ipc10-k50-n5e4]   # the page's tables, per base
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

from bench.reference_code import Patch, extract_patched
from bench.side_by_side import cell, ddtool_eval, distill_seconds, mean, read_result, verdict

MIRROR = "/work/.mirror/NUS-HPC-AI-Lab+DATM/repo"
COMMIT = "97ae510"  # HEAD of the mirror on 2026-12-07
# the code and configs; figures/ and README.md are left in the mirror
TREES = ["buffer", "configs", "distill", "utils", "networks.py", "reparam_module.py"]

# the files the pipeline runs (the other utils_*.py are other experiments' copies, left as they are)
UTILS = "utils/utils_baseline.py|utils/utils_gsam.py"
USED = f"distill/DATM.py|distill/evaluation.py|buffer/buffer_FTD.py|{UTILS}"

# (files: globs joined by |, regex, replacement, matches expected, why). Applied in order to the extracted
# tree; a pattern that no longer matches as often fails the extraction, so the list stays exact.
def _loader_without_workers(m: "re.Match[str]") -> str:
    """num_workers=0"""  # the log's and the marker's name for it; the batch size found is kept
    return f"testloader = torch.utils.data.DataLoader(dst_test, {m.group(1)}, shuffle=False, num_workers=0)"


PATCHES: list[Patch] = [
    (USED, r'torch\.device\("cuda:0"\)', 'torch.device("cpu")', 5,
     "cpu: the evaluation, label initialisation and epoch loops pin cuda:0 whenever parall_eva is False"),
    ("buffer/buffer_FTD.py", r"\[p\.detach\(\)\.cpu\(\) for p in teacher_net\.parameters\(\)\]",
     "[p.detach().cpu().clone() for p in teacher_net.parameters()]", 2,
     "cpu: .cpu() copies a GPU tensor but returns a CPU tensor itself, so every timestamp of a CPU "
     "expert would alias the live parameters (all epochs equal: the matching loss divides by 0)"),
    ("distill/DATM.py", r"image_syn\.cuda\(\)", "image_syn.cpu()", 1,
     "cpu: the copy of the set it saves"),
    (UTILS, r"datasets\.CIFAR10\(data_path, train=True, download=True, transform=transform\)",
     'datasets.ImageFolder(os.path.join(data_path, "train"), transform=transform)', 2,
     "data: CIFAR-10 from the JPEG ImageFolder copy (train/) ddtool reads, not torchvision's pickles"),
    (UTILS, r"datasets\.CIFAR10\(data_path, train=False, download=True, transform=transform\)",
     'datasets.ImageFolder(os.path.join(data_path, "test"), transform=transform)', 2,
     "data: the test split likewise (test/)"),
    (UTILS, r"testloader = torch\.utils\.data\.DataLoader\(dst_test, (batch_size=\d+), shuffle=False, "
     r"num_workers=2\)", _loader_without_workers, 2,
     "one process per job: the test loader's 2 worker processes -> 0 (same batches)"),
    ("distill/DATM.py", r"if it in eval_it_pool and \(save_this_it or it % 1000 == 0\):",
     "if it == args.Iteration or (it in eval_it_pool and (save_this_it or it % 1000 == 0)):", 1,
     "budget: also save the set at the last iteration (it saves at evaluations that improve, or every 1000)"),
]

WANDB_STUB = '''"""Stand-in for wandb written by ddtool's bench/datm_reference.py: DATM only logs to it and
reads its config back (wandb.config._items) and the run's name (the save folder)."""
import os


class _Config:
    _items = {}


class _Run:
    name = os.environ.get("DATM_RUN_NAME", "run")


config = _Config()
run = _Run()


def init(config=None, **_kw):
    _Config._items = dict(vars(config)) if config is not None else {}
    return run


def log(*_a, **_kw):
    pass


def finish():
    pass


def Histogram(*_a, **_kw):
    return None


def Image(*_a, **_kw):
    return None
'''


# Not a CPU patch, so kept out of PATCHES and applied only to a second extraction ('extract --seeded',
# the script's SEEDED=1): DATM.py seeds random, numpy and torch with 0 in every run, so its repeats start
# from the same images and draw the same experts and start epochs (one draw, whatever the run's name says).
SEED_PATCH: Patch = ("distill/DATM.py", r"(?m)^    manual_seed\(\)$",
                     "    manual_seed(int(os.environ.get('DATM_SEED', '0')))", 1,
                     "repeats: the seed from DATM_SEED (default 0, the reference's), so that repeats are independent draws")


def extract(dest: Path, seeded: bool = False) -> list[str]:
    """Extract the reference at :data:`COMMIT` into ``dest``, apply :data:`PATCHES` (and
    :data:`SEED_PATCH` when ``seeded``) and write the wandb stand-in
    (:func:`bench.reference_code.extract_patched`); returns one line per patch and file."""
    log = extract_patched(dest, MIRROR, COMMIT, TREES, [*PATCHES, *([SEED_PATCH] if seeded else [])],
                          "bench/datm_reference.py",
                          files={"wandb.py": WANDB_STUB})  # beside networks.py: on every script's sys.path ("../")
    return [*log, "wandb.py: a do-nothing stand-in (environment: wandb is not installed; DATM.py only logs to it)"]


def config(ref: Path, out: Path, ipc: int, settings: dict[str, str]) -> None:
    """``configs/CIFAR-10/ConvIN/IPC{ipc}.yaml`` of the reference with ``settings`` replaced or added
    (keys of utils/cfg.py, which DATM.py merges the yaml into)."""
    import yaml

    cfg = yaml.safe_load((ref / f"configs/CIFAR-10/ConvIN/IPC{ipc}.yaml").read_text())
    cfg.update({k: yaml.safe_load(v) for k, v in settings.items()})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))


def import_experts(buffer_dir: Path, store_root: Path, dataset: str, name: str, recipe: str = "recipes/datm.toml",
                   data_root: str | None = None) -> dict:
    """The reference's expert buffers (``replay_buffer_*.pt``) as ddtool's ``trajectories/NAME`` of the
    recipe's network, through ddtool's own import ('ddtool store import DIR --kind trajectories':
    :func:`ddtool.runtime.exchange.expert_buffers.import_trajectories`, which checks every shape)."""
    from ddtool.errors import DDToolError
    from ddtool.lookup import load_dataset
    from ddtool.recipe import load_recipe
    from ddtool.runtime.distill.planning import net_spec_of
    from ddtool.runtime.exchange.expert_buffers import import_trajectories
    from ddtool.store import open_store

    data = load_dataset(dataset, data_root)
    spec = net_spec_of(load_recipe(recipe, [f"data.dataset={json.dumps(dataset)}"]))
    try:
        got = import_trajectories(open_store(store_root), buffer_dir, data, spec, name,
                                  source=f"NUS-HPC-AI-Lab/DATM buffer/buffer_FTD.py (GSAM, FTD's experts) @ {COMMIT}")
    except DDToolError as exc:
        raise SystemExit(str(exc)) from None
    return {"ref": f"{got.artifact.kind}/{name}", "digest": got.artifact.digest, "experts": len(got.trajectories),
            "epochs": got.trajectories.epochs}


def ref_set(d: Path, it: int, out: Path) -> dict:
    """The reference's set after ``it`` iterations in its folder ``d`` (images_IT.pt: ZCA-whitened
    images, labels_IT.pt: the learned logits ``label_syn``, lr_IT.pt: the learned step size) as one
    .pt 'ddtool store import --normalized' reads: the logits as ``soft_labels`` beside each image's
    class (the reference lays the set out class by class, ipc each), so that ``--labels hard``
    trains on the classes and not on the logits' argmax, and the learned step size as ``syn_lr`` (which
    'store import' keeps for ``eval.lr = "learned"``). Returns the learned lr too (for ``ddtool eval --lr``)."""
    import torch

    if not (d / f"images_{it}.pt").is_file():
        raise SystemExit(f"no images_{it}.pt in {d} (the distillation did not finish)")
    images = torch.load(d / f"images_{it}.pt", weights_only=True)
    logits = torch.load(d / f"labels_{it}.pt", weights_only=True)
    lr = float(torch.load(d / f"lr_{it}.pt", weights_only=True))
    classes = logits.shape[1]
    ipc = len(images) // classes
    torch.save({"images": images.float(), "labels": torch.arange(classes).repeat_interleave(ipc),
                "soft_labels": logits.float(), "syn_lr": torch.tensor(lr)}, out)
    agree = float((logits.argmax(1) == torch.arange(classes).repeat_interleave(ipc)).float().mean())
    return {"dir": str(d), "images": list(images.shape), "labels": list(logits.shape), "lr": lr,
            "argmax_is_class": agree}


def ddtool_set(npz: Path, out: Path) -> dict:
    """A ddtool set exported with 'store export --format npz' (images as stored: whitened; its
    learned logits as ``soft_labels``) as evaluation.py's three files images.pt, labels.pt, lr.pt."""
    import numpy as np
    import torch

    z = np.load(npz, allow_pickle=False)
    meta = json.loads(str(z["metadata"][0]))
    if "soft_labels" not in z.files:
        raise SystemExit(f"{npz} carries no learned labels (soft_labels)")
    lr = float(meta["ddtool.learned_lr"])
    out.mkdir(parents=True, exist_ok=True)
    torch.save(torch.from_numpy(z["images"]).float(), out / "images.pt")
    torch.save(torch.from_numpy(z["soft_labels"]).float(), out / "labels.pt")
    torch.save(torch.tensor(lr), out / "lr.pt")
    return {"images": list(z["images"].shape), "labels": list(z["soft_labels"].shape), "lr": lr,
            "label_kind": meta.get("ddtool.label_kind")}


def eval_log(out: Path, logs: list[Path]) -> dict:
    """evaluation.py's test accuracy of each network (one log per network), mean and std."""
    accs = []
    for log in logs:
        m = re.findall(r"Evaluate_\d+: epoch = (\d+) .* test acc = ([0-9.]+)", log.read_text())
        if not m:
            raise SystemExit(f"{log}: no 'Evaluate_' line (the evaluation did not finish)")
        accs.append(float(m[-1][1]))
    mean = sum(accs) / len(accs)
    std = (sum((a - mean) ** 2 for a in accs) / len(accs)) ** 0.5  # np.std, as DATM.py prints
    res = {"protocol": "datm (reference distill/evaluation.py: SGD 0.9, wd 5e-4, learned lr x0.1 at half, DSA, "
                       "soft cross-entropy to softmax of the labels; epochs + 1 epochs; accuracy at the last)",
           "per_network": accs, "mean": mean, "std": std}
    out.write_text(json.dumps(res, indent=1) + "\n")
    return res


def check_zca(data_dir: Path, dataset: str, out: Path, n: int = 1000) -> dict:
    """The reference's whitening (kornia's ZCAWhitening, eps 0.1, fitted on ToTensor pixels of the
    train split, as utils_baseline.get_dataset) and ddtool's (``DATASET`` with ``+zca``) applied to
    the same ``n`` test images: both sides must see the same inputs for shared experts to mean the
    same thing. Needs kornia on the path (the reference's site folder)."""
    import kornia
    import torch
    from torchvision import datasets, transforms

    from ddtool.lookup import load_dataset

    def pixels(split: str, limit: int | None = None) -> torch.Tensor:
        ds = datasets.ImageFolder(str(data_dir / split), transform=transforms.ToTensor())
        idx = range(len(ds)) if limit is None else torch.linspace(0, len(ds) - 1, limit).long().tolist()
        return torch.stack([ds[i][0] for i in idx])

    zca = kornia.enhance.ZCAWhitening(eps=0.1, compute_inv=True)
    zca.fit(pixels("train"))
    x = pixels("test", n)
    ref = zca(x)
    ours = load_dataset(dataset).normalize((x * 255).round().to(torch.uint8))  # ToTensor's pixels are k / 255
    diff = (ref - ours).abs()
    res = {"images": len(x), "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
           "ref_std": float(ref.std()), "relative_rms": float((ref - ours).pow(2).mean().sqrt() / ref.std())}
    out.write_text(json.dumps(res, indent=1) + "\n")
    return res


def _distill_seconds(results: Path) -> dict[str, float]:
    return distill_seconds(results, r"--cfg \S*/cfg/(?P<name>\S+)\.yaml")


def _ref_protocol(path: Path) -> list[float] | None:
    """evaluation.py's accuracy per network in percent (:func:`eval_log`'s file); None if absent."""
    got = read_result(path)
    return None if got is None else [100 * a for a in got["per_network"]]


def bases(results: Path) -> list[str]:
    """The ``ipcIPC-kITERS-EXPERTS`` parts of the runs' names in ``results`` (the smoke run's too)."""
    return sorted({m[1] for f in results.glob("ref-*-s*.*") if (m := re.match(r"ref-(ipc\d+-k\d+-.+?)-s\d+\.", f.name))})


def _seeds(results: Path, base: str) -> list[int]:
    return sorted({int(m[1]) for f in results.glob(f"ref-{base}-s*.*")
                   if (m := re.match(rf"ref-{re.escape(base)}-s(\d+)\.", f.name))})


KEYS = ("ref_datm", "ref_learned", "ref_hard", "ddt_datm", "ddt_learned", "ddt_hard")


def _results(results: Path, base: str) -> dict[int, dict[str, list[float] | None]]:
    """Seed -> each set's networks under each evaluation (percent), as the script's files name them."""
    out = {}
    for seed in _seeds(results, base):
        ref, ddt = f"ref-{base}-s{seed}", f"ddtool-{base}-s{seed}"
        out[seed] = {"ref_datm": _ref_protocol(results / f"{ref}.eval-datm-ref.json"),
                     "ref_learned": ddtool_eval(results / f"{ref}.eval-ddtool.json"),
                     "ref_hard": ddtool_eval(results / f"{ref}.eval-ddtool-hard.json"),
                     "ddt_datm": _ref_protocol(results / f"{ddt}.eval-datm-ref.json"),
                     "ddt_learned": ddtool_eval(results / f"{ddt}.eval-ddtool.json"),
                     "ddt_hard": ddtool_eval(results / f"{ddt}.eval-ddtool-hard.json")}
    return out


def side_by_side(results: Path, base: str) -> str:
    """The side by side as Markdown: one row per seed with both sides' sets under DATM's own
    evaluation (the reference's evaluation.py) and `ddtool eval` on the learned labels, the means over
    seeds, and ddtool minus the reference per evaluation against the issue's target."""
    secs = _distill_seconds(results)
    got = _results(results, base)
    rows = ["| seed | reference set: DATM's evaluation.py | reference set: `ddtool eval` | ddtool set: DATM's "
            "evaluation.py | ddtool set: `ddtool eval` | distillation s: reference / ddtool |",
            "|---|---|---|---|---|---|"]
    for seed, g in got.items():
        s = " / ".join(f"{secs[n]:.0f}" if n in secs else "–" for n in (f"ref-{base}-s{seed}", f"ddtool-{base}-s{seed}"))
        rows.append(f"| {seed} | {cell(g['ref_datm'])} | {cell(g['ref_learned'])} | {cell(g['ddt_datm'])} | "
                    f"{cell(g['ddt_learned'])} | {s} |")
    means = {k: [m for g in got.values() if (m := mean(g[k])) is not None] for k in KEYS}
    rows.append("| mean over seeds | " + " | ".join(
        f"{statistics.fmean(means[k]):.2f} ({len(means[k])})" if means[k] else "–"
        for k in ("ref_datm", "ref_learned", "ddt_datm", "ddt_learned")) + " | |")
    col = {k: [g[k] for g in got.values()] for k in KEYS}
    return "\n".join(["\n".join(rows), "",
                      verdict("DATM's protocol, both sets by the reference's evaluation.py",
                              list(zip(col["ref_datm"], col["ddt_datm"]))),
                      verdict("learned labels, both sets by `ddtool eval`", list(zip(col["ref_learned"], col["ddt_learned"]))),
                      verdict("hard labels (each image's class), both sets by `ddtool eval --labels hard`",
                              list(zip(col["ref_hard"], col["ddt_hard"])))])


def _report(path: Path) -> dict | None:
    """The row of a `ddtool report --json` of one set; None if absent or empty."""
    if (got := read_result(path)) is None:
        return None
    (row,) = got
    return row


def labels(results: Path, base: str) -> str:
    """How much of each set's accuracy is its labels: `ddtool eval` on the learned labels against the
    same images on their classes (paired by set), and, where `report` ran, DD-Ranking's IOR for both
    (hard: against random real subsets on their classes; learned: against the same subsets on a
    teacher's soft labels)."""
    got = _results(results, base)
    rows = ["| set | hard labels % | learned labels % | learned − hard | IOR hard | IOR learned |",
            "|---|---|---|---|---|---|"]
    gains: dict[str, list[float]] = {"ref": [], "ddt": []}
    for seed, g in got.items():
        for side, name, prefix in (("ref", "reference", "ref"), ("ddt", "ddtool", "ddtool")):
            hard, learned = mean(g[f"{side}_hard"]), mean(g[f"{side}_learned"])
            gain = "–"
            if hard is not None and learned is not None:
                gains[side].append(learned - hard)
                gain = f"{learned - hard:+.2f}"
            row = _report(results / f"{prefix}-{base}-s{seed}.report.json")
            ior = "–" if row is None else f"{100 * row['ior']:+.2f}"
            lior = "–" if row is None or row.get("learned_ior") is None else f"{100 * row['learned_ior']:+.2f}"
            rows.append(f"| {name}, seed {seed} | {cell(g[f'{side}_hard'])} | {cell(g[f'{side}_learned'])} | {gain} | "
                        f"{ior} | {lior} |")
    out = ["\n".join(rows), ""]
    for side, name in (("ref", "reference"), ("ddt", "ddtool")):
        if gains[side]:
            out.append(f"- {name}'s sets, learned labels − the same images on their classes: "
                       f"**{statistics.fmean(gains[side]):+.2f}** points ({len(gains[side])} set(s))")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.datm_reference")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("extract")
    e.add_argument("dest", type=Path)
    e.add_argument("--seeded", action="store_true", help="also SEED_PATCH: DATM.py's seed from DATM_SEED")
    c = sub.add_parser("config")
    c.add_argument("ref", type=Path)
    c.add_argument("out", type=Path)
    c.add_argument("--ipc", type=int, default=10)
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    i = sub.add_parser("import-experts")
    i.add_argument("buffer_dir", type=Path)
    i.add_argument("--store", type=Path, required=True)
    i.add_argument("--dataset", required=True)
    i.add_argument("--name", required=True)
    r = sub.add_parser("ref-set")
    r.add_argument("run_dir", type=Path)
    r.add_argument("it", type=int)
    r.add_argument("out", type=Path)
    d = sub.add_parser("ddtool-set")
    d.add_argument("npz", type=Path)
    d.add_argument("out", type=Path)
    g = sub.add_parser("eval-log")
    g.add_argument("out", type=Path)
    g.add_argument("logs", type=Path, nargs="+")
    z = sub.add_parser("check-zca")
    z.add_argument("data_dir", type=Path)
    z.add_argument("dataset")
    z.add_argument("out", type=Path)
    t = sub.add_parser("table", help="the side by side and the labels' share as Markdown, from the result files")
    t.add_argument("results", type=Path, nargs="?", default=Path("bench/results/datm_reference"))
    t.add_argument("--base", action="append", help="a runs' ipcIPC-kITERS-EXPERTS name part (default: every one)")
    a = p.parse_args(argv)
    if a.cmd == "extract":
        print("\n".join(extract(a.dest, a.seeded)))
    elif a.cmd == "config":
        config(a.ref, a.out, a.ipc, dict(s.split("=", 1) for s in a.set))
    elif a.cmd == "import-experts":
        print(json.dumps(import_experts(a.buffer_dir, a.store, a.dataset, a.name)))
    elif a.cmd == "ref-set":
        print(json.dumps(ref_set(a.run_dir, a.it, a.out)))
    elif a.cmd == "ddtool-set":
        print(json.dumps(ddtool_set(a.npz, a.out)))
    elif a.cmd == "check-zca":
        print(json.dumps(check_zca(a.data_dir, a.dataset, a.out)))
    elif a.cmd == "table":
        for base in a.base or bases(a.results):
            print(f"## {base}: side by side\n\n{side_by_side(a.results, base)}\n\n"
                  f"## {base}: the labels' share\n\n{labels(a.results, base)}\n")
    else:
        print(json.dumps(eval_log(a.out, a.logs)))


if __name__ == "__main__":
    sys.exit(main())
