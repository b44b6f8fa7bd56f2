"""Distil a synthetic set: the runtime's entry points, from the modules that do each part.

* :mod:`ddtool.runtime.distill.planning`: resolve a recipe (:func:`plan`, :class:`Plan`) and build the
  context a method sees (:func:`build_context`);
* :mod:`ddtool.runtime.distill.loop`: run the iterations and store the result (:func:`distill`);
* :mod:`ddtool.runtime.distill.checkpoint`: the resumable state of a run;
* :mod:`ddtool.runtime.distill.resuming`: ``--resume`` (:func:`resume`, :func:`resumable_run`);
* :mod:`ddtool.runtime.run_records`: the run record's lifecycle.
"""

from __future__ import annotations

from ddtool.runtime.distill.loop import DistillResult, RunInterrupted, distill
from ddtool.runtime.distill.planning import Plan, build_context, plan
from ddtool.runtime.distill.resuming import resumable_run, resume

__all__ = ["DistillResult", "Plan", "RunInterrupted", "build_context", "distill", "plan", "resumable_run", "resume"]
