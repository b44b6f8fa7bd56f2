"""In-process pieces of the torch.distributed support: class shards, per-class random streams,
torchrun's environment, and the refusal of methods that do not split by class (no processes started)."""

from __future__ import annotations

import pytest
import torch

from ddtool.errors import UsageError
from ddtool.methods.dc import DC, DSA
from ddtool.methods.dm import DM
from ddtool.methods.sharding import ClassShard, shard_range
from ddtool.nets import NetSpec
from ddtool.perturb import NoPerturbation
from ddtool.recipe import DistillSection
from ddtool.runtime.distill.planning import build_context
from ddtool.runtime.distributed import process_group as distributed
from ddtool.selection.builtin import Scratch
from ddtool.synthetic import init_synthetic


@pytest.mark.parametrize("n,world", [(10, 1), (10, 2), (10, 3), (10, 4), (3, 4), (100, 8)])
def test_shards_cover_every_index_once_in_balanced_blocks(n: int, world: int) -> None:
    blocks = [shard_range(n, r, world) for r in range(world)]
    assert [i for b in blocks for i in b] == list(range(n))  # contiguous, in rank order
    assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


def _ctx(digits, impl: str = "vectorized", method=None):  # type: ignore[no-untyped-def]
    return build_context(DistillSection(batch_real=16), digits, torch.device("cpu"),
                         net_spec=NetSpec("convnet", {"width": 8}), iterations=1, selection=Scratch(),
                         schedule=NoPerturbation(), impl=impl, method=method)


def test_a_class_draws_the_same_whichever_classes_are_drawn_with_it(digits) -> None:  # type: ignore[no-untyped-def]
    ctx = _ctx(digits)
    shard = ClassShard(digits.num_classes)
    torch.manual_seed(3)
    everything = shard.per_class(ctx, range(10), lambda c: ctx.real_class(c, 4))
    after_all = torch.rand(3)
    torch.manual_seed(3)
    upper = shard.per_class(ctx, [6, 7, 8, 9], lambda c: ctx.real_class(c, 4))
    after_some = torch.rand(3)
    for c, x in zip([6, 7, 8, 9], upper):
        assert torch.equal(x, everything[c])
    # the global stream (the network of the next loop) advanced alike: the same on every rank
    assert torch.equal(after_all, after_some)
    assert not torch.equal(everything[0], everything[1])


@pytest.mark.usefixtures("one_thread")  # as each launched process runs: sums split over threads may differ
@pytest.mark.parametrize("method", [DM(), DC(), DSA()], ids=lambda m: m.name)
@pytest.mark.parametrize("impl", ["vectorized", "loop"])
def test_the_image_gradient_of_two_class_shards_sums_to_the_whole(digits, numerics, method, impl: str) -> None:  # type: ignore[no-untyped-def]
    """What two ranks compute (each its classes' image gradient, then summed) is one process's
    gradient: the reason a 2-process DM/DC/DSA run makes the 1-process set.

    With ``impl = "loop"`` (the CPU default) it is bit-identical by construction: a class's images
    get gradient from that class's loss alone, computed by the same kernels on the same inputs
    whichever other classes run beside it. The vectorized path vmaps the classes of a rank into
    one batch, and a batch of 5 is blocked differently from a batch of 10 by some instruction
    sets' kernels (AVX2: a relative 1.6e-7 apart), so there the gradients agree to reduction order."""
    grads = []
    for parts in ([list(range(10))], [list(range(5)), list(range(5, 10))]):
        torch.manual_seed(0)
        ctx = _ctx(digits, impl, method)
        syn = init_synthetic(digits, 2, "real")
        syn.images.requires_grad_(True)
        net = ctx.fresh_net()
        total = torch.zeros_like(syn.images)
        start = torch.get_rng_state()
        for classes in parts:
            torch.set_rng_state(start)  # every rank draws from the same global stream
            syn.images.grad = None
            method.class_losses(ctx, syn, net, classes).sum().backward(inputs=[syn.images])
            total += syn.images.grad
        grads.append(total)
    if impl == "loop":
        assert torch.equal(grads[0], grads[1])
    else:
        numerics.assert_equal_up_to_reduction_order(grads[1], grads[0],
                                                    numerics.longest_reduction(net, 2 * digits.num_classes))
    assert grads[0].abs().sum() > 0


def test_torchrun_environment_is_read_and_checked() -> None:
    assert distributed.from_env({}) is None
    world = distributed.from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert world is not None and (world.rank, world.size, world.local_rank, world.main) == (1, 2, 1, False)
    with pytest.raises(UsageError, match="outside WORLD_SIZE"):
        distributed.from_env({"RANK": "2", "WORLD_SIZE": "2"})


def test_without_torchrun_nothing_changes(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert distributed.init(torch.device("cpu")) == torch.device("cpu")
    assert distributed.current().size == 1 and distributed.is_main()
    assert distributed.shard(5) == [0, 1, 2, 3, 4]
    assert distributed.gather_shards([1, 2]) == [1, 2]
    assert distributed.describe("cpu") == {"world_size": 1}


def test_a_method_that_does_not_split_by_class_is_refused_before_any_work(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from ddtool.plugins import registries
    from ddtool.runtime.distill.loop import _check_world

    monkeypatch.setattr(distributed, "_world", distributed.World(0, 2, 0, "gloo"))
    _check_world(registries().method.get("dm"))  # class-sharded: accepted
    with pytest.raises(UsageError, match="method 'mtt' runs in one process .*trajectory matching.* 2 were launched"):
        _check_world(registries().method.get("mtt"))
