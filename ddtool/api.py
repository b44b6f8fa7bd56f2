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

An object that does not subclass its contract is accepted when it has the required members
itself (a method: ``step``), and then gets the base class's defaults for the rest; one without
them is refused with a one-line error that names the plugin and the missing member. This module
only re-exports: each name is defined (and documented) in the module that owns it.
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
    # contracts
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
