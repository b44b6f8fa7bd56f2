"""MTT (ddtool.methods.mtt): the trajectory-matching loss, the learnable step size, the two unrolls,
and a digits run from 'pretrain --trajectories' to a synthetic set whose lineage names them."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ddtool.augment import Augmenter
from ddtool.errors import UsageError
from ddtool.methods.mtt import (
    MTT,
    LR_STATE,
    MTTOptions,
    Student,
    draw_student_steps,
    synthetic_lr,
    trajectory_loss,
    unroll,
)
from ddtool.recipe import load_recipe
from ddtool.store import Store
from ddtool.trajectories import Trajectories, flat_params, param_layout

CPU = torch.device("cpu")
TINY_EXPERTS = ["net.width=8", "pretrain.n=2", "pretrain.epochs=3", 'pretrain.name="tiny"']
TINY_MTT = ["distill.method=mtt", "net.width=8", "distill.ipc=1", "distill.iterations=3", "distill.checkpoint_every=2",
            'distill.options.trajectories="trajectories/tiny"', "distill.options.syn_steps=4",
            "distill.options.expert_epochs=2", "distill.options.max_start_epoch=2", "distill.lr_img=100",
            "distill.options.lr_lr=1e-3", 'name="m"']


def _digits_ctx(digits, overrides=(), epochs=3):  # type: ignore[no-untyped-def]
    """A context for mtt on digits (ConvNet width 8, ipc 2) with one in-memory expert of ``epochs``
    epochs whose snapshots drift away from the initialisation."""
    from ddtool.lookup import build_net
    from ddtool.runtime.distill.planning import build_context, net_spec_of

    recipe = load_recipe(None, ["distill.method=mtt", "net.width=8", "distill.ipc=2", *overrides])
    spec = net_spec_of(recipe)
    torch.manual_seed(0)
    net = build_net(spec, digits.channels, digits.num_classes, digits.resolution)
    init = flat_params(net)
    snaps = torch.stack([init + 0.05 * e * torch.randn_like(init) for e in range(epochs + 1)])
    traj = Trajectories(spec, param_layout(net), epochs, ["e0"], loader={"e0": snaps}.__getitem__)
    method = MTT()
    options = method.parse_options(dict(recipe.distill.options))
    return build_context(recipe, digits, CPU, method=method, options=options, trajectories=traj), method, snaps


def test_the_loss_is_zero_when_the_student_reproduces_the_target(digits) -> None:  # type: ignore[no-untyped-def]
    """The target is made by plain torch training (nn.Module + torch.optim.SGD) on the same batches:
    the functional student must land on it."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.GroupNorm(4, 4), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10))
    start = flat_params(net)
    images, labels = torch.randn(20, 1, 8, 8), torch.arange(20) % 10
    draws = draw_student_steps(20, 5, 8, Augmenter("none"), 8, CPU)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for d in draws:
        opt.zero_grad()
        F.cross_entropy(net(images[d.idx]), labels[d.idx]).backward()
        opt.step()
    target = flat_params(net)
    lr = torch.tensor(0.1, requires_grad=True)
    student = Student(net, param_layout(net))
    end = unroll(student, start, images.requires_grad_(True), labels, lr, draws, Augmenter("none"))
    assert trajectory_loss(end, start, target).item() == pytest.approx(0.0, abs=1e-10)
    assert trajectory_loss(end, start, start + 1.0).item() > 0.01  # and not for another target


def test_the_loss_matches_a_hand_computed_value_on_a_two_parameter_model() -> None:
    """logits = (w0 x, w1 x), label 0: dCE/dw0 = -x (1 - p0), dCE/dw1 = x p1, p1 = sigmoid((w1 - w0) x)."""
    net = nn.Linear(1, 2, bias=False)
    w0, w1, x, lr = 0.3, -0.2, 1.5, 0.5
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[w0], [w1]]))
    p1 = 1 / (1 + math.exp(-(w1 - w0) * x))
    v0, v1 = w0 - lr * (-x * p1), w1 - lr * (x * p1)  # one student step (1 - p0 = p1)
    t0, t1 = 0.9, -0.7  # the expert's target
    want = ((v0 - t0) ** 2 + (v1 - t1) ** 2) / ((w0 - t0) ** 2 + (w1 - t1) ** 2)
    images = torch.tensor([[x]], requires_grad=True)
    draws = draw_student_steps(1, 1, 1, Augmenter("none"), 1, CPU)
    start = torch.tensor([w0, w1])
    end = unroll(Student(net, param_layout(net)), start, images, torch.tensor([0]), torch.tensor(lr), draws,
                 Augmenter("none"))
    assert trajectory_loss(end, start, torch.tensor([t0, t1])).item() == pytest.approx(want, rel=1e-6)


def test_a_step_moves_the_images_and_the_learnable_step_size(digits) -> None:  # type: ignore[no-untyped-def]
    ctx, method, _ = _digits_ctx(digits, ["distill.options.syn_steps=3", "distill.options.expert_epochs=1",
                                          "distill.options.max_start_epoch=2", "distill.lr_img=100",
                                          "distill.options.lr_lr=1e-3"])
    syn = method.init_synthetic(ctx)
    syn.images.requires_grad_(True)
    opt = method.make_optimizer(ctx, syn)
    lr = opt.param_groups[1]["params"][0]
    before, lr_before = syn.images.detach().clone(), lr.item()
    loss = method.step(ctx, syn, opt, 0)
    assert math.isfinite(loss) and loss > 0
    assert lr.grad is not None and lr.grad.item() != 0 and math.isfinite(lr.grad.item())
    assert lr.item() != lr_before and opt.state[lr][LR_STATE].item() == lr.item()
    assert syn.images.grad.abs().sum() > 0 and not torch.equal(syn.images.detach(), before)


def test_a_checkpoint_carries_the_learned_step_size(digits) -> None:  # type: ignore[no-untyped-def]
    """Checkpoints save the optimizer's state, not its parameters (but the images): the step size's
    value rides in its state and comes back after --resume."""
    from ddtool.runtime.distill.checkpoint import restore, state

    ctx, method, _ = _digits_ctx(digits, ["distill.options.syn_steps=2", "distill.options.expert_epochs=1",
                                          "distill.options.max_start_epoch=1", "distill.options.lr_lr=1e-2"])
    syn = method.init_synthetic(ctx)
    syn.images.requires_grad_(True)
    opt = method.make_optimizer(ctx, syn)
    method.step(ctx, syn, opt, 0)
    learned = opt.param_groups[1]["params"][0].item()
    saved = state(syn, opt, ctx.selection, CPU)
    fresh = method.make_optimizer(ctx, syn)  # as a resumed run builds it: the step size at lr_teacher
    assert fresh.param_groups[1]["params"][0].item() == pytest.approx(0.01) and learned != pytest.approx(0.01)
    restore(saved, syn, fresh, ctx.selection, CPU)
    assert synthetic_lr(fresh).item() == learned


def test_checkpointed_and_plain_unrolls_give_the_same_gradients(digits, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from ddtool.methods import mtt as mtt_mod

    recomputed = []
    real_backward = mtt_mod._Segment.backward

    def backward(c, g):  # type: ignore[no-untyped-def]
        recomputed.append(1)
        return real_backward(c, g)

    monkeypatch.setattr(mtt_mod._Segment, "backward", staticmethod(backward))
    ctx, method, snaps = _digits_ctx(digits, ["distill.options.expert_epochs=2", "distill.options.max_start_epoch=1"])
    syn = method.init_synthetic(ctx)
    grads = {}
    for mode in ("plain", "checkpointed"):
        ctx.options = MTTOptions(syn_steps=7, batch_syn=8, unroll=mode, segment=3)
        images = syn.images.detach().clone().requires_grad_(True)
        lr = torch.tensor(0.05, requires_grad=True)
        torch.manual_seed(5)  # the same minibatches and augmentation draws
        loss = method.match(ctx, type(syn)(images, syn.labels, syn.ipc, syn.factor), lr, snaps[0], snaps[2])
        loss.backward()
        grads[mode] = (loss.detach(), images.grad.clone(), lr.grad.clone())
    (l_p, g_p, lr_p), (l_c, g_c, lr_c) = grads["plain"], grads["checkpointed"]
    assert g_p.abs().sum() > 0
    assert l_c.item() == pytest.approx(l_p.item(), rel=1e-5)
    assert len(recomputed) == 3  # 7 steps in segments of 3, each recomputed once
    assert float((g_c - g_p).norm() / g_p.norm()) < 1e-5
    assert lr_c.item() == pytest.approx(lr_p.item(), rel=1e-5)


def test_start_epochs_past_the_trajectories_are_refused_before_the_run(digits) -> None:  # type: ignore[no-untyped-def]
    ctx, method, _ = _digits_ctx(digits, ["distill.options.expert_epochs=2", "distill.options.max_start_epoch=3"])
    with pytest.raises(UsageError, match="needs expert epoch 4, but the trajectories end at epoch 3"):
        method.init_synthetic(ctx)


def test_a_digits_run_makes_a_set_whose_lineage_names_the_trajectories(store: Store, digits, one_thread) -> None:  # type: ignore[no-untyped-def]
    from ddtool.runtime.distill import distill
    from ddtool.runtime.pretrain.expert_trajectories import pretrain_trajectories
    from ddtool.store.integrity import verify
    from ddtool.store.meta import parents_of

    made = pretrain_trajectories(store, load_recipe(None, TINY_EXPERTS), digits, CPU)
    res = distill(store, load_recipe(None, TINY_MTT), digits, CPU)
    meta = store.blob_metadata(res.artifact.digest)
    assert parents_of(meta) == [made.artifact.digest]
    assert meta["ddtool.method"] == "mtt"
    rec = store.run(res.run_id)
    assert [(i["ref"], i["role"]) for i in rec["inputs"]] == [("trajectories/tiny:v1", "trajectories")]
    assert rec["plan"]["trajectories"] == "trajectories/tiny:v1"
    # the recorded recipe names the version it read, so a resume reads the same experts
    assert rec["recipe"]["distill"]["options"]["trajectories"] == "trajectories/tiny:v1"
    assert len(res.losses) == 3 and all(math.isfinite(v) for v in res.losses)
    assert not torch.equal(res.synthetic.images.detach(), torch.zeros_like(res.synthetic.images))
    made_from = store.runs_of(made.artifact.digest)[1]
    assert [r["id"] for r in made_from] == [res.run_id]  # the distill run is listed as using the trajectories
    tree = store.lineage(res.artifact.digest, depth=2)["made_from"]  # 'store show --tree' names them as an input
    assert [(t["ref"], t["digest"]) for t in tree["trajectories"]] == [("trajectories/tiny:v1", made.artifact.digest)]
    assert tree["trajectories"][0]["made_from"]["run"]["id"] == made.run_id
    assert verify(store).ok


def test_a_recipe_naming_missing_trajectories_fails_in_one_line(cli) -> None:  # type: ignore[no-untyped-def]
    res = cli("distill", *[a for s in TINY_MTT for a in ("--set", s)])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "trajectories 'trajectories/tiny' are not in the store" in lines[0]
    assert "ddtool pretrain --trajectories" in lines[0]
    res = cli("distill", "--set", "distill.method=mtt", "--dry-run")  # none named at all
    assert res.exit_code == 2 and "ddtool pretrain --trajectories" in res.stderr


@pytest.mark.parametrize("overrides", [[], ["data.dataset=cifar10"], ["data.dataset=cifar10", "distill.ipc=50",
                                                                        "distill.options.max_start_epoch=40"]])
def test_the_recipe_reaches_no_epoch_past_its_own_experts(overrides: list[str]) -> None:
    from pathlib import Path

    recipe = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "mtt.toml", overrides)
    o = MTT().parse_options(dict(recipe.distill.options))
    assert o.max_start_epoch - 1 + o.expert_epochs <= recipe.pretrain.epochs
    assert o.trajectories == f"trajectories/{recipe.pretrain.name}"  # pretrain makes what distill reads


def test_an_interrupted_run_resumes_bit_identically_with_its_learned_step_size(store: Store, digits, one_thread, stop_at) -> None:  # type: ignore[no-untyped-def]
    """Ctrl-C after iteration 2 of 4, then --resume: the same images as an uninterrupted run, which
    needs the step size learned by then (a resume that restarted it at lr_teacher would differ)."""
    from ddtool.runtime.distill import RunInterrupted, distill, resume
    from ddtool.runtime.pretrain.expert_trajectories import pretrain_trajectories

    pretrain_trajectories(store, load_recipe(None, TINY_EXPERTS), digits, CPU)
    recipe = load_recipe(None, [*TINY_MTT, "distill.iterations=4", 'distill.options.unroll="checkpointed"',
                                "distill.options.segment=3"])
    full = distill(store, recipe, digits, CPU)
    with pytest.raises(RunInterrupted) as info:
        distill(store, recipe, digits, CPU, stop_at(3))
    res = resume(store, info.value.run_id, digits, CPU)
    assert torch.equal(res.synthetic.images, full.synthetic.images)  # exact by construction: same kernels, inputs and order on one machine
    assert res.artifact.digest == full.artifact.digest
