"""What the reference side-by-side benches (bench/ncfm_reference.py, bench/datm_reference.py) share:
reading ddtool's evaluation results, a table cell of one set's evaluation networks, and the verdict
of ddtool against its reference code — the issues' target: within 1.5 points, or 2 std of one set's
evaluation networks, whichever is wider."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any


def read_result(path: Path) -> Any:
    """A stage's JSON result file; None if absent or empty (the stage has not run, or is running: the
    scripts redirect its output into the file from the start)."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    return json.loads(path.read_text())


def ddtool_eval(path: Path) -> list[float] | None:
    """Per-network accuracies in percent of a `ddtool eval --json` result; None if absent or empty."""
    if (got := read_result(path)) is None:
        return None
    (result,) = got
    return [100 * a for a in result["accuracies"]]


def distill_seconds(results: Path, ref_config: str) -> dict[str, float]:
    """Set name -> wall seconds of its distillation, from the scripts' times.txt (a set's last line
    counts): ddtool's by ``--name``, the reference's by its config file, which ``ref_config`` (a regex
    with a group ``name``) finds in the command; the reference's sets are ``ref-`` + that name."""
    out: dict[str, float] = {}
    ddt = re.compile(r" (?P<s>\d+)s load=[\d.]+: ddtool-distill .*--name (?P<name>\S+)")
    ref = re.compile(r" (?P<s>\d+)s load=[\d.]+: ref-distill .*" + ref_config)
    times = results / "times.txt"
    for line in times.read_text().splitlines() if times.exists() else []:
        if m := ddt.search(line):
            out[m["name"]] = float(m["s"])
        elif m := ref.search(line):
            out[f"ref-{m['name']}"] = float(m["s"])
    return out


def mean(values: list[float] | None) -> float | None:
    return statistics.fmean(values) if values else None


def cell(values: list[float] | None) -> str:
    """One set's networks, and their mean in bold when there are several."""
    if not values:
        return "–"
    return " / ".join(f"{v:.2f}" for v in values) + (f" (**{statistics.fmean(values):.2f}**)" if len(values) > 1 else "")


def verdict(label: str, pairs: list[tuple[list[float] | None, list[float] | None]]) -> str:
    """One line: ddtool minus the reference over the seeds where both sides have a result
    (``pairs``: (reference, ddtool) networks per seed), against the target."""
    pairs = [(a, b) for a, b in pairs if a and b]
    if not pairs:
        return f"- {label}: no seed has both sides yet"
    diff = statistics.fmean(statistics.fmean(b) for _, b in pairs) - statistics.fmean(statistics.fmean(a) for a, _ in pairs)
    # the spread of one set's evaluation networks (pooled over both sides' sets), not of all of
    # them together: that would count the very difference under test as noise
    per_set = [statistics.variance(v) for pair in pairs for v in pair if len(v) > 1]
    spread = 2 * statistics.fmean(per_set) ** 0.5 if per_set else 0.0
    tol = max(1.5, spread)
    word = "within" if abs(diff) <= tol else "**outside**"
    return (f"- {label}: ddtool − reference **{diff:+.2f}** points over {len(pairs)} seed(s); "
            f"target ±{tol:.2f} (1.5, or 2 std {spread:.2f} of a set's evaluation networks): {word}")
