"""Helpers of bench/ncfm_reference.sh (issue 24): NCFM's reference code (gszfwsb/NCFM) beside ddtool's.

The reference is run as it is, extracted from its mirror into a git-ignored folder and patched only
where a one-process CPU run needs it; the patches are the table :data:`PATCHES` (each names what it
replaces and why; nothing of the reference's code is kept in the project). Subcommands:

    python -m bench.ncfm_reference extract DEST            # git archive + the patches; idempotent
    python -m bench.ncfm_reference config DEST OUT.yaml --ipc 10 --set niter=200 ...
    python -m bench.ncfm_reference wrap REF.pt OUT.pt      # the reference's set for 'ddtool store import'
    python -m bench.ncfm_reference eval-log PRINT.log OUT.json
    python -m bench.ncfm_reference table [RESULTS] [--base ipc10-k30-n2e3]   # the page's two tables
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

from bench.reference_code import Patch, extract_patched
from bench.side_by_side import cell as _cell
from bench.side_by_side import ddtool_eval as _ddtool_eval
from bench.side_by_side import distill_seconds
from bench.side_by_side import mean as _mean
from bench.side_by_side import read_result
from bench.side_by_side import verdict

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


# The arms of `bench/ncfm_reference.sh arms`, each one setting away from `plain` (the side by side's
# ddtool sets): what each is, in the table's order.
ARMS = {
    "plain": "NCFM (sampling_net false, as the reference's yaml)",
    "accdd": "NCFM + Acc-DD's perturbation (gaussian, α 1)",
    "accddsmall": "NCFM + Acc-DD's perturbation at a tenth of its size (gaussian, α 0.1)",
    "dd": "NCFM + DynaDistill (m = the pool's 2 models, T 0.5, prefer high)",
}


def _set_name(side: str, base: str, seed: int) -> str:
    return f"{side}-{base}-s{seed}"


def _ref_eval(path: Path) -> tuple[list[float], list[float]] | None:
    """(last, best) per repeat in percent of the reference's evaluation (:func:`eval_log`)."""
    if (r := read_result(path)) is None:
        return None
    return r["last_per_repeat"], r["best_per_repeat"]


def _distill_seconds(results: Path) -> dict[str, float]:
    return distill_seconds(results, r"--config_path=\.\./cfg/(?P<name>\S+)\.yaml")


def side_by_side(results: Path, base: str) -> str:
    """The side by side as Markdown: one row per seed with both sides' sets under each protocol,
    the means over seeds, and ddtool minus the reference per protocol against the issue's target
    (within 1.5 points, or 2 std of one set's evaluation networks, whichever is wider)."""
    # the seeds the reference ran: a ddtool-only seed (the arms' third plain set) is not in the comparison
    seeds = sorted({int(m[1]) for f in results.glob(f"ref-{base}-s*.*")
                    if (m := re.match(rf"ref-{re.escape(base)}-s(\d+)\.", f.name))})
    secs = _distill_seconds(results)
    cols = {"ref_ncfm": [], "ref_ncfm_dd": [], "ref_idc": [], "ddt_ncfm": [], "ddt_idc": []}
    rows = ["| seed | reference set: NCFM protocol, reference's evaluation, last (best) | reference set: NCFM "
            "protocol, `ddtool eval` | reference set: IDC protocol | ddtool set: NCFM protocol, `ddtool eval` | "
            "ddtool set: IDC protocol | distillation s: reference / ddtool |",
            "|---|---|---|---|---|---|---|"]
    for seed in seeds:
        ref, ddt = _set_name("ref", base, seed), _set_name("ddtool", base, seed)
        r = _ref_eval(results / f"{ref}.eval-ncfm-ref.json")
        got = {"ref_ncfm": r[0] if r else None,
               "ref_ncfm_dd": _ddtool_eval(results / f"{ref}.eval-ncfm-ddtool.json"),
               "ref_idc": _ddtool_eval(results / f"{ref}.eval-idc.json"),
               "ddt_ncfm": _ddtool_eval(results / f"{ddt}.eval-ncfm-ddtool.json"),
               "ddt_idc": _ddtool_eval(results / f"{ddt}.eval-idc.json")}
        for k, v in got.items():
            cols[k].append(v)
        best = f"; best {statistics.fmean(r[1]):.2f}" if r else ""
        s = " / ".join(f"{secs[n]:.0f}" if n in secs else "–" for n in (ref, ddt))
        rows.append(f"| {seed} | {_cell(got['ref_ncfm'])}{best} | {_cell(got['ref_ncfm_dd'])} | "
                    f"{_cell(got['ref_idc'])} | {_cell(got['ddt_ncfm'])} | {_cell(got['ddt_idc'])} | {s} |")
    means = {k: [m for v in vals if (m := _mean(v)) is not None] for k, vals in cols.items()}
    rows.append("| mean over seeds | " + " | ".join(
        f"{statistics.fmean(means[k]):.2f} ({len(means[k])})" if means[k] else "–"
        for k in ("ref_ncfm", "ref_ncfm_dd", "ref_idc", "ddt_ncfm", "ddt_idc")) + " | |")
    out = ["\n".join(rows), ""]
    for label, ref_k, ddt_k in (("NCFM protocol (reference's evaluation of its set, last epoch; `ddtool eval` of "
                                 "ddtool's)", "ref_ncfm", "ddt_ncfm"),
                                ("NCFM protocol, both sets by `ddtool eval`", "ref_ncfm_dd", "ddt_ncfm"),
                                ("IDC protocol, both sets by `ddtool eval`", "ref_idc", "ddt_idc")):
        out.append(verdict(label, list(zip(cols[ref_k], cols[ddt_k]))))
    return "\n".join(out)


def arms(results: Path, base: str) -> str:
    """NCFM against NCFM + Acc-DD and NCFM + DynaDistill (IDC protocol), paired by seed, as the
    seed-mechanics table (:mod:`bench.seed_mechanics_table`) prints its arms."""
    from bench.seed_mechanics_table import markdown, table

    secs = _distill_seconds(results)
    acc: dict[str, dict[int, float]] = {}
    time: dict[str, dict[int, float]] = {}
    pattern = re.compile(rf"^ddtool-(?:(?P<arm>[a-z]+)-)?{re.escape(base)}-s(?P<seed>\d+)$")
    for path in sorted(results.glob("ddtool-*.eval-idc.json")):
        m = pattern.match(path.name.removesuffix(".eval-idc.json"))
        if not m or (accs := _ddtool_eval(path)) is None:
            continue
        arm, seed = m["arm"] or "plain", int(m["seed"])
        acc.setdefault(arm, {})[seed] = statistics.fmean(accs)
        if (name := path.name.removesuffix(".eval-idc.json")) in secs:
            time.setdefault(arm, {})[seed] = secs[name]
    return markdown(table(acc, time, ARMS, "plain"), ARMS, "NCFM")


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
    t = sub.add_parser("table", help="the side by side and the arms as Markdown, from the result files")
    t.add_argument("results", type=Path, nargs="?", default=Path("bench/results/ncfm_reference"))
    t.add_argument("--base", default="ipc10-k30-n2e3", help="the runs' ipcIPC-kITERS-POOL part of their names")
    a = p.parse_args(argv)
    if a.cmd == "extract":
        print("\n".join(extract(a.dest)))
    elif a.cmd == "config":
        config(a.ref, a.out, a.ipc, dict(s.split("=", 1) for s in a.set))
    elif a.cmd == "wrap":
        wrap(a.src, a.out, a.factor)
    elif a.cmd == "table":
        print("## Side by side\n\n" + side_by_side(a.results, a.base) + "\n\n## The seed's ideas on NCFM (IDC protocol)\n\n"
              + arms(a.results, a.base))
    else:
        print(json.dumps(eval_log(a.log, a.out)))


if __name__ == "__main__":
    sys.exit(main())
