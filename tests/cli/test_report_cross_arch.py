"""``ddtool report``'s cross-architecture columns: the networks a set was evaluated on with
``ddtool eval --net``, read back from the store under the report's settings, never trained by it."""

from __future__ import annotations

import json

import pytest

from ddtool.store import Store

REPORT_FAST = ["--epochs", "2", "--repeats", "2", "--full-epochs", "1", "--baseline-subsets", "1"]


def test_report_adds_the_networks_a_set_was_evaluated_on(cli, store: Store, digits, put_set, one_thread) -> None:  # type: ignore[no-untyped-def]
    import csv
    import io

    from ddtool.runtime.report.rows import ReportRow

    put_set(store, digits, ipc=1)
    res = cli("-q", "eval", "synthetic/s", "--net", "convnet3,vgg11", "--epochs", "2", "--repeats", "2", "--json")
    assert res.exit_code == 0, res.stderr
    by_net = {e["net"]: e for e in json.loads(res.stdout)}
    # other epochs are other settings: not a column
    assert cli("-q", "eval", "synthetic/s", "--net", "resnet18", "--epochs", "1", "--repeats", "1").exit_code == 0
    res = cli("-q", "report", "synthetic/s", *REPORT_FAST, "--json")
    assert res.exit_code == 0, res.stderr
    row = ReportRow.from_dict(json.loads(res.stdout)[0])
    assert set(row.cross_arch) == {"convnet3", "vgg11"}
    for net in ("convnet3", "vgg11"):
        assert row.cross_arch[net]["mean"] == pytest.approx(by_net[net]["mean"])
        assert row.cross_arch[net]["repeats"] == 2 and row.cross_arch[net]["runs"] == [by_net[net]["run"]]
    runs = len(store.runs())
    table = cli("report", "synthetic/s", *REPORT_FAST)
    assert len(store.runs()) == runs  # read back, never trained by the report
    part = table.stdout[table.stdout.index("across architectures"):]
    line = next(ln for ln in part.splitlines() if ln.startswith(" s:v1"))
    assert f"{100 * by_net['vgg11']['mean']:.1f} ± {100 * by_net['vgg11']['std']:.1f} (2)" in line
    lines = list(csv.DictReader(io.StringIO(cli("-q", "report", "synthetic/s", *REPORT_FAST, "--csv").stdout)))
    assert float(lines[0]["vgg11_mean"]) == pytest.approx(by_net["vgg11"]["mean"])
    md = cli("-q", "report", "synthetic/s", *REPORT_FAST, "--markdown").stdout
    assert "| convnet3 % | vgg11 % |" in md.splitlines()[0]
