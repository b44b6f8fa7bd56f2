"""The run-record lifecycle (ddtool.runtime.run_records.run_record): running, then complete, failed or
interrupted, with wall seconds and peak memory; every command that does work goes through it."""

from __future__ import annotations

import pytest
import torch

from ddtool.errors import DDToolError
from ddtool.runtime.run_records import run_record
from ddtool.store import Store


def test_a_record_is_written_running_then_complete_with_seconds_and_memory(store: Store) -> None:
    with run_record(store, "eval", torch.device("cpu"), settings={"epochs": 1}) as run:
        seen = store.run(run.id)
        assert seen["status"] == "running" and seen["device"] == "cpu" and seen["settings"] == {"epochs": 1}
        seconds = run.complete(metrics={"mean": 0.5})
    rec = store.run(run.id)
    assert rec["status"] == "complete" and rec["wall_seconds"] == seconds >= 0
    assert rec["metrics"] == {"mean": 0.5} and rec["peak_rss_bytes"] > 0


def test_without_a_device_no_device_and_no_memory_and_elapsed_goes_on(store: Store) -> None:
    with run_record(store, "import", elapsed=100.0) as run:
        pass  # a block that returns completes the record
    rec = store.run(run.id)
    assert rec["status"] == "complete" and "device" not in rec and "peak_rss_bytes" not in rec
    assert 100.0 <= rec["wall_seconds"] < 100.0 + 600


@pytest.mark.parametrize("raised, error", [
    (DDToolError("the data is gone"), "the data is gone"),
    (RuntimeError("boom"), "RuntimeError at point 3: boom"),
])
def test_errors_fail_the_record_and_propagate(store: Store, raised: Exception, error: str) -> None:
    with pytest.raises(type(raised), match=str(raised)):
        with run_record(store, "pretrain", "cpu") as run:
            run.where = "point 3"
            raise raised
    rec = store.run(run.id)
    assert rec["status"] == "failed" and rec["error"] == error and isinstance(rec["wall_seconds"], float)
    assert "peak_rss_bytes" not in rec


def test_cuda_out_of_memory_is_one_line_when_there_is_a_hint(store: Store) -> None:
    with pytest.raises(DDToolError, match=r"^out of memory on CUDA; lower eval.batch$"):
        with run_record(store, "eval", "cpu") as run:
            run.oom_hint = "lower eval.batch"
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
    assert store.run(run.id)["error"] == "out of memory on CUDA"
    with pytest.raises(torch.cuda.OutOfMemoryError):  # no hint: the exception as it was
        with run_record(store, "eval", "cpu") as other:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
    assert store.run(other.id)["status"] == "failed"


def test_ctrl_c_marks_the_record_interrupted_or_hands_over_to_the_run(store: Store) -> None:
    with pytest.raises(KeyboardInterrupt):
        with run_record(store, "pretrain", "cpu") as run:
            raise KeyboardInterrupt
    assert store.run(run.id)["status"] == "interrupted"

    class Saved(KeyboardInterrupt):
        pass

    with pytest.raises(Saved):
        with run_record(store, "distill", "cpu") as run:
            def save() -> BaseException:
                run.record["saved"] = True
                run.write()
                return Saved()

            run.on_interrupt = save
            raise KeyboardInterrupt
    rec = store.run(run.id)
    assert rec["status"] == "interrupted" and rec["saved"] is True


def test_a_failing_eval_leaves_a_failed_record(store: Store, digits, put_set,  # type: ignore[no-untyped-def]
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import ddtool.runtime.evaluate.train_eval as evaluate
    from ddtool.recipe import EvalSection

    put_set(store, digits, "s")

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("diverged")

    monkeypatch.setattr(evaluate, "evaluate_set", broken)
    with pytest.raises(RuntimeError, match="diverged"):
        evaluate.evaluate(store, "synthetic/s", digits, EvalSection(epochs=1, repeats=1), torch.device("cpu"))
    (rec,) = store.runs()
    assert rec["command"] == "eval" and rec["status"] == "failed" and rec["error"] == "RuntimeError: diverged"
    assert [i["ref"] for i in rec["inputs"]] == ["synthetic/s:v1"]
