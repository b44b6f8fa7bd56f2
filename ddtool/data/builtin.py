"""Built-in datasets: scikit-learn's digits (no download) and ImageFolder trees."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ddtool.data.dataset import Dataset, ImageData, RegisterDataset
from ddtool.errors import DDToolError, UsageError
from ddtool.markers import hookimpl

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"})


@dataclass(frozen=True)
class Digits(Dataset):
    """scikit-learn's bundled 8x8 handwritten digits: 1,797 images, 10 classes, no download."""

    name: str = "digits"
    description: str = "scikit-learn's bundled 8x8 grey digits (embedded, no download)"
    takes_argument: bool = False
    test_fraction: float = 0.2
    split_seed: int = 0

    def load(self, arg: str | None, root: Path, download: bool) -> ImageData:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        bunch = load_digits()
        # pixel values are 0..16 counts; scale to the 0..255 range every other dataset uses
        images = torch.from_numpy(bunch.images * (255.0 / 16.0)).round().clamp(0, 255).to(torch.uint8)
        images = images.unsqueeze(1)
        labels = torch.from_numpy(bunch.target).long()
        tr, te = train_test_split(
            range(len(labels)), test_size=self.test_fraction, random_state=self.split_seed,
            stratify=bunch.target,
        )
        tr_i, te_i = torch.tensor(sorted(tr)), torch.tensor(sorted(te))
        return ImageData(self.name, [str(c) for c in range(10)], images[tr_i], labels[tr_i],
                         images[te_i], labels[te_i])


def _list_split(folder: Path, classes: list[str] | None) -> tuple[list[str], list[tuple[str, int]], list[list[object]]]:
    """The class folders under ``folder``, their image files (sorted) and those files' fingerprint."""
    from ddtool.data.cache import scan_files

    if not folder.is_dir():
        raise DDToolError(f"image folder '{folder}' is missing; expected class sub-folders under it")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not found:
        raise DDToolError(f"'{folder}' has no class sub-folders (expected {folder}/<class>/<image>)")
    if classes is not None and found != classes:
        raise DDToolError(f"'{folder}' has classes {found}, but the train split has {classes}")
    listed: list[tuple[str, int]] = []
    sources: list[list[object]] = []
    for c, cls in enumerate(found):
        files = scan_files(folder / cls, IMAGE_SUFFIXES)
        if not files:
            raise DDToolError(f"class folder '{folder / cls}' holds no images")
        listed += [(f, c) for f, _, _ in files]
        sources += [list(f) for f in files]
    return found, listed, sources


def _decode_listed(listed: list[tuple[str, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor

    images, labels, shape, mode = [], [], None, None
    for f, c in listed:
        try:
            with Image.open(f) as pil:
                if mode is None:  # the first image decides: grey sets stay one channel
                    mode = "L" if pil.mode in ("L", "1", "I;16", "I") else "RGB"
                img = pil_to_tensor(pil.convert(mode))
        except OSError as exc:
            raise DDToolError(f"cannot decode image '{f}': {exc}")
        if shape is None:
            shape = tuple(img.shape)
            if shape[1] != shape[2]:
                raise DDToolError(f"images must be square; '{f}' is {shape[2]}x{shape[1]}")
        elif tuple(img.shape) != shape:
            raise DDToolError(
                f"image '{f}' is {tuple(img.shape)} but earlier ones are {shape}; resize the folder "
                "to one size first"
            )
        images.append(img)
        labels.append(c)
    return torch.stack(images), torch.tensor(labels)


@dataclass(frozen=True)
class ImageFolderData(Dataset):
    """``imagefolder:PATH``: PATH/train/<class>/* and PATH/test/<class>/*, all one square size."""

    name: str = "imagefolder"
    description: str = "imagefolder:PATH with train/ and test/ class folders of same-size images"
    takes_argument: bool = True

    def load(self, arg: str | None, root: Path, download: bool) -> ImageData:
        from ddtool.data.cache import Split, image_data, load_or_decode

        path = Path(arg or "").expanduser()
        if not path.is_dir():
            raise UsageError(f"imagefolder path '{path}' is not a directory")
        # one spelling of the folder for the name and the cache key: a relative path on the command
        # line and the absolute one in an artifact's metadata must find the same cache
        path = path.resolve()
        name = f"imagefolder:{path}"
        classes: list[str] | None = None
        splits = []
        for split in ("train", "test"):  # decoded once, then read from DATA_ROOT/ddtool-cache
            classes, listed, sources = _list_split(path / split, classes)
            splits.append(load_or_decode(
                root, name, split, None, sources,
                lambda listed=listed, classes=classes: Split(*_decode_listed(listed), list(classes))))
        return image_data(name, *splits)


@hookimpl
def ddtool_register_datasets(register: RegisterDataset) -> None:
    register(Digits())
    register(ImageFolderData())
