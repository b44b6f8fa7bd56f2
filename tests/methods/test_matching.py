"""The gradient-matching library (ddtool.methods.matching) and the methods on it (dc, dsa, idc):
distances, the vectorised real and synthetic sides equal the per-class loop, bf16 on the real side,
the torch.func form of the synthetic side (what distill.compile compiles) equals the double backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ddtool.methods.dc import DC, DSA
from ddtool.methods.idc import IDC
from ddtool.methods import matching
from ddtool.methods.matching import DISTANCES, class_matching_losses, match_distance

pytestmark = pytest.mark.usefixtures("one_thread")


def grads_of(shapes, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g) for s in shapes]


SHAPES = [(8, 3, 3, 3), (8,), (8, 8, 3, 3), (10, 32), (10,)]


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
def test_vectorized_equals_loop(make_ctx, rel_err, digits, method, overrides):
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
    # the image gradient is a second-order difference of gradients, which amplifies rounding: DSA's read
    # 1.6e-4 under ATen's portable kernels on an AVX-512 Xeon (2026-12-07); a wrong pairing reads O(1)
    assert rel_err(out["vectorized"][1], out["loop"][1]) < 5e-4


@pytest.mark.parametrize("impl", ["loop", "vectorized"])
@pytest.mark.parametrize("method", [IDC(), DC()])
def test_bf16_real_gradients_close_to_fp32_but_not_identical(make_ctx, digits, method, impl):
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


@pytest.mark.parametrize("include_linear", [False, True])
@pytest.mark.parametrize("kind", DISTANCES)
def test_functorch_synthetic_side_equals_the_double_backward(make_ctx, rel_err, digits, numerics, kind, include_linear):
    """syn_distance_and_grad (torch.func.grad of the distance of torch.func.grad, the form compiled
    under distill.compile) gives the distance and the image gradient that the per-class loop's
    autograd double backward gives, for every distance IDC can use."""
    net = make_ctx(digits, IDC()).fresh_net()
    g = torch.Generator().manual_seed(0)
    x_real = torch.randn(12, 1, 8, 8, generator=g)
    x_syn = torch.randn(6, 1, 8, 8, generator=g)
    c = 3
    g_real = matching._class_grads_loop(net, x_real, c, create_graph=False)
    x = x_syn.clone().requires_grad_(True)
    old = match_distance(g_real, matching._class_grads_loop(net, x, c, create_graph=True), kind,
                         include_linear=include_linear)
    (old_grad,) = torch.autograd.grad(old, x)
    params = {n: p.detach() for n, p in net.named_parameters()}
    new, new_grad = matching.syn_distance_and_grad(net, params, g_real, x_syn, torch.tensor(c), kind, include_linear)
    assert float(old.detach()) > 0 and old_grad.abs().sum() > 0
    numerics.assert_equal_up_to_reduction_order(new, old.detach(), numerics.longest_reduction(net, len(x_syn)))
    # a second-order difference of gradients amplifies rounding (as in test_vectorized_equals_loop);
    # a wrong formula (a sign, a factor, a missed term) reads O(1)
    assert rel_err(new_grad, old_grad) < 5e-4


def test_whole_compiled_matching_equals_eager_through_the_augmentation(make_ctx, rel_err, digits, monkeypatch):
    """class_matching_losses(whole_compiled=True) hands the synthetic side to the compiled function
    (here its eager form: the compiler itself is tests/test_compiled.py's) and carries its image
    gradient back through the siamese augmentation to the un-augmented images; scoring (images
    without grad) stays first-order and does not call it."""
    calls = []

    def eager(*args):
        calls.append(1)
        return matching.syn_distance_and_grad(*args)

    monkeypatch.setattr(matching, "_compiled_syn_distance_and_grad", eager)
    method = IDC()
    ctx = make_ctx(digits, method, ["distill.batch_real=16"])
    net = ctx.fresh_net()
    torch.manual_seed(0)
    reals = [ctx.real_class(c, 16) for c in range(3)]
    base = [torch.randn(5, 1, 8, 8) for _ in range(3)]
    siamese = method.siamese(ctx)
    assert siamese.parts  # the test goes through an augmentation
    out = {}
    for whole in (False, True):
        syns = [b.clone().requires_grad_(True) for b in base]
        losses = class_matching_losses(net, reals, syns, siamese, "mse", include_linear=False, vectorized=False,
                                       whole_compiled=whole)
        grads = torch.autograd.grad(losses.sum(), syns)
        out[whole] = (losses.detach(), torch.cat(grads))
    assert len(calls) == 3  # one per class, only on the whole_compiled pass
    torch.testing.assert_close(out[True][0], out[False][0], rtol=1e-5, atol=1e-6)
    assert out[False][1].abs().sum() > 0
    assert rel_err(out[True][1], out[False][1]) < 5e-4
    scored = class_matching_losses(net, reals, base, siamese, "mse", include_linear=False, vectorized=False,
                                   whole_compiled=True)
    assert len(calls) == 3 and not scored.requires_grad
    torch.testing.assert_close(scored, out[False][0], rtol=1e-5, atol=1e-6)
