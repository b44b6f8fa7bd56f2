"""MTT's learned step size: recorded in the set and its checkpoints, and trained at by
``eval.lr = "learned"`` (``ddtool eval --lr learned``), as the reference evaluates."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ddtool.errors import UsageError
from ddtool.recipe import EvalSection, load_recipe
from ddtool.store import Store
from ddtool.store.meta import SyntheticMeta

CPU = torch.device("cpu")
EXPERTS = ["net.width=8", "pretrain.n=2", "pretrain.epochs=3", 'pretrain.name="tiny"']
MTT = ["distill.method=mtt", "net.width=8", "distill.ipc=1", "distill.iterations=4", "distill.checkpoint_every=2",
       'distill.options.trajectories="trajectories/tiny"', "distill.options.syn_steps=4",
       "distill.options.expert_epochs=2", "distill.options.max_start_epoch=2", "distill.lr_img=100",
       "distill.options.lr_lr=1e-5", 'name="m"']
EVAL = EvalSection(epochs=3, repeats=2, batch=64, lr="learned")


@pytest.fixture
def mtt_run(store: Store, digits, one_thread):  # type: ignore[no-untyped-def]
    from ddtool.runtime.distill import distill
    from ddtool.runtime.pretrain.expert_trajectories import pretrain_trajectories

    pretrain_trajectories(store, load_recipe(None, EXPERTS), digits, CPU)
    return distill(store, load_recipe(None, MTT), digits, CPU)


def test_the_set_records_the_step_size_the_run_learned(store: Store, mtt_run) -> None:  # type: ignore[no-untyped-def]
    from ddtool.methods.mtt import LR_STATE

    meta = store.blob_metadata(mtt_run.artifact.digest)
    learned = SyntheticMeta.from_metadata(meta).learned_lr
    assert learned is not None and learned > 0 and learned != 0.01  # lr_lr moved it from lr_teacher
    # the last checkpoint holds the step size of its own iteration, from which the final one moved on
    rec = store.run(mtt_run.run_id)
    tensors, _ = store.read_blob(rec["checkpoints"][-1]["digest"])
    at_2 = float(tensors[f"optim.1.{LR_STATE}"])
    assert at_2 != learned
    assert float(meta["ddtool.learned_lr"]) == learned  # written as text that reads back exactly


def test_eval_learned_trains_at_the_recorded_step_size(store: Store, digits, mtt_run) -> None:  # type: ignore[no-untyped-def]
    from ddtool.runtime.evaluate.train_eval import evaluate

    learned = SyntheticMeta.from_metadata(store.blob_metadata(mtt_run.artifact.digest)).learned_lr
    by_name = evaluate(store, "synthetic/m", digits, EVAL, CPU)
    by_number = evaluate(store, "synthetic/m", digits, dataclasses.replace(EVAL, lr=learned), CPU)
    at_default = evaluate(store, "synthetic/m", digits, dataclasses.replace(EVAL, lr=0.5), CPU)
    assert by_name.accuracies == by_number.accuracies  # the same seeds, the same lr: the same networks
    assert by_name.accuracies != at_default.accuracies
    rec = store.run(by_name.run_id)
    assert rec["settings"]["lr"] == learned and rec["metrics"]["lr_from"] == "learned"
    assert "lr_from" not in store.run(by_number.run_id)["metrics"]


def test_a_curve_trains_each_checkpoint_at_its_own_learned_step_size(store: Store, digits, mtt_run) -> None:  # type: ignore[no-untyped-def]
    from ddtool.runtime.distill.checkpoint import learned_lr_in
    from ddtool.runtime.evaluate.accuracy_curves import evaluate_curve

    res = evaluate_curve(store, mtt_run.run_id, digits, EVAL, CPU, count_flops=False)
    rec = store.run(mtt_run.run_id)
    at_2 = learned_lr_in(store.read_blob(rec["checkpoints"][0]["digest"])[0])
    final = SyntheticMeta.from_metadata(store.blob_metadata(mtt_run.artifact.digest)).learned_lr
    assert [(p.iteration, p.lr) for p in res.points] == [(2, at_2), (4, final)]
    assert store.run(res.run_id)["curve"][0]["lr"] == at_2


def test_a_set_without_a_learned_step_size_is_refused_in_one_line(store: Store, digits, cli, one_thread) -> None:  # type: ignore[no-untyped-def]
    from ddtool.runtime.distill import distill
    from ddtool.runtime.evaluate.train_eval import evaluate

    distill(store, load_recipe(None, ["distill.method=dm", "distill.ipc=1", "distill.iterations=1", "net.width=8",
                                      'name="d"']), digits, CPU)
    with pytest.raises(UsageError, match="records no learned step size"):
        evaluate(store, "synthetic/d", digits, EVAL, CPU)
    res = cli("eval", "synthetic/d", "--lr", "learned", "--epochs", "1", "--repeats", "1")
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "--lr 0.01" in lines[0]
    assert not [r for r in store.runs() if r["command"] == "eval"]  # refused before any record


def test_a_step_size_learned_below_zero_is_refused(store: Store, digits, one_thread) -> None:  # type: ignore[no-untyped-def]
    """The step size is learned unconstrained (as the reference's): a large lr_lr can drive it below
    zero, where SGD cannot train; eval says so in one line instead of torch's ValueError."""
    from ddtool.runtime.distill import distill
    from ddtool.runtime.evaluate.train_eval import evaluate
    from ddtool.runtime.pretrain.expert_trajectories import pretrain_trajectories

    pretrain_trajectories(store, load_recipe(None, EXPERTS), digits, CPU)
    res = distill(store, load_recipe(None, [*MTT, "distill.options.lr_lr=1e-3", 'name="neg"']), digits, CPU)
    learned = SyntheticMeta.from_metadata(store.blob_metadata(res.artifact.digest)).learned_lr
    assert learned is not None and learned < 0  # the premise: this budget drives it negative
    with pytest.raises(UsageError, match="learned a step size of -.*cannot train a network"):
        evaluate(store, "synthetic/neg", digits, EVAL, CPU)


@pytest.mark.parametrize("value", ["learned", "0.05", "1"])
def test_eval_lr_takes_a_positive_number_or_learned(value: str) -> None:
    assert load_recipe(None, [f"eval.lr={value}"]).eval.lr == (value if value == "learned" else float(value))


@pytest.mark.parametrize("value", ["fast", "-1", "0"])
def test_a_bad_lr_is_a_one_line_usage_error(cli, value: str) -> None:  # type: ignore[no-untyped-def]
    res = cli("eval", "--full-data", "--dataset", "digits", "--lr", value, "--epochs", "1", "--repeats", "1")
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "learned" in lines[0]


def test_the_full_data_bound_of_an_mtt_recipe_trains_at_the_default_lr(store: Store, digits) -> None:  # type: ignore[no-untyped-def]
    """The real data learned no step size: with eval.lr = "learned" (the mtt recipes) the bound
    trains at 0.01, as report's does, instead of failing after the sets were evaluated."""
    from ddtool.nets import NetSpec
    from ddtool.runtime.evaluate.train_eval import evaluate_full_data

    cfg = dataclasses.replace(EVAL, epochs=1, repeats=1, batch=512)
    res = evaluate_full_data(store, digits, cfg, CPU, NetSpec("convnet", {"width": 8}))
    assert store.run(res.run_id)["settings"]["lr"] == 0.01
