"""What the runtime knows of a method is what ``MatchingMethod`` declares (ddtool.methods.base): each
member read as an attribute with a default, never guessed from the method's name or its options."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from ddtool import api
from ddtool.errors import UsageError
from ddtool.recipe import load_recipe
from ddtool.store import Store

CPU = torch.device("cpu")


class NoNetworks(api.SelectionStrategy):
    """A strategy that fails the test when asked for a network."""

    name = "nonetworks"

    def select(self, ctx, it):  # type: ignore[no-untyped-def]
        raise AssertionError("a method declaring uses_network = False was given a network")


class Pixels(api.MatchingMethod):
    """Per-class mean images, matched without a network (as the pixelmmd plugin)."""

    name = "pixels"
    uses_network = False

    def default_iterations(self, ipc: int) -> int:
        return 2

    def loss(self, ctx, syn, net):  # type: ignore[no-untyped-def]
        assert net is None
        x, y = ctx.real_batch(4)
        xs, ys = syn.decoded()
        return ((api.class_means(x.flatten(1), y, 10) - api.class_means(xs.flatten(1), ys, 10)) ** 2).sum()


def _register(*objs) -> None:  # type: ignore[no-untyped-def]
    from ddtool.plugins import registries

    regs = registries()
    for obj in objs:
        kind = "method" if isinstance(obj, api.MatchingMethod) else "selection"
        regs.kind(kind).add(obj, source="test")


def test_the_defaults_declare_a_single_process_method_with_a_network_and_no_trajectories() -> None:
    m = api.MatchingMethod()
    assert (m.class_sharded, m.uses_network, m.trains_network, m.trajectories_option) == (False, True, False, None)
    assert m.trajectory_start_epochs(None) is None


def test_a_method_without_a_network_is_given_none_by_the_default_step(store: Store, digits, fresh_registries) -> None:  # type: ignore[no-untyped-def]
    from ddtool.runtime.distill import distill

    _register(Pixels(), NoNetworks())
    recipe = load_recipe(None, ["distill.method=\"pixels\"", "distill.selection=\"nonetworks\"", "distill.ipc=1",
                                "net.width=8", 'name="px"'])
    res = distill(store, recipe, digits, CPU)  # the strategy's select would raise
    assert len(res.losses) == 2 and res.artifact.ref == "synthetic/px:v1"  # Pixels.loss asserts it got no network


def test_a_method_that_does_not_declare_class_sharded_is_not_split_across_processes(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from ddtool.runtime.distributed import process_group as distributed
    from ddtool.runtime.distill.loop import _check_world

    class Split(Pixels):
        class_sharded = True

    monkeypatch.setattr(distributed, "_world", distributed.World(0, 2, 0, "gloo"))
    _check_world(Split())
    with pytest.raises(UsageError, match=r"method 'pixels' runs in one process \(it does not split its classes"):
        _check_world(Pixels())


@dataclass
class ExpertOptions:
    experts: str = ""


class Experts(Pixels):
    name = "experts"
    options_type = ExpertOptions
    trajectories_option = "experts"


def test_the_plan_reads_the_trajectories_the_declared_option_names(store: Store, digits, fresh_registries) -> None:  # type: ignore[no-untyped-def]
    from ddtool.runtime.distill.planning import plan

    _register(Experts())
    base = ["distill.method=\"experts\"", "net.width=8"]
    with pytest.raises(UsageError, match=r"method 'experts' matches expert trajectories: set \[distill.options\] "
                                         r"experts = \"trajectories/NAME\" and make them with 'ddtool pretrain "
                                         r"--trajectories"):
        plan(store, load_recipe(None, base), digits)
    # the ref is read from the declared option, and looked up in the store
    with pytest.raises(UsageError, match=r"trajectories 'trajectories/gone' are not in the store"):
        plan(store, load_recipe(None, [*base, 'distill.options.experts="trajectories/gone"']), digits)


def test_a_schedule_that_declares_it_perturbs_nothing_is_not_asked(make_ctx, digits) -> None:  # type: ignore[no-untyped-def]
    class Idle(api.PerturbationSchedule):
        name = "idle"
        perturbs = False

        def perturb(self, net, it, total, cfg):  # type: ignore[no-untyped-def]
            raise AssertionError("perturb called on a schedule that declares perturbs = False")

    from ddtool.methods.dm import DM
    from ddtool.runtime.distill.planning import build_context

    recipe = load_recipe(None, ["net.width=8"])
    ctx = build_context(recipe, digits, CPU, method=DM(), schedule=Idle(), iterations=1)
    assert ctx.perturb(torch.nn.Linear(2, 2), 0, keep=True) is None


def test_class_means_comes_from_the_contract_module_not_from_a_method() -> None:
    import ddtool.methods.dm as dm
    from ddtool.methods.base import class_means

    assert api.class_means is class_means is dm.class_means and class_means.__module__ == "ddtool.methods.base"
    means = class_means(torch.tensor([[1.0], [3.0], [5.0]]), torch.tensor([0, 0, 2]), 3)
    assert means.flatten().tolist() == [2.0, 0.0, 5.0]


def test_one_contract_table_that_the_public_api_shows() -> None:
    import ddtool.context
    import ddtool.plugins

    assert api.CONTRACTS is ddtool.plugins.CONTRACTS and not hasattr(ddtool.context, "CONTRACTS")
    assert set(api.CONTRACTS) == {"method", "selection", "schedule", "dataset", "architecture"}
    assert api.CONTRACTS["method"].base is api.MatchingMethod and "CONTRACTS" in (api.__doc__ or "")
