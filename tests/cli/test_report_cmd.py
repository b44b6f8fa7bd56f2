"""``ddtool report``: JSON that loads back into the rows, CSV with one row per set, the sets a
``--dataset`` or a run id names, and one-line refusals."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import torch

from ddtool.store import Store

FAST = ["--epochs", "2", "--repeats", "2", "--full-epochs", "1", "--baseline-subsets", "3"]


@pytest.fixture
def two_sets(cli, tiny_recipe: Path, one_thread) -> list[str]:  # type: ignore[no-untyped-def]
    """A DM set and a herding set (ipc 1, width 8), as the user made them; returns the distill run ids."""
    ids = []
    for method, name in (("dm", "dm1"), ("herding", "herd1")):
        res = cli("distill", "-r", tiny_recipe, "--method", method, "--name", name, "--iterations", "2",
                  "--set", "net.width=8", "--json")
        assert res.exit_code == 0, res.stderr
        ids.append(json.loads(res.stdout)["run"])
    return ids


def test_json_round_trips_to_the_rows_and_a_second_report_trains_nothing(cli, store: Store, two_sets) -> None:  # type: ignore[no-untyped-def]
    from ddtool.recipe import EvalSection
    from ddtool.runtime.report.rows import ReportRow, ReportSettings, build_report

    res = cli("-q", "report", "synthetic/dm1", two_sets[1], *FAST, "--json")  # a ref and a run id
    assert res.exit_code == 0, res.stderr
    loaded = [ReportRow.from_dict(d) for d in json.loads(res.stdout)]
    assert [r.ref for r in loaded] == ["synthetic/dm1:v1", "synthetic/herd1:v1"]
    assert loaded[1].distill_run == two_sets[1] and loaded[1].method == "herding"
    # both ipc-1 sets of one network share one baseline: three random subsets, made once
    randoms = [a.ref for a in store.list() if a.name.startswith("report-random-")]
    assert len(randoms) == 3 and loaded[0].baselines == loaded[1].baselines

    artifacts, runs = store.list(), len(store.runs())
    settings = ReportSettings(eval=EvalSection(epochs=2, repeats=2), full_epochs=1, baseline_subsets=3)
    rows = build_report(store, ["synthetic/dm1", two_sets[1]], settings, torch.device("cpu"))
    assert rows == loaded  # the same numbers (floats exactly) as the JSON printed
    assert store.list() == artifacts and len(store.runs()) == runs


def test_csv_has_one_row_per_set_and_markdown_and_table_name_them(cli, store: Store, two_sets) -> None:  # type: ignore[no-untyped-def]
    res = cli("-q", "report", "synthetic/dm1", "synthetic/herd1", *FAST, "--csv")
    assert res.exit_code == 0, res.stderr
    table = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [r["ref"] for r in table] == ["synthetic/dm1:v1", "synthetic/herd1:v1"]
    as_json = json.loads(cli("-q", "report", "synthetic/dm1", "synthetic/herd1", *FAST, "--json").stdout)
    for row, d in zip(table, as_json):
        assert float(row["lrs"]) == pytest.approx(d["lrs"]) and int(row["storage_bytes"]) == d["storage_bytes"]
        assert float(row["accuracy_mean"]) == pytest.approx(d["accuracy_mean"]) and row["ars"] == ""

    md = cli("-q", "report", "synthetic/dm1", *FAST, "--markdown").stdout.splitlines()
    assert md[0].startswith("| set |") and len(md) == 3 and md[2].startswith("| synthetic/dm1:v1 | dm | 1 |")
    res = cli("-q", "report", "synthetic/dm1", *FAST)
    assert res.exit_code == 0 and "dm1:v1" in res.stdout and "LRS" in res.stdout
    lrs = f"{as_json[0]['lrs']:.1f}"
    assert lrs in next(line for line in res.stdout.splitlines() if "dm1:v1" in line)


def test_dataset_names_the_users_sets_not_the_reports_baselines(cli, store: Store, two_sets) -> None:  # type: ignore[no-untyped-def]
    res = cli("-q", "report", "--dataset", "digits", *FAST, "--baseline-subsets", "1", "--json")
    assert res.exit_code == 0, res.stderr
    assert sorted(d["ref"] for d in json.loads(res.stdout)) == ["synthetic/dm1:v1", "synthetic/herd1:v1"]
    assert any(a.name.startswith("report-random-") for a in store.list())  # made, and still left out on a rerun
    again = cli("-q", "report", "--dataset", "digits", *FAST, "--baseline-subsets", "1", "--json")
    assert sorted(d["ref"] for d in json.loads(again.stdout)) == ["synthetic/dm1:v1", "synthetic/herd1:v1"]


@pytest.mark.parametrize("args, message", [
    ([], "report needs sets"),
    (["synthetic/dm1", "--json", "--csv"], "give one"),
    (["synthetic/dm1", "--w", "1.5"], "--w must be in [0, 1]"),
    (["synthetic/dm1", "--net", "resnet99"], "unknown architecture 'resnet99'"),
    (["synthetic/nope"], "unknown ref 'synthetic/nope'"),
])
def test_refusals_are_one_line_and_touch_nothing(cli, store: Store, tiny_recipe: Path, store_snapshot,  # type: ignore[no-untyped-def]
                                                 args: list[str], message: str) -> None:
    assert cli("distill", "-r", tiny_recipe, "--method", "random", "--name", "dm1").exit_code == 0
    before = store_snapshot(store.root)
    res = cli("report", *args)
    assert res.exit_code == 2 and message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert "Traceback" not in res.stderr and store_snapshot(store.root) == before
