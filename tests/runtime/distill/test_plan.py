"""Resolving a recipe (ddtool.runtime.distill.planning): build_context() makes the context a run makes, from a
plan or on its own, and draws no random numbers."""

from __future__ import annotations

import pytest
import torch

from ddtool.augment import Augmenter
from ddtool.methods.dm import DM
from ddtool.nets import NetSpec
from ddtool.perturb import NoPerturbation
from ddtool.recipe import DistillSection, load_recipe
from ddtool.runtime.distill.planning import build_context, net_spec_of, plan
from ddtool.selection.builtin import Scratch

CPU = torch.device("cpu")


def test_a_context_from_a_plan_holds_the_plan(store, digits) -> None:  # type: ignore[no-untyped-def]
    recipe = load_recipe(None, ["net.width=16", "distill.iterations=7", 'distill.augment="flip"'])
    p = plan(store, recipe, digits, device=CPU)
    before = torch.get_rng_state()
    ctx = build_context(recipe, digits, CPU, plan=p)
    assert torch.equal(torch.get_rng_state(), before)  # seeding before it keeps a run's draws
    assert (ctx.method, ctx.selection, ctx.schedule, ctx.options, ctx.pool) == (
        p.method, p.selection, p.schedule, p.options, p.pool)
    # the context holds the plan's recipe: the method's defaults filled in, the rest as written
    assert (ctx.iterations, ctx.impl, ctx.cfg, ctx.net_spec) == (7, p.impl, p.recipe.distill, net_spec_of(recipe))
    assert ctx.cfg.augment == "flip" and (ctx.cfg.lr_img, ctx.cfg.batch_real) == (1.0, 256)  # DM's defaults
    assert ctx.augment.ops == Augmenter("flip").ops and ctx.device == CPU
    assert build_context(recipe, digits, CPU, plan=p, iterations=2, impl="vectorized").iterations == 2


def test_a_context_of_its_own_takes_the_sections_pieces(digits) -> None:  # type: ignore[no-untyped-def]
    from ddtool.plugins import registries

    cfg = DistillSection(batch_real=8)
    with pytest.raises(TypeError, match="needs net_spec"):
        build_context(cfg, digits)
    ctx = build_context(cfg, digits, net_spec=NetSpec("convnet", {"width": 8}), method=DM())
    assert ctx.selection.name == "scratch" and ctx.selection is not registries().selection.get("scratch")
    assert ctx.schedule.name == "none" and ctx.iterations == 1 and ctx.impl == "loop"  # auto on CPU
    # unset method-dependent keys take the method's values; set ones stay
    assert ctx.options == DM().parse_options({})
    assert ctx.augment.ops == Augmenter(DM().distill_defaults()["augment"]).ops and ctx.cfg.batch_real == 8
    given = build_context(cfg, digits, CPU, net_spec=NetSpec(), selection=Scratch(), schedule=NoPerturbation(),
                          iterations=5, impl="vectorized", augment=Augmenter("none"))
    assert (given.iterations, given.impl, given.augment.ops, given.method, given.options) == (
        5, "vectorized", (), None, None)


def test_the_plan_is_complete_and_immutable(store, digits) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    recipe = load_recipe(None, ["net.width=16", "distill.iterations=7"])
    p = plan(store, recipe, digits, device=CPU)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.iterations = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.recipe = recipe  # type: ignore[misc]
    assert isinstance(p.notes, tuple)  # nor can its notes grow
    # what the run needs is resolved once, here: the net, the device, this process's classes
    assert p.net_spec == net_spec_of(recipe) and p.device == CPU and p.shard.classes == list(range(10))
    assert p.cfg is p.recipe.distill and (p.cfg.lr_img, p.cfg.batch_real) == (1.0, 256)  # DM's defaults


def test_a_run_context_is_built_from_the_plan_once_and_declares_every_field(store, digits) -> None:  # type: ignore[no-untyped-def]
    from ddtool.context import DistillContext
    from ddtool.runtime.distill.planning import context_of

    p = plan(store, load_recipe(None, ["net.width=16"]), digits, device=CPU)
    ticks: list[int] = []
    ctx = context_of(p, digits, compile=True, on_inner_step=lambda: ticks.append(1))
    assert ctx.cfg is p.cfg and ctx.net_spec is p.net_spec and ctx.shard is p.shard and ctx.compile is True
    ctx.inner_step_done()
    assert ticks == [1]
    assert not hasattr(ctx, "__dict__") and "shard" in DistillContext.__slots__  # slots: nothing undeclared
    with pytest.raises(AttributeError):
        ctx.undeclared = 1  # type: ignore[attr-defined]
