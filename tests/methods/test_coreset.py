"""Herding (ddtool.methods.coreset): the chosen real images' mean is closer than random picks."""

from __future__ import annotations

import pytest
import torch

from ddtool.methods.coreset import Herding, herding_indices

pytestmark = pytest.mark.usefixtures("one_thread")


def test_herding_mean_closer_than_random():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(200, 16, generator=g) + torch.randn(16, generator=g)
    target = feats.mean(0)
    pick = herding_indices(feats, 5)
    assert len(set(pick)) == 5
    herd = float((feats[pick].mean(0) - target).norm())
    rand = [float((feats[torch.randperm(200, generator=g)[:5]].mean(0) - target).norm()) for _ in range(50)]
    assert herd < min(rand)


def test_herding_method_picks_real_images_closer_than_random(make_ctx, digits):
    method = Herding()
    ctx = make_ctx(digits, method, ["distill.ipc=3"])
    torch.manual_seed(0)
    net = method.embedding_net(ctx)
    torch.manual_seed(0)
    syn = method.init_synthetic(ctx)
    assert syn.images.shape == (30, 1, 8, 8) and torch.bincount(syn.labels).tolist() == [3] * 10
    c = 4
    real = digits.normalize(digits.train_images[digits.class_indices(c)])
    with torch.no_grad():
        target = net.embed(real).mean(0)
        herd = float((net.embed(syn.images[syn.labels == c]).mean(0) - target).norm())
        rand = [float((net.embed(real[torch.randperm(len(real))[:3]]).mean(0) - target).norm()) for _ in range(20)]
    assert herd < sum(rand) / len(rand)
    # the chosen images are real training images
    assert any(torch.allclose(syn.images[syn.labels == c][0], r) for r in real)
