"""The pluggy markers of ddtool's hooks, in a module of their own so that the packages which
register built-ins (``data``, ``nets``, ``perturb``...) mark their hook implementations without
importing the hook specifications, which name the contracts of every layer above them."""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import pluggy

NAME = "ddtool"
_F = TypeVar("_F", bound=Callable[..., Any])

hookspec: Callable[[_F], _F] = pluggy.HookspecMarker(NAME)  # type: ignore[assignment]
hookimpl: Callable[[_F], _F] = pluggy.HookimplMarker(NAME)  # type: ignore[assignment]
