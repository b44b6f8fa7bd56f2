"""Build registered architectures from a name plus keyword settings."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ddtool.errors import UsageError


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


def build_net(spec: NetSpec, channels: int, num_classes: int, resolution: int) -> nn.Module:
    from ddtool.plugins import registries

    arch = registries().architecture.get(spec.name)
    # drop unset settings so an architecture's own defaults apply (timm's create_model does this)
    options = {k: v for k, v in spec.options.items() if v is not None}
    try:
        return arch.build(channels=channels, num_classes=num_classes, resolution=resolution, **options)
    except TypeError as exc:
        raise UsageError(f"architecture '{spec.name}' rejects the settings {sorted(options)}: {exc}")
