"""Datasets (ddtool.data): the embedded digits, image folders, normalisation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from ddtool.errors import DDToolError, UsageError
from ddtool.lookup import load_dataset


def test_digits_split_is_fixed_stratified_and_uint8(digits) -> None:  # type: ignore[no-untyped-def]
    assert digits.train_images.dtype == torch.uint8 and digits.train_images.shape[1:] == (1, 8, 8)
    assert len(digits.train_labels) + len(digits.test_labels) == 1797
    assert int(digits.train_images.max()) == 255
    train_counts = torch.bincount(digits.train_labels).float()
    test_counts = torch.bincount(digits.test_labels).float()
    # stratified: every class keeps about the same share in test
    assert torch.allclose(test_counts / (train_counts + test_counts), torch.full((10,), 0.2), atol=0.02)
    again = load_dataset("digits")
    assert torch.equal(again.test_labels, digits.test_labels)  # exact: integer labels from a seeded split
    x = digits.normalize(digits.train_images)
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 0.05


def _write_folder(root: Path, sizes: dict[str, list[tuple[int, int, int]]]) -> None:
    gen = torch.Generator().manual_seed(0)
    for split in ("train", "test"):
        for cls, shapes in sizes.items():
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i, shape in enumerate(shapes):
                pixels = torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen)
                Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(d / f"{i}.png")


def test_imagefolder_loads_class_folders(tmp_path: Path) -> None:
    _write_folder(tmp_path, {"cat": [(3, 8, 8)] * 3, "dog": [(3, 8, 8)] * 2})
    data = load_dataset(f"imagefolder:{tmp_path}")
    assert data.classes == ["cat", "dog"]
    assert data.train_images.shape == (5, 3, 8, 8) and data.train_labels.tolist() == [0, 0, 0, 1, 1]
    assert data.signature()["ddtool.shape"] == "3x8x8"


def test_imagefolder_errors(tmp_path: Path) -> None:
    _write_folder(tmp_path / "mixed", {"a": [(3, 8, 8), (3, 6, 6)]})
    with pytest.raises(DDToolError, match="earlier ones are"):
        load_dataset(f"imagefolder:{tmp_path / 'mixed'}")
    (tmp_path / "empty" / "train" / "a").mkdir(parents=True)
    with pytest.raises(DDToolError, match="holds no images"):
        load_dataset(f"imagefolder:{tmp_path / 'empty'}")
    with pytest.raises(UsageError, match="not a directory"):
        load_dataset(f"imagefolder:{tmp_path / 'nowhere'}")
    with pytest.raises(UsageError, match="needs a path"):
        load_dataset("imagefolder")
    with pytest.raises(UsageError, match="unknown dataset 'digitz'.*did you mean 'digits'"):
        load_dataset("digitz")


def test_normalisation_stats_are_built_once_per_device(digits) -> None:  # type: ignore[no-untyped-def]
    m1, s1 = digits.stats("cpu")
    m2, s2 = digits.stats(torch.device("cpu"))
    assert m1 is m2 and s1 is s2 and m1.shape == (1, digits.channels, 1, 1)
    assert digits.stats("cpu", torch.float64)[0].dtype == torch.float64
    x = digits.train_images[:4]
    mean, std = torch.tensor(digits.mean).view(1, -1, 1, 1), torch.tensor(digits.std).view(1, -1, 1, 1)
    assert torch.equal(digits.normalize(x), (x.float() / 255.0 - mean) / std)  # exact: the same element-wise ops, each correctly rounded on any ISA
    assert torch.allclose(digits.denormalize(digits.normalize(x)), x.float() / 255.0, atol=1e-6)
