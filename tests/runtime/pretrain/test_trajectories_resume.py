"""``ddtool pretrain --resume``: a killed ``pretrain --trajectories`` run goes on from the experts it
stored, and ends with the index an uninterrupted run makes."""

from __future__ import annotations

import pytest
import torch

from ddtool.recipe import load_recipe
from ddtool.store import Store

CPU = torch.device("cpu")
EXPERTS = ["net.width=8", "pretrain.n=3", "pretrain.epochs=2"]

pytestmark = pytest.mark.usefixtures("one_thread")


def test_an_interrupted_run_resumes_to_the_uninterrupted_experts(store: Store, digits, stop_at, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ddtool.runtime.pretrain.expert_trajectories import TrajectoriesInterrupted, pretrain_trajectories, resume_trajectories
    from ddtool.store.integrity import verify

    # the uninterrupted run, in a store of its own (the same recipe: the same recipe hash in the index)
    full = pretrain_trajectories(Store(tmp_path / "other"), load_recipe(None, [*EXPERTS, 'pretrain.name="x"']),
                                 digits, CPU)
    with pytest.raises(TrajectoriesInterrupted) as info:  # Ctrl-C in expert 1's first epoch
        pretrain_trajectories(store, load_recipe(None, [*EXPERTS, 'pretrain.name="x"']), digits, CPU, stop_at(3))
    assert (info.value.finished, info.value.total) == (1, 3)
    parent = store.run(info.value.run_id)
    assert parent["status"] == "interrupted" and [e["expert"] for e in parent["checkpoints"]] == [0]
    assert verify(store).ok
    counting = stop_at(10**9)  # never stops: counts the epochs trained
    res = resume_trajectories(store, info.value.run_id, digits, CPU, counting)
    assert counting.seen == 2 * 2  # experts 1 and 2 only
    assert res.artifact.ref == "trajectories/x:v1"
    assert res.trajectories.experts == full.trajectories.experts  # the same blobs, expert by expert
    assert res.artifact.digest == full.artifact.digest  # and the same index
    rec = store.run(res.run_id)
    assert rec["resumed_from"] == {"run": parent["id"], "experts": [0]}
    assert store.run(parent["id"])["resumed_by"] == [res.run_id]
    assert verify(store).ok
    # the index names the experts now: the interrupted run no longer holds them, so rm + gc frees them
    assert store.run(parent["id"])["checkpoints"] == []
    from ddtool.store.integrity import gc
    store.remove("trajectories/x")
    gc(store)
    assert not [d for d in store.iter_blob_digests() if d in res.trajectories.experts]


def test_resume_refusals_are_one_line_usage_errors(store: Store, cli) -> None:  # type: ignore[no-untyped-def]
    import json

    made = cli("pretrain", "--trajectories", "--n", "1", "--epochs", "1", "--set", "net.width=8", "--json")
    pool = cli("pretrain", "--n", "1", "--epochs", "1", "--set", "net.width=8", "--json")
    assert made.exit_code == 0 and pool.exit_code == 0
    cases = [
        (["pretrain", "--resume", json.loads(made.stdout)["run"]], "is complete"),
        (["pretrain", "--resume", json.loads(pool.stdout)["run"]], "only 'pretrain --trajectories' runs"),
        (["pretrain", "--resume", json.loads(made.stdout)["run"], "--n", "4"], "drop --n"),
        (["pretrain", "--resume", json.loads(made.stdout)["run"], "--seed", "0"], "drop --seed"),
        (["distill", "--resume", json.loads(made.stdout)["run"]], "'ddtool pretrain --resume"),
    ]
    for args, message in cases:
        res = cli(*args)
        lines = res.stderr.strip().splitlines()
        assert res.exit_code == 2 and len(lines) == 1 and message in lines[0], (args, res.stderr)


def test_a_resume_on_other_data_is_refused(store: Store, digits, stop_at) -> None:  # type: ignore[no-untyped-def]
    """The experts kept and the ones trained must come from the same data, or the index mixes two."""
    from ddtool.lookup import load_dataset
    from ddtool.errors import UsageError
    from ddtool.runtime.pretrain.expert_trajectories import TrajectoriesInterrupted, pretrain_trajectories, resume_trajectories

    with pytest.raises(TrajectoriesInterrupted) as info:
        pretrain_trajectories(store, load_recipe(None, [*EXPERTS, 'pretrain.name="x"']), digits, CPU, stop_at(3))
    other = load_dataset("digits+zca")  # whitened: another dataset signature
    with pytest.raises(UsageError, match=r"experts were trained on digits .*not on digits\+zca.*resume with the data the run used"):
        resume_trajectories(store, info.value.run_id, other, CPU)
