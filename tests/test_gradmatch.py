"""Gradient matching (dc, dsa), IDC, herding: distances, loop == vectorized, multi-formation, short runs."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from ddtool.augment import Augmenter
from ddtool.context import DistillContext
from ddtool.errors import UsageError
from ddtool.methods.coreset import Herding, herding_indices
from ddtool.methods.dc import DC, DSA, dc_loops
from ddtool.methods.idc import IDC, IDCOptions
from ddtool.methods.matching import match_distance
from ddtool.plugins import registries
from ddtool.recipe import load_recipe
from ddtool.runtime.distill import distill, plan
from ddtool.runtime.pretrain import net_spec_of
from ddtool.store import Store

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


def make_ctx(data, method, overrides=(), impl="loop"):
    recipe = load_recipe(None, [f"distill.method={method.name}", "net.width=16", "distill.ipc=2", *overrides])
    options = method.parse_options(recipe.distill.options)
    regs = registries()
    return DistillContext(data=data, cfg=recipe.distill, net_spec=net_spec_of(recipe), device=CPU, iterations=1,
                          selection=regs.selection.get("scratch"), schedule=regs.schedule.get("none"),
                          options=options, impl=impl, augment=Augmenter(recipe.distill.augment), method=method)


def grads_of(shapes, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g) for s in shapes]


SHAPES = [(8, 3, 3, 3), (8,), (8, 8, 3, 3), (10, 32), (10,)]


# -- distances ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["dc", "mse", "l1", "cos"])
def test_distance_zero_for_identical_positive_otherwise(kind):
    a = grads_of(SHAPES, 0)
    b = grads_of(SHAPES, 1)
    assert abs(float(match_distance(a, [t.clone() for t in a], kind))) < 1e-4
    assert float(match_distance(a, b, kind)) > 0.1
    # 1-D parameters (biases, norm affine) are not matched
    b_bias = [t.clone() if t.dim() > 1 else t + 1 for t in a]
    assert abs(float(match_distance(a, b_bias, kind))) < 1e-4


def test_distance_batched_equals_per_class_and_linear_switch():
    a = [torch.stack(x) for x in zip(*[grads_of(SHAPES, s) for s in range(3)])]
    b = [torch.stack(x) for x in zip(*[grads_of(SHAPES, s + 10) for s in range(3)])]
    for kind in ("dc", "mse", "l1", "cos"):
        batched = match_distance(a, b, kind, batched=True)
        single = torch.stack([match_distance([t[i] for t in a], [t[i] for t in b], kind) for i in range(3)])
        torch.testing.assert_close(batched, single)
    # without the linear layer only the convolutions count (IDC's default)
    conv_only = [t.clone() if t.dim() != 2 else t + 5 for t in grads_of(SHAPES, 0)]
    assert float(match_distance(grads_of(SHAPES, 0), conv_only, "mse", include_linear=False)) == 0.0
    assert float(match_distance(grads_of(SHAPES, 0), conv_only, "mse")) > 0


def test_dc_loops_reference_table():
    assert dc_loops(1) == (1, 1) and dc_loops(10) == (10, 50) and dc_loops(50) == (50, 10)
    assert dc_loops(12) == (10, 50) and dc_loops(200) == (50, 10)


# -- loop == vectorized --------------------------------------------------------------------------

def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    # float32 batched (grouped) convolutions round differently from per-class ones: compare in norm
    return float((a - b).norm() / b.norm())


def loss_and_grad(method, ctx, syn, net, seed):
    torch.manual_seed(seed)
    loss = method.loss(ctx, syn, net)
    (g,) = torch.autograd.grad(loss, syn.images)
    return loss.detach(), g


@pytest.mark.parametrize("method,overrides", [
    (DC(), []),  # digits classes differ in size: the vectorised real side is padded
    (DSA(), ["distill.batch_real=24"]),
    (IDC(), ["distill.batch_real=24", "distill.options.batch_syn_max=6"]),  # 8 decoded -> random 6
    (IDC(), ["distill.options.dist=l1", "distill.options.match_fc=true", "distill.augment=none"]),
])
def test_vectorized_equals_loop(digits, method, overrides):
    ctx = make_ctx(digits, method, overrides)
    torch.manual_seed(0)
    syn = method.init_synthetic(ctx)
    syn.images.requires_grad_(True)
    net = ctx.fresh_net()
    out = {}
    for impl in ("loop", "vectorized"):
        ctx.impl = impl
        out[impl] = loss_and_grad(method, ctx, syn, net, seed=3)
    torch.testing.assert_close(out["vectorized"][0], out["loop"][0], rtol=1e-4, atol=1e-5)
    assert out["loop"][1].abs().sum() > 0
    assert rel_err(out["vectorized"][1], out["loop"][1]) < 1e-4


def test_idc_image_update_vectorized_equals_loop(digits):
    """IDC steps once per class with momentum: the vectorised replay gives the same images."""
    method = IDC()
    ctx = make_ctx(digits, method, ["distill.batch_real=16", "distill.lr_img=0.05"])
    torch.manual_seed(0)
    base = method.init_synthetic(ctx)
    net = ctx.fresh_net()
    images = {}
    for impl in ("loop", "vectorized"):
        ctx.impl = impl
        syn = copy.deepcopy(base)
        syn.images.requires_grad_(True)
        opt = method.make_optimizer(ctx, syn)
        torch.manual_seed(5)
        for _ in range(3):  # the 2nd and 3rd start with a momentum buffer: the drift path
            method.image_update(ctx, syn, opt, net)
        images[impl] = syn.images.detach()
    moved = images["loop"] - base.images
    assert moved.abs().sum() > 0
    assert rel_err(images["vectorized"] - base.images, moved) < 1e-4


# -- IDC ---------------------------------------------------------------------------------------

def test_multiformation_decode(digits):
    method = IDC()
    ctx = make_ctx(digits, method, ["distill.ipc=3"])
    torch.manual_seed(0)
    syn = method.init_synthetic(ctx)
    c, r = digits.channels, digits.resolution
    assert syn.factor == 2 and syn.images.shape == (10 * 3, c, r, r)
    x, y = syn.decoded()
    assert x.shape == (10 * 3 * 4, c, r, r)
    assert torch.bincount(y).tolist() == [3 * 4] * 10
    # decoded image j of stored image i = tile (j // 2, j % 2) upsampled to full size
    for i in (0, 7):
        for j in range(4):
            ty, tx = divmod(j, 2)
            tile = syn.images[i:i + 1, :, ty * r // 2:(ty + 1) * r // 2, tx * r // 2:(tx + 1) * r // 2]
            want = F.interpolate(tile, size=(r, r), mode="bilinear", align_corners=False)
            torch.testing.assert_close(x[i * 4 + j:i * 4 + j + 1], want)
    # stored images are made of downsized real images of their own class
    assert (y.view(-1, 4) == syn.labels[:, None]).all()


def test_factor_must_divide_resolution_and_fit_class(digits, tmp_path):
    recipe = load_recipe(None, ["distill.method=idc", "distill.options.factor=3"])
    with pytest.raises(UsageError, match="does not divide"):
        plan(Store(tmp_path), recipe, digits)
    # factor 2 on ipc 40 needs 160 real images per class; digits has fewer
    recipe = load_recipe(None, ["distill.method=idc", "distill.ipc=40"])
    with pytest.raises(UsageError, match="needs 160 real images"):
        plan(Store(tmp_path), recipe, digits)
    assert IDC().factor_for(IDCOptions(factor=4), 8) == 4


def test_idc_network_updates_apply_idc_chain_per_sample(digits, monkeypatch):
    """IDC's net updates (DiffAug batch=False): flip and color always, then one of crop/scale/rotate,
    with parameters per sample; cutout is dropped while CutMix is on."""
    from dataclasses import replace

    method = IDC()
    ctx = make_ctx(digits, method, ["distill.options.net_steps=4", "distill.options.net_batch=8"])
    o = method.opts(ctx)
    assert o.cutmix > 0 and "cutout" in ctx.augment.ops
    ops = method.net_ops(ctx, o)
    assert "cutout" not in ops and "cutout" in method.net_ops(ctx, replace(o, cutmix=0.0))
    calls = []
    real_apply = Augmenter.apply

    def spy(self, x, draw, groups=None):
        calls.append((draw.op, {len(v) for v in draw.params.values()}))
        return real_apply(self, x, draw, groups)

    monkeypatch.setattr(Augmenter, "apply", spy)
    net = ctx.fresh_net()
    torch.manual_seed(0)
    method.train_net(ctx, net, torch.optim.SGD(net.parameters(), lr=0.01), o, ops)
    assert len(calls) == 3 * o.net_steps
    middles = set()
    for k in range(o.net_steps):
        step = calls[3 * k:3 * k + 3]
        assert [op for op, _ in step[:2]] == ["flip", "color"]
        assert step[2][0] in ("crop", "scale", "rotate")
        middles.add(step[2][0])
        assert all(sizes == {o.net_batch} for _, sizes in step)  # one parameter set per sample
    assert len(middles) > 1  # the middle operation is drawn per step


def test_idc_matching_chain_draws_the_middle_operation_per_class(digits):
    """IDC augments class by class: in the matching step each class gets its own crop/scale/rotate,
    shared by its real and synthetic images (siamese)."""
    from ddtool.augment import GroupDraw

    ctx = make_ctx(digits, IDC(), [])
    torch.manual_seed(1)
    siamese = IDC().siamese(ctx)
    ops = [aug.ops for aug, _ in siamese.parts]
    assert ops == [("flip",), ("color",), ("crop", "scale", "rotate"), ("cutout",)]
    middle = siamese.parts[2][1]
    assert isinstance(middle, GroupDraw) and len(middle.ops) == 10 and len(set(middle.ops)) > 1
    x = torch.randn(4, 1, 8, 8)
    for c in (0, 9):
        one = siamese.select(c)
        assert one.parts[2][1].op == middle.ops[c]
        torch.testing.assert_close(one.apply(x), one.apply(x))  # the same draw twice: siamese


def test_idc_outer_loop_lowers_matching_loss(digits):
    method = IDC()
    ctx = make_ctx(digits, method, ["distill.lr_img=0.01", "distill.augment=none", "distill.batch_real=64",
                                    "distill.options.inner_loops=5", "distill.options.net_steps=0"])
    torch.manual_seed(0)
    fixed = ctx.fresh_net()

    class Fixed:  # the outer loop's network: always the same one
        def select(self, ctx, it):
            return copy.deepcopy(fixed)

        def after_step(self, ctx, it, net):
            pass

    ctx.selection = Fixed()
    syn = method.init_synthetic(ctx)
    syn.images.requires_grad_(True)
    opt = method.make_optimizer(ctx, syn)

    def fixed_loss():  # the same real batch every time (same seed), the same network
        torch.manual_seed(123)
        return float(method.loss(ctx, syn, fixed).detach())

    before = fixed_loss()
    method.step(ctx, syn, opt, 0)
    after = fixed_loss()
    assert after < 0.8 * before


# -- herding -----------------------------------------------------------------------------------

def test_herding_mean_closer_than_random():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(200, 16, generator=g) + torch.randn(16, generator=g)
    target = feats.mean(0)
    pick = herding_indices(feats, 5)
    assert len(set(pick)) == 5
    herd = float((feats[pick].mean(0) - target).norm())
    rand = [float((feats[torch.randperm(200, generator=g)[:5]].mean(0) - target).norm()) for _ in range(50)]
    assert herd < min(rand)


def test_herding_method_picks_real_images_closer_than_random(digits):
    method = Herding()
    ctx = make_ctx(digits, method, ["distill.ipc=3"])
    torch.manual_seed(0)
    net = method.embedding_net(ctx)
    torch.manual_seed(0)
    syn = method.init_synthetic(ctx)
    assert syn.images.shape == (30, 1, 8, 8) and torch.bincount(syn.labels).tolist() == [3] * 10
    c = 4
    real = digits.normalize(digits.train_images[digits.class_indices(c)])
    with torch.no_grad():
        target = net.embed(real).mean(0)
        herd = float((net.embed(syn.images[syn.labels == c]).mean(0) - target).norm())
        rand = [float((net.embed(real[torch.randperm(len(real))[:3]]).mean(0) - target).norm()) for _ in range(20)]
    assert herd < sum(rand) / len(rand)
    # the chosen images are real training images
    assert any(torch.allclose(syn.images[syn.labels == c][0], r) for r in real)


# -- short recipe runs -------------------------------------------------------------------------

RUNS = {
    "dc": ["distill.lr_img=0.1", "distill.options.inner=2", "distill.options.inner_net=2"],
    "dsa": ["distill.lr_img=0.1", "distill.options.inner=2", "distill.options.inner_net=1"],
    "idc": ["distill.lr_img=0.005", "distill.batch_real=32", "distill.options.inner_loops=2",
            "distill.options.net_steps=2"],
    "herding": [],
}


@pytest.mark.parametrize("method", sorted(RUNS))
def test_short_run_produces_artifact(digits, tmp_path, method):
    store = Store(tmp_path)
    recipe = load_recipe(None, [f"distill.method={method}", "net.width=16", "distill.ipc=2",
                                "distill.iterations=2", *RUNS[method]])
    result = distill(store, recipe, digits, CPU)
    _, tensors, meta = store.load(result.artifact.ref, kind="synthetic")
    assert tensors["images"].shape == (20, 1, 8, 8)
    assert torch.bincount(tensors["labels"]).tolist() == [2] * 10
    assert meta["ddtool.method"] == method
    assert meta["ddtool.factor"] == ("2" if method == "idc" else "1")
    assert len(result.losses) == (0 if method == "herding" else 2)
    assert all(torch.isfinite(torch.tensor(result.losses)))


@pytest.mark.parametrize("impl", ["loop", "vectorized"])
@pytest.mark.parametrize("method", [IDC(), DC()])
def test_bf16_real_gradients_close_to_fp32_but_not_identical(digits, method, impl):
    out = {}
    for precision in ("fp32", "bf16"):
        ctx = make_ctx(digits, method, ["distill.batch_real=24", f"distill.precision=\"{precision}\""], impl=impl)
        torch.manual_seed(0)
        syn = method.init_synthetic(ctx)
        syn.images.requires_grad_(True)
        out[precision] = loss_and_grad(method, ctx, syn, ctx.fresh_net(), seed=3)
    (l32, g32), (l16, g16) = out["fp32"], out["bf16"]
    assert float(l16) != float(l32)  # autocast really ran on the real side
    assert abs(float(l16 - l32)) / float(l32) < 0.1
    assert F.cosine_similarity(g16.flatten(), g32.flatten(), dim=0) > 0.95


def test_idc_network_update_runs_under_bf16_autocast(digits, monkeypatch):
    import ddtool.methods.idc as idc

    dtypes = []
    real = idc.batch_loss
    monkeypatch.setattr(idc, "batch_loss", lambda net, x, y, p: dtypes.append(torch.get_autocast_dtype("cpu")
                                                                             if torch.is_autocast_enabled("cpu")
                                                                             else None) or real(net, x, y, p))
    method = IDC()
    for precision in ("fp32", "bf16"):
        ctx = make_ctx(digits, method, [f"distill.precision=\"{precision}\"", "distill.options.net_steps=2"])
        net = ctx.fresh_net()
        opt = torch.optim.SGD(net.parameters(), lr=0.01)
        method.train_net(ctx, net, opt, method.opts(ctx), ())
    assert dtypes == [None, None, torch.bfloat16, torch.bfloat16]
