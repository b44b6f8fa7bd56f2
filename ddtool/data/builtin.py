"""Built-in datasets: scikit-learn's digits (no download) and ImageFolder trees."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ddtool.data.dataset import ImageData
from ddtool.errors import DDToolError, UsageError
from ddtool.hookspecs import hookimpl

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}


@dataclass(frozen=True)
class Digits:
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


def _read_split(folder: Path, classes: list[str] | None) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor

    if not folder.is_dir():
        raise DDToolError(f"image folder '{folder}' is missing; expected class sub-folders under it")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not found:
        raise DDToolError(f"'{folder}' has no class sub-folders (expected {folder}/<class>/<image>)")
    if classes is not None and found != classes:
        raise DDToolError(f"'{folder}' has classes {found}, but the train split has {classes}")
    images, labels, shape, mode = [], [], None, None
    for c, cls in enumerate(found):
        files = sorted(p for p in (folder / cls).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DDToolError(f"class folder '{folder / cls}' holds no images")
        for f in files:
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
    return found, torch.stack(images), torch.tensor(labels)


@dataclass(frozen=True)
class ImageFolderData:
    """``imagefolder:PATH``: PATH/train/<class>/* and PATH/test/<class>/*, all one square size."""

    name: str = "imagefolder"
    description: str = "imagefolder:PATH with train/ and test/ class folders of same-size images"
    takes_argument: bool = True

    def load(self, arg: str | None, root: Path, download: bool) -> ImageData:
        path = Path(arg or "").expanduser()
        if not path.is_dir():
            raise UsageError(f"imagefolder path '{path}' is not a directory")
        classes, x_tr, y_tr = _read_split(path / "train", None)
        _, x_te, y_te = _read_split(path / "test", classes)
        if x_tr.shape[1:] != x_te.shape[1:]:
            raise DDToolError(f"train images are {tuple(x_tr.shape[1:])} but test images {tuple(x_te.shape[1:])}")
        return ImageData(f"imagefolder:{path.resolve()}", classes, x_tr, y_tr, x_te, y_te)


@hookimpl
def ddtool_register_datasets(register) -> None:  # type: ignore[no-untyped-def]
    register(Digits())
    register(ImageFolderData())
