"""How the pool's early-stage models are trained (Acc-DD's pretrain.py by default)."""

from __future__ import annotations

import pytest
import torch

from ddtool.augment import DiffAugChain
from ddtool.errors import UsageError
from ddtool.nets import NetSpec
from ddtool.recipe import Recipe
from ddtool.runtime import pretrain as pretrain_mod
from ddtool.runtime import train as train_mod
from ddtool.store import Store

SPEC = NetSpec("convnet", {"width": 16})


def _count_calls(monkeypatch: pytest.MonkeyPatch, cls: type) -> list[int]:
    calls = [0]
    original = cls.__call__

    def counting(self, x):  # type: ignore[no-untyped-def]
        calls[0] += 1
        return original(self, x)

    monkeypatch.setattr(cls, "__call__", counting)
    return calls


def test_default_pool_trains_every_model_alike_with_idc_chain_and_cutmix(monkeypatch: pytest.MonkeyPatch, digits) -> None:  # type: ignore[no-untyped-def]
    chain_calls = _count_calls(monkeypatch, DiffAugChain)
    cut = [0]
    real_loss = train_mod.batch_loss

    def spy(net, x, y, p=0.0):  # type: ignore[no-untyped-def]
        cut[0] += p == 0.5
        return real_loss(net, x, y, p)

    monkeypatch.setattr(train_mod, "batch_loss", spy)
    r = Recipe().pretrain
    pool = pretrain_mod.train_pool(digits, SPEC, 2, 1, r.lr, r.batch, 0, torch.device("cpu"), impl=r.impl,
                                   augment=r.augment, cutmix=r.cutmix, lr_cycle=r.lr_cycle)
    batches = 2 * -(-len(digits.train_labels) // 64)
    assert chain_calls[0] == batches and cut[0] == batches
    assert [(m["lr"], m["augment"], m["cutmix"], m["batch"]) for m in pool.models] == [(0.01, "color_crop", 0.5, 64)] * 2
    assert [m["seed"] for m in pool.models] == [0, 1]


def test_alternate_keeps_the_earlier_pools(monkeypatch: pytest.MonkeyPatch, digits) -> None:  # type: ignore[no-untyped-def]
    chain_calls = _count_calls(monkeypatch, DiffAugChain)
    pool = pretrain_mod.train_pool(digits, SPEC, 3, 1, 0.01, 128, 0, torch.device("cpu"), impl="loop",
                                   augment="alternate", cutmix=0.0, lr_cycle=True)
    assert chain_calls[0] == 0
    assert [m["augment"] for m in pool.models] == ["dsa", "none", "dsa"]
    assert [m["lr"] for m in pool.models] == pytest.approx([0.01, 0.005, 0.02])


def test_unknown_pretrain_augmentation_is_refused_before_training(store: Store, digits) -> None:  # type: ignore[no-untyped-def]
    recipe = Recipe()
    recipe.pretrain.augment = "color_blur"
    with pytest.raises(UsageError, match="blur"):
        pretrain_mod.pretrain(store, recipe, digits, torch.device("cpu"))
    assert store.runs() == []
