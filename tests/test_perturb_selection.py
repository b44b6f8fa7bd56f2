from __future__ import annotations

import pytest
import torch

from ddtool.nets import NetSpec, build_net
from ddtool.perturb import Gaussian, TwoDirection, decay_factor, filter_normalized_direction
from ddtool.recipe import DistillSection
from ddtool.selection.builtin import average_state


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
            assert torch.equal(p, before[name]), name


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


def test_weight_average_is_the_elementwise_mean() -> None:
    states = [{"w": torch.full((2, 2), float(i)), "n": torch.tensor(i)} for i in (1, 2, 6)]
    avg = average_state(states)
    assert torch.equal(avg["w"], torch.full((2, 2), 3.0))
    assert avg["n"].item() == 1  # integer buffers are not averaged


def test_pool_models_are_copies_of_a_template_and_leave_the_rng_alone(digits) -> None:  # type: ignore[no-untyped-def]
    from ddtool.context import DistillContext
    from ddtool.perturb import NoPerturbation
    from ddtool.pool import Pool, states_from_tensors, states_to_tensors
    from ddtool.selection.builtin import RandomPool

    spec = NetSpec("convnet", {"width": 4})
    torch.manual_seed(0)
    states = [build_net(spec, 1, 10, 8).state_dict() for _ in range(2)]
    pool = Pool(spec, states)
    assert pool.to("cpu") is pool  # already there: no copy
    assert all(torch.equal(a[k], b[k]) for a, b in zip(states_from_tensors(states_to_tensors(states)), states)
               for k in a)
    ctx = DistillContext(data=digits, cfg=DistillSection(), net_spec=spec, device=torch.device("cpu"), iterations=1,
                         selection=RandomPool(), schedule=NoPerturbation(), pool=pool)
    torch.manual_seed(1)
    want = torch.rand(3)
    torch.manual_seed(1)
    a = ctx.net_from_state(states[0])
    b = ctx.net_from_state(states[0])
    assert torch.equal(torch.rand(3), want)  # no random initialisation drawn (resumed runs draw the same)
    assert all(torch.equal(p, states[0][k]) for k, p in a.state_dict().items())
    name, first = next(iter(a.named_parameters()))
    with torch.no_grad():
        first.add_(1.0)  # perturbing one copy touches neither the other copy nor the pool
    assert torch.equal(b.state_dict()[name], states[0][name])
    assert torch.equal(ctx.pool.states[0][name], states[0][name]) and not torch.equal(first, states[0][name])
