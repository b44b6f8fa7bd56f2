"""IDC (ddtool.methods.idc): multi-formation, the vectorised image update, its network updates and
augmentation chains, the outer loop, the factor checks, bf16 network updates, the compiled matching's
plumbing (compile_matching)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from ddtool.augment import Augmenter
from ddtool.errors import UsageError
from ddtool.methods.idc import IDC, IDCOptions
from ddtool.recipe import load_recipe
from ddtool.runtime.distill.planning import plan
from ddtool.selection.base import SelectionStrategy
from ddtool.store import Store

pytestmark = pytest.mark.usefixtures("one_thread")


def test_idc_image_update_vectorized_equals_loop(make_ctx, rel_err, digits):
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


def test_multiformation_decode(make_ctx, digits):
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


def test_idc_network_updates_apply_idc_chain_per_sample(make_ctx, digits, monkeypatch):
    """IDC's net updates (DiffAug batch=False): flip and color always, then one of crop/scale/rotate,
    with parameters per sample; cutout is dropped while CutMix is on."""
    from dataclasses import replace

    method = IDC()
    ctx = make_ctx(digits, method, ["distill.options.net_steps=4", "distill.options.net_batch=8",
                                    "distill.augment=color_crop_cutout_flip_scale_rotate"])  # all six operations, not IDC's default three
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


def test_idc_matching_chain_draws_the_middle_operation_per_class(make_ctx, digits):
    """IDC augments class by class: in the matching step each class gets its own crop/scale/rotate,
    shared by its real and synthetic images (siamese)."""
    from ddtool.augment import GroupDraw

    ctx = make_ctx(digits, IDC(), ["distill.augment=color_crop_cutout_flip_scale_rotate"])  # all six operations, not IDC's default three
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


def test_idc_outer_loop_lowers_matching_loss(make_ctx, digits):
    method = IDC()
    ctx = make_ctx(digits, method, ["distill.lr_img=0.01", "distill.lr_img_scale=none", "distill.augment=none", "distill.batch_real=64",
                                    "distill.options.inner_loops=5", "distill.options.net_steps=0"])
    torch.manual_seed(0)
    fixed = ctx.fresh_net()

    class Fixed(SelectionStrategy):  # the outer loop's network: always the same one
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


def test_idc_network_update_runs_under_bf16_autocast(make_ctx, digits, monkeypatch):
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


def test_idc_distillation_same_images_with_and_without_compile_matching(make_ctx, rel_err, digits, monkeypatch):
    """A short IDC distillation under distill.compile, with the matching's double backward in the
    compiled function (compile_matching, the default) and without it (the synthetic side eager, as
    before), gives the same images. torch.compile is replaced by the identity here so that both
    paths run eager (the compiled kernels themselves: tests/test_compiled.py)."""
    from ddtool import compiled
    from ddtool.methods import matching

    calls = []

    def identity(fn):
        def call(*args):
            calls.append(fn.__name__)
            return fn(*args)
        return call

    monkeypatch.setattr(compiled, "compile_once", identity)
    monkeypatch.setattr(compiled, "_COMPILED", {})
    monkeypatch.setattr(matching, "compile_once", identity)
    monkeypatch.setattr(matching, "_WHOLE", {})
    method = IDC()
    images = {}
    for flag in ("true", "false"):
        ctx = make_ctx(digits, method, ["distill.compile=true", "distill.batch_real=16", "distill.lr_img=0.05",
                                        "distill.options.inner_loops=2",
                                        "distill.options.net_steps=2", "distill.options.net_batch=16",
                                        f"distill.options.compile_matching={flag}"])
        assert ctx.compile
        torch.manual_seed(0)
        syn = method.init_synthetic(ctx)
        base = syn.images.detach().clone()
        syn.images.requires_grad_(True)
        opt = method.make_optimizer(ctx, syn)
        calls.clear()
        method.step(ctx, syn, opt, 0)  # the second inner step starts with a momentum buffer
        whole = calls.count("syn_distance_and_grad")
        assert whole == (2 * ctx.num_classes if flag == "true" else 0)
        images[flag] = syn.images.detach()
    moved = images["false"] - base
    assert moved.abs().sum() > 0
    assert rel_err(images["true"] - base, moved) < 1e-4
