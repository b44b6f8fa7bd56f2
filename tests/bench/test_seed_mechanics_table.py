"""bench.seed_mechanics_table: per-arm figures over distillation seeds, paired to IDC by seed."""

import json
from pathlib import Path

import pytest

from bench.seed_mechanics_table import read_accuracies, read_distill_seconds, table


def _eval(log: Path, name: str, accs: list[float]) -> None:
    (log / f"{name}.eval.json").write_text(json.dumps([{"accuracies": accs, "ref": f"synthetic/{name}:v1"}]))


def test_arms_are_paired_to_idc_by_seed_and_judged_by_their_interval(tmp_path: Path) -> None:
    for seed, (i, o, d) in enumerate([(0.40, 0.45, 0.41), (0.42, 0.47, 0.40), (0.44, 0.49, 0.45)]):
        _eval(tmp_path, f"idc-s{seed}", [i - 0.01, i + 0.01])  # repeats average to i
        _eval(tmp_path, f"ours_gauss-s{seed}", [o, o])
        _eval(tmp_path, f"dd_raw-s{seed}", [d, d])
    (tmp_path / "dd_raw-s3.eval.json").write_text("")  # a cut-off evaluation is not a result
    (tmp_path / "times.txt").write_text(
        "2026-12-07T00:00:00Z abc 300s load=1.0: ddtool distill --recipe r --name ours_gauss-s0 --set x=1\n"
        "2026-12-07T00:00:00Z abc 3600s load=1.0: ddtool eval synthetic/ours_gauss-s0 --epochs 300\n")
    rows = {r.arm: r for r in table(read_accuracies(tmp_path), read_distill_seconds(tmp_path))}
    assert list(rows) == ["idc", "ours_gauss", "dd_raw"]  # the issue's order, not the files'
    assert rows["idc"].accuracy == pytest.approx([40, 42, 44])
    assert rows["ours_gauss"].diff == pytest.approx([5, 5, 5])
    assert rows["ours_gauss"].distill_s == [300.0]  # the eval line is not a distillation
    assert rows["dd_raw"].seeds == [0, 1, 2]
    # +5 every seed is outside the noise; +1, -2, +1 is not
    assert (rows["ours_gauss"].verdict, rows["dd_raw"].verdict) == ("outside the noise", "inside the noise")


def test_one_paired_seed_is_not_judged(tmp_path: Path) -> None:
    _eval(tmp_path, "idc-s0", [0.4])
    _eval(tmp_path, "ours_twodir-s0", [0.5])
    _eval(tmp_path, "ours_twodir-s1", [0.5])
    rows = {r.arm: r for r in table(read_accuracies(tmp_path), {})}
    assert rows["ours_twodir"].diff == pytest.approx([10.0])
    assert rows["ours_twodir"].verdict == "too few paired seeds"


def test_sets_of_earlier_sessions_are_read_from_their_transcription_and_a_log_wins(tmp_path: Path) -> None:
    from bench.seed_mechanics_table import EARLIER, merged, read_earlier

    (tmp_path / EARLIER).write_text("arm,seed,repeat_accuracies_pct,distill_s,source\n"
                                    "idc,0,48.00;48.34,3622,page\nidc,1,48.67;48.68,,page\n")
    _eval(tmp_path, "idc-s1", [0.50, 0.52])  # its own log: read from it, not from the transcription
    _eval(tmp_path, "idc_randpool-s0", [0.49, 0.49])
    early_acc, early_secs = read_earlier(tmp_path)
    acc = merged(early_acc, read_accuracies(tmp_path))
    assert acc["idc"] == pytest.approx({0: 48.17, 1: 51.0})
    assert early_secs == {"idc": {0: 3622.0}}  # an empty seconds cell is no figure
    rows = {r.arm: r for r in table(acc, early_secs)}
    assert rows["idc_randpool"].diff == pytest.approx([49 - 48.17])


def test_an_unevaluated_set_counts_only_the_accuracy_of_a_bit_identical_one(tmp_path: Path) -> None:
    import numpy as np

    from bench.seed_mechanics_table import same_sets

    (tmp_path / "sets").mkdir()
    img = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)
    np.savez(tmp_path / "sets" / "dd_raw-s1.npz", images=img)
    np.savez(tmp_path / "sets" / "dd_zscore-s1.npz", images=img.copy())  # the same images
    np.savez(tmp_path / "sets" / "dd_zscore-s2.npz", images=img + np.float32(1e-6))  # not the same
    np.savez(tmp_path / "sets" / "dd_raw-s2.npz", images=img)  # unevaluated, the same images as the evaluated dd_raw-s1
    acc = {"dd_raw": {1: 49.1}}
    notes = same_sets(tmp_path, acc)
    assert acc["dd_zscore"] == {1: 49.1}  # s2 differs by one ulp-sized step: not counted
    assert acc["dd_raw"] == {1: 49.1, 2: 49.1}
    assert len(notes) == 2 and all("bit-identical" in n for n in notes)
    assert same_sets(tmp_path / "nowhere", {}) == []
