"""Evaluation (ddtool.runtime.evaluate.train_eval): the protocol's lr schedule, augmentation and CutMix,
checked rather than assumed."""

from __future__ import annotations

import pytest
import torch

from ddtool.nets import NetSpec


def _tiny_set(digits, per_class: int = 4):  # type: ignore[no-untyped-def]
    from ddtool.synthetic import SyntheticSet

    idx = torch.cat([digits.class_indices(c)[:per_class] for c in range(digits.num_classes)])
    return SyntheticSet(digits.normalize(digits.train_images[idx]), digits.train_labels[idx], per_class)


@pytest.mark.parametrize("protocol, repeats, per_epoch", [
    ("dsa", 2, [0.01] * 6 + [0.001] * 6),  # x0.1 at half
    ("idc", 1, [0.01] * 8 + [0.002] * 2 + [0.0004] * 2),  # x0.2 at 2E//3 and 5E//6 (IDC's MultiStepLR)
])
def test_eval_protocol_lr_schedule_augmentation_and_cutmix(digits, monkeypatch: pytest.MonkeyPatch, protocol: str,  # type: ignore[no-untyped-def]
                                                           repeats: int, per_epoch: list[float]) -> None:
    import ddtool.augment as augment
    import ddtool.nets.losses as losses
    from ddtool.recipe import EvalSection
    from ddtool.runtime.evaluate.train_eval import evaluate_set
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    # Keyed by the optimiser itself: holding it keeps a collected optimiser's id from being reused by the next repeat.
    lrs: dict[object, list[float]] = {}
    handle = register_optimizer_step_pre_hook(
        lambda opt, args, kwargs: lrs.setdefault(opt, []).append(opt.param_groups[0]["lr"]))
    augmented, mixed = [], []
    real_call, real_cutmix = augment.Augmenter.__call__, losses.cutmix
    monkeypatch.setattr(augment.Augmenter, "__call__",
                        lambda self, x: augmented.append(x.shape[0]) or real_call(self, x))
    monkeypatch.setattr(losses, "cutmix", lambda x, y: mixed.append(1) or real_cutmix(x, y))
    cfg = EvalSection(protocol=protocol, epochs=12, batch=8, repeats=repeats)
    try:
        accs = evaluate_set(_tiny_set(digits), digits, NetSpec("convnet", {"width": 8}), cfg, torch.device("cpu"))
    finally:
        handle.remove()
    steps_per_epoch = 40 // 8
    expected = [lr for lr in per_epoch for _ in range(steps_per_epoch)]
    assert lrs and all(seq == pytest.approx(expected) for seq in lrs.values())  # every optimiser, every step
    steps = sum(len(seq) for seq in lrs.values())
    assert len(accs) == repeats and len(lrs) == repeats  # one optimiser per repeat
    # DSA: one operation on every training image, every epoch; IDC: its DiffAug chain, three
    # stages (flip, colour, one of crop/scale/rotate) on every image
    stages = 3 if protocol == "idc" else 1
    assert sum(augmented) == 40 * 12 * repeats * stages
    if protocol == "idc":  # CutMix on about half the batches (Binomial(60, 0.5): 18..42 covers > 4 sigma)
        assert 18 <= len(mixed) <= 42 and steps == 60
    else:
        assert mixed == []


def test_a_set_stored_under_other_constants_is_moved_to_the_datas_normalisation(digits):
    """'+norm=NAME' or another copy's statistics: the pixels the set holds are what is trained on."""
    import dataclasses

    from ddtool.runtime.evaluate.train_eval import in_data_normalization
    from ddtool.store.meta import SyntheticMeta

    syn = _tiny_set(digits)
    pixels = digits.denormalize(syn.images)
    other = ((0.3,), (0.5,))
    stored = dataclasses.replace(syn, images=(pixels - other[0][0]) / other[1][0],
                                 info=SyntheticMeta(mean=other[0], std=other[1]))
    torch.testing.assert_close(in_data_normalization(stored.images, stored, digits), syn.images, rtol=0, atol=1e-5)
    same = dataclasses.replace(syn, info=SyntheticMeta(mean=digits.mean, std=digits.std))
    assert in_data_normalization(same.images, same, digits) is same.images


def test_norm_option_sets_the_reference_constants_and_names_them(digits, tmp_path):
    from ddtool.data.dataset import NORMALIZATIONS, _norm_option
    from ddtool.errors import UsageError

    rgb = dataclasses_replace_channels(digits)
    out = _norm_option(rgb, "cifar", tmp_path)
    assert out.mean == NORMALIZATIONS["cifar"][0] and out.std == NORMALIZATIONS["cifar"][1]
    assert out.name == f"{rgb.name}+norm=cifar"
    x = out.normalize(rgb.train_images[:2])
    expect = (rgb.train_images[:2].float() / 255 - torch.tensor(out.mean).view(1, 3, 1, 1)) / torch.tensor(out.std).view(1, 3, 1, 1)
    torch.testing.assert_close(x, expect)
    with pytest.raises(UsageError, match="choose one of cifar, imagenet"):
        _norm_option(rgb, "papers", tmp_path)
    with pytest.raises(UsageError, match="3 channels but 'digits' has 1"):
        _norm_option(digits, "cifar", tmp_path)
    import dataclasses

    with pytest.raises(UsageError, match=r"after '\+zca'.*write \+norm first"):
        _norm_option(dataclasses.replace(rgb, zca=object()), "cifar", tmp_path)


def dataclasses_replace_channels(data):  # type: ignore[no-untyped-def]
    """digits as three identical channels (a stand-in for an RGB dataset)."""
    import dataclasses

    return dataclasses.replace(data, name="rgb", train_images=data.train_images.repeat(1, 3, 1, 1),
                               test_images=data.test_images.repeat(1, 3, 1, 1), mean=(), std=(), _stats_cache={})
