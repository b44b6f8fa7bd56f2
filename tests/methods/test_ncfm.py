"""NCFM (ddtool.methods.ncfm): the characteristic-function distance, the min-max update, the
sampling network across --resume, the ncfm evaluation protocol and the shipped recipe."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from ddtool.errors import DDToolError, UsageError
from ddtool.methods.base import MatchingMethod
from ddtool.methods.ncfm import NCFM, SAMPLER, NCFMOptions, PixelAdamW, cf_distance, cf_terms
from ddtool.recipe import load_recipe
from ddtool.store import Store

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[2]
TINY = ["distill.method=ncfm", "net.width=8", "distill.ipc=2", "distill.batch_real=16",
        "distill.options.factor=1", "distill.options.sampler_freqs=32"]


def _direct(real: torch.Tensor, syn: torch.Tensor, t: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """Eq. (5)-(8) written out with complex numbers, in float64."""
    phi_r = torch.exp(1j * (real.double() @ t.double().T)).mean(0)  # [F]
    phi_s = torch.exp(1j * (syn.double() @ t.double().T)).mean(0)
    amp = (phi_r.abs() - phi_s.abs()) ** 2
    phase = 2 * phi_r.abs() * phi_s.abs() * (1 - torch.cos(phi_r.angle() - phi_s.angle()))
    return torch.sqrt(alpha * amp + beta * phase).mean()


def test_cf_distance_is_the_direct_computation_of_eq_6_to_8() -> None:
    g = torch.Generator().manual_seed(0)
    real, syn, t = torch.randn(7, 5, generator=g), torch.randn(4, 5, generator=g) + 0.3, torch.randn(11, 5, generator=g)
    for alpha, beta in [(0.5, 0.5), (1.0, 0.2), (0.3, 0.9)]:
        got = cf_distance(real, syn, t, alpha, beta)
        assert got.item() == pytest.approx(_direct(real, syn, t, alpha, beta).item(), rel=1e-5)
    # Eq. (7): amplitude + phase = |Phi_r - Phi_s|^2, the integrand of Eq. (6)
    amp, phase = cf_terms(real, syn, t)
    chf = (torch.exp(1j * (real.double() @ t.double().T)).mean(0) - torch.exp(1j * (syn.double() @ t.double().T)).mean(0)).abs() ** 2
    torch.testing.assert_close((amp + phase).double(), chf, rtol=1e-5, atol=1e-6)


def test_amplitude_only_and_phase_only_limits() -> None:
    g = torch.Generator().manual_seed(1)
    real, t = torch.randn(9, 4, generator=g), torch.randn(13, 4, generator=g)
    shifted = real + torch.tensor([0.7, -0.4, 0.2, 0.5])  # Phi_s(t) = exp(j t.d) Phi_r(t): same amplitude, new phase
    other = torch.randn(6, 4, generator=g) * 2.0
    for syn in (shifted, other):
        assert cf_distance(real, syn, t, 1.0, 0.0).item() == pytest.approx(_direct(real, syn, t, 1.0, 0.0).item(), rel=1e-5, abs=1e-5)
        assert cf_distance(real, syn, t, 0.0, 1.0).item() == pytest.approx(_direct(real, syn, t, 0.0, 1.0).item(), rel=1e-5)
    # a translation moves only the phase: the amplitude-only distance (beta = 0) does not see it
    assert cf_distance(real, shifted, t, 1.0, 0.0).item() < 1e-3
    assert cf_distance(real, shifted, t, 0.0, 1.0).item() > 0.1
    assert cf_distance(real, other, t, 1.0, 0.0).item() > 0.05


def test_identical_distributions_are_at_zero_distance_with_a_finite_gradient() -> None:
    g = torch.Generator().manual_seed(2)
    real, t = torch.randn(8, 6, generator=g), torch.randn(16, 6, generator=g)
    for alpha, beta in [(0.5, 0.5), (1.0, 0.0), (0.0, 1.0)]:
        syn = real.clone().requires_grad_(True)
        d = cf_distance(real, syn, t, alpha, beta)
        # zero up to float32 rounding of |Phi|^2 - Re(Phi conj Phi) (~1e-8, whose square root is ~1e-4)
        assert d.item() < 5e-4
        d.backward()
        assert torch.isfinite(syn.grad).all()
        assert cf_distance(real, real[:4] * 1.5, t, alpha, beta).item() > 2e-2


def _ctx(digits, overrides=()):  # type: ignore[no-untyped-def]
    from ddtool.runtime.distill.planning import build_context

    recipe = load_recipe(None, [*TINY, *overrides])
    method = NCFM()
    ctx = build_context(recipe, digits, CPU, method=method)
    torch.manual_seed(0)
    syn = method.init_synthetic(ctx)
    syn.images.requires_grad_(True)
    opt = method.make_optimizer(ctx, syn)
    ctx.synthetic, ctx.optimizer = syn, opt
    return ctx, method, syn, opt


def test_one_step_moves_the_images_down_the_loss_and_the_sampling_network_up(digits) -> None:  # type: ignore[no-untyped-def]
    """The min-max of Eq. (4): class 0's update, seen at class 1's loss, is images -= (AdamW of) dL/dx
    and psi += lr * dL/dpsi (the first SGD step, no momentum yet)."""
    # a large ascent lr: the step stands well above float32 rounding of the parameters
    ctx, method, syn, opt = _ctx(digits, ["distill.options.iter_calib=0", "distill.options.lr_sampling_net=10.0"])
    sampler = ctx.method_state[SAMPLER]
    seen: list[tuple[torch.Tensor, list[torch.Tensor], torch.Tensor, list[torch.Tensor]]] = []
    real_class_loss = NCFM.class_loss

    def probe(self, ctx, o, net, real, x):  # type: ignore[no-untyped-def]
        loss = real_class_loss(self, ctx, o, net, real, x)
        params = list(sampler.parameters())
        grads = torch.autograd.grad(loss, [syn.images, *params], retain_graph=True)
        seen.append((syn.images.detach().clone(), [p.detach().clone() for p in params], grads[0], list(grads[1:])))
        return loss

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(NCFM, "class_loss", probe)
        method.step(ctx, syn, opt, 0)
    (x0, psi0, gx, gpsi), (x1, psi1, _, _) = seen[0], seen[1]
    dx = x1 - x0
    assert (dx * gx).sum() < 0  # descent: the images' first-order change of the loss is negative
    lr = ctx.options.lr_sampling_net
    dpsi = [b - a for a, b in zip(psi0, psi1)]
    assert sum((d * g).sum() for d, g in zip(dpsi, gpsi)) > 0  # ascent
    for d, g in zip(dpsi, gpsi):
        torch.testing.assert_close(d, lr * g, rtol=1e-3, atol=1e-6)
    assert any(g.abs().sum() > 0 for g in gpsi)


def test_without_a_sampling_network_t_is_gaussian_and_nothing_else_is_kept(digits) -> None:  # type: ignore[no-untyped-def]
    ctx, method, syn, opt = _ctx(digits, ["distill.options.sampling_net=false", "distill.options.num_freqs=128"])
    assert SAMPLER not in ctx.method_state
    assert method.frequencies(ctx, ctx.options, 32).shape == (128, 32)
    assert not any(k.startswith("sampler") for k in method.state(ctx))
    loss = method.step(ctx, syn, opt, 0)
    assert math.isfinite(loss) and loss > 0


def test_pixel_adamw_steps_as_adamw_on_pixels() -> None:
    mean, std = torch.tensor([0.3]).view(1, 1, 1, 1), torch.tensor([0.2]).view(1, 1, 1, 1)
    pix = torch.rand(3, 1, 4, 4)
    g_pix = torch.randn_like(pix)
    ref = pix.clone().requires_grad_(True)
    a = torch.optim.AdamW([ref], lr=1e-2, weight_decay=5e-4)
    norm = ((pix - mean) / std).requires_grad_(True)
    b = PixelAdamW(norm, mean, std, lr=1e-2, weight_decay=5e-4)
    for _ in range(3):
        ref.grad = g_pix.clone()
        a.step()
        norm.grad = g_pix * std  # d/dnorm = d/dpix * std
        b.step()
    torch.testing.assert_close(norm.detach() * std + mean, ref.detach(), rtol=1e-5, atol=1e-6)


def test_options_are_checked(digits) -> None:  # type: ignore[no-untyped-def]
    m = NCFM()
    assert isinstance(m.parse_options({}), NCFMOptions)
    with pytest.raises(UsageError, match="alpha and beta"):
        m.parse_options({"alpha": 0.0, "beta": 0.0})
    with pytest.raises(UsageError, match="num_freqs must be >= 1"):
        m.parse_options({"num_freqs": 0})
    with pytest.raises(UsageError, match="does not divide"):
        m.factor_for(m.parse_options({"factor": 3}), digits.resolution)


def test_base_method_load_state_accepts_nothing_else() -> None:
    MatchingMethod().load_state(None, {})  # type: ignore[arg-type]
    with pytest.raises(DDToolError, match="cannot load it"):
        MatchingMethod().load_state(None, {"x": torch.zeros(1)})  # type: ignore[arg-type]


def test_a_resumed_run_continues_with_the_sampling_network_it_had_learned(store: Store, digits, stop_at) -> None:  # type: ignore[no-untyped-def]
    from ddtool.runtime.distill import RunInterrupted, distill, resume

    recipe = load_recipe(None, [*TINY, "distill.iterations=4", "distill.checkpoint_every=2", 'name="n"',
                                "distill.selection=scratch", "distill.options.plateau_patience=1"])
    full = distill(store, recipe, digits, CPU)
    with pytest.raises(RunInterrupted) as info:
        distill(store, recipe, digits, CPU, stop_at(3))
    parent = store.run(info.value.run_id)
    ckpt, _ = store.read_blob(parent["checkpoints"][-1]["digest"])
    assert any(k.startswith("method.sampler.") for k in ckpt) and "method.plateau.lr" in ckpt
    assert any(k.startswith("method.sampler_opt.") for k in ckpt)
    res = resume(store, info.value.run_id, digits, CPU)
    assert torch.equal(res.synthetic.images, full.synthetic.images)
    assert res.artifact.digest == full.artifact.digest


def test_the_ncfm_protocol_is_selectable_with_the_references_settings(digits) -> None:  # type: ignore[no-untyped-def]
    from ddtool.runtime.evaluate.train_eval import PROTOCOLS, check_eval
    from ddtool.runtime.supervised import TrainSettings, make_optimizer
    from ddtool.runtime.distill.planning import net_spec_of

    p = PROTOCOLS["ncfm"]
    assert p.optimizer == "adamw" and p.gamma == 0.5 and p.cutmix == 0.5 and p.chain
    assert p.milestones == (Fraction(1, 5), Fraction(2, 5), Fraction(3, 5), Fraction(4, 5))
    assert p.augmenter("color_crop_cutout_flip_scale_rotate").ops == ("color", "crop", "flip", "scale", "rotate")
    r = load_recipe(ROOT / "recipes" / "ncfm.toml", ["data.dataset=cifar10"])  # the paper's budget
    assert (r.eval.protocol, r.eval.epochs, r.eval.lr, r.eval.weight_decay, r.eval.batch, r.eval.repeats) == (
        "ncfm", 2000, 0.001, 0.01, 128, 10)
    check_eval(net_spec_of(r), r.eval, digits)
    opt = make_optimizer(torch.nn.Linear(2, 2), TrainSettings(epochs=1, lr=1e-3, weight_decay=0.01, optimizer="adamw"))
    assert type(opt) is torch.optim.AdamW and opt.param_groups[0]["weight_decay"] == 0.01
    with pytest.raises(UsageError, match="dsa, idc or ncfm"):
        load_recipe(None, ['eval.protocol="nope"'])


def test_the_ncfm_protocol_trains_with_adamw(digits, put_set, store: Store) -> None:  # type: ignore[no-untyped-def]
    from ddtool.nets import NetSpec
    from ddtool.runtime import supervised
    from ddtool.runtime.evaluate import train_eval

    put_set(store, digits)
    made: list[type] = []
    real = supervised.make_optimizer

    def spy(net, settings):  # type: ignore[no-untyped-def]
        opt = real(net, settings)
        made.append(type(opt))
        return opt

    r = load_recipe(None, ['eval.protocol="ncfm"', "eval.epochs=1", "eval.repeats=1", "eval.lr=0.001"])
    _, syn = train_eval.load_synthetic(store, "synthetic/s")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(supervised, "make_optimizer", spy)
        accs = train_eval.evaluate_set(syn, digits, NetSpec("convnet", {"width": 8}), r.eval, CPU)
    assert made == [torch.optim.AdamW] and len(accs) == 1 and 0 <= accs[0] <= 100


def test_the_shipped_recipe_distils_on_digits_from_its_pool(cli, store: Store, digits) -> None:  # type: ignore[no-untyped-def]
    from ddtool.runtime.evaluate.train_eval import load_synthetic

    recipe = str(ROOT / "recipes" / "ncfm.toml")
    res = cli("pretrain", "--recipe", recipe, "--set", "pretrain.n=2", "--set", "pretrain.epochs=1",
              "--set", "net.width=8")
    assert res.exit_code == 0, res.output
    res = cli("distill", "--recipe", recipe, "--set", "distill.iterations=2", "--set", "distill.batch_real=16",
              "--set", "distill.ipc=1", "--set", "net.width=8")
    assert res.exit_code == 0, res.output
    _, syn = load_synthetic(store, "synthetic/ncfm")
    assert syn.info.method == "ncfm" and syn.ipc == 1 and syn.factor == 1  # the digits budget's factor
    assert syn.images.shape[0] == digits.num_classes and torch.isfinite(syn.images).all()
