"""``ddtool distill --resume``: which runs can go on, from which checkpoint, and how the new run
record and its parent point at each other."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ddtool.data import ImageData
from ddtool.errors import DDToolError, UsageError
from ddtool.progress import Reporter
from ddtool.recipe import Recipe, recipe_from_record
from ddtool.runtime.distill.loop import DistillResult, distill
from ddtool.store import Store


@dataclass
class ResumePoint:
    parent: dict[str, Any]  # the run record being continued
    checkpoint: dict[str, Any] | None  # its checkpoint entry ({iteration, digest}); None: start over
    tensors: dict[str, torch.Tensor] | None
    skipped: list[str]  # checkpoints that could not be read

    @property
    def iteration(self) -> int:
        """The iteration the resumed run starts at."""
        return int(self.checkpoint["iteration"]) if self.checkpoint else 0

    @property
    def seconds(self) -> float:
        """Seconds the runs before spent reaching :attr:`iteration` (a resume goes on counting)."""
        s = self.checkpoint.get("seconds") if self.checkpoint else None
        return float(s) if isinstance(s, (int, float)) else 0.0

    def note(self, fields: dict[str, Any]) -> None:
        """Add to the new run record's ``fields`` where it resumes from (``resumed_from``) and the
        checkpoint it continues (listed with the run that wrote it, and as an input)."""
        ckpt = self.checkpoint
        fields["resumed_from"] = {"run": self.parent["id"], "iteration": self.iteration,
                                  "checkpoint": ckpt["digest"] if ckpt else None}
        if self.skipped:
            fields["resumed_from"]["unreadable_checkpoints"] = self.skipped
        if ckpt:
            fields["checkpoints"].append({**ckpt, "run": ckpt.get("run", self.parent["id"])})
            fields["inputs"].append({"ref": ckpt["digest"][:12], "digest": ckpt["digest"], "kind": "checkpoint",
                                     "role": "checkpoint"})

    def mark_parent(self, store: Store, run_id: str) -> None:
        """Record in the parent run that ``run_id`` resumed it."""
        mark_resumed_by(store, self.parent["id"], run_id)


def mark_resumed_by(store: Store, parent_id: str, run_id: str) -> None:
    """Record in run ``parent_id`` that run ``run_id`` resumed it (distill and trajectories runs)."""
    with store.lock():
        parent = store.run(parent_id)
        parent["resumed_by"] = [*parent.get("resumed_by", []), run_id]
        store.write_run(parent)


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


def resume(store: Store, run_id: str, data: ImageData, device: torch.device,
           reporter: Reporter | None = None) -> DistillResult:
    """Continue an interrupted, failed or crashed distill run from its last readable checkpoint.

    The run's recorded recipe, pool and artifact name are used again; on CPU the result is
    bit-identical to an uninterrupted run (CUDA kernels need not be deterministic). Seconds go on
    from the checkpoint's, so checkpoint ``seconds`` and ``wall_seconds`` count the whole run.
    A new run record is written with ``resumed_from`` (the parent run, iteration and
    checkpoint); the parent gets ``resumed_by``.
    """
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
    pool_ref = next((i["digest"] for i in parent.get("inputs", []) if i.get("role") == "pool"), None)
    return distill(store, recipe, data, device, reporter, pool_ref=pool_ref, name=parent.get("artifact_name"),
                   _resume=ResumePoint(parent, entry, tensors, skipped))
