"""How the pool's early-stage models are trained (Acc-DD's pretrain.py by default)."""

from __future__ import annotations

import pytest
import torch

from ddtool.augment import DiffAugChain
from ddtool.errors import UsageError
from ddtool.lookup import build_net
from ddtool.nets import NetSpec
from ddtool.recipe import Recipe
from ddtool.runtime import supervised as train_mod
from ddtool.runtime.pretrain import pool_training as pretrain_mod
from ddtool.store import Store

SPEC = NetSpec("convnet", {"width": 16})


def _count_calls(monkeypatch: pytest.MonkeyPatch, cls: type) -> list[int]:
    calls = [0]
    original = cls.__call__

    def counting(self, x):  # type: ignore[no-untyped-def]
        calls[0] += 1
        return original(self, x)

    monkeypatch.setattr(cls, "__call__", counting)
    return calls


def test_default_pool_trains_every_model_alike_with_idc_chain_and_cutmix(monkeypatch: pytest.MonkeyPatch, digits) -> None:  # type: ignore[no-untyped-def]
    chain_calls = _count_calls(monkeypatch, DiffAugChain)
    cut = [0]
    real_loss = train_mod.batch_loss

    def spy(net, x, y, p=0.0):  # type: ignore[no-untyped-def]
        cut[0] += p == 0.5
        return real_loss(net, x, y, p)

    monkeypatch.setattr(train_mod, "batch_loss", spy)
    r = Recipe().pretrain
    pool = pretrain_mod.train_pool(digits, SPEC, 2, 1, r.lr, r.batch, 0, torch.device("cpu"), impl=r.impl,
                                   augment=r.augment, cutmix=r.cutmix, lr_cycle=r.lr_cycle)
    batches = 2 * -(-len(digits.train_labels) // 64)
    assert chain_calls[0] == batches and cut[0] == batches
    assert [(m["lr"], m["augment"], m["cutmix"], m["batch"]) for m in pool.models] == [(0.01, "color_crop", 0.5, 64)] * 2
    from ddtool.runtime.seeds import role_seed

    assert [m["seed"] for m in pool.models] == [role_seed("pool", 0, 0), role_seed("pool", 0, 1)]


def test_alternate_keeps_the_earlier_pools(monkeypatch: pytest.MonkeyPatch, digits) -> None:  # type: ignore[no-untyped-def]
    chain_calls = _count_calls(monkeypatch, DiffAugChain)
    pool = pretrain_mod.train_pool(digits, SPEC, 3, 1, 0.01, 128, 0, torch.device("cpu"), impl="loop",
                                   augment="alternate", cutmix=0.0, lr_cycle=True)
    assert chain_calls[0] == 0
    assert [m["augment"] for m in pool.models] == ["dsa", "none", "dsa"]
    assert [m["lr"] for m in pool.models] == pytest.approx([0.01, 0.005, 0.02])


def test_unknown_pretrain_augmentation_is_refused_before_training(store: Store, digits) -> None:  # type: ignore[no-untyped-def]
    recipe = Recipe()
    recipe.pretrain.augment = "color_blur"
    with pytest.raises(UsageError, match="blur"):
        pretrain_mod.pretrain(store, recipe, digits, torch.device("cpu"))
    assert store.runs() == []


def test_train_accuracy_is_measured_on_a_spread_probe_of_the_split(monkeypatch: pytest.MonkeyPatch, digits) -> None:  # type: ignore[no-untyped-def]
    from ddtool.runtime.supervised import accuracy

    monkeypatch.setattr(pretrain_mod, "TRAIN_PROBE", 100)
    pool = pretrain_mod.train_pool(digits, SPEC, 1, 1, 0.01, 64, 0, torch.device("cpu"), impl="loop")
    net = build_net(SPEC, digits.channels, digits.num_classes, digits.resolution)
    net.load_state_dict(pool.states[0])
    n = len(digits.train_labels)
    probe = torch.linspace(0, n - 1, 100).long()
    assert len(set(digits.train_labels[probe].tolist())) == 10  # spread over every class, not the first rows
    want = accuracy(net, digits.train_images[probe], digits.train_labels[probe], digits.normalize)
    assert pool.models[0]["train_acc"] == pytest.approx(want)
    # k / 100: measured on the 100-image probe, not on all 1,437 images
    assert pool.models[0]["train_acc"] * 100 == pytest.approx(round(pool.models[0]["train_acc"] * 100))


def test_no_evaluation_network_starts_where_a_pool_model_or_an_expert_started(
        monkeypatch: pytest.MonkeyPatch, store: Store, digits, put_set) -> None:  # type: ignore[no-untyped-def]
    """With every seed at its default, evaluation repeat r once started from pool model r's and
    expert r's initial weights (all seeded 0 + r): the networks a set was matched on. MTT's images
    steer a student from an expert's start, which inflated that repeat (issue 12)."""
    from ddtool.recipe import load_recipe
    from ddtool.runtime.evaluate import train_eval as evaluate_mod
    from ddtool.runtime.pretrain import expert_trajectories as traj_mod

    starts: dict[str, list[torch.Tensor]] = {"pool": [], "expert": [], "eval": []}

    def capture(role: str, module) -> None:  # type: ignore[no-untyped-def]
        real = module.build_net

        def build(*args, **kwargs):  # type: ignore[no-untyped-def]
            net = real(*args, **kwargs)
            starts[role].append(next(net.parameters()).detach().clone())
            return net

        monkeypatch.setattr(module, "build_net", build)

    for role, module in (("pool", pretrain_mod), ("expert", traj_mod), ("eval", evaluate_mod)):
        capture(role, module)
    pretrain_mod.train_pool(digits, SPEC, 3, 1, 0.01, 256, 0, torch.device("cpu"), impl="loop", augment="color_crop")
    recipe = load_recipe(None, ["net.width=16", "pretrain.n=3", "pretrain.epochs=1", 'pretrain.name="e"'])
    traj_mod.pretrain_trajectories(store, recipe, digits, torch.device("cpu"))
    put_set(store, digits, ipc=1)
    evaluate_mod.evaluate(store, "synthetic/s", digits, load_recipe(None, ["eval.epochs=1", "eval.repeats=3"]).eval,
                          torch.device("cpu"), SPEC)
    assert len(starts["pool"]) == 3 and len(starts["expert"]) >= 3 and len(starts["eval"]) == 3
    for role in ("pool", "expert"):
        for i, a in enumerate(starts[role]):
            for r, b in enumerate(starts["eval"]):
                assert not torch.equal(a, b), f"{role} model {i} starts where evaluation repeat {r} does"
    assert not torch.equal(starts["pool"][0], starts["expert"][0])  # one stream per role


def test_diverse_pool_differs_in_lr_augmentation_and_seed(store: Store, digits) -> None:  # type: ignore[no-untyped-def]
    """Issue 23, Acc-DD Sec. 4.2: "pretrained with different hyper-parameters, including learning rate,
    random seed, and data augmentation". pretrain.diverse gives model i lr x lr_factors[i % len] and
    the chain augments[i % len]; every model's settings are in the pool's metadata. The default
    pool still differs by seed only, and its recipe hash is the one it always had."""
    from ddtool.recipe import load_recipe
    from ddtool.runtime.seeds import role_seed
    from ddtool.store.meta import PoolMeta

    base = ["net.width=8", "pretrain.n=3", "pretrain.epochs=1"]
    recipe = load_recipe(None, [*base, "pretrain.diverse=true", "pretrain.lr_factors=[1.0, 0.5]",
                                'pretrain.augments=["crop", "none", "color_crop_cutout"]', "pretrain.name=div"])
    made = pretrain_mod.pretrain(store, recipe, digits, torch.device("cpu"))
    models = PoolMeta.from_metadata(store.blob_metadata(made.artifact.digest)).models
    assert [(m["lr"], m["augment"]) for m in models] == [(0.01, "crop"), (0.005, "none"), (0.01, "color_crop_cutout")]
    assert [m["seed"] for m in models] == [role_seed("pool", 0, i) for i in range(3)]
    # the default: one lr, one chain (Acc-DD's pretrain.py per run); diverse unset keeps the hash
    plain = load_recipe(None, base)
    assert not plain.pretrain.diverse
    assert plain.sha256() == load_recipe(None, [*base, "pretrain.diverse=false"]).sha256()
    assert plain.sha256() != load_recipe(None, [*base, "pretrain.diverse=true"]).sha256()


def test_diverse_refuses_what_it_would_override_and_bad_lists(store: Store, digits) -> None:  # type: ignore[no-untyped-def]
    from ddtool.recipe import load_recipe

    for extra, match in ((["pretrain.lr_cycle=true"], "leave pretrain.lr_cycle false"),
                         (['pretrain.augment="alternate"'], "leave pretrain.lr_cycle false and pretrain.augment"),
                         (['pretrain.augments=["crop", "blur"]'], "blur")):
        with pytest.raises(UsageError, match=match):
            pretrain_mod.pretrain(store, load_recipe(None, ["pretrain.diverse=true", *extra]), digits,
                                  torch.device("cpu"))
    assert store.runs() == []  # refused before any run started
    with pytest.raises(UsageError, match="pretrain.lr_factors must be a non-empty list of numbers > 0"):
        load_recipe(None, ["pretrain.lr_factors=[1.0, -2.0]"])
    with pytest.raises(UsageError, match="pretrain.augments must be a list of strings"):
        load_recipe(None, ["pretrain.augments=3"])


def test_evaluating_the_trained_models_is_a_progress_phase_of_its_own(monkeypatch: pytest.MonkeyPatch, digits) -> None:  # type: ignore[no-untyped-def]
    """After training, each model's train-probe and test accuracy take seconds per model on a CPU:
    the reporter sees that phase, batch by batch, and its total is what it advances."""
    from contextlib import contextmanager

    events: list[tuple[str, str, int]] = []

    class Recording:
        def note(self, text: str) -> None:
            pass

        @contextmanager
        def task(self, description: str, total: int):  # type: ignore[no-untyped-def]
            events.append(("open", description, total))

            class Task:
                def advance(self, n: int = 1, **fields) -> None:  # type: ignore[no-untyped-def]
                    events.append(("advance", description, n))

            yield Task()
            events.append(("close", description, 0))

    monkeypatch.setattr(pretrain_mod, "TRAIN_PROBE", 1000)
    from functools import partial

    monkeypatch.setattr(pretrain_mod, "accuracy", partial(train_mod.accuracy, batch=256))  # several batches a split
    pretrain_mod.train_pool(digits, SPEC, 2, 1, 0.01, 64, 0, torch.device("cpu"), reporter=Recording(), impl="loop")
    opened = [(d, t) for e, d, t in events if e == "open"]
    assert [d.split()[0] for d, _ in opened] == ["pretraining", "evaluating"]
    evaluating, total = opened[1]
    assert "2 x convnet" in evaluating
    steps = [n for e, d, n in events if e == "advance" and d == evaluating]
    per_model = 1000 + len(digits.test_labels)
    assert total == sum(steps) == 2 * per_model  # it ends at 100 %: the ETA is honest
    assert len(steps) == 2 * (-(-1000 // 256) + -(-len(digits.test_labels) // 256))  # batch by batch
    # the phase opens after training has closed
    assert events.index(("close", opened[0][0], 0)) < events.index(("open", evaluating, total))


def test_lr_milestones_drop_the_lr_as_the_references_multisteplr(monkeypatch: pytest.MonkeyPatch, store: Store,
                                                                 digits) -> None:  # type: ignore[no-untyped-def]
    """NCFM's pretrain_script.py: MultiStepLR(milestones=[2E//3, 5E//6], gamma=0.2) stepped per epoch.
    At E = 3 both milestones are epoch 2, so its last epoch runs at lr x 0.04; the pool's models
    train at the lr torch's scheduler gives each epoch, and say so in their metadata."""
    from ddtool.recipe import load_recipe
    from ddtool.store.meta import PoolMeta

    epochs, lr = 3, 0.01
    ref_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(ref_opt, milestones=[2 * epochs // 3, 5 * epochs // 6], gamma=0.2)
    want = []
    for _ in range(epochs):
        want.append(ref_opt.param_groups[0]["lr"])
        ref_opt.step()
        sched.step()
    assert want[-1] == pytest.approx(lr * 0.04)  # the schedule under test is not a constant one

    opts: list[torch.optim.Optimizer] = []
    seen: list[float] = []
    real_make, real_loss = train_mod.make_optimizer, train_mod.batch_loss
    monkeypatch.setattr(train_mod, "make_optimizer", lambda net, s: opts.append(real_make(net, s)) or opts[-1])
    monkeypatch.setattr(train_mod, "batch_loss",
                        lambda *a, **k: seen.append(opts[-1].param_groups[0]["lr"]) or real_loss(*a, **k))
    base = ["net.width=8", "pretrain.n=1", f"pretrain.epochs={epochs}", "pretrain.batch=512", "pretrain.impl=loop"]
    recipe = load_recipe(None, [*base, 'pretrain.lr_milestones=["2/3", "5/6"]', "pretrain.lr_gamma=0.2",
                                "pretrain.name=sched"])
    made = pretrain_mod.pretrain(store, recipe, digits, torch.device("cpu"))
    per_epoch = -(-len(digits.train_labels) // 512)
    assert seen == pytest.approx([w for w in want for _ in range(per_epoch)])
    (model,) = PoolMeta.from_metadata(store.blob_metadata(made.artifact.digest)).models
    assert (model["lr_milestones"], model["lr_gamma"]) == (["2/3", "5/6"], 0.2)

    # unset: one lr throughout, nothing new in the metadata, and the recipe keeps its hash
    seen.clear()
    plain = load_recipe(None, [*base, "pretrain.name=flat"])
    made = pretrain_mod.pretrain(store, plain, digits, torch.device("cpu"))
    assert set(seen) == {lr}
    (model,) = PoolMeta.from_metadata(store.blob_metadata(made.artifact.digest)).models
    assert "lr_milestones" not in model
    assert plain.sha256() == load_recipe(None, [*base, "pretrain.name=flat", "pretrain.lr_milestones=[]"]).sha256()
    assert plain.sha256() != recipe.sha256()


@pytest.mark.parametrize("value", ['["3/2"]', '["0"]', '["two thirds"]', "[0.5]", '"2/3"'])
def test_lr_milestones_must_be_fractions_of_the_epochs(value: str) -> None:
    from ddtool.recipe import load_recipe

    with pytest.raises(UsageError, match="pretrain.lr_milestones must be"):
        load_recipe(None, [f"pretrain.lr_milestones={value}"])
    with pytest.raises(UsageError, match=r"pretrain.lr_gamma must be in \(0, 1\]"):
        load_recipe(None, ["pretrain.lr_gamma=0"])


def test_experts_refuse_lr_milestones(store: Store, digits) -> None:  # type: ignore[no-untyped-def]
    from ddtool.recipe import load_recipe
    from ddtool.runtime.pretrain import expert_trajectories as traj_mod

    recipe = load_recipe(None, ["net.width=8", "pretrain.n=1", "pretrain.epochs=1", 'pretrain.lr_milestones=["1/2"]'])
    with pytest.raises(UsageError, match="pretrain.lr_milestones is for pools"):
        traj_mod.pretrain_trajectories(store, recipe, digits, torch.device("cpu"))
    assert store.runs() == []
