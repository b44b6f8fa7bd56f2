"""ddtool.flop_count.FlopCounter: FlopCounterMode's total without its module tracking, whose hooks
kept alive what a checkpointed unroll drops (a run's counted first iteration peaked near the plain
unroll: docs/benchmarks/2026-12-07-method-memory.md, bench.mtt_memory --under)."""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.modules import module as nn_module
from torch.utils.checkpoint import checkpoint
from torch.utils.flop_counter import FlopCounterMode

from ddtool.flop_count import FlopCounter


def _unroll() -> None:
    """Two checkpointed segments of two student steps each, then a backward through them (MTT's shape)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, 10))
    names = [n for n, _ in net.named_parameters()]
    x, y = torch.randn(4, 3, 8, 8, requires_grad=True), torch.randint(0, 10, (4,))

    def segment(x: torch.Tensor, *ps: torch.Tensor) -> tuple[torch.Tensor, ...]:
        for _ in range(2):
            loss = nn.functional.cross_entropy(functional_call(net, dict(zip(names, ps)), (x,)), y)
            ps = tuple(p - 0.1 * g for p, g in zip(ps, torch.autograd.grad(loss, ps, create_graph=True)))
        return ps

    ps = tuple(p.detach().clone().requires_grad_(True) for p in net.parameters())
    for _ in range(2):
        ps = checkpoint(segment, x, *ps, use_reentrant=False)
    sum(p.square().sum() for p in ps).backward()


def test_the_total_is_flop_counter_modes_forward_backward_and_recomputation_included() -> None:
    with FlopCounterMode(display=False) as torch_counter:
        _unroll()
    with FlopCounter() as ours:
        _unroll()
    assert ours.get_total_flops() == torch_counter.get_total_flops() > 0


def test_it_hooks_no_module_while_flop_counter_mode_hooks_every_one() -> None:
    def hooks() -> int:
        return len(nn_module._global_forward_pre_hooks) + len(nn_module._global_forward_hooks)

    before = hooks()
    with FlopCounterMode(display=False):
        assert hooks() > before  # its ModuleTracker: what kept the checkpointed activations
    with FlopCounter():
        assert hooks() == before
