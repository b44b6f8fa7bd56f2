"""The contract of an architecture, and building registered ones from a name plus keyword settings."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import torch
from torch import nn

from ddtool.errors import UsageError


class Architecture:
    """The contract of a network architecture (``ddtool.api.Architecture``): a name and ``build``.

    ``name`` and ``description`` have no default (set both): the built-in architectures are
    dataclasses whose leading fields are these two, and a value here would become their default.
    """

    name: str  # the registry name: [net] name = "NAME", --net NAME
    description: str  # one line for 'ddtool plugins'

    def build(self, channels: int, num_classes: int, resolution: int, **options: Any) -> nn.Module:
        """A freshly initialised network (global RNG) for ``channels`` x ``resolution`` x
        ``resolution`` inputs and ``num_classes`` logits.

        ``options`` are the recipe's [net] settings that are set (``width``, ``norm``, and
        ``depth`` when it is not 0): take the ones that apply and accept the rest (``**_ignored``),
        since every recipe passes them. A module with ``embed(x)`` (features before the last
        linear layer) serves DM and herding; without it they use the output of ``forward``.
        """
        raise NotImplementedError(f"architecture '{self.name}' does not implement build")


@dataclass(frozen=True)
class NetSpec:
    """An architecture name and its settings; serialisable into artifact metadata."""

    name: str = "convnet"
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "options": self.options}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "NetSpec":
        d = json.loads(text)
        return cls(d["name"], dict(d.get("options", {})))


def build_architecture(arch: Architecture, spec: NetSpec, channels: int, num_classes: int,
                       resolution: int) -> nn.Module:
    """``spec`` built by ``arch``, the architecture registered as ``spec.name`` (the caller looks it
    up: :func:`ddtool.lookup.build_net`); settings it rejects are a one-line UsageError."""
    # drop unset settings so an architecture's own defaults apply (timm's create_model does this)
    options = {k: v for k, v in spec.options.items() if v is not None}
    try:
        return arch.build(channels=channels, num_classes=num_classes, resolution=resolution, **options)
    except TypeError as exc:
        raise UsageError(f"architecture '{spec.name}' rejects the settings {sorted(options)}: {exc}")

class RegisterArchitecture(Protocol):
    """What a ``ddtool_register_architectures`` hook is handed (:mod:`ddtool.hookspecs`)."""

    def __call__(self, architecture: Architecture, /, aliases: Sequence[str] = ()) -> None: ...
