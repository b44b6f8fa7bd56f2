"""A method that learns its set's labels through the public API (issue 25): it gives the set label
vectors (``SyntheticSet.soft_labels`` and ``info.label_kind``) and puts them in its optimizer
beside the images; the run stores them with the set, checkpoints them with the optimizer's state,
and a resumed run ends with the set an uninterrupted one makes."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ddtool import hookspecs, plugins
from ddtool.errors import DDToolError
from ddtool.methods.dm import DM
from ddtool.recipe import load_recipe
from ddtool.runtime.distill import RunInterrupted, distill, resume
from ddtool.runtime.distill.checkpoint import restore, state
from ddtool.store import Store

CPU = torch.device("cpu")


class LabelledDM(DM):
    """DM on the images, and a label step of its own: momentum SGD pulling the logits toward
    Gaussian draws (random numbers, so a resume must also restore the RNG where the run left it)."""

    name = "dm-labels"

    def init_synthetic(self, ctx):  # type: ignore[no-untyped-def]
        syn = super().init_synthetic(ctx)
        logits = 5.0 * torch.nn.functional.one_hot(syn.labels, ctx.data.num_classes).float()
        return dataclasses.replace(syn, info=dataclasses.replace(syn.info, label_kind="logits"),
                                   soft_labels=logits.requires_grad_(True))

    def make_optimizer(self, ctx, syn):  # type: ignore[no-untyped-def]
        return torch.optim.SGD([{"params": [syn.images], "lr": ctx.cfg.lr_img, "momentum": ctx.cfg.momentum_img},
                                {"params": [syn.soft_labels], "lr": 0.2, "momentum": 0.9}])

    def step(self, ctx, syn, opt, it):  # type: ignore[no-untyped-def]
        loss = super().step(ctx, syn, opt, it)
        opt.zero_grad()
        ((syn.soft_labels - torch.randn_like(syn.soft_labels)) ** 2).mean().backward()
        opt.step()
        return loss


@pytest.fixture
def labelled(fresh_registries):  # type: ignore[no-untyped-def]
    class Plugin:
        @hookspecs.hookimpl
        def ddtool_register_matching_methods(self, register):  # type: ignore[no-untyped-def]
            register(LabelledDM())

    plugins.reload(Plugin())
    return load_recipe(None, ['distill.method="dm-labels"', "net.width=16", "distill.iterations=6",
                              "distill.checkpoint_every=2", "distill.batch_real=16", 'name="t"'])


def test_learned_labels_are_stored_checkpointed_and_resumed_bit_identically(store: Store, digits, labelled,  # type: ignore[no-untyped-def]
                                                                            stop_at) -> None:
    full = distill(store, labelled, digits, CPU)
    syn = full.synthetic
    start = 5.0 * torch.nn.functional.one_hot(syn.labels, 10).float()
    assert syn.info.label_kind == "logits" and not torch.allclose(syn.soft_labels, start, atol=0.1)
    tensors, meta = store.read_blob(full.artifact.digest)
    assert torch.equal(tensors["soft_labels"], syn.soft_labels.detach()) and meta["ddtool.label_kind"] == "logits"
    with pytest.raises(RunInterrupted) as info:
        distill(store, labelled, digits, CPU, stop_at(3))
    ckpt, _ = store.read_blob(store.run(info.value.run_id)["checkpoints"][-1]["digest"])
    assert "soft_labels" in ckpt and "optim.1.momentum_buffer" in ckpt  # the labels' value and momentum
    res = resume(store, info.value.run_id, digits, CPU)
    assert torch.equal(res.synthetic.soft_labels, syn.soft_labels) and res.artifact.digest == full.artifact.digest


def test_a_checkpoint_without_label_vectors_does_not_resume_a_method_that_learns_them(digits, labelled) -> None:  # type: ignore[no-untyped-def]
    from ddtool.synthetic import SyntheticSet

    images = torch.zeros(2, 1, 8, 8, requires_grad=True)
    plain = SyntheticSet(images, torch.tensor([0, 1]), 1)
    opt = torch.optim.SGD([images], lr=0.1)

    class NoSelection:
        def state(self):  # type: ignore[no-untyped-def]
            return {}

        def load_state(self, s):  # type: ignore[no-untyped-def]
            pass

    saved = state(plain, opt, NoSelection(), CPU)  # type: ignore[arg-type]
    learns = dataclasses.replace(plain, info=dataclasses.replace(plain.info, label_kind="logits"),
                                 soft_labels=torch.zeros(2, 2))
    with pytest.raises(DDToolError, match="label vectors do not fit"):
        restore(saved, learns, opt, NoSelection(), CPU)  # type: ignore[arg-type]


def test_an_accuracy_curve_trains_each_point_on_its_own_label_vectors(store: Store, digits, labelled) -> None:  # type: ignore[no-untyped-def]
    from ddtool.recipe import EvalSection
    from ddtool.runtime.evaluate.accuracy_curves import evaluate_curve
    from ddtool.runtime.distill.planning import net_spec_of
    from ddtool.runtime.evaluate.train_eval import evaluate_set

    full = distill(store, labelled, digits, CPU)
    cfg = EvalSection(epochs=20, repeats=1, batch=64)
    spec = net_spec_of(labelled)  # what the curve trains: the run's net
    learned = evaluate_set(full.synthetic, digits, spec, cfg, CPU, targets=full.synthetic.decoded_targets())
    hard = evaluate_set(full.synthetic, digits, spec, cfg, CPU)
    assert learned != hard  # the labels drifted to random logits: the two trainings differ
    auto = evaluate_curve(store, full.run_id, digits, cfg, CPU, at=[2, 6], count_flops=False)
    assert [p.iteration for p in auto.points] == [2, 6] and auto.points[-1].accuracies == learned
    as_hard = evaluate_curve(store, full.run_id, digits, dataclasses.replace(cfg, labels="hard"), CPU, at=[2, 6],
                             count_flops=False)
    assert as_hard.points[-1].accuracies == hard
    # a checkpoint's own vectors train its point: they differ from the final ones
    assert auto.points[0].accuracies != as_hard.points[0].accuracies


def test_a_curve_of_a_run_without_its_final_set_cannot_tell_what_its_label_vectors_are(  # type: ignore[no-untyped-def]
        store: Store, digits, labelled, stop_at) -> None:
    from ddtool.errors import UsageError
    from ddtool.recipe import EvalSection
    from ddtool.runtime.evaluate.accuracy_curves import evaluate_curve

    with pytest.raises(RunInterrupted) as info:
        distill(store, labelled, digits, CPU, stop_at(3))
    with pytest.raises(UsageError, match="logits or probabilities.*--labels hard"):
        evaluate_curve(store, info.value.run_id, digits, EvalSection(epochs=1, repeats=1), CPU, count_flops=False)
    hard = evaluate_curve(store, info.value.run_id, digits, EvalSection(epochs=1, repeats=1, labels="hard"), CPU,
                          count_flops=False)
    assert [p.iteration for p in hard.points] == [2]
