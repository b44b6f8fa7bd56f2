"""DynaDistill over expert trajectories (seed 003 Algorithm 1 with MTT): segments ranked by the
method's score with the softmax of the model-pool case, and a digits run of recipes/mtt_dynadistill.toml."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from ddtool.recipe import load_recipe
from ddtool.selection.base import Segment, SelectionStrategy
from ddtool.selection.builtin import DynaDistill, Scratch
from ddtool.store import Store
from ddtool.synthetic import SyntheticSet

CPU = torch.device("cpu")
RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "mtt_dynadistill.toml"

pytestmark = pytest.mark.usefixtures("one_thread")


def fake_ctx(n_experts: int) -> SimpleNamespace:
    images = torch.zeros(2, 1, 2, 2)
    return SimpleNamespace(trajectories=[None] * n_experts, synthetic=SyntheticSet(images, torch.tensor([0, 1]), 1))


def test_experts_are_picked_with_the_softmax_frequencies_of_their_scores() -> None:
    """3 experts, m = 3: every draw scores all three (loss = expert index); the picks follow
    softmax(L / 0.5) within 0.03 over 3000 draws with a fixed seed, start epochs stay in range."""
    ctx = fake_ctx(3)
    s = DynaDistill(m=3, t=0.5)
    scored: list[Segment] = []

    def score(seg: Segment) -> float:
        scored.append(seg)
        return float(seg.expert)

    torch.manual_seed(0)
    picks = [s.select_segment(ctx, it, 4, score) for it in range(3000)]
    freq = torch.bincount(torch.tensor([p.expert for p in picks]), minlength=3).double() / len(picks)
    want = torch.softmax(torch.tensor([0.0, 1.0, 2.0], dtype=torch.double) / 0.5, 0)
    assert (freq - want).abs().max() < 0.03
    assert len(scored) == 3 * 3000 and all(0 <= seg.start < 4 for seg in scored)
    assert {seg.start for seg in scored} == {0, 1, 2, 3}
    # the picked segment is one of the candidates scored for it, start epoch included
    assert picks[-1] in s.last_segments and sorted(seg.expert for seg in s.last_segments) == [0, 1, 2]
    # prefer = "low" flips the preference, as over model pools
    low = DynaDistill(m=3, t=0.5, prefer="low")
    torch.manual_seed(0)
    lows = [low.select_segment(ctx, it, 4, lambda seg: float(seg.expert)).expert for it in range(3000)]
    assert (torch.bincount(torch.tensor(lows), minlength=3).double() / 3000 - want.flip(0)).abs().max() < 0.03


def test_fewer_experts_than_m_score_m_distinct_segments() -> None:
    """Issue 23 (c), one rule: m distinct candidates, as many as there are. One expert, m = 3: the
    candidates are 3 distinct start epochs of it (before, experts were drawn with replacement and
    the same segment could be scored twice); with only 2 start epochs there are 2 candidates."""
    ctx = fake_ctx(1)
    s = DynaDistill(m=3, t=0.5)
    torch.manual_seed(0)
    for it in range(100):
        scored: list[Segment] = []
        pick = s.select_segment(ctx, it, 4, lambda seg: scored.append(seg) or float(seg.start))
        assert len(scored) == 3 and len(set(scored)) == 3 and {seg.expert for seg in scored} == {0}
        assert pick in scored
    scored = []
    picks = [s.select_segment(ctx, it, 2, lambda seg: scored.append(seg) or float(seg.start)) for it in range(200)]
    assert len(scored) == 2 * 200 and set(scored) == {Segment(0, 0), Segment(0, 1)}
    # the later start (score 1) is preferred as softmax(L / 0.5) says
    assert sum(p.start for p in picks) > 100
    # two experts, m = 3: both experts first, then another start epoch of one of them
    ctx2 = fake_ctx(2)
    for it in range(50):
        scored = []
        s.select_segment(ctx2, it, 5, lambda seg: scored.append(seg) or 0.0)
        assert len(set(scored)) == 3 and {seg.expert for seg in scored[:2]} == {0, 1}


def test_the_m_rule_is_said_once_before_the_run() -> None:
    s = DynaDistill(m=3)
    assert s.plan_note(None, 5, 10) is None and s.plan_note(3, None, None) is None
    assert "the 3 candidates are distinct (expert, start epoch) segments" in s.plan_note(None, 1, 10)
    assert "make only 2 distinct segments: 2 candidates per iteration" in s.plan_note(None, 1, 2)
    assert "the pool has 2 model(s): 2 distinct candidates per outer loop" in s.plan_note(2, None, None)


def test_m_one_and_the_default_draw_score_nothing() -> None:
    ctx = fake_ctx(5)

    def never(seg: Segment) -> float:
        raise AssertionError("scored without a choice to make")

    torch.manual_seed(0)
    assert 0 <= DynaDistill(m=1).select_segment(ctx, 0, 3, never).expert < 5
    # the contract's default (scratch): the expert, then the start epoch, uniformly (MTT's own draw)
    torch.manual_seed(1)
    seg = Scratch().select_segment(ctx, 0, 3, never)
    torch.manual_seed(1)
    assert seg == Segment(int(torch.randint(5, (1,)).item()), int(torch.randint(3, (1,)).item()))
    assert Scratch.draws_trajectories and DynaDistill.draws_trajectories
    assert not SelectionStrategy.draws_trajectories  # random / weight_average: model pools only


def test_candidates_are_scored_on_one_shared_draw() -> None:
    """With shared_draw the m scores see the same random numbers (the student's minibatches and
    augmentation), so they differ by the segment only."""
    ctx = fake_ctx(3)
    seen: list[float] = []

    def score(seg: Segment) -> float:
        seen.append(float(torch.rand(())))
        return 0.0

    torch.manual_seed(0)
    DynaDistill(m=3).select_segment(ctx, 0, 2, score)
    assert seen[0] == seen[1] == seen[2]
    seen.clear()
    s = DynaDistill(m=3)
    s.configure({"shared_draw": False})
    s.select_segment(ctx, 0, 2, score)
    assert len(set(seen)) == 3


def test_mtt_refuses_a_strategy_that_draws_no_trajectories(store: Store, digits) -> None:  # type: ignore[no-untyped-def]
    from ddtool.errors import UsageError
    from ddtool.runtime.distill import distill
    from ddtool.runtime.pretrain.expert_trajectories import pretrain_trajectories

    from ddtool.runtime.pretrain.pool_training import pretrain

    pretrain_trajectories(store, load_recipe(RECIPE, TINY_EXPERTS), digits, CPU)
    pool = pretrain(store, load_recipe(None, ["net.width=8", "pretrain.n=1", "pretrain.epochs=1"]), digits, CPU)
    recipe = load_recipe(None, ["distill.method=mtt", 'distill.options.trajectories="trajectories/mtt"',
                                *TINY_MTT, "distill.selection=random", f'distill.pool="{pool.artifact.ref}"'])
    with pytest.raises(UsageError, match='selection = "scratch" \\(or "dynadistill".*got random'):
        distill(store, recipe, digits, CPU)


TINY_EXPERTS = ["net.width=8", "pretrain.n=3", "pretrain.epochs=3"]
TINY_MTT = ["net.width=8", "distill.ipc=1", "distill.iterations=3", "distill.options.syn_steps=3",
            "distill.options.expert_epochs=2", "distill.options.max_start_epoch=2", "distill.lr_img=100",
            "distill.options.lr_lr=1e-3", 'name="md"']


def test_a_digits_run_scores_three_segments_per_iteration_and_names_the_trajectories(
        store: Store, digits, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from ddtool.methods.mtt import MTT
    from ddtool.runtime.distill import distill
    from ddtool.runtime.pretrain.expert_trajectories import pretrain_trajectories
    from ddtool.store.meta import parents_of

    made = pretrain_trajectories(store, load_recipe(RECIPE, TINY_EXPERTS), digits, CPU)
    calls: list[Segment] = []
    scored = MTT.segment_loss

    def counting(self, ctx, syn, lr, seg):  # type: ignore[no-untyped-def]
        calls.append(seg)
        return scored(self, ctx, syn, lr, seg)

    monkeypatch.setattr(MTT, "segment_loss", counting)
    res = distill(store, load_recipe(RECIPE, TINY_MTT), digits, CPU)
    assert len(calls) == 3 * 3 and {seg.expert for seg in calls} <= {0, 1, 2}
    meta = store.blob_metadata(res.artifact.digest)
    assert meta["ddtool.method"] == "mtt" and meta["ddtool.selection"] == "dynadistill"
    assert parents_of(meta) == [made.artifact.digest]
    rec = store.run(res.run_id)
    assert [(i["ref"], i["role"]) for i in rec["inputs"]] == [(f"{made.artifact.ref}", "trajectories")]
    assert rec["plan"]["pool"] is None  # no model pool was needed or picked
    assert len(res.losses) == 3 and all(math.isfinite(v) for v in res.losses)


def test_mtt_update_descends_the_sampled_segments_own_score(store: Store, digits) -> None:  # type: ignore[no-untyped-def]
    """Issue 23 (b), Algorithm 1 line 12 as written: each iteration's update (the loss the step
    back-propagates) is exactly the chosen segment's score, from the same student minibatches and
    augmentations. Before, the winner's unroll was thrown away and the update drew afresh."""
    from ddtool.runtime.distill import distill
    from ddtool.runtime.pretrain.expert_trajectories import pretrain_trajectories

    pretrain_trajectories(store, load_recipe(RECIPE, TINY_EXPERTS), digits, CPU)
    res = distill(store, load_recipe(RECIPE, [*TINY_MTT, 'distill.options.dynadistill.normalize="zscore"']),
                  digits, CPU)
    log = store.run(res.run_id)["selection_log"]
    assert [e["it"] for e in log] == [0, 1, 2]
    for loss, e in zip(res.losses, log):
        scores = e["scores"]
        assert len(scores) == 3 and len(set(scores)) == 3 and len(e["candidates"]) == 3
        chosen = torch.tensor(scores[e["k"]], dtype=torch.float32)  # the unroll is float32
        torch.testing.assert_close(torch.tensor(loss, dtype=torch.float32), chosen)
        assert all(not math.isclose(s, loss, rel_tol=1e-4) for j, s in enumerate(scores) if j != e["k"])
