"""Queries over distill run records: find a run by id or by what it made, list its checkpoints.

A distill run record lists its checkpoints (``{"iteration", "digest", "seconds"}``, blobs with
the stored images at that outer iteration); the final artifact is the last point, at the
run's iteration count and wall time.

Run ids look like ``20261123-070141-distill-45a3a2``: eight digits, a dash, then anything;
artifact refs contain a '/' and digest prefixes are hex without dashes, so the forms cannot
be confused. A unique prefix of a run id (``20261123-0701``) works too.
"""

from __future__ import annotations

import re
from typing import Any

from ddtool.errors import UsageError
from ddtool.store.store import Store

_RUN_ID = re.compile(r"^[0-9]{8}-[A-Za-z0-9._-]*$")


def is_run_id(text: str) -> bool:
    """True for a run id or a prefix of one (``YYYYMMDD-...``), False for refs and digests."""
    return bool(_RUN_ID.fullmatch(text.strip()))


def distill_run(store: Store, text: str) -> dict[str, Any]:
    """The distill run record named by a run id (prefix) or by the synthetic artifact it made."""
    if is_run_id(text):
        rec = store.run(text.strip())
    else:
        art = store.resolve(text, kind="synthetic")
        made, _ = store.runs_of(art.digest)
        runs = [r for r in made if r.get("command") == "distill"]
        if not runs:
            raise UsageError(f"'{text}' was not made by a distill run here (imported?); it has no checkpoints")
        rec = runs[-1]
    if rec.get("command") != "distill":
        raise UsageError(f"run {rec['id']} is a {rec.get('command')} run; curves come from distill runs")
    return rec


def final_output(rec: dict[str, Any]) -> dict[str, Any] | None:
    """The synthetic artifact a run made (its outputs entry), None while it has made none."""
    outs = [o for o in rec.get("outputs", []) if o.get("kind") == "synthetic"]
    return outs[0] if outs else None


def run_iterations(rec: dict[str, Any]) -> int:
    return int(rec.get("metrics", {}).get("iterations") or rec.get("plan", {}).get("iterations") or 0)


def checkpoint_entries(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every point a distill run offers: its checkpoints, then the final artifact (if it finished)."""
    by_it: dict[int, dict[str, Any]] = {}
    for c in rec.get("checkpoints", []):
        by_it[int(c["iteration"])] = {"iteration": int(c["iteration"]), "digest": c["digest"],
                                      "seconds": c.get("seconds"), "final": False, "ref": None}
    out = final_output(rec)
    if out is not None:
        n = run_iterations(rec)
        by_it[n] = {"iteration": n, "digest": out["digest"], "seconds": rec.get("wall_seconds"), "final": True,
                    "ref": out.get("ref")}
    return [by_it[k] for k in sorted(by_it)]


def select_points(rec: dict[str, Any], every: int | None = None, at: list[int] | None = None) -> list[dict[str, Any]]:
    """All points; with ``every`` the iterations divisible by it (and the final one); with ``at`` exactly those."""
    entries = checkpoint_entries(rec)
    have = ", ".join(str(e["iteration"]) for e in entries) or "none"
    if every is not None and at:
        raise UsageError("--every and --at exclude each other; give one")
    if every is not None and every < 1:
        raise UsageError(f"--every must be >= 1, got {every}")
    if at:
        known = {e["iteration"]: e for e in entries}
        missing = [i for i in at if i not in known]
        if missing:
            raise UsageError(f"run {rec['id']} has no checkpoint at iteration {', '.join(map(str, missing))}; "
                             f"it has {have}")
        return [known[i] for i in sorted(set(at))]
    chosen = [e for e in entries if every is None or e["final"] or e["iteration"] % every == 0]
    if not chosen:
        raise UsageError(f"run {rec['id']} has no checkpoints to evaluate (status {rec.get('status')})")
    return chosen
