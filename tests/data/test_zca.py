"""ZCA whitening (ddtool.data.zca): the transform, the '+zca' data option, its record in artifacts,
and an export that un-whitens."""

from __future__ import annotations

import json

import pytest
import torch

from ddtool.data.dataset import data_root, split_options
from ddtool.data.zca import ZCA, find_zca
from ddtool.errors import UsageError
from ddtool.lookup import load_dataset
from ddtool.store import Store
from ddtool.store.meta import DatasetSignature


def correlated(n: int = 400, d: int = 12, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g)
    return (torch.randn(n, d, generator=g) @ mix + 3.0).view(n, 3, 2, 2)


def test_whitened_data_has_identity_covariance_and_a_second_fit_and_apply_changes_nothing() -> None:
    x = correlated()
    z = ZCA.fit(x, eps=0.0)
    w = z.apply(x)
    flat = w.reshape(len(w), -1).double()
    torch.testing.assert_close(flat.T.cov(), torch.eye(12, dtype=torch.double), atol=1e-4, rtol=0)
    torch.testing.assert_close(flat.mean(0), torch.zeros(12, dtype=torch.double), atol=1e-4, rtol=0)
    again = ZCA.fit(w, eps=0.0)  # fitted and applied again on whitened data: idempotent
    torch.testing.assert_close(again.apply(w), w, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(again.transform, torch.eye(12), atol=1e-4, rtol=0)
    # with eps > 0 (the reference's 0.1) the whitening is damped, not the identity: it changes the data
    assert not torch.allclose(ZCA.fit(x, eps=0.1).apply(x), w, atol=1e-2)


def test_the_inverse_restores_the_input() -> None:
    x = correlated()
    z = ZCA.fit(x, eps=0.1)
    torch.testing.assert_close(z.invert(z.apply(x)), x, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(z.inverse @ z.transform, torch.eye(12), atol=1e-4, rtol=0)
    # with a scale (inputs divided by a per-channel std): the whitening of x * scale, and invertible
    scale = torch.tensor([0.2, 0.5, 2.0]).view(3, 1, 1)
    zs = ZCA.fit(x / scale, eps=0.1, scale=scale)
    torch.testing.assert_close(zs.apply(x / scale), z.apply(x), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(zs.invert(zs.apply(x / scale)), x / scale, atol=1e-4, rtol=1e-4)


def test_the_zca_option_whitens_every_normalised_batch_and_denormalize_restores_pixels(digits) -> None:  # type: ignore[no-untyped-def]
    data = load_dataset("digits+zca")
    assert data.name == "digits+zca" and data.zca is not None and data.zca.eps == 0.1
    x = data.normalize(data.train_images[:50])
    plain = digits.normalize(digits.train_images[:50])
    torch.testing.assert_close(x, data.zca.apply(plain))  # every batch: after mean/std
    # eps in pixel units, as MTT's reference (kornia's ZCAWhitening on ToTensor images, no mean/std):
    # whitening the normalised batch equals whitening the raw pixels with a fit on the raw train split
    raw = digits.train_images.float() / 255
    torch.testing.assert_close(x, ZCA.fit(raw, eps=0.1).apply(raw[:50]), atol=2e-4, rtol=1e-4)
    # (the fit on normalised pixels, eps 0.1 there, is a much weaker damping: a different whitening)
    assert not torch.allclose(x, ZCA.fit(digits.normalize(digits.train_images), eps=0.1).apply(plain), atol=1e-2)
    pixels = data.denormalize(data.normalize(data.train_images)) * 255
    assert float((pixels - data.train_images.float()).abs().max()) < 0.5  # rounds back to every pixel
    # a second load reads the cached parameters: the very same whitening
    again = load_dataset("digits+zca")
    assert again.zca.digest() == data.zca.digest()
    assert torch.equal(again.zca.transform, data.zca.transform)  # exact: read back from the cache
    assert find_zca(data.zca.digest(), data_root()) is not None
    # artifacts record which whitening: a plain-digits artifact is refused on whitened data and back
    sig = DatasetSignature.of(data)
    assert sig.zca == data.zca.digest() and DatasetSignature.from_metadata(sig.to_metadata()) == sig
    assert sig.difference(DatasetSignature.of(digits)) is not None
    assert load_dataset("digits+zca=0.01").zca.eps == 0.01


def test_option_parsing() -> None:
    assert split_options("cifar10+zca=0.1") == ("cifar10", [("zca", "0.1")])
    assert split_options("imagefolder:/x/a+b") == ("imagefolder:/x/a+b", [])  # not an option name
    with pytest.raises(UsageError, match="eps must be a number"):
        load_dataset("digits+zca=much")


def test_export_of_a_whitened_set_writes_unwhitened_pixels(store: Store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    from ddtool.nets import NetSpec
    from ddtool.runtime.exchange.formats import export_imagefolder

    data = load_dataset("digits+zca")
    idx = torch.cat([data.class_indices(c)[:1] for c in range(10)])
    images = data.normalize(data.train_images[idx])
    meta = {**data.signature(), "ddtool.ipc": "1", "ddtool.method": "dm", "ddtool.factor": "1",
            "ddtool.mean": json.dumps(list(data.mean)), "ddtool.std": json.dumps(list(data.std)),
            "ddtool.net": NetSpec("convnet", {"width": 16}).to_json(), "ddtool.parents": "[]"}
    store.put("synthetic", "w", {"images": images, "labels": torch.arange(10)}, meta)
    export_imagefolder(store, "synthetic/w", tmp_path / "out")
    files = sorted((tmp_path / "out").rglob("*.png"))
    assert len(files) == 10
    got = torch.stack([torch.from_numpy(__import__("numpy").array(Image.open(f))).float() for f in files])
    want = data.train_images[idx].float().view(10, 8, 8)
    assert float((got.view(10, 8, 8) - want).abs().max()) <= 1.0


def test_eval_of_a_whitened_set_whitens_the_test_images_and_refuses_another_whitening(
        cli, store: Store, monkeypatch, one_thread) -> None:  # type: ignore[no-untyped-def]
    from ddtool.data.zca import ZCA as Z
    from ddtool.recipe import load_recipe
    from ddtool.runtime.distill import distill

    data = load_dataset("digits+zca")
    made = distill(store, load_recipe(None, ['data.dataset="digits+zca"', "net.width=8", "distill.iterations=2",
                                             'name="z"']), data, torch.device("cpu"))
    assert store.blob_metadata(made.artifact.digest)["ddtool.zca"] == data.zca.digest()
    applied: list[int] = []
    real_apply = Z.apply
    monkeypatch.setattr(Z, "apply", lambda self, x: (applied.append(len(x)), real_apply(self, x))[1])
    res = cli("eval", "synthetic/z", "--set", "eval.epochs=2", "--set", "eval.repeats=1", "--json")
    assert res.exit_code == 0, res.stderr
    assert sum(applied) >= len(data.test_images)  # the test split went through the same whitening
    # a set that records another whitening is refused in one line, nothing evaluated
    _, tensors, meta = store.load("synthetic/z")
    store.put("synthetic", "other", tensors, {**meta, "ddtool.zca": "0" * 64})
    res = cli("eval", "synthetic/other", "--set", "eval.epochs=2", "--set", "eval.repeats=1")
    assert res.exit_code == 2 and "zca" in res.stderr and len(res.stderr.strip().splitlines()) == 1
