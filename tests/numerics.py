"""Tolerances for two float computations that differ only in the order of their reductions.

ATen picks its CPU kernels by instruction set (AVX-512, AVX2 or the portable default:
``ATEN_CPU_CAPABILITY``), and a vmap batch or a thread count blocks a reduction differently; two
mathematically equal computations can then round differently, on one machine and not another.
Any two orders of a sum of ``n`` terms differ by at most ``2 (n - 1) u sum|x_i|`` with the unit
roundoff ``u = eps / 2`` (Higham, *Accuracy and Stability of Numerical Algorithms*, Eq. 4.4),
so the comparisons here allow ``n * eps`` relative to the larger magnitude involved: derived
from the dtype and the length of the longest reduction, not picked to make a test pass.

An exact comparison stays exact where it holds by construction (the same kernel on the same
inputs in the same order: a resumed run, a round trip through a file, two ranks of one machine
running the loop implementation); such asserts say why beside them.
"""

from __future__ import annotations

import torch


def longest_reduction(net: torch.nn.Module, batch: int = 1) -> int:
    """The most terms any one value of a forward or backward pass through ``net`` sums: a layer's
    fan-in (forward), its fan-out (the gradient of its input) and the batch (its weight gradient)."""
    n = batch
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            n = max(n, m.in_channels * k // m.groups, m.out_channels * k // m.groups)
        elif isinstance(m, torch.nn.Linear):
            n = max(n, m.in_features, m.out_features)
    return n


def reduction_tolerance(dtype: torch.dtype, terms: int) -> float:
    """Relative bound on the difference of two summation orders of ``terms`` values (see above)."""
    return max(terms, 1) * torch.finfo(dtype).eps


def assert_equal_up_to_reduction_order(actual: torch.Tensor, expected: torch.Tensor, terms: int) -> None:
    """``actual`` and ``expected`` agree within ``terms * eps`` of the larger magnitude (max norm):
    what two reduction orders of the same computation can differ by, and no more."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    scale = float(torch.maximum(actual.abs().max(), expected.abs().max()))
    bound = reduction_tolerance(expected.dtype, terms) * scale
    worst = float((actual - expected).abs().max())
    assert worst <= bound, (f"differ by {worst:.3g}, more than {terms} reduction terms x eps x {scale:.3g} "
                            f"= {bound:.3g} allow")
