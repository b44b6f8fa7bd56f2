"""``ddtool inspect RUN_ID``: a distill run's selection choices (issue 23 e), from its run record."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ddtool.errors import UsageError
from ddtool.inspect.selection import entropy_bits, selection_summary
from ddtool.store import Store

CPU = torch.device("cpu")


def record(run_id: str, log: list, **fields) -> dict:  # type: ignore[type-arg]
    return {"id": run_id, "command": "distill", "plan": {"selection": "dynadistill", "pool": "pool/p:v1"},
            "selection_log": log, **fields}


def test_entropy_and_counts_of_a_pool_run_and_its_resumed_part(store: Store) -> None:
    parent = record("20260101-000000-distill-aaaaaa", [
        {"it": 0, "candidates": [0, 1, 2], "scores": [1.0, 2.0, 3.0], "p": [0.1, 0.2, 0.7], "k": 2},
        {"it": 1, "candidates": [2, 3, 0], "scores": [1.0, 1.0, 1.0], "p": [1 / 3, 1 / 3, 1 / 3], "k": 0},
        {"it": 2, "candidates": [1, 2, 3], "scores": [5.0, 0.0, 0.0], "p": [1.0, 0.0, 0.0], "k": 0},  # redone
    ])
    child = record("20260101-000100-distill-bbbbbb", [
        {"it": 2, "candidates": [3, 1, 0], "scores": [0.0, 9.0, 0.0], "p": [0.0, 1.0, 0.0], "k": 1},
    ], resumed_from={"run": parent["id"], "iteration": 2})
    store.write_run(parent)
    store.write_run(child)
    info = selection_summary(store, store.run(child["id"]))
    assert (info["loops"], info["first"], info["last"], info["m"], info["kind"]) == (3, 0, 2, 3, "model")
    # chosen: model 2, model 2, model 1 (the parent's loop 2 was redone by the resumed run)
    rows = {r["index"]: r for r in info["chosen"]}
    assert {i: r["chosen"] for i, r in rows.items()} == {0: 0, 1: 1, 2: 2, 3: 0}
    assert {i: r["candidate"] for i, r in rows.items()} == {0: 3, 1: 2, 2: 2, 3: 2}
    assert rows[2]["share"] == pytest.approx(2 / 3)
    want = (entropy_bits([0.1, 0.2, 0.7]) + math.log2(3) + 0.0) / 3
    assert info["entropy_bits"] == pytest.approx(want) and info["max_entropy_bits"] == pytest.approx(math.log2(3))
    assert info["choice_entropy_bits"] == pytest.approx(entropy_bits([2 / 3, 1 / 3]))
    assert entropy_bits([0.5, 0.5]) == pytest.approx(1.0) and entropy_bits([1.0, 0.0]) == 0.0


def test_trajectory_runs_count_experts_and_runs_without_a_log_are_refused(store: Store) -> None:
    rec = record("20260101-000200-distill-cccccc", [
        {"it": 0, "candidates": [[0, 3], [0, 1], [1, 2]], "scores": [1.0, 2.0, 3.0], "p": [0.2, 0.3, 0.5], "k": 1},
        {"it": 1, "candidates": [[1, 0]], "scores": None, "p": [1.0], "k": 0},
    ])
    rec["plan"]["trajectories"] = "trajectories/t:v1"
    store.write_run(rec)
    info = selection_summary(store, store.run(rec["id"]))
    assert info["kind"] == "expert" and info["from"] == "trajectories/t:v1" and info["scored_loops"] == 1
    assert {r["index"]: (r["candidate"], r["chosen"]) for r in info["chosen"]} == {0: (1, 1), 1: (2, 1)}
    assert info["entropy_bits"] == pytest.approx(entropy_bits([0.2, 0.3, 0.5]))  # unscored loops left out
    plain = record("20260101-000300-distill-dddddd", [])
    plain["plan"]["selection"] = "random"
    store.write_run(plain)
    with pytest.raises(UsageError, match="recorded no selection choices \\(selection 'random' logs none"):
        selection_summary(store, store.run(plain["id"]))


@pytest.mark.usefixtures("one_thread")
def test_a_dynadistill_run_records_its_choices_and_inspect_shows_them(cli, store: Store, digits) -> None:  # type: ignore[no-untyped-def]
    from ddtool.recipe import load_recipe
    from ddtool.runtime.distill import distill
    from ddtool.runtime.pretrain.pool_training import pretrain

    pretrain(store, load_recipe(None, ["net.width=8", "pretrain.n=4", "pretrain.epochs=1", "pretrain.name=p"]),
             digits, CPU)
    res = distill(store, load_recipe(None, [
        "distill.method=idc", "net.width=8", "distill.ipc=1", "distill.iterations=4", "distill.pool=pool/p",
        "distill.selection=dynadistill", "distill.batch_real=8", "distill.options.inner_loops=1",
        "distill.options.net_steps=1", 'distill.options.dynadistill.normalize="zscore"']), digits, CPU)
    log = store.run(res.run_id)["selection_log"]
    assert [e["it"] for e in log] == [0, 1, 2, 3]
    # one compact entry per outer loop: 3 distinct pool models, scores, probabilities (each rounded to 4
    # decimals: their sum is 1 within 3 half-units of the 4th), the choice
    for e in log:
        assert len(set(e["candidates"])) == 3 and set(e["candidates"]) <= {0, 1, 2, 3}
        assert len(e["scores"]) == 3 and sum(e["p"]) == pytest.approx(1.0, abs=3 * 0.5e-4) and 0 <= e["k"] < 3
    shown = json.loads(cli("inspect", res.run_id, "--json").stdout)
    assert shown["loops"] == 4 and sum(r["chosen"] for r in shown["chosen"]) == 4
    assert shown["entropy_bits"] == pytest.approx(sum(entropy_bits(e["p"]) for e in log) / 4)
    text = cli("inspect", res.run_id)
    assert text.exit_code == 0, text.stderr
    assert "entropy of a choice" in text.stdout and "over pool/p" in text.stdout and "share of loops" in text.stdout
