"""Queries over run records (ddtool.store.runs): run ids told from refs, choosing curve points."""

from __future__ import annotations

import pytest

from ddtool.store.runs import is_run_id, select_points


def test_run_ids_are_told_from_refs() -> None:
    assert is_run_id("20261123-070141-distill-45a3a2") and is_run_id("20261123-0701")
    assert not is_run_id("synthetic/x") and not is_run_id("20261123") and not is_run_id("abcdef12")


def test_point_selection() -> None:
    rec = {"id": "r", "checkpoints": [{"iteration": i, "digest": f"d{i}", "seconds": i / 10} for i in (2, 4, 6, 8)],
           "outputs": [{"kind": "synthetic", "ref": "synthetic/x:v1", "digest": "final"}],
           "metrics": {"iterations": 10}, "wall_seconds": 1.5}
    assert [e["iteration"] for e in select_points(rec)] == [2, 4, 6, 8, 10]
    assert [e["iteration"] for e in select_points(rec, every=4)] == [4, 8, 10]
    assert [e["digest"] for e in select_points(rec, at=[10, 2])] == ["d2", "final"]
    assert select_points(rec)[-1]["seconds"] == 1.5 and select_points(rec)[-1]["final"]
    from ddtool.errors import UsageError

    with pytest.raises(UsageError, match="no checkpoint at iteration 3; it has 2, 4, 6, 8, 10"):
        select_points(rec, at=[3])
    with pytest.raises(UsageError, match="exclude each other"):
        select_points(rec, every=2, at=[2])
