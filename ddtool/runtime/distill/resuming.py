"""``ddtool distill --resume``: which runs can go on, and from which checkpoint (a
:class:`~ddtool.runtime.distill.checkpoint.StartPoint` the distill loop consumes)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any, Callable

from ddtool.errors import DDToolError, UsageError
from ddtool.recipe import Recipe, recipe_from_record
from ddtool.runtime.distill.checkpoint import StartPoint, mark_resumed_by
from ddtool.store import Store

__all__ = ["Resumption", "mark_resumed_by", "resumable_run", "resumption"]


@dataclass(frozen=True)
class Resumption:
    """What ``--resume`` continues: the run's recorded recipe, pool and artifact name, and the
    :class:`StartPoint` the loop starts from (its last readable checkpoint)."""

    recipe: Recipe
    start: StartPoint
    pool_ref: str | None
    name: str | None


def resumable_run(store: Store, run_id: str, command: str = "distill",
                  accept: Callable[[dict[str, Any]], None] | None = None) -> tuple[dict[str, Any], Recipe]:
    """The record and recipe of a ``command`` run (distill, or pretrain of trajectories) that
    ``--resume`` can continue, or a one-line error; ``accept(record)`` raises for other runs of
    the command that cannot be resumed (a pool's pretrain)."""
    from ddtool.store.refs import check_name

    try:
        check_name(run_id)
    except UsageError:
        raise UsageError(
            f"invalid run id '{run_id}': a run id is the name of a file in the store's runs/ folder "
            "without .json (letters, digits, '.', '_' or '-')"
        ) from None
    try:
        rec = store.run(run_id)
    except (OSError, ValueError) as exc:
        raise DDToolError(f"run record '{run_id}' is unreadable ({exc}); see 'ddtool store verify'") from None
    rid = rec.get("id", run_id)
    if rec.get("command") != command:
        if rec.get("command") in ("distill", "pretrain"):
            raise UsageError(f"run {rid} is a {rec.get('command')} run; resume it with "
                             f"'ddtool {rec.get('command')} --resume {rid}'")
        raise UsageError(f"run {rid} is a {rec.get('command')} run; only distill runs and 'pretrain --trajectories' "
                         "runs can be resumed")
    if accept is not None:
        accept(rec)
    if rec.get("status") == "complete":
        made = ", ".join(o.get("ref", "?") for o in rec.get("outputs", []))
        raise UsageError(f"run {rid} is complete (it made {made or 'its artifact'}); there is nothing to resume")
    if rec.get("resumed_by"):
        raise UsageError(f"run {rid} was already resumed by run {rec['resumed_by'][-1]}; resume that run instead")
    pid = rec.get("pid")
    if (rec.get("status") == "running" and isinstance(pid, int) and pid != os.getpid()
            and rec.get("host") == socket.gethostname() and _alive(pid)):
        raise UsageError(f"run {rid} still appears to be running (process {pid}); stop it before resuming it")
    if "recipe" not in rec:
        raise DDToolError(f"run record {rid} has no recipe; it cannot be resumed")
    return rec, recipe_from_record(rec["recipe"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def resumption(store: Store, run_id: str) -> Resumption:
    """Where an interrupted, failed or crashed distill run goes on: its recorded recipe, pool and
    artifact name, and a :class:`StartPoint` at its last checkpoint that reads back intact
    (unreadable ones are listed in it); a run without one starts over."""
    parent, recipe = resumable_run(store, run_id)
    entry = tensors = None
    skipped: list[str] = []
    for candidate in reversed(parent.get("checkpoints") or []):
        try:
            tensors, _ = store.read_blob(candidate["digest"])
        except (DDToolError, KeyError, TypeError):
            skipped.append(str(candidate.get("digest", "?"))[:12])
            continue
        entry = candidate
        break
    seconds = entry.get("seconds") if entry else None
    start = StartPoint(iteration=int(entry["iteration"]) if entry else 0,
                       seconds=float(seconds) if isinstance(seconds, (int, float)) else 0.0,
                       state=tensors, parent=parent["id"], checkpoint=entry, unreadable=tuple(skipped))
    pool_ref = next((i["digest"] for i in parent.get("inputs", []) if i.get("role") == "pool"), None)
    return Resumption(recipe, start, pool_ref, parent.get("artifact_name"))
