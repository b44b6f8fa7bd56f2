"""Early-stage model pools: N state dicts of one architecture, stored as one artifact."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch

from ddtool.data import ImageData
from ddtool.errors import UsageError
from ddtool.nets import NetSpec


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
        return {f"m{i}.{k}": v for i, sd in enumerate(self.states) for k, v in sd.items()}

    def metadata(self) -> dict[str, str]:
        return {**self.signature, "ddtool.net": self.net.to_json(), "ddtool.n": str(len(self)),
                "ddtool.models": json.dumps(self.models, sort_keys=True)}

    @classmethod
    def from_artifact(cls, tensors: dict[str, torch.Tensor], meta: dict[str, str], digest: str) -> "Pool":
        n = int(meta["ddtool.n"])
        states: list[dict[str, torch.Tensor]] = [{} for _ in range(n)]
        for key, value in tensors.items():
            idx, _, name = key.partition(".")
            states[int(idx[1:])][name] = value
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
