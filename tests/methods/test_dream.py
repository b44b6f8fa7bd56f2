"""DREAM+ (ddtool.methods.dream): representative real batches from k-means centres, Eq. 3's two
loss terms, and digits runs of recipes/dream.toml and recipes/dream_dynadistill.toml."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import ddtool.methods.dream as dream_module
from ddtool.errors import UsageError
from ddtool.methods.dream import DREAM, DREAMOptions, nearest_to_centres
from ddtool.methods.matching import class_matching_losses
from ddtool.recipe import load_recipe
from ddtool.store import Store

CPU = torch.device("cpu")
RECIPES = Path(__file__).resolve().parents[2] / "recipes"
# a few seconds on the 2-core CPU: a narrow net, 2 outer loops of 4 inner loops, clustered twice each
TINY = ["net.width=16", "distill.ipc=1", "distill.iterations=2", "distill.options.inner_loops=4",
        "distill.options.interval=2", "distill.options.net_steps=1", "distill.options.warmup_epochs=0.2",
        "eval.epochs=4", "eval.repeats=1"]

pytestmark = pytest.mark.usefixtures("one_thread")


def _ctx(digits, overrides=()):  # type: ignore[no-untyped-def]
    from ddtool.runtime.distill.planning import build_context

    recipe = load_recipe(None, ["distill.method=dream", "net.width=8", "distill.ipc=2", "distill.batch_real=6",
                                "distill.options.factor=1", "distill.options.inner_loops=5",
                                "distill.options.interval=2", "distill.options.net_steps=1",
                                "distill.options.warmup_epochs=0", *overrides])
    method = DREAM()
    ctx = build_context(recipe, digits, CPU, method=method)
    return ctx, method


def test_the_nearest_sample_to_each_kmeans_centre_is_chosen() -> None:
    """Three tight blobs, k = 3: one index per blob, each the blob's sample closest to its mean."""
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    feats = torch.cat([c + 0.5 * torch.randn(20, 2, generator=g) for c in centres])
    want = {int(b * 20 + (feats[b * 20:(b + 1) * 20] - feats[b * 20:(b + 1) * 20].mean(0)).norm(dim=1).argmin())
            for b in range(3)}
    assert set(nearest_to_centres(feats, 3, seed=1).tolist()) == want
    assert nearest_to_centres(feats, 100, seed=1).tolist() == list(range(60))  # k >= N: every sample


def test_representatives_are_per_class_training_indices_of_the_cluster_centres(digits, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Features put every class's images in 3 blobs by position: the representatives are one image
    per blob, given as indices into the training set, all of the class."""
    ctx, method = _ctx(digits, ["distill.options.clusters=3"])
    fake = {}

    def embed_all(net, images):  # type: ignore[no-untyped-def]
        n = len(images)
        blob = torch.arange(n) % 3
        f = torch.stack([blob * 100.0, torch.zeros(n)], 1) + torch.linspace(0, 1, n)[:, None]
        fake[n] = f
        return f

    monkeypatch.setattr(dream_module, "embed_all", embed_all)
    reps = method.representatives(ctx, ctx.fresh_net(), method.opts(ctx))
    assert len(reps) == digits.num_classes
    for c, r in enumerate(reps):
        idx = digits.class_indices(c)
        assert len(r) == 3 and bool((digits.train_labels[r] == c).all())
        local = [int((idx == i).nonzero()) for i in r]
        assert sorted(p % 3 for p in local) == [0, 1, 2]  # one per blob


def test_a_step_matches_only_representative_real_batches_refreshed_every_interval(digits, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    ctx, method = _ctx(digits)
    syn = method.init_synthetic(ctx)
    syn.images.requires_grad_(True)
    ctx.synthetic = syn
    opt = method.make_optimizer(ctx, syn)
    drawn: list[list[torch.Tensor]] = []
    used: list[list[torch.Tensor]] = []
    real_reps, real_update = method.representatives, method.image_update

    def representatives(*a, **k):  # type: ignore[no-untyped-def]
        drawn.append(real_reps(*a, **k))
        return drawn[-1]

    def image_update(ctx_, syn_, opt_, net, reals=None):  # type: ignore[no-untyped-def]
        used.append([r.clone() for r in reals])
        return real_update(ctx_, syn_, opt_, net, reals)

    def no_random_batches(self, c, n):  # type: ignore[no-untyped-def]
        raise AssertionError("a dream step drew a random real batch")

    method.representatives, method.image_update = representatives, image_update  # type: ignore[method-assign]
    monkeypatch.setattr(type(ctx), "real_class", no_random_batches)  # the context declares its fields (slots)
    loss = method.step(ctx, syn, opt, 0)
    assert math.isfinite(loss)
    assert len(drawn) == 3  # inner loops 0, 2, 4 of 5 (interval 2)
    assert len(used) == 5
    for inner, reals in enumerate(used):
        reps = drawn[inner // 2]
        for c, x in enumerate(reals):
            assert bool((digits.train_labels[reps[c]] == c).all()) and len(reps[c]) == 6
            torch.testing.assert_close(x, digits.normalize(digits.train_images[reps[c]]))


@pytest.mark.parametrize("impl", ["vectorized", "loop"])
def test_alpha_zero_is_gradient_matching_and_alpha_adds_the_embedding_distance(digits, impl: str) -> None:  # type: ignore[no-untyped-def]
    ctx, method = _ctx(digits)
    net = ctx.fresh_net()
    torch.manual_seed(3)
    reals = [ctx.real_class(c, 6) for c in range(ctx.num_classes)]
    syns = [ctx.real_class(c, 2).clone().requires_grad_(True) for c in range(ctx.num_classes)]
    siamese = method.siamese(ctx)
    vec = impl == "vectorized"
    plain = class_matching_losses(net, reals, syns, siamese, "mse", include_linear=False, vectorized=vec)
    zero = method.class_losses(ctx, DREAMOptions(alpha=0.0), net, reals, syns, siamese, vectorized=vec)
    torch.testing.assert_close(zero, plain)
    two = method.class_losses(ctx, DREAMOptions(alpha=2.0), net, reals, syns, siamese, vectorized=vec)
    by_hand = []
    for c in range(ctx.num_classes):
        s = siamese.select(c)
        d = net.embed(s.apply(reals[c])).mean(0) - net.embed(s.apply(syns[c])).mean(0)
        by_hand.append((d * d).sum())
    torch.testing.assert_close(two - plain, 2.0 * torch.stack(by_hand), rtol=1e-4, atol=1e-4)
    assert bool((two > plain).all())
    # the embedding term reaches the synthetic pixels
    (g,) = torch.autograd.grad((two - plain).sum(), syns[0])
    assert float(g.abs().sum()) > 0


def test_bad_settings_are_refused_in_one_line() -> None:
    with pytest.raises(UsageError, match="alpha must be >= 0"):
        DREAM().parse_options({"alpha": -1.0})
    with pytest.raises(UsageError, match="embed_dist must be mse or l1"):
        DREAM().parse_options({"embed_dist": "cos"})
    with pytest.raises(UsageError, match="interval must be >= 1"):
        DREAM().parse_options({"interval": 0})


def test_the_recipes_hold_the_seeds_cifar10_settings() -> None:
    for name in ("dream.toml", "dream_dynadistill.toml"):
        r = load_recipe(RECIPES / name, ["data.dataset=cifar10"])
        o = DREAM().parse_options({k: v for k, v in r.distill.options.items() if k != "dynadistill"})
        assert (r.distill.method, r.distill.iterations, r.distill.batch_real) == ("dream", 400, 128)
        assert (o.interval, o.clusters, o.alpha, o.factor, o.inner_loops) == (10, 0, 1.0, 2, 100)
    dyn = load_recipe(RECIPES / "dream_dynadistill.toml", ["data.dataset=cifar10"])
    assert dyn.distill.selection == "dynadistill" and dyn.distill.options["dynadistill"] == {
        "m": 3, "t": 0.5, "prefer": "high", "shared_draw": True}
    assert dyn.distill.pool == f"pool/{dyn.pretrain.name}"  # pretrain makes what distill reads


def test_a_digits_run_of_the_recipe_makes_an_artifact(store: Store, digits) -> None:  # type: ignore[no-untyped-def]
    from ddtool.runtime.distill import distill
    from ddtool.store.integrity import verify

    res = distill(store, load_recipe(RECIPES / "dream.toml", TINY), digits, CPU)
    _, tensors, meta = store.load(res.artifact.ref, kind="synthetic")
    assert meta["ddtool.method"] == "dream" and tensors["images"].shape == (10, 1, 8, 8)
    assert len(res.losses) == 2 and all(math.isfinite(v) for v in res.losses)
    assert verify(store).ok


def test_a_digits_run_with_dynadistill_names_its_pool(store: Store, digits) -> None:  # type: ignore[no-untyped-def]
    from ddtool.runtime.distill import distill
    from ddtool.runtime.pretrain.pool_training import pretrain
    from ddtool.store.meta import parents_of

    recipe = RECIPES / "dream_dynadistill.toml"
    made = pretrain(store, load_recipe(recipe, [*TINY, "pretrain.n=3", "pretrain.epochs=1"]), digits, CPU)
    res = distill(store, load_recipe(recipe, TINY), digits, CPU)
    meta = store.blob_metadata(res.artifact.digest)
    assert meta["ddtool.method"] == "dream" and meta["ddtool.selection"] == "dynadistill"
    assert parents_of(meta) == [made.artifact.digest]
    assert [i["role"] for i in store.run(res.run_id)["inputs"]] == ["pool"]


def test_an_interrupted_run_resumes_bit_identically(store: Store, digits, stop_at) -> None:  # type: ignore[no-untyped-def]
    """Ctrl-C inside outer loop 2 of 3, then --resume: the clustering's random state comes from the
    run's RNG, so the resumed run picks the same representatives and ends with the same images."""
    from ddtool.runtime.distill import RunInterrupted, distill, resume

    recipe = load_recipe(RECIPES / "dream.toml", [*TINY, "distill.iterations=3", "distill.checkpoint_every=1",
                                                  'name="r"'])
    full = distill(store, recipe, digits, CPU)
    with pytest.raises(RunInterrupted) as info:
        distill(store, recipe, digits, CPU, stop_at(6))  # inner loop 2 of outer loop 2 (4 inner loops each)
    res = resume(store, info.value.run_id, digits, CPU)
    assert torch.equal(res.synthetic.images, full.synthetic.images)  # exact by construction: same kernels, inputs and order on one machine


@pytest.mark.parametrize("factor", [1, 2])
def test_the_initial_tiles_are_the_real_images_nearest_to_kmeans_centres(digits, monkeypatch, factor: int) -> None:  # type: ignore[no-untyped-def]
    """kmeans_init (the reference's --init mix --f2_init kmean): per class, ipc x factor^2 real images
    chosen by k-means on a fresh network's features, tiled as IDC's init; off, random real images."""
    from ddtool.synthetic import encode_real

    calls = []

    def fake(features, k, seed, max_iter=100):  # type: ignore[no-untyped-def]
        calls.append((features.shape[0], k))
        return torch.arange(k) * 3  # rows 0, 3, 6, ... of the class: recognisable, not the random draw

    monkeypatch.setattr(dream_module, "nearest_to_centres", fake)
    ctx, method = _ctx(digits, [f"distill.options.factor={factor}"])
    syn = method.init_synthetic(ctx)
    n = 2 * factor**2
    assert calls == [(len(digits.class_indices(c)), n) for c in range(digits.num_classes)]
    for c in range(digits.num_classes):
        real = digits.normalize(digits.train_images[digits.class_indices(c)[torch.arange(n) * 3]])
        assert torch.equal(syn.images[syn.labels == c], encode_real(real, factor))  # exact: the same real images, copied
    calls.clear()
    ctx, method = _ctx(digits, [f"distill.options.factor={factor}", "distill.options.kmeans_init=false"])
    off = method.init_synthetic(ctx)
    assert calls == [] and not torch.equal(off.images, syn.images)
