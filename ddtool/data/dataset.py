"""The in-memory form every dataset is decoded to, the contract of a dataset, and the lookup by name."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Protocol, Sequence

import torch

from ddtool.errors import UsageError

if TYPE_CHECKING:
    from ddtool.data.zca import ZCA


@dataclass
class ImageData:
    """Train and test images as uint8 [N, C, H, W] with int64 labels, plus statistics."""

    name: str
    classes: list[str]
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    _by_class: list[torch.Tensor] = field(default_factory=list, repr=False)
    _stats_cache: dict = field(default_factory=dict, repr=False, compare=False)
    # ZCA whitening after the mean/std normalisation (the '+zca' data option, ddtool.data.zca)
    zca: ZCA | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.mean:
            x = self.train_images.float() / 255.0
            self.mean = tuple(x.mean(dim=(0, 2, 3)).tolist())
            self.std = tuple(x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist())
        # one stable sort instead of a pass per class: each class's indices, ascending
        order = torch.argsort(self.train_labels, stable=True)
        counts = torch.bincount(self.train_labels, minlength=self.num_classes).tolist()
        self._by_class = list(torch.split(order, counts))[: self.num_classes]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def resolution(self) -> int:
        return int(self.train_images.shape[-1])

    def class_indices(self, c: int) -> torch.Tensor:
        return self._by_class[c]

    def class_counts(self) -> list[int]:
        return [len(i) for i in self._by_class]

    def stats(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) as [1, C, 1, 1] tensors on ``device``, built once per device and dtype.

        Treat them as read-only: they are shared by every caller.
        """
        key = (torch.device(device), dtype, self.mean, self.std)  # a changed mean/std gets new tensors
        hit = self._stats_cache.get(key)
        if hit is None:
            hit = (torch.tensor(self.mean, device=device, dtype=dtype).view(1, -1, 1, 1),
                   torch.tensor(self.std, device=device, dtype=dtype).view(1, -1, 1, 1))
            self._stats_cache[key] = hit
        return hit

    def normalize(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """uint8 pixels -> what networks see: mean/std per channel, then ZCA-whitened when the data is."""
        mean, std = self.stats(images_uint8.device)
        x = (images_uint8.float() / 255.0 - mean) / std
        return x if self.zca is None else self.zca.apply(x)

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        """Normalized (and whitened) float -> [0, 1] float, for display."""
        if self.zca is not None:
            images = self.zca.invert(images)
        mean, std = self.stats(images.device)
        return (images * std + mean).clamp(0, 1)

    def sample_class(self, c: int, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Indices of up to n distinct training images of class c (global RNG unless a generator)."""
        idx = self._by_class[c]
        perm = torch.randperm(len(idx), generator=generator)[:n]
        return idx[perm]

    def signature(self) -> dict[str, str]:
        """What a pool or synthetic set must agree with to be used on this dataset, as metadata."""
        from ddtool.store.meta import DatasetSignature

        return DatasetSignature.of(self).to_metadata()


class Dataset:
    """The contract of a dataset (``ddtool.api.Dataset``): a name and how to load it.

    ``name`` and ``description`` have no default (set both): the built-in datasets are
    dataclasses whose leading fields are these two, and a value here would become their default.
    """

    name: str  # the registry name: --dataset NAME, [data] dataset = "NAME"
    description: str  # one line for 'ddtool plugins'
    # whether the name takes ':ARGUMENT' (imagefolder:PATH, tinyimagenet:RES): False (never),
    # True (required) or "optional"; load() gets it as ``arg`` (None when absent)
    takes_argument: bool | Literal["optional"] = False

    def load(self, arg: str | None, root: Path, download: bool) -> ImageData:
        """The decoded dataset. ``root`` is the data root (--data-root, [data] root, $DDTOOL_DATA
        or the user cache); ``download``: whether fetching missing files is allowed."""
        raise NotImplementedError(f"dataset '{self.name}' does not implement load")


def data_root(root: str | Path | None = None) -> Path:
    if root:
        return Path(root).expanduser()
    env = os.environ.get("DDTOOL_DATA")
    if env:
        return Path(env).expanduser()
    import platformdirs  # only for the default: a bare checkout on PYTHONPATH (a GPU box) may lack it

    return platformdirs.user_cache_path("ddtool") / "data"


def _zca_option(data: ImageData, arg: str | None, root: Path) -> ImageData:
    from ddtool.data.zca import whiten

    return whiten(data, arg, root)


# the per-channel (mean, std) the reference codebases normalise with: DC/DSA/DM, IDC, Acc-DD and
# MTT use the "cifar" constants for CIFAR-10 and CIFAR-100 (std 0.2023 is the mean of per-image
# stds, not the pixel std 0.247 a dataset's own statistics give), torchvision's ImageNet ones
NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def _norm_option(data: ImageData, arg: str | None, root: Path) -> ImageData:
    """``+norm=NAME``: normalise with the constants NORMALIZATIONS[NAME] instead of the data's own
    statistics. It matters beyond a rescaling: DSA's brightness jitter is +-0.5 in normalised units,
    so the constants set its strength in pixels (IDC on CIFAR-10, BENCHMARKS.md issue 11)."""
    if arg not in NORMALIZATIONS:
        raise UsageError(f"'+norm={arg or ''}': choose one of {', '.join(NORMALIZATIONS)}, e.g. cifar10+norm=cifar")
    if data.zca is not None:  # the whitening was fitted on the earlier normalisation
        raise UsageError(f"'+norm={arg}' after '+zca' in '{data.name}': write +norm first, e.g. cifar10+norm=cifar+zca")
    mean, std = NORMALIZATIONS[arg]
    if len(mean) != data.channels:
        raise UsageError(f"'+norm={arg}' has {len(mean)} channels but '{data.name}' has {data.channels}")
    return replace(data, name=f"{data.name}+norm={arg}", mean=mean, std=std, _stats_cache={})


# data options: ``DATASET+NAME`` or ``DATASET+NAME=ARG`` applies DATA_OPTIONS[NAME](data, ARG, root)
# to the loaded data; the option stays in the data's name, so artifacts record it and ``eval``
# loads the same transformed data
DATA_OPTIONS: dict[str, Callable[[ImageData, Any, Path], ImageData]] = {"norm": _norm_option, "zca": _zca_option}


def split_options(spec: str) -> tuple[str, list[tuple[str, str | None]]]:
    """``cifar10+zca=0.1`` -> (``cifar10``, [("zca", "0.1")]); only registered option names are split off."""
    options: list[tuple[str, str | None]] = []
    while "+" in spec:
        head, _, tail = spec.rpartition("+")
        name, eq, arg = tail.partition("=")
        if name not in DATA_OPTIONS:
            break
        options.insert(0, (name, arg if eq else None))
        spec = head
    return spec, options


def dataset_name(spec: str) -> str:
    """The registry name in a dataset spec: ``imagefolder`` of ``imagefolder:PATH+zca``."""
    return split_options(spec)[0].partition(":")[0]


def load_with(ds: Dataset, spec: str, root: str | Path | None = None, download: bool = False) -> ImageData:
    """``spec`` (``NAME[:ARG][+OPTION...]``) loaded by ``ds``, the dataset registered as NAME (the
    caller looks it up: :func:`ddtool.lookup.load_dataset`); a ``+OPTION`` suffix (``cifar10+zca``)
    transforms the loaded data (:data:`DATA_OPTIONS`)."""
    spec, options = split_options(spec)
    name, _, arg = spec.partition(":")
    takes = ds.takes_argument
    if arg and not takes:
        raise UsageError(f"dataset '{name}' takes no ':ARGUMENT' (got '{spec}')")
    if not arg and takes is True:
        raise UsageError(f"dataset '{name}' needs a path: write '{name}:PATH'")
    data = ds.load(arg or None, data_root(root), download)
    for option, value in options:
        data = DATA_OPTIONS[option](data, value, data_root(root))
    return data


class RegisterDataset(Protocol):
    """What a ``ddtool_register_datasets`` hook is handed (:mod:`ddtool.hookspecs`)."""

    def __call__(self, dataset: Dataset, /, aliases: Sequence[str] = ()) -> None: ...
