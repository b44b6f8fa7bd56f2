"""SIGTERM (torchrun's agent, Slurm at a time limit, ``docker stop``) gets what Ctrl-C gets: a distill
run saves its checkpoint, its record says ``interrupted``, one line names ``ddtool distill --resume
RUN``, and the exit code is 143 (Ctrl-C: 130). Only while a CLI command runs: the handler before
and after it is left as it was."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ddtool.cli.signals import SIGTERM_EXIT, sigterm_as_interrupt
from ddtool.store import Store

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")

# 400 DM steps of a width-8 ConvNet on digits: a few seconds. The one periodic checkpoint lands at
# step 240, so the 160 steps left leave time to send the signal and the resume stays short.
ITERATIONS, FIRST_CHECKPOINT = 400, 240
SETTINGS = ["net.width=8", "distill.batch_real=16", f"distill.checkpoint_every={FIRST_CHECKPOINT}"]


def _records(root: Path) -> list[dict]:  # type: ignore[type-arg]
    out = []
    for path in (root / "runs").glob("*.json") if (root / "runs").is_dir() else []:
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # written by os.replace, so only a race with a rename; the next poll sees it
    return out


def _wait_for_checkpoint(root: Path, proc: subprocess.Popen, timeout: float = 300.0) -> dict:  # type: ignore[type-arg]
    """The distill record once its first periodic checkpoint is on disk (bounded; polls, no blind sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"distill ended (exit {proc.returncode}) before its first checkpoint: {err[-2000:]}")
        for rec in _records(root):
            if rec.get("command") == "distill" and rec.get("checkpoints"):
                return rec
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"no checkpoint within {timeout:.0f}s")


def test_sigterm_on_a_running_distill_checkpoints_records_interrupted_and_resumes(
    cli, store: Store, one_thread  # type: ignore[no-untyped-def]
) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DDTOOL_HOME": str(store.root), "COLUMNS": "400"}
    sets = [arg for s in SETTINGS for arg in ("--set", s)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ddtool", "-q", "distill", "--dataset", "digits", "--method", "dm", "--ipc", "1",
         "--iterations", str(ITERATIONS), *sets, "--device", "cpu"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        running = _wait_for_checkpoint(store.root, proc)
        assert running["status"] == "running"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    run_id = running["id"]

    assert proc.returncode == SIGTERM_EXIT == 143, stderr
    rec = store.run(run_id)
    assert rec["status"] == "interrupted"
    at = rec["checkpoints"][-1]["iteration"]
    assert FIRST_CHECKPOINT <= at < ITERATIONS  # the state of the step it was in, saved on the way out
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines == [f"interrupted (SIGTERM): run {run_id} can go on from its checkpoint at iteration {at}: "
                     f"ddtool distill --resume {run_id}"]
    assert "Traceback" not in stderr

    res = cli("--quiet", "distill", "--resume", run_id, "--device", "cpu", "--json")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["iterations"] == ITERATIONS - at and out["ref"] == "synthetic/recipe:v1"
    child = store.run(out["run"])
    assert child["status"] == "complete" and child["resumed_from"]["run"] == run_id
    assert child["resumed_from"]["iteration"] == at
    assert store.run(run_id)["resumed_by"] == [out["run"]]


def test_sigterm_outside_distill_marks_the_record_interrupted_with_exit_143(
    cli, store: Store, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    import ddtool.runtime.pretrain.pool_training as pretrain
    from ddtool.runtime.run_records import run_record

    def terminated(store, *args, **kwargs):  # type: ignore[no-untyped-def]
        with run_record(store, "pretrain"):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises at the next bytecode; never reached
            raise AssertionError("SIGTERM did not interrupt the command")

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(pretrain, "pretrain", terminated)
    res = cli("pretrain", "--dataset", "digits")
    assert res.exit_code == 143
    assert res.stderr.strip() == "interrupted (SIGTERM); nothing was written for the work in progress"
    [rec] = store.runs()
    assert rec["command"] == "pretrain" and rec["status"] == "interrupted"
    assert signal.getsignal(signal.SIGTERM) is before  # restored once the command is over


def test_ctrl_c_keeps_exit_130_and_its_message(cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import ddtool.runtime.pretrain.pool_training as pretrain

    def interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
        raise AssertionError("SIGINT did not interrupt the command")

    monkeypatch.setattr(pretrain, "pretrain", interrupted)
    # a shell starts background jobs (nohup, '&', some CI runners) with SIGINT ignored, and Python
    # then leaves it ignored: give the test the handler an interactive ddtool has
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        res = cli("pretrain", "--dataset", "digits")
    finally:
        signal.signal(signal.SIGINT, before)
    assert res.exit_code == 130
    assert res.stderr.strip() == "interrupted; nothing was written for the work in progress"


def test_only_the_first_sigterm_interrupts_and_the_old_handler_comes_back() -> None:
    seen: list[int] = []
    before = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        with pytest.raises(KeyboardInterrupt):
            with sigterm_as_interrupt() as term:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
        assert term.fired
        # while the interrupt is handled (a checkpoint being saved), another SIGTERM must not cut it short
        with sigterm_as_interrupt() as term:
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # let the handler run: it must return quietly
        assert term.fired and seen == []
        os.kill(os.getpid(), signal.SIGTERM)  # outside the block: the handler that was there before
        time.sleep(0.05)
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_sigterm_while_a_ddtool_error_is_handled_lets_that_error_finish() -> None:
    """torchrun's agent sends SIGTERM just after a peer died, while this rank's failed collective is
    on its error path (record, resume line): the error must not be replaced by a bare interruption.
    A SIGTERM during another exception's handling (a library's fallback) still interrupts."""
    from ddtool.errors import DDToolError

    with sigterm_as_interrupt() as term:
        with pytest.raises(DDToolError, match="peer gone"):
            try:
                raise DDToolError("peer gone")
            except DDToolError:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)  # the handler runs here, inside the except block
                raise
        assert term.deferred and not term.fired
        with pytest.raises(KeyboardInterrupt):  # once no error is in flight, SIGTERM interrupts again
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    assert term.fired
    with sigterm_as_interrupt() as term:
        with pytest.raises(KeyboardInterrupt):
            try:
                raise ValueError("a fallback")
            except ValueError:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
    assert term.fired and not term.deferred


def test_outside_the_main_thread_nothing_is_installed() -> None:
    before = signal.getsignal(signal.SIGTERM)
    result: dict[str, object] = {}

    def worker() -> None:
        with sigterm_as_interrupt() as term:
            result["handler"] = signal.getsignal(signal.SIGTERM)
            result["fired"] = term.fired

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert result == {"handler": before, "fired": False}
