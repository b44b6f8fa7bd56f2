"""Registers the built-in matching methods through the public hook."""

from __future__ import annotations

from ddtool.hookspecs import hookimpl
from ddtool.methods.coreset import RandomReal
from ddtool.methods.dm import DM


@hookimpl
def ddtool_register_matching_methods(register) -> None:  # type: ignore[no-untyped-def]
    register(DM())
    register(RandomReal(), aliases=("random-real",))
