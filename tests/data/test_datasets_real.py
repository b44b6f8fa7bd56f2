"""Real datasets: tiny fakes in each on-disk format, read by the real loading code (torchvision's too)."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ddtool.data.cache import CACHE_FOLDER
from ddtool.errors import DDToolError, UsageError
from ddtool.lookup import load_dataset

GEN = np.random.default_rng(0)


@pytest.fixture
def no_md5(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision checks CIFAR/SVHN files against the official md5s; our fakes only need to exist."""
    import torchvision.datasets.cifar as cifar
    import torchvision.datasets.svhn as svhn

    def exists(fpath: str, md5: str | None = None) -> bool:
        return os.path.isfile(fpath)

    monkeypatch.setattr(cifar, "check_integrity", exists)
    monkeypatch.setattr(svhn, "check_integrity", exists)


def _pickle(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def write_cifar10(root: Path, per_batch: int = 4, test: int = 6) -> tuple[np.ndarray, list[int]]:
    """cifar-10-batches-py/ in the python-pickle format; returns the train pixels (N, 3072) and labels."""
    base = root / "cifar-10-batches-py"
    xs, ys = [], []
    for i in range(1, 6):
        x = GEN.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        y = [int(v) for v in GEN.integers(0, 10, per_batch)]
        _pickle(base / f"data_batch_{i}", {"batch_label": f"batch {i}", "data": x, "labels": y})
        xs.append(x)
        ys += y
    _pickle(base / "test_batch", {"data": GEN.integers(0, 256, (test, 3072), dtype=np.uint8),
                                  "labels": [int(v) for v in GEN.integers(0, 10, test)]})
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _pickle(base / "batches.meta", {"label_names": names, "num_vis": 3072})
    return np.concatenate(xs), ys


def test_cifar10_reads_torchvision_batches(tmp_path: Path, no_md5: None) -> None:
    x, y = write_cifar10(tmp_path)
    data = load_dataset("cifar10", root=tmp_path)
    assert data.name == "cifar10" and data.classes[0] == "airplane" and data.num_classes == 10
    assert data.train_images.dtype == torch.uint8 and data.train_images.shape == (20, 3, 32, 32)
    assert data.test_images.shape == (6, 3, 32, 32)
    # CIFAR rows are channel-major: 1024 red, 1024 green, 1024 blue values
    assert torch.equal(data.train_images, torch.from_numpy(x.reshape(-1, 3, 32, 32)))  # exact: uint8 pixels, decoded
    assert data.train_labels.tolist() == y and data.train_labels.dtype == torch.int64
    assert data.mean[0] == pytest.approx(float(x.reshape(-1, 3, 1024)[:, 0].mean()) / 255, rel=1e-5)


def test_cifar100_fine_labels(tmp_path: Path, no_md5: None) -> None:
    base = tmp_path / "cifar-100-python"
    for split, n in (("train", 5), ("test", 3)):
        _pickle(base / split, {"data": GEN.integers(0, 256, (n, 3072), dtype=np.uint8),
                               "fine_labels": list(range(n)), "coarse_labels": [0] * n})
    _pickle(base / "meta", {"fine_label_names": [f"c{i}" for i in range(100)], "coarse_label_names": []})
    data = load_dataset("cifar100", root=tmp_path)
    assert data.num_classes == 100 and data.train_labels.tolist() == [0, 1, 2, 3, 4]
    assert data.test_images.shape == (3, 3, 32, 32)


def _idx(path: Path, array: np.ndarray) -> None:
    """MNIST's idx format: magic (0, 0, type 0x08 = uint8, ndim), big-endian sizes, raw bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 | array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_mnist_idx_files(tmp_path: Path, name: str, folder: str) -> None:
    raw = tmp_path / folder / "raw"
    x_train = GEN.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    _idx(raw / "train-images-idx3-ubyte", x_train)
    _idx(raw / "train-labels-idx1-ubyte", np.arange(7) % 10)
    _idx(raw / "t10k-images-idx3-ubyte", GEN.integers(0, 256, (3, 28, 28), dtype=np.uint8))
    _idx(raw / "t10k-labels-idx1-ubyte", np.array([9, 0, 1]))
    data = load_dataset(name, root=tmp_path)
    assert data.train_images.shape == (7, 1, 28, 28) and data.channels == 1
    assert torch.equal(data.train_images[:, 0], torch.from_numpy(x_train))  # exact: uint8 pixels, decoded
    assert data.test_labels.tolist() == [9, 0, 1] and data.num_classes == 10


def test_svhn_mat_files_map_label_10_to_0(tmp_path: Path, no_md5: None) -> None:
    from scipy.io import savemat

    (tmp_path / "svhn").mkdir()
    x_train = GEN.integers(0, 256, (32, 32, 3, 10), dtype=np.uint8)  # SVHN stores H, W, C, N
    savemat(str(tmp_path / "svhn" / "train_32x32.mat"), {"X": x_train, "y": np.arange(1, 11).reshape(-1, 1)})
    savemat(str(tmp_path / "svhn" / "test_32x32.mat"),
            {"X": GEN.integers(0, 256, (32, 32, 3, 2), dtype=np.uint8), "y": np.array([[10], [3]])})
    data = load_dataset("svhn", root=tmp_path)
    assert data.train_images.shape == (10, 3, 32, 32)
    # torchvision's transpose (3, 2, 0, 1) keeps SVHN's own orientation
    assert torch.equal(data.train_images, torch.from_numpy(x_train).permute(3, 2, 0, 1))  # exact: uint8 pixels, transposed
    assert data.train_labels.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]  # digit 0 is stored as 10
    assert data.test_labels.tolist() == [0, 3] and data.classes == [str(i) for i in range(10)]


def _jpeg(path: Path, size: tuple[int, int], mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
    Image.fromarray(GEN.integers(0, 256, shape, dtype=np.uint8), mode).save(path, quality=90)


def write_tinyimagenet(root: Path, wnids: tuple[str, ...] = ("n01443537", "n01629819")) -> None:
    base = root / "tiny-imagenet-200"
    (base / "wnids.txt").parent.mkdir(parents=True, exist_ok=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for w in wnids:
        for i in range(3):
            _jpeg(base / "train" / w / "images" / f"{w}_{i}.JPEG", (64, 64), "L" if i == 2 else "RGB")
        (base / "train" / w / f"{w}_boxes.txt").write_text("")
    lines = []
    for i, w in enumerate(wnids * 2):
        _jpeg(base / "val" / "images" / f"val_{i}.JPEG", (64, 64))
        lines.append(f"val_{i}.JPEG\t{w}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")


def test_tinyimagenet_layout_and_resolution(tmp_path: Path) -> None:
    write_tinyimagenet(tmp_path)
    data = load_dataset("tinyimagenet", root=tmp_path)
    assert data.name == "tinyimagenet" and data.classes == ["n01443537", "n01629819"]
    assert data.train_images.shape == (6, 3, 64, 64)  # the grey JPEG came back RGB
    assert data.train_labels.tolist() == [0, 0, 0, 1, 1, 1] and data.test_labels.tolist() == [0, 1, 0, 1]
    small = load_dataset("tinyimagenet:32", root=tmp_path)
    assert small.name == "tinyimagenet:32" and small.train_images.shape == (6, 3, 32, 32)
    with pytest.raises(UsageError, match="resolution"):
        load_dataset("tinyimagenet:big", root=tmp_path)


def test_imagenet_subsets_from_the_shipped_list(tmp_path: Path) -> None:
    from ddtool.data.torchvision_sets import imagenet100_classes

    wnids = imagenet100_classes()
    assert len(wnids) == 100 and len(set(wnids)) == 100 and wnids[:2] == ("n02869837", "n01749939")
    for split in ("train", "val"):
        for w in wnids[:10]:
            _jpeg(tmp_path / "imagenet" / split / w / f"{w}_1.JPEG", (50, 40))  # wide: resize + centre-crop
            _jpeg(tmp_path / "imagenet" / split / w / f"{w}_2.JPEG", (30, 45), "L")
    data = load_dataset("imagenet-10", root=tmp_path)
    assert data.classes == list(wnids[:10]) and data.train_images.shape == (20, 3, 32, 32)
    assert data.train_labels.tolist() == [c for c in range(10) for _ in range(2)]
    big = load_dataset("imagenet-10:48", root=tmp_path)
    assert big.name == "imagenet-10:48" and big.test_images.shape == (20, 3, 48, 48)
    # ImageNet-100 needs all 100 folders: the error says how many are missing and names some
    with pytest.raises(DDToolError, match=r"imagenet-100: 90 of its 100 class folders are missing .*n0"):
        load_dataset("imagenet-100", root=tmp_path)


def test_imagenet_folder_with_two_of_the_list_classes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ddtool.data.torchvision_sets as tvs

    wnids = tvs.imagenet100_classes()[:2]
    for split in ("train", "val"):
        for i, w in enumerate(wnids):
            for k in range(i + 1):
                _jpeg(tmp_path / "imagenet" / split / w / f"img{k}.JPEG", (80, 60))
    (tmp_path / "imagenet" / "train" / "n99999999").mkdir()  # classes off the list are ignored
    with pytest.raises(DDToolError, match="8 of its 10 class folders are missing"):
        load_dataset("imagenet-10", root=tmp_path)
    monkeypatch.setattr(tvs, "imagenet100_classes", lambda: wnids)  # a two-class list
    data = load_dataset("imagenet-10:16", root=tmp_path)
    assert data.classes == list(wnids) and data.train_labels.tolist() == [0, 1, 1]
    assert data.train_images.shape == (3, 3, 16, 16)


@pytest.mark.parametrize("spec, names", [
    ("cifar10", ["cifar10 not found", "cifar-10-batches-py/", "data_batch_1..5", "test_batch"]),
    ("cifar100", ["cifar100 not found", "cifar-100-python/", "train, test, meta"]),
    ("mnist", ["mnist not found", "MNIST/raw/", "train-images-idx3-ubyte"]),
    ("fashion-mnist", ["fashion-mnist not found", "FashionMNIST/raw/", "t10k-labels-idx1-ubyte"]),
    ("svhn", ["svhn not found", "svhn/train_32x32.mat"]),
    ("tinyimagenet", ["tinyimagenet not found", "tiny-imagenet-200/", "val_annotations.txt"]),
    ("imagenet-100", ["imagenet-100 not found", "imagenet/train/<wnid>/", "imagenet100.txt"]),
])
def test_missing_data_names_files_and_folder(tmp_path: Path, spec: str, names: list[str]) -> None:
    with pytest.raises(DDToolError) as info:
        load_dataset(spec, root=tmp_path / "empty")
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "empty") in message
    for part in names:
        assert part in message
    assert "--data-root" in message


def test_missing_data_is_one_line_on_the_cli(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    res = cli("eval", "--full-data", "--dataset", "cifar10", "--data-root", tmp_path / "nowhere")
    assert res.exit_code == 1
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cifar10 not found: expected cifar-10-batches-py/" in lines[0]
    assert str(tmp_path / "nowhere") in res.stderr.replace("\n", "")


def test_argument_rules(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="takes no ':ARGUMENT'"):
        load_dataset("cifar10:32", root=tmp_path)
    with pytest.raises(UsageError, match="an integer from 8 to 512"):
        load_dataset("imagenet-100:4", root=tmp_path)


def _cache_files(root: Path) -> list[Path]:
    return sorted((root / CACHE_FOLDER).glob("*"))


def test_cache_round_trip_is_bit_exact_and_skips_decoding(tmp_path: Path, no_md5: None,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from ddtool.data.torchvision_sets import TorchvisionSet

    write_cifar10(tmp_path)
    first = load_dataset("cifar10", root=tmp_path)
    files = _cache_files(tmp_path)
    assert [f.suffix for f in files] == [".safetensors", ".safetensors"]  # train and test; no temp files left

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(TorchvisionSet, "decode", no_decoding)
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", no_decoding)
    second = load_dataset("cifar10", root=tmp_path)
    for key in ("train_images", "train_labels", "test_images", "test_labels"):
        a, b = getattr(first, key), getattr(second, key)
        assert a.dtype == b.dtype and torch.equal(a, b)  # exact: uint8 / int64, from the cache
    assert second.classes == first.classes and second.mean == first.mean and second.std == first.std
    assert second.signature() == first.signature()

    # a changed source file (new mtime) is a cache miss: decoding runs again
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    os.utime(batch, ns=(batch.stat().st_atime_ns, batch.stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset("cifar10", root=tmp_path)


def test_imagefolder_is_cached_and_a_damaged_cache_is_a_miss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ddtool.data.builtin as builtin

    folder = tmp_path / "folder"
    for split in ("train", "test"):
        for cls in ("a", "b"):
            for i in range(2):
                _jpeg(folder / split / cls / f"{i}.png", (8, 8))
    root = tmp_path / "root"
    first = load_dataset(f"imagefolder:{folder}", root=root)
    calls = []
    real = builtin._decode_listed
    monkeypatch.setattr(builtin, "_decode_listed", lambda listed: calls.append(1) or real(listed))
    second = load_dataset(f"imagefolder:{folder}", root=root)
    assert calls == [] and torch.equal(first.train_images, second.train_images)  # exact: uint8 pixels from the cache
    # the same folder spelled relatively (as typed on a command line) hits the same cache
    monkeypatch.chdir(tmp_path)
    relative = load_dataset("imagefolder:folder/../folder", root=root)
    assert calls == [] and relative.name == first.name and len(_cache_files(root)) == 2
    # a truncated cache file is read as a miss and rewritten, never an error
    train_cache = next(p for p in _cache_files(root) if "-train-" in p.name)
    train_cache.write_bytes(train_cache.read_bytes()[:100])
    third = load_dataset(f"imagefolder:{folder}", root=root)
    assert calls == [1] and torch.equal(first.train_images, third.train_images)  # exact: uint8 pixels, decoded again
    # a new image changes the listing, hence the key; the stale cache file is replaced, not kept
    _jpeg(folder / "train" / "a" / "2.png", (8, 8))
    fourth = load_dataset(f"imagefolder:{folder}", root=root)
    assert fourth.train_images.shape[0] == 5 and len(_cache_files(root)) == 2


def test_unwritable_cache_still_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import ddtool.data.cache as cache

    folder = tmp_path / "folder"
    for split in ("train", "test"):
        _jpeg(folder / split / "a" / "0.png", (8, 8))

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cache.tempfile, "mkstemp", refuse)
    data = load_dataset(f"imagefolder:{folder}", root=tmp_path / "ro")
    assert data.train_images.shape == (1, 3, 8, 8)
    assert "not caching" in capsys.readouterr().err


def test_files_failing_torchvision_checksum_are_reported(tmp_path: Path) -> None:
    write_cifar10(tmp_path)  # random bytes: torchvision's md5 check (not patched here) rejects them
    with pytest.raises(DDToolError, match="fail torchvision's checksum.*delete them"):
        load_dataset("cifar10", root=tmp_path)
    assert not (tmp_path / CACHE_FOLDER).exists() or _cache_files(tmp_path) == []


def test_imagenet_cannot_be_downloaded(tmp_path: Path) -> None:
    with pytest.raises(DDToolError, match="ImageNet cannot be downloaded automatically.*imagenet/train/<wnid>/"):
        load_dataset("imagenet-10", root=tmp_path, download=True)
