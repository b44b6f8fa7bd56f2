"""bench.datm_reference's tables: which result file makes which cell, the verdict per evaluation,
and the labels' share (learned minus hard, paired by set; the report's IORs in points)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/ lives beside ddtool/, not in it
from bench.datm_reference import bases, labels, side_by_side  # noqa: E402

BASE = "ipc1-k50-n2e4"


def _ddtool(path: Path, accs: list[float]) -> None:
    path.write_text(json.dumps([{"accuracies": [a / 100 for a in accs], "mean": sum(accs) / len(accs) / 100}]))


def _ref(path: Path, accs: list[float]) -> None:  # eval_log's file: fractions per network
    path.write_text(json.dumps({"per_network": [a / 100 for a in accs]}))


def _seed(tmp: Path, seed: int, ref: dict[str, list[float]], ddt: dict[str, list[float]]) -> None:
    for side, got in (("ref", ref), ("ddtool", ddt)):
        name = f"{side}-{BASE}-s{seed}"
        _ref(tmp / f"{name}.eval-datm-ref.json", got["datm"])
        _ddtool(tmp / f"{name}.eval-ddtool.json", got["learned"])
        _ddtool(tmp / f"{name}.eval-ddtool-hard.json", got["hard"])


def _times(path: Path, seed: int, ref_s: int, ddt_s: int) -> None:
    """times.txt as bench/datm_reference.sh's t() writes the two distillations."""
    path.write_text(
        f"2026-12-08T01:00:00Z abc {ref_s}s load=2.0: ref-distill ref_py distill DATM.py --cfg "
        f"/x/.data/ref/DATM/cfg/{BASE}-s{seed}.yaml\n"
        f"2026-12-08T01:00:00Z abc {ddt_s}s load=2.0: ddtool-distill python -m ddtool distill --recipe r "
        f"--name ddtool-{BASE}-s{seed} --set distill.seed={seed} --json\n")


def test_side_by_side_cells_seconds_and_verdicts(tmp_path: Path) -> None:
    _seed(tmp_path, 1, {"datm": [30.0, 31.0], "learned": [29.0, 29.0], "hard": [25.0, 25.0]},
          {"datm": [31.0, 32.0], "learned": [28.0, 28.0], "hard": [20.0, 20.0]})
    _seed(tmp_path, 2, {"datm": [30.0, 30.0], "learned": [29.0, 29.0], "hard": [25.0, 25.0]},
          {"datm": [30.0, 31.0], "learned": [28.0, 28.0], "hard": [21.0, 21.0]})
    (tmp_path / f"ddtool-{BASE}-s2.eval-ddtool.json").write_text("")  # a stage still running: not a result
    _times(tmp_path / "times.txt", 1, 600, 300)
    assert bases(tmp_path) == [BASE]
    text = side_by_side(tmp_path, BASE)
    seed1 = next(line for line in text.splitlines() if line.startswith("| 1 |"))
    assert "30.00 / 31.00 (**30.50**)" in seed1 and "31.00 / 32.00 (**31.50**)" in seed1 and "600 / 300" in seed1
    assert next(line for line in text.splitlines() if line.startswith("| 2 |")).endswith("| – / – |")
    datm, learned, hard = [line for line in text.splitlines() if line.startswith("- ")]
    # DATM's protocol: ddtool (31.5 + 30.5) / 2 against (30.5 + 30) / 2 = +0.75
    assert "**+0.75** points over 2 seed(s)" in datm and datm.endswith("within")
    # learned: seed 2's ddtool file is empty, so only seed 1 pairs: 28 - 29
    assert "**-1.00** points over 1 seed(s)" in learned and learned.endswith("within")
    # hard: (20 + 21) / 2 - 25 = -4.5, far past 1.5 and the networks' spread (0)
    assert "**-4.50**" in hard and hard.endswith("**outside**")


def test_labels_share_pairs_hard_and_learned_per_set_and_reads_the_report(tmp_path: Path) -> None:
    _seed(tmp_path, 1, {"datm": [30.0], "learned": [29.0, 31.0], "hard": [25.0, 25.0]},
          {"datm": [31.0], "learned": [28.0, 28.0], "hard": [20.0, 22.0]})
    (tmp_path / f"ddtool-{BASE}-s1.report.json").write_text(json.dumps([{"ior": 0.031, "learned_ior": 0.1234}]))
    text = labels(tmp_path, BASE)
    ref = next(line for line in text.splitlines() if line.startswith("| reference, seed 1 |"))
    ddt = next(line for line in text.splitlines() if line.startswith("| ddtool, seed 1 |"))
    assert "| +5.00 | – | – |" in ref  # 30 - 25; no report for the reference's set
    assert "| +7.00 | +3.10 | +12.34 |" in ddt  # 28 - 21; the report's fractions in points
    assert "**+5.00** points (1 set(s))" in text and "**+7.00** points (1 set(s))" in text
