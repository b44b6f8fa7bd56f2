"""DATM (ddtool.methods.datm): the start-epoch window that grows with the iterations, labels
initialised from the experts that classify an image correctly, correct-only images, labels
learned through the (plain or checkpointed) unroll, the threshold, and a digits run from
'pretrain --trajectories' to a set that carries its learned logits."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ddtool.methods.datm import DATM, DATMOptions, start_window
from ddtool.recipe import load_recipe
from ddtool.selection.base import Segment
from ddtool.store import Store
from ddtool.trajectories import Trajectories, flat_params, param_layout

CPU = torch.device("cpu")


def test_the_window_grows_from_current_max_to_max_by_expansion_end() -> None:
    o = DATMOptions(min_start_epoch=0, current_max_start_epoch=10, max_start_epoch=20, expansion_end_epoch=1000)
    assert [start_window(o, it)[1] for it in (0, 99, 100, 500, 999, 1000, 5000)] == [10, 10, 11, 15, 19, 20, 20]
    assert start_window(dataclasses.replace(o, min_start_epoch=3), 0) == (3, 10)
    assert start_window(dataclasses.replace(o, sequential_generation=False), 0) == (0, 20)


def _ctx(digits, overrides=(), experts: int = 2, epochs: int = 3):  # type: ignore[no-untyped-def]
    """datm on digits (ConvNet width 8, ipc 2) with in-memory experts whose snapshots drift."""
    from ddtool.lookup import build_net
    from ddtool.runtime.distill.planning import build_context, net_spec_of

    recipe = load_recipe(None, ["distill.method=datm", "net.width=8", "distill.ipc=2", "distill.options.syn_steps=4",
                                "distill.options.max_start_epoch=2", "distill.options.current_max_start_epoch=1",
                                *overrides])
    spec = net_spec_of(recipe)
    torch.manual_seed(0)
    net = build_net(spec, digits.channels, digits.num_classes, digits.resolution)
    init = flat_params(net)
    snaps = {f"e{i}": torch.stack([init + 0.05 * e * torch.randn_like(init) for e in range(epochs + 1)])
             for i in range(experts)}
    traj = Trajectories(spec, param_layout(net), epochs, list(snaps), loader=snaps.__getitem__)
    method = DATM()
    options = method.parse_options(dict(recipe.distill.options))
    return build_context(recipe, digits, CPU, method=method, options=options, trajectories=traj), method


def test_labels_start_as_the_mean_logits_of_the_experts_that_classify_each_image_right(digits, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    ctx, method = _ctx(digits)
    given = {0: torch.tensor([[3.0, 0.0], [0.0, 1.0], [1.0, 0.0]]),   # right on images 0 and 1
             1: torch.tensor([[5.0, 1.0], [2.0, 0.0], [2.0, 0.0]])}   # right on image 0 only
    monkeypatch.setattr(method, "final_logits", lambda ctx, e, images: given[e])
    labels = torch.tensor([0, 1, 1])  # image 2 (class 1): no expert is right
    out = method._initial_labels(ctx, torch.zeros(3, 1, 8, 8), labels)
    assert torch.allclose(out, torch.tensor([[4.0, 0.5], [0.0, 1.0], [1.5, 0.0]]))


def test_the_learned_labels_get_the_same_gradient_through_the_checkpointed_unroll(digits) -> None:  # type: ignore[no-untyped-def]
    from ddtool.methods.mtt import synthetic_lr

    grads = {}
    for mode in ("plain", "checkpointed"):
        ctx, method = _ctx(digits, [f'distill.options.unroll="{mode}"', "distill.options.segment=2",
                                    'distill.options.pix_init="real"'])
        torch.manual_seed(1)
        syn = method.init_synthetic(ctx)
        syn.images.requires_grad_(True)
        opt = method.make_optimizer(ctx, syn)
        start, target = method.endpoints(ctx, Segment(0, 1))
        torch.manual_seed(2)
        loss = method.match(ctx, syn, synthetic_lr(opt), start, target)
        loss.backward()
        assert syn.soft_labels.grad is not None and syn.soft_labels.grad.abs().sum() > 0
        grads[mode] = (syn.soft_labels.grad.clone(), syn.images.grad.clone())
    assert torch.allclose(grads["plain"][0], grads["checkpointed"][0], rtol=1e-4, atol=1e-7)
    assert torch.allclose(grads["plain"][1], grads["checkpointed"][1], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("threshold, moves", [(1e-9, False), (1e9, True)])
def test_an_iteration_above_the_threshold_takes_no_step(digits, threshold: float, moves: bool) -> None:  # type: ignore[no-untyped-def]
    ctx, method = _ctx(digits, [f"distill.options.threshold={threshold}", 'distill.options.pix_init="real"'])
    syn = method.init_synthetic(ctx)
    syn.images.requires_grad_(True)
    opt = method.make_optimizer(ctx, syn)
    before = syn.images.detach().clone(), syn.soft_labels.detach().clone()
    method.step(ctx, syn, opt, 0)
    assert (not torch.equal(syn.images, before[0])) == moves and (not torch.equal(syn.soft_labels, before[1])) == moves


def test_the_selection_strategy_draws_inside_the_window(digits) -> None:  # type: ignore[no-untyped-def]
    ctx, method = _ctx(digits, ['distill.options.pix_init="real"', "distill.options.min_start_epoch=1",
                                "distill.options.current_max_start_epoch=2", "distill.options.max_start_epoch=3",
                                "distill.options.expansion_end_epoch=10", "distill.options.expert_epochs=1"])
    seen = []

    class Last:  # always the last start epoch it is offered, after scoring it
        def select_segment(self, ctx, it, starts, score):  # type: ignore[no-untyped-def]
            seen.append((starts, score(Segment(0, starts - 1)) > 0))
            return Segment(0, starts - 1)

    syn = method.init_synthetic(ctx)
    syn.images.requires_grad_(True)
    opt = method.make_optimizer(ctx, syn)
    picked = []
    real_endpoints = method.endpoints
    method.endpoints = lambda ctx, seg: (picked.append(seg.start), real_endpoints(ctx, seg))[1]  # type: ignore[method-assign]
    object.__setattr__(ctx, "selection", Last())
    for it in (0, 10):
        method.step(ctx, syn, opt, it)
    # window [1, 2) at iteration 0 and [1, 3) at 10: the strategy sees 1 then 2 starts, shifted by 1
    assert [s for s, _ in seen] == [1, 2] and all(ok for _, ok in seen)
    assert picked[-1] == 2 and picked[1] == 1  # scored segment, then the step's, per iteration


def test_images_start_as_the_first_an_expert_classifies_right_in_a_random_order(digits, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Expert 0 is right on every third image of the scan, expert 1 on all: ipc 2 takes scan
    positions 0 and 3 of each class (expert 0 found both; expert 1 is not asked)."""
    ctx, method = _ctx(digits)
    asked = []

    def logits(ctx, e, images):  # type: ignore[no-untyped-def]
        asked.append(e)
        c = current["c"]
        right = torch.zeros(len(images), 10)
        right[:, (c + 1) % 10] = 1.0  # wrong by default
        rows = torch.arange(len(images)) % 3 == 0 if e == 0 else torch.ones(len(images), dtype=torch.bool)
        right[rows] = torch.nn.functional.one_hot(torch.tensor(c), 10).float() * 2
        return right

    current = {"c": 0}
    real_indices = digits.class_indices

    def class_indices(c):  # type: ignore[no-untyped-def]
        current["c"] = c
        return real_indices(c)

    monkeypatch.setattr(method, "final_logits", logits)
    monkeypatch.setattr(digits, "class_indices", class_indices)
    torch.manual_seed(5)
    images = method._correct_images(ctx)
    torch.manual_seed(5)
    want = []
    for c in range(10):
        idx = real_indices(c)
        idx = idx[torch.randperm(len(idx))]
        want.append(digits.normalize(digits.train_images[idx[[0, 3]]]))
    assert torch.equal(images, torch.cat(want)) and set(asked) == {0}


def test_a_digits_run_carries_its_learned_logits(store: Store, digits, one_thread) -> None:  # type: ignore[no-untyped-def]
    from ddtool.runtime.distill import distill
    from ddtool.runtime.pretrain.expert_trajectories import pretrain_trajectories

    # experts good enough (about 67 % after 4 epochs at lr 0.5) for correct-only initialisation
    experts = pretrain_trajectories(store, load_recipe(None, ["net.width=8", "net.norm=\"instance\"", "pretrain.n=2",
                                                              "pretrain.epochs=4", "pretrain.lr=0.5",
                                                              'pretrain.name="tiny"']), digits, CPU)
    recipe = load_recipe(None, ["distill.method=datm", "net.width=8", "net.norm=\"instance\"", "distill.ipc=2",
                                "distill.iterations=4", 'distill.options.trajectories="trajectories/tiny"',
                                "distill.options.syn_steps=4", "distill.options.max_start_epoch=2",
                                "distill.options.current_max_start_epoch=1", "distill.options.expansion_end_epoch=2",
                                "distill.lr_img=10", 'name="d"'])
    res = distill(store, recipe, digits, CPU)
    syn = res.synthetic
    assert syn.info.label_kind == "logits" and syn.soft_labels.shape == (20, 10)
    tensors, meta = store.read_blob(res.artifact.digest)
    assert torch.equal(tensors["soft_labels"], syn.soft_labels.detach()) and meta["ddtool.label_kind"] == "logits"
    assert meta["ddtool.learned_lr"]  # the step size, learned as MTT's
    rec = store.run(res.run_id)
    assert [(i["role"], i["digest"]) for i in rec["inputs"]] == [("trajectories", experts.artifact.digest)]
