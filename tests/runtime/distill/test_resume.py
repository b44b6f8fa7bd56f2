"""``ddtool distill --resume``: an interrupted or crashed run continues bit-identically.

Where the interruption lands decides which checkpoint a resume starts from:

* Ctrl-C (KeyboardInterrupt) anywhere in an iteration: the runtime saves the state it copied at
  the start of that iteration (images, optimizer state, selection state, RNG) and the resume
  redoes the whole iteration, so a step cut off half-way (RNG drawn, images updated) does no harm;
* a crash (SIGKILL, which skips every handler; an exception from a plugin, which marks the record
  failed and keeps its traceback): the run record on disk lists the periodic checkpoints, each
  taken right after an iteration completed; the resume starts from the last one that still reads
  back intact.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from ddtool.errors import DDToolError, UsageError
from ddtool.methods.base import MatchingMethod
from ddtool.methods.dm import DM
from ddtool.recipe import load_recipe
from ddtool.runtime.distill import RunInterrupted, distill, resume
from ddtool.runtime.distill.checkpoint import restore as _restore, state as _state
from ddtool.selection.builtin import SelectionStrategy
from ddtool.store import Store
from ddtool.synthetic import SyntheticSet

CPU = torch.device("cpu")
SETTINGS = ["net.width=16", "distill.iterations=6", "distill.checkpoint_every=2", "distill.batch_real=16"]


@pytest.fixture
def recipe():  # type: ignore[no-untyped-def]
    return load_recipe(None, [*SETTINGS, 'name="t"'])


def _fail_in_step(monkeypatch: pytest.MonkeyPatch, at: int, exc: type[BaseException]) -> dict[str, bool]:
    """Make DM raise ``exc`` at iteration ``at``, after the step did its work (RNG drawn, images moved)."""
    armed = {"on": True}
    real = MatchingMethod.step

    def step(self, ctx, syn, opt, it):  # type: ignore[no-untyped-def]
        loss = real(self, ctx, syn, opt, it)
        if it == at and armed["on"]:
            raise exc("simulated")
        return loss

    monkeypatch.setattr(DM, "step", step)
    return armed


def _same(a, b) -> None:  # type: ignore[no-untyped-def]
    assert torch.equal(a.synthetic.images, b.synthetic.images)  # exact by construction: same kernels, inputs and order on one machine
    assert a.artifact.digest == b.artifact.digest  # same bytes, metadata included


def test_ctrl_c_between_steps_resumes_bit_identically(store: Store, digits, recipe, stop_at) -> None:  # type: ignore[no-untyped-def]
    full = distill(store, recipe, digits, CPU)
    with pytest.raises(RunInterrupted) as info:
        distill(store, recipe, digits, CPU, stop_at(3))  # after iteration index 2 completed
    run_id = info.value.run_id
    parent = store.run(run_id)
    assert parent["status"] == "interrupted" and info.value.iteration == 2
    assert [c["iteration"] for c in parent["checkpoints"]] == [2]  # the Ctrl-C state equals the periodic one
    ckpt, meta = store.read_blob(parent["checkpoints"][-1]["digest"])
    assert {"images", "labels", "rng", "momentum"} <= set(ckpt) and meta["ddtool.kind"] == "checkpoint"

    res = resume(store, run_id, digits, CPU)
    _same(res, full)
    assert res.artifact.ref == "synthetic/t:v2" and len(res.losses) == 4
    child = store.run(res.run_id)
    assert child["status"] == "complete" and child["resumed_from"] == {
        "run": run_id, "iteration": 2, "checkpoint": parent["checkpoints"][-1]["digest"]}
    assert [c["iteration"] for c in child["checkpoints"]] == [2, 4] and child["checkpoints"][0]["run"] == run_id
    assert store.run(run_id)["resumed_by"] == [res.run_id]
    with pytest.raises(UsageError, match=f"already resumed by run {res.run_id}"):
        resume(store, run_id, digits, CPU)
    with pytest.raises(UsageError, match="is complete"):
        resume(store, res.run_id, digits, CPU)


def test_ctrl_c_inside_a_step_redoes_that_iteration(store: Store, digits, recipe, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    full = distill(store, recipe, digits, CPU)
    armed = _fail_in_step(monkeypatch, 3, KeyboardInterrupt)
    with pytest.raises(RunInterrupted) as info:
        distill(store, recipe, digits, CPU)
    parent = store.run(info.value.run_id)
    assert [c["iteration"] for c in parent["checkpoints"]] == [2, 3] and info.value.iteration == 3
    armed["on"] = False
    res = resume(store, info.value.run_id, digits, CPU)
    _same(res, full)
    assert store.run(res.run_id)["resumed_from"]["iteration"] == 3


def test_ctrl_c_right_after_a_periodic_checkpoint_keeps_it_as_the_latest(store: Store, digits, recipe,  # type: ignore[no-untyped-def]
                                                                        monkeypatch) -> None:
    # the signal lands after iteration 3's periodic checkpoint (iteration 4) was written and before
    # iteration 4 took its snapshot: the run must not save iteration 3's older state after it
    import ddtool.runtime.distill.loop as loop

    full = distill(store, recipe, digits, CPU)
    real_save = loop.checkpoint.save
    fired = {"done": False}

    def save(store_, record, state, iteration, seconds):  # type: ignore[no-untyped-def]
        real_save(store_, record, state, iteration, seconds)
        if iteration == 4 and not fired["done"]:
            fired["done"] = True
            raise KeyboardInterrupt

    monkeypatch.setattr(loop.checkpoint, "save", save)
    with pytest.raises(RunInterrupted) as info:
        distill(store, recipe, digits, CPU)
    parent = store.run(info.value.run_id)
    assert [c["iteration"] for c in parent["checkpoints"]] == [2, 4] and info.value.iteration == 4
    monkeypatch.setattr(loop.checkpoint, "save", real_save)
    res = resume(store, info.value.run_id, digits, CPU)
    _same(res, full)


def test_crash_resumes_from_the_last_intact_periodic_checkpoint(store: Store, digits, recipe, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    full = distill(store, recipe, digits, CPU)
    armed = _fail_in_step(monkeypatch, 5, RuntimeError)
    with pytest.raises(RuntimeError, match="simulated"):  # a bug keeps its traceback ...
        distill(store, recipe, digits, CPU)
    crashed = [r for r in store.runs() if r["status"] != "complete"]
    assert len(crashed) == 1
    rec = crashed[0]  # ... but its record says it failed, and why, instead of "running" forever
    assert rec["status"] == "failed" and rec["error"] == "RuntimeError at iteration 5: simulated"
    assert isinstance(rec["wall_seconds"], float)
    assert [c["iteration"] for c in rec["checkpoints"]] == [2, 4]
    armed["on"] = False
    # the newest checkpoint got damaged on disk: the resume falls back to the one before
    path = store.blob_path(rec["checkpoints"][-1]["digest"])
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:-8])
    res = resume(store, rec["id"], digits, CPU)
    _same(res, full)
    resumed_from = store.run(res.run_id)["resumed_from"]
    assert resumed_from["iteration"] == 2
    assert resumed_from["unreadable_checkpoints"] == [rec["checkpoints"][-1]["digest"][:12]]


def test_cuda_out_of_memory_fails_the_run_with_one_line_and_it_can_resume(store: Store, digits, recipe,  # type: ignore[no-untyped-def]
                                                                         monkeypatch) -> None:
    full = distill(store, recipe, digits, CPU)
    armed = _fail_in_step(monkeypatch, 3, torch.cuda.OutOfMemoryError)
    with pytest.raises(DDToolError, match=r"^out of memory on CUDA at iteration 3; lower distill.batch_real"):
        distill(store, recipe, digits, CPU)
    rec = next(r for r in store.runs() if r["status"] != "complete")
    assert rec["status"] == "failed" and rec["error"] == "out of memory on CUDA at iteration 3"
    armed["on"] = False
    _same(resume(store, rec["id"], digits, CPU), full)


def test_resumed_runs_go_on_counting_seconds(store: Store, digits, recipe, stop_at) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RunInterrupted) as info:
        distill(store, recipe, digits, CPU, stop_at(3))
    parent = store.run(info.value.run_id)
    parent["checkpoints"][-1]["seconds"] = 1000.0  # as if the first part had taken a long time
    store.write_run(parent)
    res = resume(store, parent["id"], digits, CPU)
    child = store.run(res.run_id)
    seconds = [c["seconds"] for c in child["checkpoints"]]
    assert [c["iteration"] for c in child["checkpoints"]] == [2, 4]
    assert seconds[0] == 1000.0 and 1000.0 < seconds[1] < 1000.0 + 600, seconds
    assert seconds[1] <= child["wall_seconds"] == pytest.approx(res.seconds) and res.seconds > 1000.0


def test_ctrl_c_through_the_cli_names_the_run_and_the_resume_command(cli, store: Store, tiny_recipe: Path,  # type: ignore[no-untyped-def]
                                                                     monkeypatch) -> None:
    args = ["-q", "distill", "-r", str(tiny_recipe), *[a for s in SETTINGS for a in ("--set", s)], "--json"]
    full = json.loads(cli(*args).stdout)
    armed = _fail_in_step(monkeypatch, 3, KeyboardInterrupt)
    res = cli(*args)
    assert res.exit_code == 130
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr
    m = re.fullmatch(r"interrupted: run (\S+) can go on from its checkpoint at iteration 3: "
                     r"ddtool distill --resume (\S+)", lines[0])
    assert m and m.group(1) == m.group(2), lines[0]
    run_id = m.group(1)
    assert store.run(run_id)["status"] == "interrupted"

    armed["on"] = False
    out = cli("-q", "distill", "--resume", run_id, "--json")
    assert out.exit_code == 0, out.stderr
    resumed = json.loads(out.stdout)
    assert resumed["digest"] == full["digest"] and resumed["ref"] == "synthetic/tiny:v2"
    assert resumed["iterations"] == 3  # 3, 4, 5 were run again
    again = cli("distill", "--resume", run_id)
    assert again.exit_code == 2 and "already resumed by run" in again.stderr
    done = cli("distill", "--resume", resumed["run"])
    assert done.exit_code == 2 and "is complete" in done.stderr
    assert cli("store", "verify").exit_code == 0


def test_resume_refuses_runs_it_cannot_continue(store: Store, digits) -> None:  # type: ignore[no-untyped-def]
    import socket

    store.write_run({"id": "ev", "command": "eval", "status": "complete"})
    with pytest.raises(UsageError, match="is a eval run; only distill runs"):
        resume(store, "ev", digits, CPU)
    store.write_run({"id": "live", "command": "distill", "status": "running", "pid": 1,
                     "host": socket.gethostname(), "recipe": {}})
    with pytest.raises(UsageError, match="still appears to be running"):
        resume(store, "live", digits, CPU)
    store.write_run({"id": "old", "command": "distill", "status": "failed"})
    with pytest.raises(DDToolError, match="has no recipe"):
        resume(store, "old", digits, CPU)
    for bad in ("../x", "/etc/passwd", "..", "a/b", "x y"):
        with pytest.raises(UsageError, match="invalid run id"):
            resume(store, bad, digits, CPU)


class Counting(SelectionStrategy):
    """A stateful strategy: what dynadistill-like strategies look like to the checkpoint."""

    name = "counting"

    def __init__(self) -> None:
        self.count = torch.zeros(1)
        self.loaded: dict[str, torch.Tensor] | None = None

    def state(self) -> dict[str, torch.Tensor]:
        return {"count": self.count}

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        self.loaded = tensors


def test_checkpoint_state_round_trips_images_optimizer_selection_and_rng() -> None:
    syn = SyntheticSet(torch.randn(4, 1, 8, 8).requires_grad_(True), torch.arange(4), 1)
    opt = torch.optim.SGD([syn.images], lr=0.1, momentum=0.5)
    syn.images.grad = torch.ones_like(syn.images)
    opt.step()
    sel = Counting()
    sel.count += 7
    saved = _state(syn, opt, sel, CPU)
    assert {"images", "labels", "rng", "momentum", "selection.count"} <= set(saved)
    sel.count += 1  # a copy was taken, later changes do not leak into it
    assert saved["selection.count"].item() == 7
    expected = torch.rand(3)

    fresh = SyntheticSet(torch.zeros(4, 1, 8, 8).requires_grad_(True), torch.arange(4), 1)
    opt2 = torch.optim.SGD([fresh.images], lr=0.1, momentum=0.5)
    sel2 = Counting()
    torch.manual_seed(123)
    _restore(saved, fresh, opt2, sel2, CPU)
    assert torch.equal(fresh.images, syn.images)  # exact: restored from the checkpoint's bytes
    assert torch.equal(opt2.state[fresh.images]["momentum_buffer"], opt.state[syn.images]["momentum_buffer"])  # exact: restored from the checkpoint's bytes
    assert sel2.loaded is not None and sel2.loaded["count"].item() == 7
    assert torch.equal(torch.rand(3), expected)  # the RNG continues where the checkpoint left it

    with pytest.raises(DDToolError, match="this run makes"):
        _restore(saved, SyntheticSet(torch.zeros(2, 1, 8, 8), torch.arange(2), 1), opt2, sel2, CPU)


def test_base_strategy_load_state_accepts_nothing_else() -> None:
    SelectionStrategy().load_state({})
    with pytest.raises(DDToolError, match="cannot load it"):
        SelectionStrategy().load_state({"x": torch.zeros(1)})


def test_resume_finds_a_start_point_that_the_same_loop_consumes(store: Store, digits, recipe, stop_at) -> None:  # type: ignore[no-untyped-def]
    from ddtool.runtime.distill.checkpoint import StartPoint
    from ddtool.runtime.distill import resumption

    full = distill(store, recipe, digits, CPU)
    with pytest.raises(RunInterrupted) as info:
        distill(store, recipe, digits, CPU, stop_at(5))  # after iteration index 3: checkpoint at 4
    r = resumption(store, info.value.run_id)
    assert isinstance(r.start, StartPoint) and (r.start.iteration, r.start.parent) == (4, info.value.run_id)
    assert {"images", "momentum", "rng"} <= set(r.start.state) and r.name == "t"
    assert store.run(info.value.run_id).get("resumed_by") is None  # finding it wrote nothing
    res = distill(store, r.recipe, digits, CPU, name=r.name, pool_ref=r.pool_ref, start=r.start)
    _same(res, full)
    assert len(res.losses) == 2 and store.run(info.value.run_id)["resumed_by"] == [res.run_id]


def test_the_loop_does_not_import_resume() -> None:
    """The distill path is one way: resume produces a start point, the loop never calls back (no cycle)."""
    import ast

    import ddtool.runtime.distill.loop as loop

    tree = ast.parse(Path(loop.__file__).read_text(encoding="utf-8"))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "ddtool.runtime.distill.loop" not in imported and not any("resume" in (m or "") for m in imported)
    assert "ddtool.runtime.distill.checkpoint" in imported  # where the start point comes from
