"""A recipe's names made into objects through the plugin registries: a dataset spec loaded, a
network built. The look-up lives here, above the data and the nets, so that those packages
never reach up to the registries; they take the resolved dataset or architecture."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ddtool.data.dataset import ImageData, dataset_name, load_with
from ddtool.nets.factory import NetSpec, build_architecture
from ddtool.plugins import registries


def load_dataset(spec: str, root: str | Path | None = None, download: bool = False) -> ImageData:
    """``digits``, ``cifar10``, ``imagefolder:PATH``...: look the name up in the registry; a
    ``+OPTION`` suffix (``cifar10+zca``) transforms the loaded data (``ddtool.data.dataset.DATA_OPTIONS``)."""
    return load_with(registries().dataset.get(dataset_name(spec)), spec, root, download)


def build_net(spec: NetSpec, channels: int, num_classes: int, resolution: int) -> nn.Module:
    """The network ``spec`` names, built by its registered architecture."""
    arch = registries().architecture.get(spec.name)
    return build_architecture(arch, spec, channels, num_classes, resolution)


def check_net(spec: NetSpec, channels: int, num_classes: int, resolution: int) -> nn.Module:
    """Build ``spec`` once, as a check before any work (and before a run record): an unknown or
    uninstalled architecture, or settings it rejects, is a :class:`UsageError` here, not a failed
    run. The global RNG is left as it was, so the run's own draws do not move; returns the network."""
    with torch.random.fork_rng(devices=[]):
        return build_net(spec, channels, num_classes, resolution)
