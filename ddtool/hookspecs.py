"""Hook specifications. Plugins implement these with ``ddtool.api.hookimpl``.

Every registration hook receives a typed ``register`` callback; the host owns the registries and
plugins never touch them directly. Each registered object keeps its kind's contract (a base class
in ``ddtool.api``): the registry refuses, in one line, an object that lacks a required member.
Hooks are called with keyword arguments, so a spec may grow new arguments without breaking
implementations that take fewer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence, TypeVar

import pluggy

if TYPE_CHECKING:  # the contracts' modules import hookimpl from here
    import typer

    from ddtool.data.dataset import Dataset
    from ddtool.methods.base import MatchingMethod
    from ddtool.nets.factory import Architecture
    from ddtool.perturb import PerturbationSchedule
    from ddtool.selection.base import SelectionStrategy

NAME = "ddtool"
_F = TypeVar("_F", bound=Callable[..., Any])

hookspec: Callable[[_F], _F] = pluggy.HookspecMarker(NAME)  # type: ignore[assignment]
hookimpl: Callable[[_F], _F] = pluggy.HookimplMarker(NAME)  # type: ignore[assignment]


class RegisterMethod(Protocol):
    def __call__(self, method: MatchingMethod, /, aliases: Sequence[str] = ()) -> None: ...


class RegisterSelection(Protocol):
    def __call__(self, strategy: SelectionStrategy, /, aliases: Sequence[str] = ()) -> None: ...


class RegisterSchedule(Protocol):
    def __call__(self, schedule: PerturbationSchedule, /, aliases: Sequence[str] = ()) -> None: ...


class RegisterDataset(Protocol):
    def __call__(self, dataset: Dataset, /, aliases: Sequence[str] = ()) -> None: ...


class RegisterArchitecture(Protocol):
    def __call__(self, architecture: Architecture, /, aliases: Sequence[str] = ()) -> None: ...


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
