"""``distill.checkpoint_seconds``: checkpoints spaced in wall seconds (accuracy against seconds)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from ddtool.errors import UsageError
from ddtool.recipe import load_recipe
from ddtool.runtime.distill import distill
from ddtool.runtime.distill.loop import _Running
from ddtool.store import Store

CPU = torch.device("cpu")
TINY = ["net.width=8", "distill.iterations=4", "distill.batch_real=16", 'name="t"']


def _iterations(store: Store, run_id: str) -> list[int]:
    return [c["iteration"] for c in store.run(run_id)["checkpoints"]]


def test_a_tiny_spacing_checkpoints_after_every_iteration_but_the_last(store: Store, digits) -> None:  # type: ignore[no-untyped-def]
    res = distill(store, load_recipe(None, [*TINY, "distill.checkpoint_seconds=1e-9"]), digits, CPU)
    points = store.run(res.run_id)["checkpoints"]
    assert [c["iteration"] for c in points] == [1, 2, 3]  # the final set is the artifact
    assert [c["seconds"] for c in points] == sorted(c["seconds"] for c in points)


def test_seconds_replace_the_periodic_checkpoints_unless_both_are_asked_for(store: Store, digits) -> None:  # type: ignore[no-untyped-def]
    never = distill(store, load_recipe(None, [*TINY, "distill.checkpoint_seconds=1e9"]), digits, CPU)
    assert _iterations(store, never.run_id) == []
    both = distill(store, load_recipe(None, [*TINY, "distill.checkpoint_seconds=1e9", "distill.checkpoint_every=2"]),
                   digits, CPU)
    assert _iterations(store, both.run_id) == [2]
    plain = distill(store, load_recipe(None, [*TINY, "distill.iterations=10"]), digits, CPU)
    assert _iterations(store, plain.run_id) == list(range(1, 10))  # iterations // 10 as before
    # the same images whatever the checkpoints: they only save state
    assert torch.equal(never.synthetic.images, both.synthetic.images)


def test_the_spacing_counts_from_the_last_checkpoint_of_the_run_resumed_runs_included() -> None:
    def due(elapsed: float, points: list[dict]) -> bool:  # type: ignore[type-arg]
        fake = SimpleNamespace(p=SimpleNamespace(checkpoint_every=100, checkpoint_seconds=60.0),
                               run=SimpleNamespace(record={"checkpoints": points}, elapsed=lambda: elapsed))
        return _Running.checkpoint_due(fake, 4)  # type: ignore[arg-type]

    assert not due(59.0, []) and due(60.0, [])
    assert not due(150.0, [{"iteration": 2, "seconds": 100.0, "run": "parent"}])
    assert due(161.0, [{"iteration": 2, "seconds": 100.0, "run": "parent"}])


def test_a_negative_spacing_is_one_usage_line() -> None:
    with pytest.raises(UsageError, match="checkpoint_seconds"):
        load_recipe(None, [*TINY, "distill.checkpoint_seconds=-1"])
