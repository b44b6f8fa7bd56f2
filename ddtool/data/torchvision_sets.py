"""Real datasets from the data root: torchvision's CIFAR/MNIST/SVHN, Tiny-ImageNet, ImageNet subsets.

Every dataset is decoded once into class-indexed uint8 tensors and cached (``ddtool.data.cache``).
Where the files live under the data root (``--data-root``, ``$DDTOOL_DATA`` or the user cache
directory):

=================  ==========================================================================
cifar10            ``cifar-10-batches-py/`` (torchvision's layout)
cifar100           ``cifar-100-python/``
mnist              ``MNIST/raw/`` (the four idx files)
fashion-mnist      ``FashionMNIST/raw/``
svhn               ``svhn/train_32x32.mat``, ``svhn/test_32x32.mat``
tinyimagenet       ``tiny-imagenet-200/`` as unzipped (train/<wnid>/images, val/images + annotations)
imagenet-10/-100   ``imagenet/train/<wnid>/*``, ``imagenet/val/<wnid>/*`` (ImageFolder layout)
=================  ==========================================================================

``download=True`` lets torchvision fetch the first five (and Tiny-ImageNet); ImageNet cannot be
downloaded. Missing files are a one-line ``DDToolError`` naming the files and the folder.
Tiny-ImageNet and the ImageNet subsets take an optional resolution, ``imagenet-100:64``: images
are resized (shorter side) and centre-cropped to it (IDC's preprocessing); defaults 64 and 32.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from ddtool.data.cache import Split, fingerprint, image_data, load_or_decode
from ddtool.data.dataset import Dataset, ImageData, RegisterDataset
from ddtool.errors import DDToolError, UsageError
from ddtool.markers import hookimpl

HINT = "download it with --set data.download=true, or point --data-root at the folder that holds it"


def _missing(name: str, expected: str, folder: Path) -> DDToolError:
    return DDToolError(f"{name} not found: expected {expected} under {folder}; {HINT}")


# ---------------------------------------------------------------------------------------------
# torchvision datasets: CIFAR-10/100, MNIST, Fashion-MNIST, SVHN


@dataclass(frozen=True)
class TorchvisionSet(Dataset):
    """A torchvision dataset read from the data root (``subdir``), decoded to uint8 tensors."""

    name: str
    description: str
    tv_class: str  # class name in torchvision.datasets
    family: str  # cifar | mnist | svhn: how to construct it and where its arrays are
    folder: str  # where its files sit, relative to the torchvision root
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    expected: str  # the files, as the error message names them
    subdir: str = ""  # torchvision root relative to the data root
    takes_argument: bool = False

    def tv_root(self, root: Path) -> Path:
        return root / self.subdir if self.subdir else root

    def files(self, root: Path, split: str) -> list[Path]:
        base = self.tv_root(root) / self.folder
        return [base / f for f in (self.train_files if split == "train" else self.test_files)]

    def load(self, arg: str | None, root: Path, download: bool) -> ImageData:
        tv_root = self.tv_root(root)
        splits = []
        for split in ("train", "test"):
            files = self.files(root, split)
            if not all(f.is_file() for f in files):
                if not download:
                    raise _missing(self.name, self.expected, tv_root)
                self._construct(tv_root, split, download=True)
            splits.append(load_or_decode(root, self.name, split, None, fingerprint(files),
                                         lambda split=split: self.decode(tv_root, split)))
        return image_data(self.name, *splits)

    def _construct(self, tv_root: Path, split: str, download: bool) -> Any:
        import torchvision.datasets as tvd

        cls = getattr(tvd, self.tv_class)
        kwargs: dict[str, Any] = ({"split": split} if self.family == "svhn" else {"train": split == "train"})
        try:
            if download:
                tv_root.mkdir(parents=True, exist_ok=True)
            return cls(root=str(tv_root), download=download, **kwargs)
        except RuntimeError as exc:
            if "corrupted" in str(exc) or "not found" in str(exc).lower():
                raise DDToolError(
                    f"{self.name} files under {tv_root / self.folder} fail torchvision's checksum (incomplete or "
                    f"corrupt): delete them and download again with --set data.download=true")
            raise DDToolError(f"cannot read {self.name} from {tv_root}: {str(exc).splitlines()[0]}")
        except OSError as exc:  # urllib's URLError is an OSError: no network
            raise DDToolError(f"downloading {self.name} into {tv_root} failed: {exc}; "
                              f"copy {self.expected} there by hand")
        except Exception as exc:  # a damaged pickle / mat / idx file
            raise DDToolError(f"cannot read {self.name} from {tv_root}: {type(exc).__name__}: {exc}")

    def decode(self, tv_root: Path, split: str) -> Split:
        ds = self._construct(tv_root, split, download=False)
        if self.family == "cifar":  # numpy [N, 32, 32, 3], list of ints
            images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
            labels = torch.as_tensor(ds.targets, dtype=torch.int64)
            classes = [str(c) for c in ds.classes]
        elif self.family == "mnist":  # uint8 tensor [N, 28, 28]
            images = ds.data.unsqueeze(1).contiguous()
            labels = ds.targets.to(torch.int64)
            classes = [str(c) for c in ds.classes]
        else:  # svhn: numpy [N, 3, 32, 32], labels with 10 already mapped to 0
            images = torch.from_numpy(ds.data).contiguous()
            labels = torch.from_numpy(ds.labels).to(torch.int64)
            classes = [str(c) for c in range(10)]
        return Split(images.to(torch.uint8), labels, classes)


def _mnist_like(name: str, folder: str, tv_class: str, description: str) -> TorchvisionSet:
    return TorchvisionSet(
        name, description, tv_class, "mnist", f"{folder}/raw",
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        f"{folder}/raw/ (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
        "t10k-labels-idx1-ubyte)")


TORCHVISION_SETS = (
    TorchvisionSet(
        "cifar10", "CIFAR-10 (32x32 RGB, 10 classes, 50k/10k) from DATA_ROOT/cifar-10-batches-py",
        "CIFAR10", "cifar", "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)) + ("batches.meta",), ("test_batch", "batches.meta"),
        "cifar-10-batches-py/ (data_batch_1..5, test_batch, batches.meta)"),
    TorchvisionSet(
        "cifar100", "CIFAR-100 (32x32 RGB, 100 classes, 50k/10k) from DATA_ROOT/cifar-100-python",
        "CIFAR100", "cifar", "cifar-100-python", ("train", "meta"), ("test", "meta"),
        "cifar-100-python/ (train, test, meta)"),
    _mnist_like("mnist", "MNIST", "MNIST", "MNIST (28x28 grey, 10 classes, 60k/10k) from DATA_ROOT/MNIST/raw"),
    _mnist_like("fashion-mnist", "FashionMNIST", "FashionMNIST",
                "Fashion-MNIST (28x28 grey, 10 classes, 60k/10k) from DATA_ROOT/FashionMNIST/raw"),
    TorchvisionSet(
        "svhn", "SVHN (32x32 RGB digits, 73k/26k) from DATA_ROOT/svhn/{train,test}_32x32.mat",
        "SVHN", "svhn", "", ("train_32x32.mat",), ("test_32x32.mat",),
        "svhn/train_32x32.mat and svhn/test_32x32.mat", subdir="svhn"),
)


# ---------------------------------------------------------------------------------------------
# JPEG folders: Tiny-ImageNet and ImageNet subsets, resized + centre-cropped


def parse_resolution(name: str, arg: str | None, default: int) -> int:
    if not arg:
        return default
    try:
        res = int(arg)
    except ValueError:
        res = 0
    if not 8 <= res <= 512:
        raise UsageError(f"'{name}:{arg}': the argument is the resolution, an integer from 8 to 512 "
                         f"(e.g. {name}:{default})")
    return res


def _fit(path: Path, res: int) -> torch.Tensor:
    """Decode as RGB, resize the shorter side to ``res`` (bilinear, antialiased), centre-crop."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.size != (res, res):
                im.draft("RGB", (res, res))  # JPEG DCT scaling: decode at >= res, much faster
            im = im.convert("RGB")
            w, h = im.size
            if (w, h) != (res, res):
                if w <= h:
                    nw, nh = res, max(res, int(res * h / w))
                else:
                    nw, nh = max(res, int(res * w / h)), res
                im = im.resize((nw, nh), Image.BILINEAR)
                left, top = int(round((nw - res) / 2.0)), int(round((nh - res) / 2.0))
                im = im.crop((left, top, left + res, top + res))
            arr = np.asarray(im, dtype=np.uint8)
    except OSError as exc:
        raise DDToolError(f"cannot decode image '{path}': {exc}")
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def decode_files(files: list[Path], res: int) -> torch.Tensor:
    """uint8 [N, 3, res, res]; PIL releases the GIL while decoding, so threads use every core."""
    if not files:
        return torch.zeros(0, 3, res, res, dtype=torch.uint8)
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        return torch.stack(list(pool.map(lambda f: _fit(f, res), files, chunksize=64)))


def _decode_split(listed: list[tuple[Path, int]], classes: list[str], res: int) -> Split:
    return Split(decode_files([f for f, _ in listed], res), torch.tensor([c for _, c in listed], dtype=torch.int64),
                 list(classes))


JPEG_SUFFIXES = {".jpeg", ".jpg", ".png"}


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in JPEG_SUFFIXES and p.is_file())


@dataclass(frozen=True)
class TinyImageNet(Dataset):
    name: str = "tinyimagenet"
    description: str = ("Tiny-ImageNet (200 classes, 100k/10k val, 64x64) from DATA_ROOT/tiny-imagenet-200; "
                        "tinyimagenet:RES resizes")
    takes_argument: str = "optional"  # the resolution
    default_resolution: int = 64
    folder: str = "tiny-imagenet-200"
    url: str = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
    md5: str = "90528d7ca1a48142e341f4ef8d21d0de"
    expected: str = "tiny-imagenet-200/ (train/<wnid>/images/*.JPEG, val/images/*.JPEG, val/val_annotations.txt)"

    def load(self, arg: str | None, root: Path, download: bool) -> ImageData:
        res = parse_resolution(self.name, arg, self.default_resolution)
        base = root / self.folder
        if not (base / "train").is_dir() or not (base / "val" / "val_annotations.txt").is_file():
            if not download:
                raise _missing(self.name, self.expected, root)
            from torchvision.datasets.utils import download_and_extract_archive

            try:
                download_and_extract_archive(self.url, str(root), md5=self.md5)
            except (OSError, RuntimeError) as exc:
                raise DDToolError(f"downloading {self.name} into {root} failed: {exc}")
        classes = sorted(p.name for p in (base / "train").iterdir() if p.is_dir())
        if not classes:
            raise _missing(self.name, self.expected, root)
        index = {c: i for i, c in enumerate(classes)}
        train: list[tuple[Path, int]] = []
        for c in classes:
            folder = base / "train" / c / "images"
            if not folder.is_dir():
                raise DDToolError(f"{self.name}: '{folder}' is missing (expected {self.expected} under {root})")
            train += [(f, index[c]) for f in _images_in(folder)]
        test: list[tuple[Path, int]] = []
        for line in (base / "val" / "val_annotations.txt").read_text().splitlines():
            parts = line.split("\t")
            if len(parts) < 2:
                continue
            if parts[1] not in index:
                raise DDToolError(f"{self.name}: val_annotations.txt names class '{parts[1]}', which has no "
                                  f"train/{parts[1]} folder")
            test.append((base / "val" / "images" / parts[0], index[parts[1]]))
        test.sort(key=lambda t: t[0].name)
        name = self.name if res == self.default_resolution else f"{self.name}:{res}"
        return _cached_pair(root, name, res, classes, train, test)


def _cached_pair(root: Path, name: str, res: int, classes: list[str], train: list[tuple[Path, int]],
                 test: list[tuple[Path, int]]) -> ImageData:
    splits = []
    for split, listed in (("train", train), ("test", test)):
        try:
            sources = fingerprint(f for f, _ in listed)
        except FileNotFoundError as exc:
            raise DDToolError(f"{name}: '{exc.filename}' is listed but missing")
        splits.append(load_or_decode(root, name, split, res, sources,
                                     lambda listed=listed: _decode_split(listed, classes, res)))
    return image_data(name, *splits)


@lru_cache(maxsize=1)
def imagenet100_classes() -> tuple[str, ...]:
    """The ImageNet-100 WordNet ids (CMC's list, shipped as ddtool/data/imagenet100.txt), in order."""
    text = resources.files("ddtool.data").joinpath("imagenet100.txt").read_text()
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


@dataclass(frozen=True)
class ImageNetSubset(Dataset):
    """The first ``n`` classes of the ImageNet-100 list from DATA_ROOT/imagenet/{train,val}/<wnid>/."""

    name: str
    n: int
    description: str
    takes_argument: str = "optional"  # the resolution
    default_resolution: int = 32
    folder: str = "imagenet"

    def load(self, arg: str | None, root: Path, download: bool) -> ImageData:
        res = parse_resolution(self.name, arg, self.default_resolution)
        base = root / self.folder
        classes = list(imagenet100_classes()[: self.n])
        expected = f"{self.folder}/train/<wnid>/ and {self.folder}/val/<wnid>/ (ImageFolder layout; wnids " \
                   f"{classes[0]}, {classes[1]}, ... listed in ddtool/data/imagenet100.txt)"
        listed = {}
        for split in ("train", "val"):
            missing = [c for c in classes if not (base / split / c).is_dir()]
            if missing:
                if len(missing) == len(classes) and download:
                    raise DDToolError(f"{self.name} not found, and ImageNet cannot be downloaded automatically "
                                      f"(its licence needs a login at image-net.org): put {expected} under {root}")
                if len(missing) == len(classes):
                    raise _missing(self.name, expected, root)
                shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
                raise DDToolError(f"{self.name}: {len(missing)} of its {len(classes)} class folders are missing "
                                  f"under {base / split} ({shown})")
            listed[split] = [(f, i) for i, c in enumerate(classes) for f in _images_in(base / split / c)]
            seen = {j for _, j in listed[split]}
            empty = [c for i, c in enumerate(classes) if i not in seen]
            if empty:
                raise DDToolError(f"{self.name}: class folder '{base / split / empty[0]}' holds no images")
        name = self.name if res == self.default_resolution else f"{self.name}:{res}"
        return _cached_pair(root, name, res, classes, listed["train"], listed["val"])


JPEG_SETS = (
    TinyImageNet(),
    ImageNetSubset("imagenet-10", 10, "ImageNet-10: first 10 classes of the ImageNet-100 list, from "
                   "DATA_ROOT/imagenet; 32x32 (imagenet-10:RES for another size)"),
    ImageNetSubset("imagenet-100", 100, "ImageNet-100 (CMC class list, as IDC/Acc-DD), from DATA_ROOT/imagenet; "
                   "32x32 (imagenet-100:RES for another size)"),
)


@hookimpl
def ddtool_register_datasets(register: RegisterDataset) -> None:
    for ds in TORCHVISION_SETS:
        register(ds, aliases=("fmnist",) if ds.name == "fashion-mnist" else ())
    register(JPEG_SETS[0], aliases=("tiny-imagenet",))
    for ds in JPEG_SETS[1:]:
        register(ds)
