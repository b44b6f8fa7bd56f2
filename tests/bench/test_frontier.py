"""bench.frontier: the budget's iterations, the resumable steps, the CSV's seconds and the figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import argparse

import pytest

from bench.frontier import Settings, State, budget_arg, draw, iterations_for, rows, run_method


def test_the_iterations_fill_the_budget_at_the_estimated_rate() -> None:
    assert iterations_for(100.0, 30.0) == 3
    assert iterations_for(10.0, 30.0) == 1  # one iteration at least, even over the budget
    assert iterations_for(100.0, 0.0) == 1  # no estimate: one


class FakeDdtool:
    """Records each ddtool call and answers as the CLI's --json does."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, *args: str) -> Any:
        self.calls.append(args)
        if args[0] == "pretrain":
            return {"run": "p1", "seconds": 12.5, "ref": "pool/ours10:v1"}
        if args[0] == "distill" and "--dry-run" in args:
            return {"estimate": {"seconds_per_iteration": 4.0}, "plan": {"iterations": 200}}
        if args[0] == "distill":
            return {"run": "d1", "ref": "synthetic/frontier-ours:v1", "seconds": 21.0}
        return [{"run": "e1", "curve": [
            {"iteration": 2, "seconds": 9.0, "mean": 0.5, "std": 0.01, "accuracies": [0.49, 0.51], "final": False},
            {"iteration": 5, "seconds": 21.0, "mean": 0.6, "std": 0.0, "accuracies": [0.6, 0.6], "final": True}]}]


def test_each_step_runs_once_and_the_distillation_fills_the_budget_with_spaced_checkpoints(tmp_path: Path) -> None:
    s = Settings("digits", budget_s=20.0, spacing_s=4.0, protocol="idc", epochs=3, repeats=2,
                 sets=["net.width=8"], sets_for={"ours": ["distill.alpha=0.5"], "dm": ["x=1"]})
    state, fake = State(tmp_path / "state.json"), FakeDdtool()
    run_method("ours", s, state, fake, str(tmp_path / "store"), log=lambda _: None)
    assert [c[0] for c in fake.calls] == ["pretrain", "distill", "distill", "eval"]
    distill = fake.calls[2]
    assert "distill.iterations=5" in distill and "distill.checkpoint_seconds=4.0" in distill
    assert "distill.alpha=0.5" in distill and "x=1" not in distill  # --set-for is the method's own
    assert fake.calls[3][:3] == ("eval", "d1", "--checkpoints") and "idc" in fake.calls[3]
    again = FakeDdtool()
    run_method("ours", s, State(tmp_path / "state.json"), again, str(tmp_path / "store"), log=lambda _: None)
    assert again.calls == []  # all read back from state.json


def test_the_papers_budget_keeps_each_recipes_own_iterations(tmp_path: Path) -> None:
    """--budget paper (the GPU script's frontier): the recipe's iterations at the dataset's scale, not a
    number derived from a seconds budget; the checkpoints stay spaced in seconds."""
    assert budget_arg("paper") is None and budget_arg("90") == 90.0
    for bad in ("soon", "0", "-5"):
        with pytest.raises(argparse.ArgumentTypeError):
            budget_arg(bad)
    s = Settings("digits", budget_s=None, spacing_s=600.0, protocol="idc", epochs=3, repeats=2, sets=[], sets_for={})
    fake = FakeDdtool()
    run_method("ours", s, State(tmp_path / "state.json"), fake, str(tmp_path / "store"), log=lambda _: None)
    distill = fake.calls[2]
    assert "distill.iterations=200" in distill and "distill.checkpoint_seconds=600.0" in distill


def test_points_are_counted_from_the_start_of_the_pretraining(tmp_path: Path) -> None:
    state = State(tmp_path / "state.json")
    run_method("ours", Settings("digits", 20.0, 4.0, "idc", 3, 2, [], {}), state, FakeDdtool(),
               str(tmp_path / "store"), log=lambda _: None)
    points = rows(state.data)
    assert [(p["iteration"], p["distill_s"], p["total_s"], p["accuracy_pct"]) for p in points] == [
        (2, 9.0, 21.5, 50.0), (5, 21.0, 33.5, 60.0)]
    assert points[-1]["final"] and points[0]["repeats"] == 2
    paths = draw(points, tmp_path / "frontier", "t")
    assert [p.suffix for p in paths] == [".png", ".svg"] and all(p.stat().st_size > 1000 for p in paths)
