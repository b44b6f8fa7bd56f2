"""The distillation context (ddtool.context): pool models as copies of one template."""

from __future__ import annotations

import torch

from ddtool.lookup import build_net
from ddtool.nets import NetSpec
from ddtool.recipe import DistillSection


def test_pool_models_are_copies_of_a_template_and_leave_the_rng_alone(digits) -> None:  # type: ignore[no-untyped-def]
    from ddtool.perturb import NoPerturbation
    from ddtool.pool import Pool, states_from_tensors, states_to_tensors
    from ddtool.runtime.distill.planning import build_context
    from ddtool.selection.builtin import RandomPool

    spec = NetSpec("convnet", {"width": 4})
    torch.manual_seed(0)
    states = [build_net(spec, 1, 10, 8).state_dict() for _ in range(2)]
    pool = Pool(spec, states)
    assert pool.to("cpu") is pool  # already there: no copy
    assert all(torch.equal(a[k], b[k]) for a, b in zip(states_from_tensors(states_to_tensors(states)), states)  # exact: a copy through tensors
               for k in a)
    ctx = build_context(DistillSection(), digits, torch.device("cpu"), net_spec=spec, iterations=1,
                        selection=RandomPool(), schedule=NoPerturbation(), pool=pool)
    torch.manual_seed(1)
    want = torch.rand(3)
    torch.manual_seed(1)
    a = ctx.net_from_state(states[0])
    b = ctx.net_from_state(states[0])
    assert torch.equal(torch.rand(3), want)  # no random initialisation drawn (resumed runs draw the same)
    assert all(torch.equal(p, states[0][k]) for k, p in a.state_dict().items())  # exact: loaded, not computed
    name, first = next(iter(a.named_parameters()))
    with torch.no_grad():
        first.add_(1.0)  # perturbing one copy touches neither the other copy nor the pool
    assert torch.equal(b.state_dict()[name], states[0][name])
    assert torch.equal(ctx.pool.states[0][name], states[0][name]) and not torch.equal(first, states[0][name])
