"""distill.compile: the compiled forwards compute what the eager ones do, and a failing
compiler is one clear error."""

from __future__ import annotations


import pytest
import torch

from ddtool import compiled
from ddtool.errors import DDToolError
from ddtool.methods.dm import DM
from ddtool.methods import matching
from ddtool.methods.idc import IDC


pytestmark = pytest.mark.usefixtures("one_thread")
needs_compiler = pytest.mark.skipif(not compiled.compiler_usable(torch.device("cpu"))[0],
                                    reason="torch.compile cannot build here (no C++ compiler, or no vector ISA)")


@needs_compiler
def test_compiled_dm_and_idc_match_eager_across_fresh_networks(make_ctx, digits, monkeypatch):
    from torch._dynamo.utils import counters

    # other tests (compile = "auto" runs) may have compiled these forwards already: start afresh
    monkeypatch.setattr(compiled, "_COMPILED", {})
    monkeypatch.setattr(matching, "_WHOLE", {})
    torch._dynamo.reset()
    graphs_before = counters["stats"]["unique_graphs"]
    for method, extra in ((DM(), []), (IDC(), ["distill.options.net_steps=2", "distill.options.net_batch=16",
                                               "distill.batch_real=16"])):
        out = {}
        for flag in ("false", "true"):
            ctx = make_ctx(digits, method, [f"distill.compile={flag}", *extra])
            torch.manual_seed(0)
            syn = method.init_synthetic(ctx)
            syn.images.requires_grad_(True)
            results = []
            for _ in range(2):  # a fresh network each time: the compiled code is reused, not rebuilt
                net = ctx.fresh_net()
                loss = method.loss(ctx, syn, net)
                (g,) = torch.autograd.grad(loss, syn.images)
                results.append((loss.detach(), g))
            if isinstance(method, IDC):  # the network update on real data goes through the compiled forward too
                opt = torch.optim.SGD(net.parameters(), lr=0.05)
                method.train_net(ctx, net, opt, method.opts(ctx), ())
                results.append((net.classifier.weight.detach().clone(), net.classifier.weight.detach().clone()))
            out[flag] = results
        for (l0, g0), (l1, g1) in zip(out["false"], out["true"]):
            torch.testing.assert_close(l1, l0, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(g1, g0, rtol=1e-3, atol=1e-5)
    # really compiled: a handful of graphs (grad mode / shape variants), not one per fresh network
    assert 1 <= counters["stats"]["unique_graphs"] - graphs_before <= 8


@needs_compiler
def test_compiled_idc_distillation_gives_the_eager_images(make_ctx, digits, rel_err):
    """A short IDC distillation with the matching's double backward compiled (distill.compile) moves
    the images as the eager run does, within the compiled tolerance above: inductor's fused kernels
    round differently (a ReLU mask can flip at a value rounding puts on either side of 0, 1e-3 of a
    CIFAR-sized gradient on 2026-12-07; float64 compiled agrees with eager to 1e-15)."""
    method = IDC()
    images = {}
    for flag in ("false", "true"):
        ctx = make_ctx(digits, method, [f"distill.compile={flag}", "distill.batch_real=16", "distill.lr_img=0.05",
                                        "distill.options.inner_loops=2", "distill.options.net_steps=1",
                                        "distill.options.net_batch=16"])
        torch.manual_seed(0)
        syn = method.init_synthetic(ctx)
        base = syn.images.detach().clone()
        syn.images.requires_grad_(True)
        opt = method.make_optimizer(ctx, syn)
        method.step(ctx, syn, opt, 0)
        images[flag] = syn.images.detach()
    moved = images["false"] - base
    assert moved.abs().sum() > 0
    assert rel_err(images["true"] - base, moved) < 1e-3


def test_a_failing_compiler_is_one_clear_error(make_ctx, monkeypatch, digits):
    def broken(fn):
        def run(*args):
            raise torch._dynamo.exc.TorchDynamoException("no working C++ compiler found\ndetails")
        return run

    monkeypatch.setattr(compiled, "_COMPILED", {})
    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(compiled, "inductor_vector_isa", lambda: (True, "avx2"))
    ctx = make_ctx(digits, DM(), ["distill.compile=true"])
    syn = DM().init_synthetic(ctx)
    with pytest.raises(DDToolError, match=r"torch.compile failed \(no working C\+\+ compiler found\); "
                                          r"set distill.compile = false"):
        DM().loss(ctx, syn, ctx.fresh_net())
    # where inductor has no vector ISA for the CPU, that is the reason given (torch's own is a C++ log)
    monkeypatch.setattr(compiled, "inductor_vector_isa", lambda: (False, "inductor picks no vector ISA"))
    with pytest.raises(DDToolError, match=r"torch.compile failed \(inductor picks no vector ISA\); set"):
        DM().loss(ctx, syn, ctx.fresh_net())
    assert compiled.forward_fn(False) is compiled.plain_forward  # off: nothing compiled


def test_avx2_kernels_forced_on_an_avx512_cpu_are_no_backend(tmp_path, monkeypatch):
    """ATEN_CPU_CAPABILITY=avx2 on an AVX-512 CPU: compiled DM losses came out NaN (torch 2.14), so
    compile = "auto" stays eager there and the compile tests skip; a CPU's own capability compiles."""
    avx512, avx2_only = tmp_path / "avx512", tmp_path / "avx2"
    avx512.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 avx512f avx512dq\n")
    avx2_only.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert "ATEN_CPU_CAPABILITY=avx2 on a CPU with AVX-512" in compiled._lowered_below_hardware(str(avx512))
    assert compiled._lowered_below_hardware(str(avx2_only)) == ""
    assert compiled._lowered_below_hardware(str(tmp_path / "missing")) == ""
    monkeypatch.delenv("ATEN_CPU_CAPABILITY")
    assert compiled._lowered_below_hardware(str(avx512)) == ""
