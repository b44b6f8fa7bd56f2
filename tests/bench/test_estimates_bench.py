"""bench.estimates' table: a coreset's row (no iterations) and a failed recipe's row do not end the run."""

from __future__ import annotations

from bench.estimates import TABLE_HEAD, table, table_line


def _row(recipe: str, iterations: int, est_it: float, act_it: float | None) -> dict:
    est = {"iterations": iterations, "seconds_per_iteration": est_it, "seconds_total": 2.0,
           "peak_memory_bytes": 2**30}
    return {"recipe": recipe, "iterations": iterations, "estimate": est, "dry_run_s": 3.0, "wall_s": 4.0,
            "actual": {"seconds_per_iteration": act_it, "peak_memory_bytes": 2**30 + 2**29}}


def test_rows_of_iterations_of_a_coreset_and_of_a_failure() -> None:
    cells = lambda line: [c.strip() for c in line.strip("|").split("|")]  # noqa: E731
    it = cells(table_line(_row("dm", 10, 0.5, 0.6)))
    assert it[:5] == ["dm", "10", "0.5", "0.6", "1.20"] and it[9] == "1.50"
    coreset = cells(table_line(_row("random", 0, 0.0, None)))  # the run records no seconds per iteration
    assert coreset[:5] == ["random", "0", "n/a", "n/a", "n/a"] and coreset[9] == "1.50"
    failed = table_line({"recipe": "x", "failed": "ddtool distill failed (1): trace\nNotImplementedError: no loss"})
    assert failed.count("|") == TABLE_HEAD.count("|") and "failed: NotImplementedError: no loss" in failed
    assert table([_row("dm", 10, 0.5, 0.6)]).splitlines()[0] == TABLE_HEAD
