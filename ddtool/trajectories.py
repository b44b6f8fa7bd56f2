"""Expert trajectories (MTT, Cazenavette et al. 2022): N networks trained on the real data, each
stored as its parameters after every epoch (epoch 0 = the initialisation).

Stored as one blob per expert (kind ``expert``: a float32 tensor ``snapshots`` of shape
``[epochs + 1, P]``, every row the flat parameter vector) and one index artifact
``trajectories/NAME`` that names the expert blobs by digest, with the parameter layout, the
training settings and each expert's accuracy per epoch (:class:`ddtool.store.meta.TrajectoryMeta`).
A distillation run reads the index when it is planned and an expert's blob only when it samples
that expert (:meth:`Trajectories.snapshots`, with a small cache), so a buffer of many experts
is never loaded whole. ``store verify`` checks that the index's experts are there and intact;
``store gc`` keeps them while the index is.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from math import prod
from typing import Any, Callable

import torch
from torch import nn

from ddtool.data import ImageData
from ddtool.errors import DDToolError, UsageError
from ddtool.nets import NetSpec
from ddtool.store import Artifact, Store
from ddtool.store.meta import EXPERT_KIND, TRAJECTORIES_KIND, DatasetSignature, ExpertMeta, TrajectoryMeta, kind_of
from ddtool.store.refs import parse_ref

SNAPSHOTS = "snapshots"  # the tensor of an expert blob: [epochs + 1, P]
TEST_ACC = "test_acc"  # of the index: [n, epochs + 1], test accuracy after each epoch (epoch 0: the init)
TRAIN_LOSS = "train_loss"  # of the index: [n, epochs], mean training loss of each epoch

Layout = list[tuple[str, tuple[int, ...]]]


def param_layout(net: nn.Module) -> Layout:
    """The flat parameter vector of ``net``: (name, shape) of every parameter, in order."""
    return [(name, tuple(p.shape)) for name, p in net.named_parameters()]


def flat_params(net: nn.Module) -> torch.Tensor:
    """The parameters of ``net`` as one detached flat vector (the :func:`param_layout` order)."""
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()])


def unflatten(theta: torch.Tensor, layout: Layout) -> dict[str, torch.Tensor]:
    """Views of the flat vector ``theta`` as named parameters (for ``torch.func.functional_call``):
    no copy, so gradients flow back to ``theta``."""
    sizes = [prod(shape) for _, shape in layout]
    return {name: part.view(shape) for (name, shape), part in zip(layout, theta.split(sizes))}


def check_parameters_only(net: nn.Module, what: str) -> None:
    """Refuse a network with buffers (batch norm's running statistics): a trajectory records
    parameters only, and a student following it could not follow the buffers."""
    buffers = [name for name, _ in net.named_buffers()]
    if buffers:
        raise UsageError(
            f"{what} follows network parameters only, but this [net] keeps buffers ({buffers[0]}, ...: "
            "batch norm's running statistics); use net.norm = \"instance\" (MTT's ConvNet) or \"none\""
        )


@dataclass(eq=False)  # tensors inside: compare digests, not objects
class Trajectories:
    """N expert trajectories of one architecture; the index artifact's only reader and writer
    (``to_artifact``/``from_artifact``) and the lazy reader of the expert blobs (``snapshots``)."""

    net: NetSpec
    layout: Layout
    epochs: int
    experts: list[str]  # digests of the expert blobs, in order
    training: dict[str, Any] = field(default_factory=dict)
    test_acc: torch.Tensor | None = None  # [n, epochs + 1]
    train_loss: torch.Tensor | None = None  # [n, epochs]
    signature: DatasetSignature = field(default_factory=DatasetSignature)
    digest: str = ""
    recipe_sha256: str | None = None
    seed: int | None = None
    # digest -> [epochs + 1, P] snapshots: the store's blob reader, or a dict for sets made in memory
    loader: Callable[[str], torch.Tensor] | None = field(default=None, repr=False)
    cache_size: int = 4  # experts kept in memory (an expert of ConvNet-3 on CIFAR over 50 epochs: 65 MB)
    _cache: OrderedDict[str, torch.Tensor] = field(default_factory=OrderedDict, repr=False)

    def __len__(self) -> int:
        return len(self.experts)

    @property
    def num_params(self) -> int:
        return sum(prod(shape) for _, shape in self.layout)

    def snapshots(self, i: int) -> torch.Tensor:
        """Expert i's parameters after every epoch, ``[epochs + 1, P]`` on the host, read from its
        blob on first use (the last ``cache_size`` experts stay in memory)."""
        digest = self.experts[i]
        if digest in self._cache:
            self._cache.move_to_end(digest)
            return self._cache[digest]
        if self.loader is None:
            raise DDToolError("these trajectories were not loaded from a store; their experts cannot be read")
        snaps = self.loader(digest)
        want = (self.epochs + 1, self.num_params)
        if tuple(snaps.shape) != want:
            raise DDToolError(f"expert blob {digest[:12]} holds snapshots {tuple(snaps.shape)}, but its index "
                              f"{self.digest[:12] or '(in memory)'} says {want}; run 'ddtool store verify'")
        self._cache[digest] = snaps
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return snaps

    def meta(self) -> TrajectoryMeta:
        return TrajectoryMeta(signature=self.signature, net=self.net.to_json(), n=len(self), epochs=self.epochs,
                              experts=tuple(self.experts), layout=[[n, list(s)] for n, s in self.layout],
                              training=self.training, recipe_sha256=self.recipe_sha256, seed=self.seed)

    def to_artifact(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """(tensors, metadata) of the index: the accuracy curves as tensors, the rest as metadata."""
        n, e = len(self), self.epochs
        test_acc = self.test_acc if self.test_acc is not None else torch.full((n, e + 1), float("nan"))
        train_loss = self.train_loss if self.train_loss is not None else torch.full((n, e), float("nan"))
        return {TEST_ACC: test_acc.float(), TRAIN_LOSS: train_loss.float()}, self.meta().to_metadata()

    @classmethod
    def from_artifact(cls, tensors: dict[str, torch.Tensor], meta: dict[str, str], digest: str,
                      store: Store | None = None) -> "Trajectories":
        """The index as stored; with ``store``, experts are read from it when sampled."""
        info = TrajectoryMeta.from_metadata(meta)
        if info.net is None or info.epochs is None or info.experts is None or info.layout is None:
            raise DDToolError(f"trajectories {digest[:12]} do not record their network, epochs, experts and "
                              "parameter layout; they cannot be used")
        layout = [(str(name), tuple(int(d) for d in shape)) for name, shape in info.layout]
        return cls(NetSpec.from_json(info.net), layout, info.epochs, list(info.experts), dict(info.training or {}),
                   tensors.get(TEST_ACC), tensors.get(TRAIN_LOSS), info.signature, digest, info.recipe_sha256,
                   info.seed, loader=(lambda d: read_expert(store, d)) if store is not None else None)

    def check_compatible(self, data: ImageData, net: NetSpec, ref: str) -> None:
        """Refuse trajectories of another dataset or architecture (as :meth:`ddtool.pool.Pool.check_compatible`)."""
        diff = self.signature.difference(DatasetSignature.of(data))
        if diff is not None:
            label, have, want = diff
            raise UsageError(f"trajectories '{ref}' were trained on {label} '{have}', but this run uses '{want}'; "
                             "make them for it with 'ddtool pretrain --trajectories --dataset ...'")
        if self.net != net:
            raise UsageError(f"trajectories '{ref}' hold {self.net.to_json()} networks, but the recipe's [net] is "
                             f"{net.to_json()}; make them agree or run 'ddtool pretrain --trajectories' with this [net]")


def expert_artifact(snapshots: torch.Tensor, signature: DatasetSignature, net: NetSpec,
                    seed: int | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of one expert's blob: ``snapshots`` is ``[epochs + 1, P]``."""
    info = ExpertMeta(signature=signature, epochs=snapshots.shape[0] - 1, seed=seed, net=net.to_json())
    return {SNAPSHOTS: snapshots.detach().float().contiguous()}, info.to_metadata()


def read_expert(store: Store, digest: str) -> torch.Tensor:
    """An expert blob's snapshots (the whole blob is read and its sha256 checked)."""
    tensors, meta = store.read_blob(digest)
    if kind_of(meta) != EXPERT_KIND or SNAPSHOTS not in tensors:
        raise DDToolError(f"blob {digest[:12]} is a {kind_of(meta, '?')} blob, not an expert trajectory; "
                          "run 'ddtool store verify'")
    return tensors[SNAPSHOTS]


def load_trajectories(store: Store, ref: str, data: ImageData, net: NetSpec) -> tuple[Artifact, Trajectories]:
    """The trajectories a run names, checked against its data and network; one line naming
    ``ddtool pretrain --trajectories`` when they are not named or not in the store."""
    make = ("make them with 'ddtool pretrain --trajectories --recipe RECIPE' "
            "(the same recipe: its [pretrain] name and [net]), or import MTT's or DATM's replay_buffer_N.pt files "
            "with 'ddtool store import DIR --kind trajectories --recipe RECIPE'")
    if not ref:
        raise UsageError(f"no expert trajectories named: set [distill.options] trajectories = \"trajectories/NAME\" "
                         f"and {make}")
    parsed = parse_ref(ref)  # a malformed ref is its own error
    try:
        art = store.resolve(parsed)
    except UsageError:
        raise UsageError(f"trajectories '{ref}' are not in the store; {make}") from None
    if art.kind != TRAJECTORIES_KIND:
        raise UsageError(f"'{ref}' is a {art.kind} artifact, not expert trajectories; {make}")
    tensors, meta = store.read_blob(art.digest)
    traj = Trajectories.from_artifact(tensors, meta, art.digest, store)
    traj.check_compatible(data, net, ref)
    return art, traj
