"""Perturbation schedules (ddtool.perturb): filter-normalised directions, what moves, decay."""

from __future__ import annotations

import pytest
import torch

from ddtool.lookup import build_net
from ddtool.nets import NetSpec
from ddtool.perturb import Gaussian, TwoDirection, decay_factor, filter_normalized_direction
from ddtool.recipe import DistillSection


def test_filter_normalized_direction_matches_each_filter_norm() -> None:
    torch.manual_seed(0)
    w = torch.randn(6, 3, 3, 3) * torch.arange(1, 7).view(6, 1, 1, 1)
    d = filter_normalized_direction(w)
    assert torch.allclose(d.flatten(1).norm(dim=1), w.flatten(1).norm(dim=1), rtol=1e-5)
    assert not torch.allclose(d, w)


@pytest.mark.parametrize("schedule", [Gaussian(), TwoDirection()])
def test_perturbation_moves_only_multi_dim_params(schedule) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    net = build_net(NetSpec("convnet", {"width": 8}), 1, 10, 8)
    before = {k: v.clone() for k, v in net.named_parameters()}
    schedule.perturb(net, 0, 10, DistillSection(alpha=1.0))
    for name, p in net.named_parameters():
        if p.dim() > 1:
            assert not torch.allclose(p, before[name]), name
        else:
            assert torch.equal(p, before[name]), name  # exact: 1-D parameters are not touched


def test_gaussian_alpha_one_displaces_each_filter_by_its_norm() -> None:
    torch.manual_seed(0)
    net = build_net(NetSpec("convnet", {"width": 8}), 1, 10, 8)
    w0 = net.features[0].weight.detach().clone()
    Gaussian().perturb(net, 0, 10, DistillSection(alpha=1.0))
    moved = (net.features[0].weight - w0).flatten(1).norm(dim=1)
    assert torch.allclose(moved, w0.flatten(1).norm(dim=1), rtol=1e-4)
    w1 = net.features[0].weight.detach().clone()
    Gaussian().perturb(net, 9, 10, DistillSection(alpha=1.0, alpha_decay="linear"))
    assert torch.equal(net.features[0].weight, w1)  # linear decay reaches 0 at the last loop


def test_decay_factors() -> None:
    assert decay_factor("constant", 5, 10) == 1.0
    assert decay_factor("linear", 0, 11) == 1.0 and decay_factor("linear", 5, 11) == pytest.approx(0.5)
    assert decay_factor("cosine", 5, 11) == pytest.approx(0.5) and decay_factor("cosine", 10, 11) == pytest.approx(0.0)


def test_two_direction_refuses_an_alpha_it_would_ignore() -> None:
    """Issue 23: two_direction (the released code) draws its own magnitudes; a non-default alpha
    was silently ignored, now it is refused in one line naming the fix."""
    from ddtool.errors import UsageError

    TwoDirection().check(DistillSection(alpha=1.0))  # the default: nothing to ignore
    with pytest.raises(UsageError, match=r"ignores distill.alpha \(got 0.5\).*schedule = \"gaussian\""):
        TwoDirection().check(DistillSection(alpha=0.5))
    Gaussian().check(DistillSection(alpha=0.5))  # gaussian's magnitude is alpha (Eq. 2)
    # and the magnitudes really do not follow alpha: the same draw moves the weights alike
    moved = []
    for alpha in (1.0, 0.01):
        torch.manual_seed(0)
        net = build_net(NetSpec("convnet", {"width": 8}), 1, 10, 8)
        w0 = net.features[0].weight.detach().clone()
        TwoDirection().perturb(net, 0, 10, DistillSection(alpha=alpha))
        moved.append(net.features[0].weight.detach() - w0)
    torch.testing.assert_close(moved[0], moved[1])


def test_plan_refuses_two_direction_with_another_alpha(store, digits) -> None:  # type: ignore[no-untyped-def]
    from ddtool.errors import UsageError
    from ddtool.recipe import load_recipe
    from ddtool.runtime.distill.planning import plan

    recipe = load_recipe(None, ["distill.method=dm", "net.width=8", "distill.schedule=two_direction",
                                "distill.alpha=2.0"])
    with pytest.raises(UsageError, match="two_direction"):
        plan(store, recipe, digits)
