"""The report's rows as text (ddtool.runtime.report.tables): pure functions of the rows, so they are
checked here on rows written by hand, without a store or any training."""

from __future__ import annotations

import csv
import io

from ddtool.runtime.report.rows import ReportRow
from ddtool.runtime.report.tables import CSV_FIELDS, cross_nets, human_bytes, to_csv, to_markdown


def _row(ref: str, **over: object) -> ReportRow:
    values: dict[str, object] = dict(
        ref=ref, digest="d" * 64, dataset="digits", method="dm", ipc=1, factor=1, recipe_sha256="a" * 64,
        net="convnet", protocol="dsa", epochs=2, accuracy_mean=0.5, accuracy_std=0.25, repeats=2,
        random_mean=0.25, random_std=0.125, random_subsets=3, full_mean=0.875, full_std=0.0, full_repeats=1,
        full_epochs=1, hlr=0.375, ior=0.25, lrs=40.0, w=0.5, ars=None, gamma=None, plain_mean=None,
        random_plain_mean=None, distill_run=None, distill_seconds=1.5, pretrain_seconds=None, device="cpu",
        flops=None, peak_memory_bytes=None, storage_bytes=3 * 1024)
    values.update(over)
    return ReportRow(**values)  # type: ignore[arg-type]


def test_csv_has_every_scalar_field_then_the_other_networks() -> None:
    rows = [_row("s:v1", cross_arch={"vgg11": {"mean": 0.375, "std": 0.0625}}), _row("t:v1")]
    assert cross_nets(rows) == ["vgg11"]
    read = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert list(read[0]) == [*CSV_FIELDS, "vgg11_mean", "vgg11_std"]
    assert "accuracies" not in CSV_FIELDS and "cross_arch" not in CSV_FIELDS  # lists are in the JSON only
    assert read[0]["vgg11_mean"] == "0.375" and read[1]["vgg11_mean"] == ""  # a row not evaluated there
    assert read[0]["ars"] == "" and float(read[0]["accuracy_mean"]) == 0.5  # None is an empty cell


def test_markdown_prints_percent_and_sizes_and_soft_columns_only_when_asked() -> None:
    md = to_markdown([_row("s:v1")]).splitlines()
    assert md[0].startswith("| set | method | ipc | recipe | accuracy % | random % |") and "soft" not in md[0]
    assert "| s:v1 | dm | 1 | aaaaaaaaaaaa | 50.00 ± 25.00 (2) | 25.00 ± 12.50 (3 subsets) | 87.50 |" in md[2]
    assert md[2].endswith("| 1.5 | 3.0 KiB |")
    soft = to_markdown([_row("s:v1", soft_mean=0.625, soft_std=0.0, soft_repeats=2, teacher="pool/p",
                             teacher_model=0, temperature=4.0, soft_label_bytes=1000)]).splitlines()
    assert "soft-label %" in soft[0] and "62.50 ± 0.00 (2; pool/p#0, T 4)" in soft[2]
    assert soft[2].endswith("| 1000 B |")
    assert [human_bytes(n) for n in (5, 2048, 3 * 1024**3, 5 * 1024**4)] == ["5 B", "2.0 KiB", "3.0 GiB", "5120.0 GiB"]
