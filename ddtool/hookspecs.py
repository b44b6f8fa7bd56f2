"""Hook specifications. Plugins implement these with ``ddtool.api.hookimpl``.

Every registration hook receives a typed ``register`` callback; the host owns the registries and
plugins never touch them directly. Each registered object keeps its kind's contract (a base class
in ``ddtool.api``): the registry refuses, in one line, an object that lacks a required member.
Hooks are called with keyword arguments, so a spec may grow new arguments without breaking
implementations that take fewer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Sequence

# the markers, and the register callbacks of the kinds below the methods, live with what they
# mark or register (ddtool.markers, data, nets, perturb): those packages do not import this module
from ddtool.data.dataset import RegisterDataset
from ddtool.markers import NAME, hookimpl, hookspec
from ddtool.nets.factory import RegisterArchitecture
from ddtool.perturb import RegisterSchedule

if TYPE_CHECKING:
    import typer

    from ddtool.methods.base import MatchingMethod
    from ddtool.selection.base import SelectionStrategy

__all__ = ["NAME", "RegisterArchitecture", "RegisterDataset", "RegisterMethod", "RegisterSchedule",
           "RegisterSelection", "hookimpl", "hookspec"]


class RegisterMethod(Protocol):
    def __call__(self, method: MatchingMethod, /, aliases: Sequence[str] = ()) -> None: ...


class RegisterSelection(Protocol):
    def __call__(self, strategy: SelectionStrategy, /, aliases: Sequence[str] = ()) -> None: ...


@hookspec
def ddtool_register_matching_methods(register: RegisterMethod) -> None:
    """Register matching methods: ``register(method, aliases=())`` with a
    :class:`ddtool.api.MatchingMethod` (required: ``name``, and ``loss`` or ``step``)."""


@hookspec
def ddtool_register_selection_strategies(register: RegisterSelection) -> None:
    """Register model-selection strategies (where each outer loop's network comes from):
    ``register(strategy, aliases=())`` with a :class:`ddtool.api.SelectionStrategy`
    (required: ``name``, ``select``)."""


@hookspec
def ddtool_register_perturbation_schedules(register: RegisterSchedule) -> None:
    """Register parameter-perturbation schedules applied to the selected network:
    ``register(schedule, aliases=())`` with a :class:`ddtool.api.PerturbationSchedule`
    (required: ``name``, ``perturb``)."""


@hookspec
def ddtool_register_datasets(register: RegisterDataset) -> None:
    """Register datasets: ``register(dataset, aliases=())`` with a :class:`ddtool.api.Dataset`
    (required: ``name``, ``description``, ``load``)."""


@hookspec
def ddtool_register_architectures(register: RegisterArchitecture) -> None:
    """Register network architectures: ``register(architecture, aliases=())`` with a
    :class:`ddtool.api.Architecture` (required: ``name``, ``description``, ``build``)."""


@hookspec
def ddtool_register_commands(app: typer.Typer) -> None:
    """Add Typer commands to the ``ddtool`` application (``@app.command()``)."""
