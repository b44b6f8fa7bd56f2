"""Distil a synthetic set: the runtime's entry points, from the modules that do each part.

The path is one way: :func:`plan` resolves a recipe into an immutable :class:`Plan`; the loop
builds the context from it once, runs the iterations from a :class:`StartPoint` and stores the set
(:func:`distill`); ``--resume`` only finds the start point (:func:`resumption`).

* :mod:`ddtool.runtime.distill.planning`: resolve a recipe (:func:`plan`, :class:`Plan`) and build the
  context a method sees (:func:`context_of`; :func:`build_context` for tests and benchmarks);
* :mod:`ddtool.runtime.distill.loop`: run the iterations and store the result (:func:`distill`);
* :mod:`ddtool.runtime.distill.checkpoint`: the resumable state of a run, and where it starts;
* :mod:`ddtool.runtime.distill.resuming`: ``--resume`` (:func:`resumption`, :func:`resumable_run`);
* :mod:`ddtool.runtime.run_records`: the run record's lifecycle.
"""

from __future__ import annotations

import torch

from ddtool.data import ImageData
from ddtool.progress import Reporter
from ddtool.runtime.distill.checkpoint import StartPoint
from ddtool.runtime.distill.loop import DistillResult, RunInterrupted, distill
from ddtool.runtime.distill.planning import Plan, build_context, context_of, plan
from ddtool.runtime.distill.resuming import resumable_run, resumption
from ddtool.store import Store

__all__ = ["DistillResult", "Plan", "RunInterrupted", "StartPoint", "build_context", "context_of", "distill", "plan",
           "resumable_run", "resume", "resumption"]


def resume(store: Store, run_id: str, data: ImageData, device: torch.device,
           reporter: Reporter | None = None) -> DistillResult:
    """Continue an interrupted, failed or crashed distill run from its last readable checkpoint.

    The run's recorded recipe, pool and artifact name are used again; on CPU the result is
    bit-identical to an uninterrupted run (CUDA kernels need not be deterministic). Seconds go on
    from the checkpoint's, so checkpoint ``seconds`` and ``wall_seconds`` count the whole run.
    A new run record is written with ``resumed_from`` (the parent run, iteration and
    checkpoint); the parent gets ``resumed_by``.
    """
    r = resumption(store, run_id)
    return distill(store, r.recipe, data, device, reporter, pool_ref=r.pool_ref, name=r.name, start=r.start)
