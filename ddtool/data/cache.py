"""Decode a dataset split once; afterwards read it back from a safetensors cache.

A split (train or test) is cached as class-indexed tensors, ``images`` uint8 [N, C, H, W] and
``labels`` int64 [N], under ``DATA_ROOT/ddtool-cache/``. The file name carries a key: the
sha256 of the dataset name, the split, the resolution, the cache format and every source
file's path, size and mtime, so editing, adding or removing a source file decodes again. The
class names and per-channel mean/std live in the safetensors metadata (strings only), so a
cached load does no pass over the pixels. Files are written to a temporary name and moved
into place with ``os.replace``; a cache that cannot be written or read is skipped, never an
error (the data root may be read-only).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch

from ddtool.data.dataset import ImageData
from ddtool.errors import DDToolError

CACHE_FOLDER = "ddtool-cache"
FORMAT = "1"


@dataclass
class Split:
    """One decoded split: uint8 [N, C, H, W] images, int64 labels indexing ``classes``."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.mean and self.images.numel():
            self.mean, self.std = channel_stats(self.images)


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (unbiased) std of uint8 images in [0, 1], chunk by chunk in float64."""
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    squares = torch.zeros(c, dtype=torch.float64)
    for start in range(0, images.shape[0], chunk):
        x = images[start : start + chunk].to(torch.float64).div_(255.0)
        total += x.sum(dim=(0, 2, 3))
        squares += x.square().sum(dim=(0, 2, 3))
    n = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / n
    var = (squares - n * mean.square()) / max(n - 1, 1)
    std = var.clamp_min(0).sqrt().clamp_min(1e-3)
    return tuple(mean.tolist()), tuple(std.tolist())


def fingerprint(files: Iterable[Path | str]) -> list[list[object]]:
    """[path, size, mtime_ns] of every source file: the part of the cache key that tracks the data."""
    out: list[list[object]] = []
    for p in files:
        st = os.stat(p)
        out.append([str(p), st.st_size, st.st_mtime_ns])
    return out


def scan_files(folder: Path | str, suffixes: set[str] | frozenset[str]) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) of the files directly in ``folder`` with one of ``suffixes``, by name.

    One ``os.scandir`` pass and one stat per file: listing 60,000 files this way takes a fraction
    of a second, which is what lets a cached load skip decoding yet still notice changed files.
    """
    out: list[tuple[str, int, int]] = []
    with os.scandir(folder) as entries:
        for e in entries:
            dot = e.name.rfind(".")
            if dot > 0 and e.name[dot:].lower() in suffixes and e.is_file():
                st = e.stat()
                out.append((e.path, st.st_size, st.st_mtime_ns))
    out.sort()
    return out


def _prefix(dataset: str, split: str, resolution: int | None) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", dataset.split(":", 1)[0]).strip("-")[:40] or "data"
    tag = hashlib.sha256(dataset.encode()).hexdigest()[:8]
    return f"{slug}-{tag}-{split}-{resolution or 'native'}-"


def cache_path(root: Path, dataset: str, split: str, resolution: int | None, key: str) -> Path:
    return root / CACHE_FOLDER / f"{_prefix(dataset, split, resolution)}{key[:24]}.safetensors"


def _key(dataset: str, split: str, resolution: int | None, sources: list[list[object]]) -> str:
    blob = json.dumps({"format": FORMAT, "dataset": dataset, "split": split, "resolution": resolution,
                       "sources": sources}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


# The cache file's own metadata (not an artifact's: the class names are a JSON list here),
# spelled only in the next two functions.
def _cache_metadata(key: str, split: Split, dataset: str, split_name: str) -> dict[str, str]:
    return {"ddtool.cache_key": key, "ddtool.cache_format": FORMAT, "ddtool.dataset": dataset,
            "ddtool.split": split_name, "ddtool.classes": json.dumps(split.classes),
            "ddtool.mean": json.dumps(list(split.mean)), "ddtool.std": json.dumps(list(split.std))}


def _cached_split(meta: dict[str, str], key: str, tensors: Callable[[], tuple[torch.Tensor, torch.Tensor]]
                  ) -> Split | None:
    """The split a cache file holds when its metadata carries ``key``; ``tensors`` reads them."""
    if meta.get("ddtool.cache_key") != key:
        return None
    images, labels = tensors()
    return Split(images, labels, json.loads(meta["ddtool.classes"]),
                 tuple(json.loads(meta["ddtool.mean"])), tuple(json.loads(meta["ddtool.std"])))


def _read(path: Path, key: str) -> Split | None:
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            return _cached_split(f.metadata() or {}, key, lambda: (f.get_tensor("images"), f.get_tensor("labels")))
    except Exception:  # a damaged or foreign file is a cache miss, never an error
        return None


def _write(path: Path, key: str, split: Split, dataset: str, split_name: str) -> None:
    from safetensors.torch import save_file

    folder = path.parent
    tmp = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".incomplete", dir=folder)
        os.close(fd)
        save_file({"images": split.images.contiguous(), "labels": split.labels.contiguous()}, tmp,
                  metadata=_cache_metadata(key, split, dataset, split_name))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a shared data root's cache serves everyone
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        print(f"ddtool: not caching {dataset} {split_name} under {folder}: {exc.strerror or exc}", file=sys.stderr)
        return
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    # older versions of the same dataset/split/resolution (sources since changed) are dead weight
    stem = path.name[: -len(path.name.split("-")[-1])]
    for old in folder.glob(stem + "*.safetensors"):
        if old != path:
            try:
                old.unlink()
            except OSError:
                pass


def load_or_decode(root: Path, dataset: str, split: str, resolution: int | None, sources: list[list[object]],
                   decode: Callable[[], Split]) -> Split:
    """The cached split when its key matches, else ``decode()`` (then cached)."""
    key = _key(dataset, split, resolution, sources)
    path = cache_path(root, dataset, split, resolution, key)
    hit = _read(path, key)
    if hit is not None:
        return hit
    print(f"ddtool: decoding {dataset} {split} (first use; cached in {path.parent})", file=sys.stderr)
    fresh = decode()
    if fresh.images.dtype != torch.uint8 or fresh.images.dim() != 4:
        raise DDToolError(f"internal: {dataset} {split} decoded to {fresh.images.dtype} {tuple(fresh.images.shape)}")
    fresh.labels = fresh.labels.to(torch.int64)
    _write(path, key, fresh, dataset, split)
    return fresh


def image_data(name: str, train: Split, test: Split) -> ImageData:
    """Train and test splits -> ImageData, reusing the cached train statistics."""
    if train.classes != test.classes:
        raise DDToolError(f"{name}: the train split has classes {train.classes[:5]}..., the test split "
                          f"{test.classes[:5]}...")
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DDToolError(f"{name}: train images are {tuple(train.images.shape[1:])} but test images "
                          f"{tuple(test.images.shape[1:])}")
    return ImageData(name, list(train.classes), train.images, train.labels, test.images, test.labels,
                     mean=tuple(train.mean), std=tuple(train.std))
