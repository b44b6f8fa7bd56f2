"""bench.ncfm_reference's tables: which files make which cell, and the side by side's verdict."""

import json
from pathlib import Path

from bench.ncfm_reference import arms, side_by_side

BASE = "ipc10-k30-n2e3"


def _ddtool(path: Path, accs: list[float]) -> None:
    path.write_text(json.dumps([{"accuracies": accs, "mean": sum(accs) / len(accs)}]))


def _ref(path: Path, last: list[float], best: list[float]) -> None:
    path.write_text(json.dumps({"last_per_repeat": last, "best_per_repeat": best}))


def _times(path: Path, lines: list[tuple[str, int]]) -> None:
    """times.txt as bench/ncfm_reference.sh's t() writes it, one distillation per line."""
    out = []
    for name, s in lines:
        if name.startswith("ref-"):
            cmd = f"ref-distill ref_run condense condense_script.py --config_path=../cfg/{name[4:]}.yaml"
        else:
            cmd = f"ddtool-distill python -m ddtool distill --name {name} --json"
        out.append(f"2026-12-07T17:00:00Z abc {s}s load=2.0: {cmd}\n")
    path.write_text("".join(out))


def _seed(tmp: Path, seed: int, ref_last: list[float], ddt_ncfm: list[float], ref_idc: list[float],
          ddt_idc: list[float]) -> None:
    _ref(tmp / f"ref-{BASE}-s{seed}.eval-ncfm-ref.json", ref_last, [a + 1 for a in ref_last])
    _ddtool(tmp / f"ref-{BASE}-s{seed}.eval-idc.json", [a / 100 for a in ref_idc])
    _ddtool(tmp / f"ddtool-{BASE}-s{seed}.eval-ncfm-ddtool.json", [a / 100 for a in ddt_ncfm])
    _ddtool(tmp / f"ddtool-{BASE}-s{seed}.eval-idc.json", [a / 100 for a in ddt_idc])


def test_side_by_side_pairs_seeds_and_judges_each_protocol(tmp_path: Path) -> None:
    _seed(tmp_path, 1, [56.0, 56.0], [55.0, 55.5], [55.0, 55.0], [55.5, 55.5])
    _seed(tmp_path, 2, [57.0, 57.0], [56.0, 56.5], [54.0, 54.0], [50.0, 50.0])
    (tmp_path / f"ddtool-{BASE}-s2.eval-idc.json").write_text("")  # a stage still running: not a result
    _times(tmp_path / "times.txt", [(f"ref-{BASE}-s1", 1400), (f"ddtool-{BASE}-s1", 700)])
    text = side_by_side(tmp_path, BASE)
    seed1 = next(line for line in text.splitlines() if line.startswith("| 1 |"))
    assert "55.00 / 55.50 (**55.25**)" in seed1 and "best 57.00" in seed1 and "1400 / 700" in seed1
    assert "| 2 |" in text and "– / –" in text  # seed 2 has no distillation times
    ncfm, _, idc = [line for line in text.splitlines() if line.startswith("- ")]
    # NCFM: ddtool (55.25 + 56.25) / 2 against the reference's last epochs (56 + 57) / 2
    assert "**-0.75** points over 2 seed(s)" in ncfm and ncfm.endswith("within")
    # IDC: seed 2's ddtool result is empty, so only seed 1 pairs: +0.50
    assert "**+0.50** points over 1 seed(s)" in idc and idc.endswith("within")


def test_side_by_side_outside_the_target(tmp_path: Path) -> None:
    _seed(tmp_path, 1, [60.0, 60.0], [55.0, 55.0], [55.0, 55.0], [55.0, 55.0])
    ncfm = next(line for line in side_by_side(tmp_path, BASE).splitlines() if line.startswith("- NCFM protocol ("))
    assert "**-5.00**" in ncfm and ncfm.endswith("**outside**")


def test_arms_pair_each_arm_with_plain_by_seed(tmp_path: Path) -> None:
    for seed, plain, accdd in ((1, 55.0, 56.0), (2, 54.0, 56.0), (3, 56.0, None)):
        _ddtool(tmp_path / f"ddtool-{BASE}-s{seed}.eval-idc.json", [plain / 100])
        if accdd is not None:
            _ddtool(tmp_path / f"ddtool-accdd-{BASE}-s{seed}.eval-idc.json", [accdd / 100])
    _ddtool(tmp_path / f"ddtool-dd-{BASE}-s4.eval-idc.json", [0.5])  # no plain seed 4 to pair with
    _ddtool(tmp_path / "ddtool-accdd-ipc1-k30-n2e3-s1.eval-idc.json", [0.1])  # another budget: not counted
    _times(tmp_path / "times.txt", [(f"ddtool-accdd-{BASE}-s1", 800), (f"ddtool-accdd-{BASE}-s2", 900)])
    rows = {line.split("|")[1].strip(): line for line in arms(tmp_path, BASE).splitlines()[2:]}
    assert set(rows) == {"`plain`", "`accdd`", "`dd`"}
    assert "| 1,2,3 | 55.00 ± 1.00 |" in rows["`plain`"] and "baseline" in rows["`plain`"]
    assert "| 1,2 | 56.00 ± 0.00 | 850 ± 71 | 1.50 ± 0.71 |" in rows["`accdd`"]  # +1, +2 paired
    assert "| 4 | 50.00 |" in rows["`dd`"] and "too few paired seeds" in rows["`dd`"]


def test_side_by_side_widens_the_target_by_the_spread_within_a_set(tmp_path: Path) -> None:
    # the same -5 points, but the reference's two networks are 8 points apart: variances 32 and 0,
    # pooled std 4, so the target is 2 x 4 = 8 points
    _seed(tmp_path, 1, [56.0, 64.0], [55.0, 55.0], [55.0, 55.0], [55.0, 55.0])
    ncfm = next(line for line in side_by_side(tmp_path, BASE).splitlines() if line.startswith("- NCFM protocol ("))
    assert "**-5.00**" in ncfm and "target ±8.00" in ncfm and ncfm.endswith("within")


def test_side_by_side_leaves_out_seeds_the_reference_did_not_run(tmp_path: Path) -> None:
    _seed(tmp_path, 1, [56.0, 56.0], [55.0, 55.0], [55.0, 55.0], [55.0, 55.0])
    _ddtool(tmp_path / f"ddtool-{BASE}-s3.eval-idc.json", [0.40, 0.40])  # an arms run's extra plain seed
    text = side_by_side(tmp_path, BASE)
    assert "| 3 |" not in text and "| 55.00 (1) |" in text.splitlines()[3]
