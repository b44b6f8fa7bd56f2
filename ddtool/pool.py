"""Early-stage model pools: N state dicts of one architecture, stored as one artifact."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ddtool.data import ImageData
from ddtool.errors import DDToolError, UsageError
from ddtool.nets import NetSpec
from ddtool.store import Artifact, Store
from ddtool.store.meta import DatasetSignature, PoolMeta


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
    """N models of one architecture; the pool artifact's only reader and writer (``to_artifact``/``from_artifact``)."""

    net: NetSpec
    states: list[dict[str, torch.Tensor]]
    models: list[dict[str, Any]] = field(default_factory=list)  # per-model hyper-parameters, accuracy
    signature: DatasetSignature = field(default_factory=DatasetSignature)
    digest: str = ""
    # how it was made (pretrain): None when not recorded
    recipe_sha256: str | None = None
    seed: int | None = None
    epochs: int | None = None

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
        return replace(self, states=states)

    def to_artifact(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """(tensors, metadata) to store; the metadata repeats the net's name as ``arch`` (ddtool 0.1 did)."""
        info = PoolMeta(signature=self.signature, net=self.net.to_json(), n=len(self), models=self.models,
                        recipe_sha256=self.recipe_sha256, seed=self.seed, arch=self.net.name, epochs=self.epochs)
        return self.to_tensors(), info.to_metadata()

    @classmethod
    def from_artifact(cls, tensors: dict[str, torch.Tensor], meta: dict[str, str], digest: str) -> "Pool":
        info = PoolMeta.from_metadata(meta)
        if info.n is None or info.net is None or info.models is None:
            raise DDToolError(f"pool {digest[:12]} does not record its size, network and models; it cannot be used")
        states = states_from_tensors(tensors, info.n)
        return cls(NetSpec.from_json(info.net), states, info.models, info.signature, digest,
                   recipe_sha256=info.recipe_sha256, seed=info.seed, epochs=info.epochs)

    def check_compatible(self, data: ImageData, net: NetSpec, ref: str) -> None:
        """Refuse a pool trained on another dataset or architecture."""
        diff = self.signature.difference(DatasetSignature.of(data))
        if diff is not None:
            label, have, want = diff
            raise UsageError(
                f"pool '{ref}' was trained on {label} '{have}', but this run uses "
                f"'{want}'; pretrain a pool for it with 'ddtool pretrain --dataset ...'"
            )
        if self.net != net:
            raise UsageError(
                f"pool '{ref}' holds {self.net.to_json()} networks, but the recipe's [net] is "
                f"{net.to_json()}; make them agree or pretrain a matching pool"
            )


def newest_compatible(store: Store, data: ImageData, net: NetSpec) -> Artifact | None:
    """The most recently stored pool made for this dataset and network, or None.

    What a recipe falls back to when the pool it names is not in the store (the design card's
    ``ddtool pretrain --epochs 2 --n 5`` names its pool after the dataset and net, not the recipe).
    """
    want = DatasetSignature.of(data)
    best: tuple[float, int, Artifact] | None = None
    for art in store.list():
        if art.kind != "pool" or not art.path.exists():
            continue
        info = PoolMeta.from_metadata(store.blob_metadata(art.digest))
        if info.net is None or NetSpec.from_json(info.net) != net or info.signature.difference(want) is not None:
            continue
        if info.models and all(m.get("full_data") for m in info.models):
            continue  # converged full-data teachers ('eval --save-teacher'), not an early-stage pool
        key = (art.path.stat().st_mtime, art.version or 0, art)
        if best is None or key[:2] >= best[:2]:
            best = key
    return best[2] if best else None
