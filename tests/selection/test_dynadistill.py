"""DynaDistill (seed 003): the choice distribution, pool feedback and updates, settings, a short run."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from ddtool.errors import UsageError
from ddtool.methods.base import MatchingMethod
from ddtool.recipe import load_recipe
from ddtool.runtime.distill import distill, plan
from ddtool.runtime.pretrain.pool_training import pretrain
from ddtool.selection.builtin import DynaDistill
from ddtool.store import Store
from ddtool.synthetic import SyntheticSet

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


def frequencies(strategy: DynaDistill, losses: torch.Tensor, n: int = 4000) -> torch.Tensor:
    torch.manual_seed(0)
    counts = torch.bincount(torch.tensor([strategy.choose(losses) for _ in range(n)]), minlength=len(losses))
    return counts.double() / n


def test_choice_follows_softmax_of_loss_over_temperature():
    losses = torch.tensor([1.0, 1.5, 0.2])
    high = DynaDistill(m=3, t=0.5)
    want = torch.softmax(losses.double() / 0.5, 0)
    torch.testing.assert_close(high.probabilities(losses), want)
    assert (frequencies(high, losses) - want).abs().max() < 0.03
    # "low" flips the preference: exp(-L / T)
    low = DynaDistill(m=3, t=0.5, prefer="low")
    want_low = torch.softmax(-losses.double() / 0.5, 0)
    torch.testing.assert_close(low.probabilities(losses), want_low)
    f_low = frequencies(low, losses)
    assert (f_low - want_low).abs().max() < 0.03
    assert int(f_low.argmax()) == 2 and int(frequencies(high, losses).argmax()) == 1
    # a higher temperature flattens the choice
    assert DynaDistill(t=100.0).probabilities(losses).max() < 0.34


def normalizing(kind: str, t: float = 0.5) -> DynaDistill:
    s = DynaDistill(m=3, t=t)
    s.configure({"normalize": kind})
    return s


def test_normalize_gives_the_temperature_one_meaning_whatever_the_loss_scale():
    """Issue 23 item 1: raw IDC losses (~48-67) make T = 0.5 an argmax; normalised, the choice
    depends on the losses' relative spread only (mean) or on their standardised spread (zscore)."""
    idc_like = torch.tensor([48.0, 67.0, 55.0])
    raw = DynaDistill(m=3, t=0.5).probabilities(idc_like)
    assert raw.max() > 0.999  # the formula as written (normalize = "none", the default): an argmax
    x = idc_like.double()
    mean = normalizing("mean")
    torch.testing.assert_close(mean.probabilities(idc_like), torch.softmax(x / x.mean() / 0.5, 0))
    zscore = normalizing("zscore")
    z = (x - x.mean()) / x.std(correction=0)
    torch.testing.assert_close(zscore.probabilities(idc_like), torch.softmax(z / 0.5, 0))
    # T = 0.5 samples again: no candidate is (nearly) certain
    assert float(zscore.probabilities(idc_like).max()) < 0.95 and float(mean.probabilities(idc_like).max()) < 0.5
    # scale-free: MTT-sized losses (O(1)) with the same ratios choose alike under mean and zscore
    for s in (mean, zscore):
        torch.testing.assert_close(s.probabilities(idc_like / 50), s.probabilities(idc_like))
    assert not torch.allclose(DynaDistill(t=0.5).probabilities(idc_like / 50), raw)
    # zscore is also shift-free; prefer = "low" still flips it
    torch.testing.assert_close(zscore.probabilities(idc_like + 1000), zscore.probabilities(idc_like))
    zscore.configure({"normalize": "zscore", "prefer": "low"})
    assert int(zscore.probabilities(idc_like).argmax()) == 0


def test_normalize_edge_cases_give_a_uniform_choice():
    same = torch.tensor([3.0, 3.0, 3.0])
    uniform = torch.full((3,), 1 / 3, dtype=torch.double)
    torch.testing.assert_close(normalizing("zscore").probabilities(same), uniform)  # std 0
    torch.testing.assert_close(normalizing("mean").probabilities(torch.zeros(3)), uniform)  # mean 0
    for kind in ("none", "mean", "zscore"):  # a single candidate: probability 1, no division by zero
        assert normalizing(kind).probabilities(torch.tensor([5.0])).tolist() == [1.0]
    with pytest.raises(UsageError, match="normalize must be none, mean, zscore, got 'max'"):
        normalizing("max")


class ScoreByBias(MatchingMethod):
    """A stand-in method: the 'matching loss' of a network is its bias (one per pool model)."""

    trains_network = True  # like DC/DSA/IDC: the pool takes the trained network back

    def __init__(self) -> None:
        self.seen_grad: list[bool] = []

    def loss(self, ctx, syn, net):
        self.seen_grad.append(syn.images.requires_grad)
        return net.bias.sum()


def fake_ctx(biases):
    states = []
    for b in biases:
        net = nn.Linear(2, 1)
        with torch.no_grad():
            net.bias.fill_(b)
        states.append({k: v.clone() for k, v in net.state_dict().items()})
    images = torch.zeros(2, 1, 2, 2, requires_grad=True)
    def net_from_state(state):
        net = nn.Linear(2, 1)
        net.load_state_dict(state)
        return net

    return SimpleNamespace(pool=Pool(states), fresh_net=lambda: nn.Linear(2, 1), net_from_state=net_from_state,
                           method=ScoreByBias(), synthetic=SyntheticSet(images, torch.tensor([0, 1]), 1),
                           perturbation=None, perturb=lambda net, it, keep=False: None)


class Pool(list):
    """Just what the strategy reads of a ddtool.pool.Pool: len() and .states."""

    @property
    def states(self):
        return self


def test_select_ranks_pool_models_by_method_loss_and_updates_the_pool():
    ctx = fake_ctx([0.0, 1.0, 2.0])
    original = [{k: v.clone() for k, v in sd.items()} for sd in ctx.pool]
    s = DynaDistill(m=3, t=0.5)
    s.configure({"m": 3, "t": 0.5, "write_back": True})  # Algorithm 1 as written
    torch.manual_seed(0)
    picks = [round(float(s.select(ctx, it).bias.detach())) for it in range(3000)]
    freq = torch.bincount(torch.tensor(picks), minlength=3).double() / len(picks)
    assert (freq - torch.softmax(torch.tensor([0.0, 1.0, 2.0], dtype=torch.double) / 0.5, 0)).abs().max() < 0.03
    assert not any(ctx.method.seen_grad)  # candidates are scored on detached images
    # after the outer loop the trained network replaces its pool entry (not the loaded artifact)
    net = s.select(ctx, 0)
    chosen = s._current
    with torch.no_grad():
        net.bias.fill_(7.0)
    s.after_step(ctx, 0, net)
    assert float(s._states[chosen]["bias"]) == 7.0
    assert all(torch.equal(a["bias"], b["bias"]) for a, b in zip(ctx.pool, original))  # exact: not written to
    assert f"m{chosen}.bias" in s.state()
    # the advanced pool survives a checkpoint round trip (distill --resume)
    restored = DynaDistill()
    restored.load_state(s.state())
    assert [float(sd["bias"]) for sd in restored._states] == [float(sd["bias"]) for sd in s._states]
    # with m = 1 there is nothing to rank: a uniform draw, no loss evaluated
    one = DynaDistill(m=1)
    ctx.method.seen_grad.clear()
    one.select(ctx, 0)
    assert ctx.method.seen_grad == []


def test_pool_keeps_its_entry_when_the_method_does_not_train_the_network():
    """DM only perturbs the selected network: writing it back would random-walk the pool."""
    from ddtool.methods.dm import DM
    from ddtool.methods.dc import DC, DSA
    from ddtool.methods.idc import IDC

    assert not DM.trains_network and DC.trains_network and DSA.trains_network and IDC.trains_network
    ctx = fake_ctx([0.0, 1.0])
    ctx.method.trains_network = False
    s = DynaDistill(m=2)
    torch.manual_seed(0)
    net = s.select(ctx, 0)
    chosen = s._current
    with torch.no_grad():
        net.bias.fill_(7.0)  # a perturbation
    s.after_step(ctx, 0, net)
    assert float(s._states[chosen]["bias"]) == float(chosen)
    assert s._current is None


def test_the_default_keeps_the_pool_as_pretrained_and_write_back_replaces_the_entry():
    """Item 8 of issue 11 and issue 23: by default the pool stays fixed although the method trains the
    network (the write-back fed the most trained model back into the choice); write_back = true is
    Algorithm 1 as written."""
    ctx = fake_ctx([0.0, 1.0])
    s = DynaDistill(m=2)
    s.configure({})
    torch.manual_seed(0)
    net = s.select(ctx, 0)
    chosen = s._current
    with torch.no_grad():
        net.bias.fill_(7.0)  # trained
    s.after_step(ctx, 0, net)
    assert float(s._states[chosen]["bias"]) == float(chosen)
    s.configure({"write_back": True})
    net = s.select(ctx, 1)
    chosen = s._current
    with torch.no_grad():
        net.bias.fill_(7.0)
    s.after_step(ctx, 1, net)
    assert float(s._states[chosen]["bias"]) == 7.0


@pytest.fixture(scope="module")
def pool_store(tmp_path_factory, digits):
    data = digits
    store = Store(tmp_path_factory.mktemp("store"))
    recipe = load_recipe(None, ["net.width=16", "pretrain.n=3", "pretrain.epochs=1", "pretrain.name=tiny"])
    pretrain(store, recipe, data, CPU)
    return store, data


def test_settings_come_from_the_strategy_sub_table(pool_store):
    store, data = pool_store
    base = ["distill.method=idc", "net.width=16", "distill.pool=pool/tiny", "distill.selection=dynadistill",
            "distill.options.inner_loops=3"]
    p = plan(store, load_recipe(None, [*base, "distill.options.dynadistill.m=2", "distill.options.dynadistill.t=1.5",
                                       "distill.options.dynadistill.prefer=\"low\""]), data)
    assert (p.selection.options.m, p.selection.options.t, p.selection.options.prefer) == (2, 1.5, "low")
    assert p.options.inner_loops == 3  # the method still gets the rest of [distill.options]
    default = plan(store, load_recipe(None, base), data)
    assert default.selection.options.m == 3 and not any("dynadistill.m" in n for n in default.notes)  # defaults
    # m beyond the pool (3 models): 3 distinct candidates, said once before the run (issue 23 c)
    wide = plan(store, load_recipe(None, [*base, "distill.options.dynadistill.m=5"]), data)
    assert [n for n in wide.notes if "dynadistill.m" in n] == [
        "dynadistill.m = 5, but the pool has 3 model(s): 3 distinct candidates per outer loop (a model drawn "
        "twice would be the same candidate)"]
    with pytest.raises(UsageError, match="unknown key 'temp'"):
        plan(store, load_recipe(None, [*base, "distill.options.dynadistill.temp=1"]), data)
    with pytest.raises(UsageError, match="prefer"):
        plan(store, load_recipe(None, [*base, "distill.options.dynadistill.prefer=\"mid\""]), data)


def test_short_run_idc_with_dynadistill(pool_store):
    store, data = pool_store
    recipe = load_recipe(None, ["distill.method=idc", "net.width=16", "distill.ipc=1", "distill.iterations=2",
                                "distill.pool=pool/tiny", "distill.selection=dynadistill", "distill.schedule=gaussian",
                                "distill.lr_img=0.005", "distill.batch_real=16", "distill.options.inner_loops=2",
                                "distill.options.net_steps=1"])
    result = distill(store, recipe, data, CPU)
    _, tensors, meta = store.load(result.artifact.ref, kind="synthetic")
    assert tensors["images"].shape == (10, 1, 8, 8)
    assert meta["ddtool.selection"] == "dynadistill" and meta["ddtool.factor"] == "2"
    assert len(result.losses) == 2 and all(torch.isfinite(torch.tensor(result.losses)))


def test_pool_advances_by_training_only_not_by_the_perturbation(pool_store):
    """With a perturbation schedule the written-back entry is the trained net minus this loop's
    perturbation: untrained loops leave the pool where it was instead of random-walking it."""
    from ddtool.runtime.distill.planning import build_context

    store, data = pool_store
    recipe = load_recipe(None, ["distill.method=idc", "net.width=16", "distill.pool=pool/tiny",
                                "distill.selection=dynadistill", "distill.schedule=gaussian", "distill.alpha=1.0",
                                "distill.options.dynadistill.write_back=true"])
    p = plan(store, recipe, data)
    ctx = build_context(recipe, data, CPU, plan=p, iterations=20, impl="loop")
    loaded = [{k: v.clone() for k, v in sd.items()} for sd in p.pool.states]
    torch.manual_seed(0)
    for it in range(20):
        net = ctx.next_model(it)
        chosen = p.selection._current
        moved = any(not torch.allclose(v, loaded[chosen][k]) for k, v in net.state_dict().items())
        assert moved  # the schedule did perturb the network the method sees
        p.selection.after_step(ctx, it, net)  # "trained" for zero steps
    for now, then in zip(p.selection._states, loaded):
        for k in then:
            torch.testing.assert_close(now[k], then[k], atol=1e-5, rtol=1e-5)
    # a training step's change (here +0.25 on every weight) is what the entry keeps
    net = ctx.next_model(20)
    chosen = p.selection._current
    with torch.no_grad():
        for q in net.parameters():
            q.add_(0.25)
    p.selection.after_step(ctx, 20, net)
    w = "classifier.weight"
    torch.testing.assert_close(p.selection._states[chosen][w], loaded[chosen][w] + 0.25, atol=1e-5, rtol=1e-5)


class _ThreeStates:
    def __init__(self, states: list) -> None:  # type: ignore[type-arg]
        self.states = states

    def __len__(self) -> int:
        return len(self.states)


@pytest.mark.parametrize("shared", [True, False])
def test_candidates_are_scored_on_one_shared_draw(shared: bool) -> None:
    """Issue 11 item 8: with identical candidates, a shared real batch and augmentation draw gives
    identical losses; one draw per candidate (the old behaviour, shared_draw = false) does not."""
    from types import SimpleNamespace

    from ddtool.selection.builtin import DynaDistill
    from ddtool.synthetic import SyntheticSet

    class DrawsNoise(MatchingMethod):
        def loss(self, ctx, syn, net):  # type: ignore[no-untyped-def]
            return torch.rand(()) + 0 * sum(p.sum() for p in net.parameters())  # a "real batch" drawn here

    state = {"w": torch.ones(2, 2)}
    ctx = SimpleNamespace(method=DrawsNoise(),
                          synthetic=SyntheticSet(torch.zeros(2, 1, 2, 2), torch.tensor([0, 1]), 1),
                          pool=_ThreeStates([state, state, state]),
                          net_from_state=lambda sd: torch.nn.Identity(),  # like the real one: no RNG draw
                          perturb=lambda net, it, keep=False: None)
    dyna = DynaDistill(m=3)
    dyna.configure({"shared_draw": shared})
    dyna._states = [dict(state) for _ in range(3)]
    torch.manual_seed(0)
    dyna.select(ctx, 0)  # type: ignore[arg-type]
    losses = dyna.last_losses
    assert losses is not None and len(losses) == 3
    assert (len(set(losses.tolist())) == 1) is shared


IDC_DYNA = ["distill.method=idc", "net.width=16", "distill.ipc=1", "distill.iterations=3", "distill.pool=pool/tiny",
            "distill.selection=dynadistill", "distill.schedule=gaussian", "distill.batch_real=16",
            "distill.options.inner_loops=2", "distill.options.net_steps=1",
            # a large step, so that IDC's per-class momentum moves the images visibly between classes
            "distill.lr_img=0.5", 'distill.options.dynadistill.normalize="zscore"']


@pytest.mark.parametrize("impl", ["loop", "vectorized"])
def test_idc_update_descends_the_sampled_candidates_own_score(pool_store, monkeypatch, impl):
    """Issue 23 (b), Algorithm 1 line 12 as written: the first inner step of every outer loop (the
    update) takes exactly the loss the chosen candidate was scored with (the same real batches,
    augmentation draws, images and perturbed network). Before, the winner's scoring was thrown
    away and the update drew afresh."""
    from ddtool.methods.idc import IDC

    store, data = pool_store
    updates: list[float] = []
    image_update = IDC.image_update

    def spy(self, ctx, syn, opt, net, reals=None, *, score=False):  # type: ignore[no-untyped-def]
        out = image_update(self, ctx, syn, opt, net, reals, score=score)
        if not score:
            updates.append(float(out))
        return out

    monkeypatch.setattr(IDC, "image_update", spy)
    res = distill(store, load_recipe(None, [*IDC_DYNA, f"distill.impl={impl}"]), data, CPU)
    log = store.run(res.run_id)["selection_log"]
    assert [e["it"] for e in log] == [0, 1, 2] and len(updates) == 3 * 2
    for e, update in zip(log, updates[::2]):  # the first of the 2 inner steps of each outer loop
        scores = e["scores"]
        assert len(scores) == 3 and len(set(scores)) == 3  # three different candidates...
        chosen = torch.tensor(scores[e["k"]], dtype=torch.float32)  # the class losses are float32
        torch.testing.assert_close(torch.tensor(update, dtype=torch.float32), chosen)  # ...the update is the sampled one's
        others = [s for j, s in enumerate(scores) if j != e["k"]]  # ...and not any other candidate's
        assert all(not math.isclose(s, update, rel_tol=1e-4) for s in others)


def test_candidates_are_scored_perturbed_and_the_choice_is_used_as_scored(pool_store, monkeypatch):
    """Issue 23 (d): with a perturbation schedule every candidate is scored as the network the method
    will use (perturbed, each with its own draw), the chosen one is returned bit for bit as scored,
    and the context keeps its own perturbation (what write-back takes out)."""
    from ddtool.runtime.distill.planning import build_context

    store, data = pool_store
    recipe = load_recipe(None, ["distill.method=idc", "net.width=16", "distill.ipc=1", "distill.pool=pool/tiny",
                                "distill.selection=dynadistill", "distill.schedule=gaussian", "distill.alpha=1.0"])
    p = plan(store, recipe, data)
    ctx = build_context(recipe, data, CPU, plan=p, iterations=5, impl="loop")
    ctx.synthetic = p.method.init_synthetic(ctx)
    seen: list[dict[str, torch.Tensor]] = []

    def score(ctx_, syn, net):  # type: ignore[no-untyped-def]
        seen.append({k: v.detach().clone() for k, v in net.state_dict().items()})
        return float(len(seen))  # distinct scores

    monkeypatch.setattr(p.method, "score", score)
    torch.manual_seed(0)
    for it in range(4):
        seen.clear()
        net = ctx.next_model(it)
        entry = p.selection.log()
        k, candidates = entry["k"], entry["candidates"]
        assert len(seen) == 3 and entry["scores"] == [1.0, 2.0, 3.0]  # exact: the stand-in's own numbers
        loaded = [p.pool.states[i] for i in candidates]
        for scored, state in zip(seen, loaded):  # each scored perturbed (weights moved, biases not)
            moved = [key for key in state if not torch.equal(scored[key], state[key])]
            assert "classifier.weight" in moved and "classifier.bias" not in moved
        assert not torch.equal(seen[0]["features.0.weight"] - loaded[0]["features.0.weight"],
                               seen[1]["features.0.weight"] - loaded[1]["features.0.weight"])  # own draws
        for key, value in net.state_dict().items():  # the choice is the network as scored
            assert torch.equal(value, seen[k][key]), key  # exact: the same network, nothing computed on it since
            torch.testing.assert_close(ctx.perturbation[key], seen[k][key] - loaded[k][key])
        p.selection.after_step(ctx, it, net)  # untrained: the entry goes back to what it was
        for key, value in p.selection._states[candidates[k]].items():
            torch.testing.assert_close(value, loaded[k][key])
