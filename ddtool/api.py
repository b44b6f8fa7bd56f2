"""The public API for plugin authors; everything here is also importable from ``ddtool``.

A plugin is a module with hook implementations (``@hookimpl def ddtool_register_...(register)``)
found through the ``ddtool`` entry-point group or ``DDTOOL_PLUGINS``. Each registration hook gets
a typed ``register(obj, aliases=())``; ``obj`` keeps the contract of its kind, one base class
each with a default for every member but the required ones:

* ``ddtool_register_matching_methods``: :class:`MatchingMethod` (required: ``name``; ``loss`` or ``step``)
* ``ddtool_register_selection_strategies``: :class:`SelectionStrategy` (``name``, ``select``; over
  expert trajectories ``select_segment``, which returns a :class:`Segment`)
* ``ddtool_register_perturbation_schedules``: :class:`PerturbationSchedule` (``name``, ``perturb``)
* ``ddtool_register_datasets``: :class:`Dataset` (``name``, ``description``, ``load``)
* ``ddtool_register_architectures``: :class:`Architecture` (``name``, ``description``, ``build``)
* ``ddtool_register_commands(app)``: Typer commands added to ``app``

``CONTRACTS`` is that table, the only one (kind -> base class and the members an object must
provide itself): the registries check what a plugin registers against it, and a context built by
hand sees its objects through it. An object that does not subclass its contract is accepted when
it has the required members itself (a method: ``step``), and then gets the base class's defaults
for the rest; one without them is refused with a one-line error that names the plugin and the
missing member.

What the runtime needs to know of a method is a declared member of :class:`MatchingMethod` with a
default, read as it is (never from the method's name or its options' fields): ``class_sharded``
(split its classes across processes), ``uses_network`` (ask the selection strategy for a network
each outer loop), ``trains_network`` (DynaDistill writes only trained networks back),
``trajectories_option`` (the ``[distill.options]`` key naming the expert trajectories it matches;
the plan loads them as ``ctx.trajectories``) and ``trajectory_start_epochs``. A schedule declares
``perturbs``; a strategy ``needs_pool``, ``draws_trajectories``, ``scores_candidates``,
``keeps_trained`` and ``perturbs_candidates``.

This module only re-exports: each name is defined (and documented) in the module that owns it.
"""

from __future__ import annotations

from ddtool.context import DistillContext
from ddtool.data.dataset import Dataset, ImageData
from ddtool.errors import DDToolError, UsageError
from ddtool.hookspecs import (
    RegisterArchitecture,
    RegisterDataset,
    RegisterMethod,
    RegisterSchedule,
    RegisterSelection,
    hookimpl,
)
from ddtool.methods.base import MatchingMethod, class_means
from ddtool.nets.factory import Architecture, NetSpec
from ddtool.perturb import PerturbationSchedule
from ddtool.plugins import CONTRACTS
from ddtool.pool import Pool
from ddtool.recipe import DistillSection, parse_section
from ddtool.selection.base import Segment, SelectionStrategy
from ddtool.synthetic import SyntheticSet
from ddtool.trajectories import Trajectories

__all__ = [
    # hooks
    "hookimpl",
    "RegisterMethod",
    "RegisterSelection",
    "RegisterSchedule",
    "RegisterDataset",
    "RegisterArchitecture",
    # contracts, and their table
    "CONTRACTS",
    "MatchingMethod",
    "SelectionStrategy",
    "PerturbationSchedule",
    "Dataset",
    "Architecture",
    # what the contracts' methods receive and return
    "DistillContext",
    "DistillSection",
    "SyntheticSet",
    "Pool",
    "Trajectories",
    "Segment",
    "NetSpec",
    "ImageData",
    # helpers
    "parse_section",
    "class_means",
    # errors the CLI prints as one line
    "DDToolError",
    "UsageError",
]
