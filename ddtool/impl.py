"""``impl``: how a computation over many classes or models runs, one vocabulary for every section.

* ``loop``: one class (distill) or one network (eval repeats, pretrain models) at a time, the
  reference implementation;
* ``vectorized``: one ``torch.func``-vectorised call over all of them (the class-batched matching
  step; the stacked ensemble of eval and pretrain);
* ``auto``: :func:`default_impl` of the device.

``stacked``, the word eval and pretrain used for their vectorised ensemble, is still accepted and
means ``vectorized``. A recipe keeps the word it was written with (its hash, and so the metadata
of what it made, stays the same); the word is resolved where the run starts (:func:`resolve_impl`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

IMPLS = ("auto", "vectorized", "loop")
ALIASES = {"stacked": "vectorized"}


def default_impl(device: torch.device | str) -> str:
    """What ``impl = "auto"`` resolves to: ``loop`` on CPU, ``vectorized`` on CUDA.

    On the 2-core benchmark CPU the vectorised paths were slower than the loop (DM 0.5-0.8x the
    loop's speed, DC, DSA and IDC likewise; the stacked eval ensemble 1.27x at digits ipc 1 but
    0.84x at ipc 10 and 0.49x for a CIFAR-10-sized set at ipc 10): a CPU gains nothing from
    fewer, larger kernel launches. On CUDA they are the point (many tiny kernels otherwise); that
    choice is not yet measured on a GPU.
    """
    import torch

    return "vectorized" if torch.device(device).type == "cuda" else "loop"


def resolve_impl(impl: str, device: torch.device | str) -> str:
    """``loop`` or ``vectorized`` for a recipe's ``impl`` (``auto`` and the aliases resolved)."""
    impl = ALIASES.get(impl, impl)
    return default_impl(device) if impl == "auto" else impl
