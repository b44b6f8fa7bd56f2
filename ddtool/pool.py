"""Early-stage model pools: N state dicts of one architecture, stored as one artifact."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch

from ddtool.data import ImageData
from ddtool.errors import UsageError
from ddtool.nets import NetSpec


def states_to_tensors(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """N state dicts as one flat mapping, ``m<i>.<name>`` (the pool artifact's layout)."""
    return {f"m{i}.{k}": v for i, sd in enumerate(states) for k, v in sd.items()}


def states_from_tensors(tensors: dict[str, torch.Tensor], n: int | None = None) -> list[dict[str, torch.Tensor]]:
    """The inverse of :func:`states_to_tensors`; ``n`` models (default: as many as the keys name)."""
    if n is None:
        n = 1 + max((int(key.partition(".")[0][1:]) for key in tensors), default=-1)
    states: list[dict[str, torch.Tensor]] = [{} for _ in range(n)]
    for key, value in tensors.items():
        idx, _, name = key.partition(".")
        states[int(idx[1:])][name] = value
    return states


@dataclass
class Pool:
    net: NetSpec
    states: list[dict[str, torch.Tensor]]
    models: list[dict[str, Any]] = field(default_factory=list)  # per-model hyper-parameters, accuracy
    signature: dict[str, str] = field(default_factory=dict)
    digest: str = ""

    def __len__(self) -> int:
        return len(self.states)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return states_to_tensors(self.states)

    def to(self, device: torch.device | str) -> "Pool":
        """This pool with its state dicts on ``device`` (itself when they are already there)."""
        device = torch.device(device)
        if all(v.device == device for sd in self.states for v in sd.values()):
            return self
        states = [{k: v.to(device) for k, v in sd.items()} for sd in self.states]
        return Pool(self.net, states, self.models, self.signature, self.digest)

    def metadata(self) -> dict[str, str]:
        return {**self.signature, "ddtool.net": self.net.to_json(), "ddtool.n": str(len(self)),
                "ddtool.models": json.dumps(self.models, sort_keys=True)}

    @classmethod
    def from_artifact(cls, tensors: dict[str, torch.Tensor], meta: dict[str, str], digest: str) -> "Pool":
        states = states_from_tensors(tensors, int(meta["ddtool.n"]))
        sig = {k: v for k, v in meta.items() if k in ("ddtool.dataset", "ddtool.classes", "ddtool.shape")}
        return cls(NetSpec.from_json(meta["ddtool.net"]), states, json.loads(meta["ddtool.models"]), sig, digest)

    def check_compatible(self, data: ImageData, net: NetSpec, ref: str) -> None:
        """Refuse a pool trained on another dataset or architecture."""
        want = data.signature()
        for key in ("ddtool.dataset", "ddtool.classes", "ddtool.shape"):
            if self.signature.get(key) != want[key]:
                label = key.split(".")[1]
                raise UsageError(
                    f"pool '{ref}' was trained on {label} '{self.signature.get(key)}', but this run uses "
                    f"'{want[key]}'; pretrain a pool for it with 'ddtool pretrain --dataset ...'"
                )
        if self.net != net:
            raise UsageError(
                f"pool '{ref}' holds {self.net.to_json()} networks, but the recipe's [net] is "
                f"{net.to_json()}; make them agree or pretrain a matching pool"
            )
