"""Hook specifications. Plugins implement these with ``ddtool.hookimpl``.

Every hook receives a ``register`` callback; the host owns the registries and plugins never
touch them directly. Hooks are called with keyword arguments, so a spec may grow new
arguments without breaking implementations that take fewer.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import pluggy

NAME = "ddtool"
_F = TypeVar("_F", bound=Callable[..., Any])

hookspec: Callable[[_F], _F] = pluggy.HookspecMarker(NAME)  # type: ignore[assignment]
hookimpl: Callable[[_F], _F] = pluggy.HookimplMarker(NAME)  # type: ignore[assignment]


@hookspec
def ddtool_register_matching_methods(register: Callable[..., None]) -> None:
    """Register matching methods: ``register(method, aliases=())``.

    A method is an object with ``name``, ``description`` and the interface of
    :class:`ddtool.methods.base.MatchingMethod`.
    """


@hookspec
def ddtool_register_selection_strategies(register: Callable[..., None]) -> None:
    """Register model-selection strategies (where each outer loop's network comes from)."""


@hookspec
def ddtool_register_perturbation_schedules(register: Callable[..., None]) -> None:
    """Register parameter-perturbation schedules applied to the selected network."""


@hookspec
def ddtool_register_datasets(register: Callable[..., None]) -> None:
    """Register datasets: objects with ``name`` and ``load(arg, root, download)``."""


@hookspec
def ddtool_register_architectures(register: Callable[..., None]) -> None:
    """Register network architectures: objects with ``name`` and ``build(...)``."""


@hookspec
def ddtool_register_commands(app: Any) -> None:
    """Add Typer commands to the ``ddtool`` application."""
