"""Issue 23's table: the seed's mechanisms on CIFAR-10, several distillation seeds per arm.

    python -m bench.seed_mechanics_table [--log bench/results/seed_mechanics] [--csv out.csv]

Reads what ``bench/seed_mechanics_cifar10.sh`` left in its log folder (``ARM-sSEED.eval.json``, one
per distilled set, and ``times.txt``), plus ``earlier_sessions.csv`` there: the sets whose logs did not
outlive their session, transcribed from the dated page that published them (repeat accuracies to two
decimals; a set with its own log reads from the log), and prints one Markdown row per arm: the accuracy over
distillation seeds (each seed's accuracy is the mean of its evaluation repeats), the distillation
seconds, and the paired difference to IDC over the seeds both arms have. A difference is called
outside the noise only when its 95 % t-interval over the paired seeds excludes 0; with 2 or 3
seeds that interval is wide on purpose (t = 12.7 / 4.3).
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from scipy.stats import t as student_t

ARMS = {  # the arm names of bench/seed_mechanics_cifar10.sh, what each is, in the order
    "idc": "IDC (10 outer loops, fresh networks)",
    "ours_gauss": "Ours: pool + gaussian α=1 (2 outer loops)",
    "ours_twodir": "Ours: pool + two_direction (2 outer loops)",
    "ours_diverse": "Ours: diverse pool (lr, augmentation) + gaussian α=1",
    "dd_raw": "IDC + DynaDistill, raw scores (m 2)",
    "dd_zscore": "IDC + DynaDistill, z-scored scores (m 2)",
    "idc_randpool": "IDC + random selection on the same pool (control)",
}
BASELINE = "idc"
NAME = re.compile(r"^(?P<arm>[a-z_]+)-s(?P<seed>\d+)$")


@dataclass(frozen=True)
class Row:
    arm: str
    seeds: list[int]
    accuracy: list[float]  # percent, one per seed (mean of its repeats)
    distill_s: list[float]
    diff: list[float]  # percent points, arm minus the baseline arm, over the paired seeds
    baseline: bool = False

    @property
    def verdict(self) -> str:
        if self.baseline:
            return "baseline"
        if len(self.diff) < 2:
            return "too few paired seeds"
        return "outside the noise" if _excludes_zero(self.diff) else "inside the noise"


def _excludes_zero(values: list[float]) -> bool:
    """Whether the 95 % t-interval of the mean over the paired seeds leaves out 0."""
    m, n = statistics.fmean(values), len(values)
    half = student_t.ppf(0.975, n - 1) * statistics.stdev(values) / n ** 0.5
    return abs(m) > half


def read_accuracies(log: Path) -> dict[str, dict[int, float]]:
    """arm -> seed -> accuracy in percent (mean of the set's evaluation repeats); empty logs skipped."""
    out: dict[str, dict[int, float]] = {}
    for path in sorted(log.glob("*.eval.json")):
        m = NAME.match(path.name.removesuffix(".eval.json"))
        if not m or path.stat().st_size == 0:
            continue
        (result,) = json.loads(path.read_text())
        out.setdefault(m["arm"], {})[int(m["seed"])] = 100 * statistics.fmean(result["accuracies"])
    return out


EARLIER = "earlier_sessions.csv"


def read_earlier(log: Path) -> tuple[dict[str, dict[int, float]], dict[str, dict[int, float]]]:
    """(accuracies, distillation seconds) of ``earlier_sessions.csv``, as the two readers return them."""
    acc: dict[str, dict[int, float]] = {}
    secs: dict[str, dict[int, float]] = {}
    path = log / EARLIER
    for row in csv.DictReader(path.open()) if path.exists() else []:
        arm, seed = row["arm"], int(row["seed"])
        acc.setdefault(arm, {})[seed] = statistics.fmean(float(a) for a in row["repeat_accuracies_pct"].split(";"))
        if row.get("distill_s"):
            secs.setdefault(arm, {})[seed] = float(row["distill_s"])
    return acc, secs


def merged(earlier: dict[str, dict[int, float]], logged: dict[str, dict[int, float]]) -> dict[str, dict[int, float]]:
    """``logged`` over ``earlier``, set by set."""
    out = {arm: dict(by_seed) for arm, by_seed in earlier.items()}
    for arm, by_seed in logged.items():
        out.setdefault(arm, {}).update(by_seed)
    return out


def same_sets(log: Path, acc: dict[str, dict[int, float]]) -> list[str]:
    """Adds to ``acc`` every exported set (``sets/ARM-sSEED.npz``) left unevaluated whose images are
    bit-identical to an evaluated set's (an evaluation is a function of the images: two such sets were
    both evaluated once, with the same accuracies repeat by repeat), with that set's accuracy; returns
    one line per set so counted, for the table's footnote."""
    import numpy as np

    sets = log / "sets"
    files = {p.stem: p for p in sorted(sets.glob("*.npz"))} if sets.is_dir() else {}

    @functools.cache  # an evaluated set is compared with every unevaluated one: read each file once
    def images(name: str) -> "np.ndarray":
        with np.load(files[name], allow_pickle=False) as z:
            return z["images"]

    evaluated = [n for n in files if (m := NAME.match(n)) and int(m["seed"]) in acc.get(m["arm"], {})]
    notes = []
    for name in files:
        m = NAME.match(name)
        if not m or int(m["seed"]) in acc.get(m["arm"], {}):
            continue
        mine = images(name)
        for other in evaluated:
            theirs = images(other)
            if theirs.shape == mine.shape and np.array_equal(theirs, mine):
                o = NAME.match(other)
                acc.setdefault(m["arm"], {})[int(m["seed"])] = acc[o["arm"]][int(o["seed"])]  # type: ignore[index]
                notes.append(f"`{name}` not evaluated: its images are bit-identical to `{other}`'s, whose accuracy it counts")
                break
    return notes


def read_distill_seconds(log: Path) -> dict[str, dict[int, float]]:
    """arm -> seed -> distillation seconds, from times.txt (the last line of each set counts)."""
    out: dict[str, dict[int, float]] = {}
    line = re.compile(r" (?P<s>\d+)s load=[\d.]+: .* distill .*--name (?P<arm>[a-z_]+)-s(?P<seed>\d+)\b")
    times = log / "times.txt"
    for text in times.read_text().splitlines() if times.exists() else []:
        if m := line.search(text):
            out.setdefault(m["arm"], {})[int(m["seed"])] = float(m["s"])
    return out


def table(acc: dict[str, dict[int, float]], secs: dict[str, dict[int, float]],
          arms: dict[str, str] = ARMS, baseline: str = BASELINE) -> list[Row]:
    """One row per arm (``arms``' order, then any other), paired to ``baseline`` by seed."""
    base = acc.get(baseline, {})
    rows = []
    for arm in [a for a in arms if a in acc] + sorted(set(acc) - set(arms)):
        seeds = sorted(acc[arm])
        paired = [s for s in seeds if s in base]
        rows.append(Row(arm, seeds, [acc[arm][s] for s in seeds],
                        [secs.get(arm, {})[s] for s in seeds if s in secs.get(arm, {})],
                        [acc[arm][s] - base[s] for s in paired] if arm != baseline else [], arm == baseline))
    return rows


def _pm(values: list[float], digits: int = 2) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def markdown(rows: list[Row], arms: dict[str, str] = ARMS, baseline_name: str = "IDC") -> str:
    lines = ["| arm | what | seeds | accuracy % (mean ± std over seeds) | distill s | "
             f"Δ vs {baseline_name}, paired (pts) | |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r.arm}` | {arms.get(r.arm, '?')} | {','.join(map(str, r.seeds))} | {_pm(r.accuracy)} | "
                     f"{_pm(r.distill_s, 0)} | {_pm(r.diff) if r.diff else '–'} | {r.verdict} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log", type=Path, default=Path("bench/results/seed_mechanics"))
    ap.add_argument("--csv", type=Path, help="also write one line per distilled set")
    args = ap.parse_args(argv)
    early_acc, early_secs = read_earlier(args.log)
    acc, secs = merged(early_acc, read_accuracies(args.log)), merged(early_secs, read_distill_seconds(args.log))
    notes = same_sets(args.log, acc)
    print(markdown(table(acc, secs)))
    for line in notes:
        print(f"\n- {line}")
    if args.csv:
        with args.csv.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["arm", "seed", "accuracy_pct", "distill_s"])
            for arm, by_seed in acc.items():
                for seed, a in sorted(by_seed.items()):
                    w.writerow([arm, seed, f"{a:.2f}", secs.get(arm, {}).get(seed, "")])
    sys.stdout.flush()


if __name__ == "__main__":
    main()
