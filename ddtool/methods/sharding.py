"""Which classes this process distils, the random streams of per-class draws, and the sums across
processes: what makes a class-separable method (DM, DC, DSA) give the same synthetic set on 1, 2
or N processes (``torchrun``, ``ddtool distill --nproc N``; see ``ddtool.runtime.distributed.process_group``).

* Per-class streams. A class's random draws (its real batch, its augmentation) come from a stream
  of its own, seeded from one number drawn on the run's global stream and the class index
  (:meth:`ClassShard.per_class`). Every process draws that number, so the global stream (the
  network of each outer loop, its perturbation) stays the same on every process, and a class's
  draws do not depend on which process owns it or which other classes that process has.
  Being drawn from the global stream, the key is restored with it: ``--resume`` and DynaDistill's
  candidate streams (each scored from a saved or seeded global state) keep working.
* Class shards. Process ``rank`` of ``world`` owns a contiguous block of classes. It computes the
  matching loss of its classes only; the image gradient (zero outside its classes' rows) is
  summed across processes before the optimizer step, so every process holds the whole, identical
  synthetic set (a checkpoint needs no gather). Adding exact zeros is exact: on CPU the set is
  bit-identical to one process's.

Without a process group (one process) ``world`` is 1, every sum is the identity, and the methods
run as they always did, drawing from the per-class streams.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, Sequence, TypeVar

import torch

from ddtool.collective import PeerLost, all_reduce_sum, shard_range  # noqa: F401  (the methods' names for them)

if TYPE_CHECKING:
    from ddtool.context import DistillContext

T = TypeVar("T")


def stream_seed(key: int, c: int) -> int:
    """The seed of class ``c``'s stream for one draw ``key`` (a 63-bit hash: neighbouring keys and
    classes give unrelated streams)."""
    return int.from_bytes(hashlib.blake2b(f"{key}:{c}".encode(), digest_size=8).digest(), "little") >> 1


def _cuda_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def seed_rng(seed: int, device: torch.device) -> None:
    """Make the global RNG (the CPU's, and ``device``'s on CUDA) the stream of ``seed``."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.default_generators[_cuda_index(device)].manual_seed(seed)


def rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The global RNG's state (the CPU's, and ``device``'s on CUDA), for :func:`set_rng_state`."""
    gpu = torch.cuda.get_rng_state(_cuda_index(device)) if device.type == "cuda" else None
    return torch.get_rng_state(), gpu


def set_rng_state(state: tuple[torch.Tensor, torch.Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], _cuda_index(device))


@contextmanager
def class_stream(key: int, c: int, device: torch.device) -> Iterator[None]:
    """Within the block the global RNG (CPU, and ``device``'s when CUDA) is class ``c``'s stream for
    draw ``key``; the global state is put back on exit."""
    saved = rng_state(device)
    seed_rng(stream_seed(key, c), device)
    try:
        yield
    finally:
        set_rng_state(saved, device)


@dataclass
class ClassShard:
    """This process's share of the classes (``rank`` of ``world``) and the sums across processes."""

    num_classes: int
    rank: int = 0
    world: int = 1

    @property
    def classes(self) -> list[int]:
        return shard_range(self.num_classes, self.rank, self.world)

    def per_class(self, ctx: DistillContext, classes: Sequence[int], draw: Callable[[int], T]) -> list[T]:
        """``draw(c)`` for every class of ``classes``, each inside its own stream (:func:`class_stream`).

        One number is taken from the global stream per call whatever the classes, so every process
        advances it alike."""
        key = int(torch.randint(0, 2**62, (1,)).item())
        out = []
        for c in classes:
            with class_stream(key, c, ctx.device):
                out.append(draw(c))
        return out

    def sum_grad(self, param: torch.Tensor) -> None:
        """Sum ``param.grad`` across processes (a process without classes contributes zeros)."""
        if self.world == 1:
            return
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        all_reduce_sum(param.grad, self.world)

    def sum_grads(self, params: Sequence[torch.Tensor]) -> None:
        """Sum the gradients of ``params`` across processes in one all-reduce (data-parallel network
        updates: every process then takes the same step, so the networks stay identical)."""
        if self.world == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = all_reduce_sum(torch.cat([g.reshape(-1) for g in grads]), self.world)
        start = 0
        for p, g in zip(params, grads):
            p.grad = flat[start:start + g.numel()].view_as(g).clone()
            start += g.numel()

    def all_classes(self, local: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
        """A [num_classes] vector of per-class values, ``local`` holding those of ``classes``: the
        entries every process computed, summed across processes (detached; exact, as each class has
        one owner)."""
        full = torch.zeros(self.num_classes, dtype=local.dtype, device=local.device)
        full[list(classes)] = local.detach()
        return all_reduce_sum(full, self.world)


def whole_loss(ctx: DistillContext, class_losses: Callable[[Sequence[int]], torch.Tensor]) -> torch.Tensor:
    """The sum over every class of ``class_losses(classes)`` (a [len(classes)] tensor). Split across
    processes, each computes its classes and the result is their sum, without a graph to the images
    (what DynaDistill ranks candidate networks with: the same value on every process)."""
    shard = shard_of(ctx)
    if shard.world == 1:
        return class_losses(range(ctx.num_classes)).sum()
    classes = shard.classes
    return shard.all_classes(class_losses(classes), classes).sum()


def step_images(ctx: DistillContext, losses: torch.Tensor, classes: Sequence[int], opt: torch.optim.Optimizer,
                images: torch.Tensor) -> torch.Tensor:
    """One step of ``opt`` down this process's class ``losses``, the image gradient summed across
    processes first; returns the loss over every class (detached)."""
    shard = shard_of(ctx)
    opt.zero_grad(set_to_none=True)
    if losses.requires_grad:
        losses.sum().backward(inputs=[images])  # only the images: a network's .grad stays its own
    shard.sum_grad(images)
    opt.step()
    return shard.all_classes(losses, classes).sum()


def shard_of(ctx: DistillContext) -> ClassShard:
    """The run's class shard (``ctx.shard``, from the plan); one process's when none is set."""
    if ctx.shard is None:
        ctx.shard = ClassShard(ctx.num_classes)
    return ctx.shard
