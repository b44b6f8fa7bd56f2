"""Run records: what a command read, wrote, how long it took and what it measured.

Every command that does work (pretrain, distill, eval, curves, import) writes its record through
:func:`run_record`, which owns the record's life: written as ``running`` before the work starts
(a crash still leaves a trace), then ``complete`` (with wall seconds and peak memory), ``failed``
(with the error) or ``interrupted`` (Ctrl-C).
"""

from __future__ import annotations

import platform
import sys
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch

from ddtool.errors import DDToolError
from ddtool.store import Artifact, Store
from ddtool.version import __version__


def io_entry(art: Artifact, role: str) -> dict[str, str]:
    return {"ref": art.ref, "digest": art.digest, "kind": art.kind, "role": role}


def new_record(store: Store, command: str, **fields: Any) -> dict[str, Any]:
    from ddtool.plugins import plugin_versions

    return {
        "id": store.new_run_id(command),
        "command": command,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "ddtool_version": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "host": platform.machine(),
        "plugins": plugin_versions(),
        "inputs": [],
        "outputs": [],
        "metrics": {},
        "status": "running",
        **fields,
    }


def peak_memory(device: torch.device | str) -> dict[str, int]:
    """Peak resident memory of this process (and peak CUDA allocation on a GPU), in bytes."""
    import resource

    out = {"peak_rss_bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024}
    if torch.device(device).type == "cuda":
        out["peak_cuda_bytes"] = int(torch.cuda.max_memory_allocated(device))
    return out


class Run:
    """A run record in progress: the record itself, and the clock its wall seconds are read from.

    The work inside :func:`run_record` may set ``where`` (e.g. ``"iteration 5"``: named in the
    error of a failure there), ``oom_hint`` (what to lower when CUDA runs out of memory; the failure
    is then one ``DDToolError`` line instead of a traceback) and ``on_interrupt`` (Ctrl-C: save what
    a resume needs, write the record, return the exception to raise instead of KeyboardInterrupt).
    """

    def __init__(self, store: Store, record: dict[str, Any], device: torch.device | str | None,
                 persist: bool = True) -> None:
        self.store, self.record, self.device = store, record, device
        self.persist = persist  # False on ranks other than 0 of a distributed run: only rank 0 writes
        self.start = time.perf_counter()
        self.where = ""
        self.oom_hint = ""
        self.on_interrupt: Callable[[], BaseException] | None = None

    @property
    def id(self) -> str:
        return self.record["id"]

    def elapsed(self) -> float:
        """Wall seconds of the run so far (including any ``elapsed`` it started with)."""
        return time.perf_counter() - self.start

    def write(self) -> None:
        if self.persist:
            self.store.write_run(self.record)

    def complete(self, seconds: float | None = None, **fields: Any) -> float:
        """Mark the run complete with ``fields`` (outputs, metrics...) and write it; returns its seconds
        (``seconds`` when the work being timed ended before its bookkeeping, else the time so far)."""
        seconds = self.elapsed() if seconds is None else seconds
        self.record.update(status="complete", wall_seconds=seconds, **fields)
        if self.device is not None:
            self.record.update(peak_memory(self.device))
        self.write()
        return seconds

    def _end(self, status: str, error: str | None = None, write: bool = True) -> None:
        self.record.update(status=status, wall_seconds=self.elapsed())
        if error is not None:
            self.record["error"] = error
        if write:
            self.write()

    def _at(self) -> str:
        return f" at {self.where}" if self.where else ""


@contextmanager
def run_record(store: Store, command: str, device: torch.device | str | None = None, *, elapsed: float = 0.0,
               **fields: Any) -> Iterator[Run]:
    """Write a ``running`` record of ``command`` (with ``fields``, and ``device`` when given), run the
    block, and leave the record ``complete``, ``failed`` or ``interrupted``.

    ``elapsed``: seconds the run had already spent before this record (a resumed run goes on
    counting; an import counts reading its file). A block that returns without calling
    :meth:`Run.complete` completes with what the record holds.
    """
    from ddtool.runtime.distributed import process_group as distributed

    if device is not None:
        fields["device"] = str(device)
    run = Run(store, new_record(store, command, **fields), device, persist=distributed.is_main())
    if distributed.current().size > 1:
        # every rank names the run by rank 0's id; and no rank has read the store's runs (e.g.
        # --resume's checks) after rank 0 writes this one: the gather is a barrier
        run.record["id"] = distributed.broadcast_object(run.record["id"])
    run.record.update(distributed.describe(device))
    run.write()  # a crash still leaves a trace of the run
    run.start = time.perf_counter() - elapsed
    try:
        yield run
    except KeyboardInterrupt:
        run._end("interrupted", write=run.on_interrupt is None)  # else the run's handler writes it
        if run.on_interrupt is None:
            raise
        raise run.on_interrupt() from None
    except DDToolError as exc:
        run._end("failed", str(exc))
        raise
    except torch.cuda.OutOfMemoryError:
        message = f"out of memory on CUDA{run._at()}"
        run._end("failed", message)
        if run.oom_hint:
            raise DDToolError(f"{message}; {run.oom_hint}") from None
        raise
    except Exception as exc:
        # a bug (ddtool's or a plugin's) keeps its traceback, but the record must not stay "running"
        run._end("failed", f"{type(exc).__name__}{run._at()}: {exc}")
        raise
    if run.record["status"] == "running":
        run.complete()
