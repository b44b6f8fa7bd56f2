"""``ddtool eval`` across architectures and on the full real data."""

from __future__ import annotations

import json
from pathlib import Path

from ddtool.store import Store


def test_cross_architecture_table_and_full_data(cli, store: Store, tiny_recipe: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("distill", "-r", tiny_recipe, "--method", "random", "--name", "rnd").exit_code == 0
    res = cli("eval", "synthetic/rnd", "-r", tiny_recipe, "--net", "convnet3,convnet3-bn", "--epochs", "2",
              "--repeats", "1", "--set", "eval.batch=64")
    assert res.exit_code == 0, res.stderr
    header = next(line for line in res.stdout.splitlines() if "convnet3-bn" in line)
    assert "set" in header and "convnet3 " in header
    row = next(line for line in res.stdout.splitlines() if "synthetic/rnd:v1" in line)
    assert row.count("±") == 2
    evals = [r for r in store.runs() if r["command"] == "eval"]
    assert sorted(r["net"]["name"] for r in evals) == ["convnet3", "convnet3-bn"]

    res = cli("eval", "--full-data", "--dataset", "digits", "--epochs", "1", "--repeats", "1", "-r", tiny_recipe,
              "--json")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    assert [(e["ref"], e["net"]) for e in out] == [("full:digits", "convnet")]
    record = store.run(out[0]["run"])
    assert record["inputs"] == [] and record["full_data"] is True
    assert record["metrics"]["full_data"] is True and record["metrics"]["train_images"] == 1437
    assert record["metrics"]["epochs"] == 1 and record["net"]["options"]["width"] == 16


def test_eval_needs_refs_or_full_data_and_known_nets(cli, tiny_recipe: Path) -> None:  # type: ignore[no-untyped-def]
    res = cli("eval")
    assert res.exit_code == 2 and "--full-data" in res.stderr
    res = cli("eval", "--full-data", "--dataset", "digits", "--net", "convnet3,resnet99")
    assert res.exit_code == 2 and "unknown architecture 'resnet99'" in res.stderr
