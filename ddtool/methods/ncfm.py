"""NCFM: Dataset Distillation with Neural Characteristic Function: A Minmax Perspective (Wang et al., CVPR 2025).

Equations are the paper's (``asset/paper.pdf`` of the reference code ``gszfwsb/NCFM``, commit
``de92fb8``); defaults are the reference's, each with its file and line (``config/ipc10/
cifar10.yaml``, the same in ``config/ipc1`` and ``config/ipc50`` but for ``ipc``):

* the empirical characteristic function of features f(x) at a frequency argument t, Eq. (5):
  Phi_x(t) = mean_i exp(j <t, f(x_i)>), over per-sample L2-normalised features of the
  network's last feature layer (``NCFM/NCFM.py:70-73``);
* the characteristic-function discrepancy, Eq. (6)-(7), split into an amplitude term
  (|Phi_x(t)| - |Phi_x~(t)|)^2 and a phase term 2 |Phi_x(t)| |Phi_x~(t)| (1 - cos(a_x(t) - a_x~(t))),
  weighted as Eq. (8) with ``alpha`` and ``beta`` (0.5 / 0.5, ``alpha_for_loss`` /
  ``beta_for_loss``, yaml:66-67; the paper writes alpha and 1 - alpha): the loss is the mean over
  t of sqrt(alpha * amplitude + beta * phase) (:func:`cf_distance`, ``NCFM/NCFM.py:42-64``),
  times ``loss_scale`` 300 (``NCFM/NCFM.py:78``). The phase term is clamped at 1e-12 so the
  square root has a finite gradient where the two CFs agree (``NCFM/NCFM.py:60``); with beta = 0
  the sum is clamped the same way;
* the frequency arguments t: without a sampling network, ``num_freqs`` (4096, yaml:63) draws
  from N(0, I) per class and step (``NCFM/NCFM.py:41``); with one (``sampling_net``), the
  sampling network psi of Eq. (4) and (8) (``NCFM/SampleNet.py``): ``sampler_layers`` (3) blocks
  of Linear(D, D), BatchNorm1d and LeakyReLU(0.2) (Tanh after the last) on
  ``sampler_freqs // 16`` (64 // 16 = 4) N(0, 1) noise vectors of the feature dimension D, the
  outputs repeated to ``sampler_freqs`` (64, SampleNet's ``t_batchsize`` default) rows;
* the min-max, Eq. (4)/(8): per class, the images take a step *down* the loss and the sampling
  network a step *up* it (gradient ascent), SGD at ``lr_sampling_net`` 1e-3 (yaml:50) with momentum
  ``mom_img`` 0.5 (yaml:49, ``condense/condense_script.py:22``) and no weight decay
  (``utils/utils.py:293``). Both gradients are taken at the same point (one backward);
* the feature network per iteration: a pretrained model of the pool (the reference draws one
  of ``num_premodel`` = 20 uniformly, yaml:58, ``utils/utils.py:435``) blended with an
  initialisation, theta = l * theta_init + (1 - l) * theta_trained, l ~ U(0, 1) per iteration
  (``utils/utils.py:447-456``; the paper's beta-blending, Sec. 4.2.3). ddtool's pool keeps the
  trained state only, so the initialisation is a fresh one of the same architecture (the
  reference blends each model with its own initial checkpoint); the model comes from the run's
  selection strategy and perturbation schedule, as for IDC;
* calibration (``NCFM/NCFM.py:118-121``, ``condenser/compute_loss.py:56-92``): ``iter_calib`` (1,
  yaml:60) passes of, per class, ``calib_weight`` (1, yaml:61) x the cross-entropy of the trained
  (unblended) model on the augmented decoded images, and an image step;
* the images: multi-formation ``factor`` 2 (yaml:65) decoded as IDC's (``condenser/decode.py``,
  ``decode_type: single``), initialised from downsized real images (``--init mix``,
  ``condense/condense_script.py:53``); AdamW (``optimizer: adamw``, yaml:46) at lr
  ``lr_img * lr_scale_adam`` = 0.01 * 0.1 = 1e-3 (yaml:47-48, ``utils/init_script.py:100-103``)
  with weight decay 5e-4 (yaml:31, ``utils/utils.py:300-303``), one step per class for the
  matching and one per class for the calibration (``compute_loss.py:37-48``, ``85-89``), pixels
  clamped to [0, 1] every iteration (``Condenser.py:223``); the lr halves when the iteration's
  loss (matching + calibration, over the classes) has not improved for 500 iterations
  (``ReduceLROnPlateau(factor=0.5, patience=500)``, ``Condenser.py:212-214``, stepped at 308);
* per class and step 1024 real images (``batch_real``, yaml:12) and all decoded synthetic images
  of the class, augmented together with one draw of DiffAug ``color_crop_cutout`` (``aug_type``,
  yaml:43; ``DiffAug(batch=True)``: one parameter set for the whole batch, ``utils/diffaug.py:346``);
* 20000 iterations (``niter``, yaml:59).

Like IDC, ddtool stores normalised images and the reference optimises [0, 1] pixels: with
``pixel_lr`` (default) the AdamW step is taken in pixel units (:class:`PixelAdamW`), so lr and
weight decay keep the reference's values.

Where ddtool differs from the reference code, knowingly:

* ``sampling_net`` defaults to true (the paper's method, Eq. 8). The reference's shipped configs
  set ``sampling_net: False`` (yaml:62), i.e. t ~ N(0, I) with 4096 frequencies: set
  ``sampling_net = false`` for the reference as shipped. With its sampling network on, the
  reference calls ``loss.backward(retain_graph=True)`` and then ``(-loss).backward()`` without
  zeroing the network's gradients between them (``compute_loss.py:38-45``), so the two cancel and
  its sampling network never moves; ddtool takes the ascent step the paper describes. It also
  attaches its second plateau scheduler to the image optimiser (``Condenser.py:207-209``).
* the reference prefetches decoded synthetic batches in a background thread
  (``data/dataloader.py:240-270``, ``Condenser.py:202``), so a class's images may be decoded a few
  class-steps before they are matched; ddtool decodes them when matched.
* its classes are split across GPUs, each rank holding and stepping only its classes' images
  (``utils/ddp.py:24-45``), so its update depends on the number of GPUs. ddtool runs NCFM in one
  process (``class_sharded = False``): the loss is a sum over classes, but the update is not a step
  down that sum — it is one AdamW step per class, and every step moves every row (weight decay,
  moments), which class shards holding the whole set cannot split exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ddtool.compiled import forward_fn
from ddtool.context import DistillContext
from ddtool.errors import DDToolError, UsageError
from ddtool.methods.base import MatchingMethod, at_least_one
from ddtool.methods.idc import idc_augmentation
from ddtool.synthetic import SyntheticSet, decode, init_synthetic

# the keys NCFM keeps in ctx.method_state for the run
SAMPLER, SAMPLER_OPT, PLATEAU = "ncfm.sampler", "ncfm.sampler_opt", "ncfm.plateau"


@dataclass
class NCFMOptions:
    """``[distill.options]`` of ncfm; the defaults and their sources are in the module docstring."""

    factor: int = 2  # multi-formation factor (condense.factor, NCFM's config/ipc*/cifar10.yaml:65)
    alpha: float = 0.5  # weight of the amplitude term (alpha_for_loss, cifar10.yaml:66)
    beta: float = 0.5  # weight of the phase term (beta_for_loss, cifar10.yaml:67)
    loss_scale: float = 300.0  # NCFM's NCFM/NCFM.py:78
    sampling_net: bool = True  # learn t adversarially (paper Eq. 8); false: t ~ N(0, I) (the reference's cifar10.yaml:62)
    num_freqs: int = 4096  # frequency arguments per class and step without a sampling network (cifar10.yaml:63)
    sampler_freqs: int = 64  # rows of t from the sampling network (SampleNet t_batchsize default)
    sampler_layers: int = 3  # Linear-BatchNorm-activation blocks (SampleNet.py:26)
    lr_sampling_net: float = 1e-3  # SGD, gradient ascent (cifar10.yaml:50)
    momentum_sampling_net: float = 0.5  # mom_img (cifar10.yaml:49; condense_script.py:22)
    iter_calib: int = 1  # calibration passes per iteration (cifar10.yaml:60); 0: none
    calib_weight: float = 1.0  # cifar10.yaml:61
    weight_decay_img: float = 5e-4  # AdamW of the images (train.weight_decay, cifar10.yaml:31)
    blend: bool = True  # blend the model with a fresh init, l ~ U(0, 1) (utils/utils.py:447)
    plateau_patience: int = 500  # iterations without improvement before the image lr halves (Condenser.py:212)
    plateau_factor: float = 0.5  # the lr's factor then (Condenser.py:213)
    pixel_lr: bool = True  # AdamW in [0, 1]-pixel units, as the reference
    clamp: bool = True  # clamp the images to the valid pixel range every iteration


# -- the characteristic-function distance (pure functions) ------------------------------------


def empirical_cf(features: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (5), empirically: the real and imaginary parts of mean_i exp(j <t_k, f_i>) for every row
    t_k of ``t`` [F, D], over the rows f_i of ``features`` [N, D]; two [F] tensors."""
    proj = t @ features.T  # [F, N]
    return proj.cos().mean(1), proj.sin().mean(1)


def cf_terms(real: torch.Tensor, syn: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The amplitude and phase terms of Eq. (7) per frequency argument ([F] each):
    (|Phi_r| - |Phi_s|)^2 and 2 |Phi_r| |Phi_s| (1 - cos(a_r - a_s)) = 2 (|Phi_r||Phi_s| - Re(Phi_r conj Phi_s))."""
    rr, ri = empirical_cf(real, t)
    sr, si = empirical_cf(syn, t)
    nr, ns = torch.sqrt(rr * rr + ri * ri), torch.sqrt(sr * sr + si * si)
    amplitude = (nr - ns) ** 2
    phase = 2 * (nr * ns - rr * sr - ri * si)
    return amplitude, phase


def cf_distance(real: torch.Tensor, syn: torch.Tensor, t: torch.Tensor, alpha: float = 0.5,
                beta: float = 0.5) -> torch.Tensor:
    """The NCFD of Eq. (6)-(8) between the feature sets ``real`` [Nr, D] and ``syn`` [Ns, D] over the
    frequency arguments ``t`` [F, D]: mean over t of sqrt(alpha * amplitude + beta * phase). The
    phase term is clamped at 1e-12 (the reference's, ``NCFM/NCFM.py:60``) for a finite gradient of
    the square root where the CFs agree; with beta = 0 the sum is."""
    amplitude, phase = cf_terms(real, syn, t)
    inner = alpha * amplitude + beta * phase.clamp(min=1e-12)
    if beta == 0:
        inner = inner.clamp(min=1e-12)
    return inner.sqrt().mean()


class SamplingNet(nn.Module):
    """psi of Eq. (4): frequency arguments t from Gaussian noise (``NCFM/SampleNet.py``).

    ``layers`` blocks Linear(D, D) -> BatchNorm1d -> LeakyReLU(0.2) (Tanh after the last) on
    ``freqs // 16`` noise vectors ~ N(0, 1), repeated to ``freqs`` rows (the reference's
    ``t_sigma_num``); with fewer than 16 rows, plain N(0, 1/D) draws (its else branch)."""

    def __init__(self, dim: int, freqs: int = 64, layers: int = 3) -> None:
        super().__init__()
        self.dim, self.freqs, self.distinct = dim, freqs, freqs // 16
        blocks: list[nn.Module] = []
        for i in range(layers):
            blocks += [nn.Linear(dim, dim), nn.BatchNorm1d(dim),
                       nn.LeakyReLU(0.2) if i < layers - 1 else nn.Tanh()]
        self.body = nn.Sequential(*blocks)

    def forward(self, device: torch.device | str) -> torch.Tensor:
        if self.distinct == 0:
            return torch.randn(self.freqs, self.dim, device=device) * (1.0 / self.dim) ** 0.5
        noise = torch.randn(self.distinct, self.dim).to(device)  # drawn on the CPU stream, as the reference
        return self.body(noise).repeat(self.freqs // self.distinct, 1)


class PixelAdamW(torch.optim.AdamW):
    """AdamW on normalised images that steps as the reference's AdamW on [0, 1] pixels: the images go
    to pixel units (x * std + mean) and their gradient with them (g / std) for the step, and back.
    Its state (moments) is in pixel units, saved and restored as any optimizer state."""

    def __init__(self, images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, lr: float,
                 weight_decay: float) -> None:
        super().__init__([images], lr=lr, weight_decay=weight_decay)
        self.mean, self.std = mean, std

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        (p,) = self.param_groups[0]["params"]
        p.mul_(self.std).add_(self.mean)
        if p.grad is not None:
            p.grad.div_(self.std)
        out = super().step(closure)
        p.sub_(self.mean).div_(self.std)
        return out


def feature_dim(ctx: DistillContext) -> int:
    """The width of the run's network's features (D of t), from a throwaway network built without
    touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        net = ctx.fresh_net()
    d = ctx.data
    with torch.no_grad():
        x = torch.zeros(1, d.channels, d.resolution, d.resolution, device=ctx.device)
        return int(forward_fn(False, "embed")(net, x).flatten(1).shape[1])


class NCFM(MatchingMethod):
    name = "ncfm"
    description = "NCFM: characteristic-function matching with an adversarial sampling network (CVPR 2025)"
    options_type = NCFMOptions
    factor = 2  # the default; the run's factor comes from [distill.options] (factor_for)
    # one AdamW step per class couples the classes through the optimiser (module docstring)
    class_sharded = False

    def default_iterations(self, ipc: int) -> int:
        return 20000  # niter (yaml:59)

    def distill_defaults(self) -> dict[str, Any]:
        # lr_img 0.01 x lr_scale_adam 0.1 (yaml:47-48, init_script.py:100-103); batch_real (yaml:12);
        # aug_type (yaml:43)
        return {"lr_img": 0.001, "lr_img_scale": "none", "batch_real": 1024, "augment": "color_crop_cutout"}

    def opts(self, ctx: DistillContext) -> NCFMOptions:
        return ctx.options if isinstance(ctx.options, NCFMOptions) else NCFMOptions()

    def parse_options(self, raw: dict) -> NCFMOptions:  # type: ignore[override]
        o = super().parse_options(raw)
        at_least_one(o, ("num_freqs", "sampler_freqs", "sampler_layers", "plateau_patience"))
        if o.iter_calib < 0:
            raise UsageError(f"distill.options.iter_calib must be >= 0, got {o.iter_calib}")
        if o.alpha < 0 or o.beta < 0 or o.alpha + o.beta == 0:
            raise UsageError(f"distill.options.alpha and beta must be >= 0 and not both 0, got {o.alpha} and {o.beta}")
        if not 0 < o.plateau_factor <= 1:
            raise UsageError(f"distill.options.plateau_factor must be in (0, 1], got {o.plateau_factor}")
        return o

    def init_synthetic(self, ctx: DistillContext) -> SyntheticSet:
        factor = self.factor_for(ctx.options, ctx.data.resolution)
        return init_synthetic(ctx.data, ctx.cfg.ipc, ctx.cfg.init, factor, ctx.device)

    # -- the run's state: the images' AdamW, the sampling network and its SGD, the plateau -----

    def make_optimizer(self, ctx: DistillContext, syn: SyntheticSet) -> torch.optim.Optimizer:
        """AdamW on the images (in pixel units with ``pixel_lr``) and, kept in ``ctx.method_state``
        for the run (saved in its checkpoints by :meth:`state`), the sampling network with its SGD
        and the images' plateau schedule. Called once when the run starts, before a resume restores."""
        o = self.opts(ctx)
        opt: torch.optim.Optimizer
        if o.pixel_lr and getattr(ctx.data, "zca", None) is None:
            mean, std = ctx.data.stats(syn.images.device, syn.images.dtype)
            opt = PixelAdamW(syn.images, mean, std, ctx.cfg.lr_img, o.weight_decay_img)
        else:
            opt = torch.optim.AdamW([syn.images], lr=ctx.cfg.lr_img, weight_decay=o.weight_decay_img)
        state = ctx.method_state
        state[PLATEAU] = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=o.plateau_factor, patience=o.plateau_patience)
        if o.sampling_net:
            net = SamplingNet(feature_dim(ctx), o.sampler_freqs, o.sampler_layers).to(ctx.device)
            state[SAMPLER] = net
            # the reference's get_optimizer("sgd", ...) passes no weight decay (utils/utils.py:293)
            state[SAMPLER_OPT] = torch.optim.SGD(net.parameters(), lr=o.lr_sampling_net,
                                                 momentum=o.momentum_sampling_net)
        return opt

    def state(self, ctx: DistillContext) -> dict[str, torch.Tensor]:
        """The sampling network's parameters and buffers (``sampler.*``), its SGD momentum
        (``sampler_opt.<i>``) and the plateau schedule (``plateau.*``, with the images' lr)."""
        out: dict[str, torch.Tensor] = {}
        plateau = ctx.method_state.get(PLATEAU)
        if plateau is not None:
            out["plateau.lr"] = torch.tensor(float(plateau.optimizer.param_groups[0]["lr"]), dtype=torch.float64)
            out["plateau.best"] = torch.tensor(float(plateau.best), dtype=torch.float64)
            out["plateau.bad"] = torch.tensor(int(plateau.num_bad_epochs))
            out["plateau.epoch"] = torch.tensor(int(plateau.last_epoch))
            out["plateau.cooldown"] = torch.tensor(int(plateau.cooldown_counter))
        net = ctx.method_state.get(SAMPLER)
        if net is not None:
            out.update({f"sampler.{k}": v for k, v in net.state_dict().items()})
            opt = ctx.method_state[SAMPLER_OPT]
            for i, q in enumerate(net.parameters()):
                buf = opt.state.get(q, {}).get("momentum_buffer")
                if buf is not None:
                    out[f"sampler_opt.{i}"] = buf
        return out

    def load_state(self, ctx: DistillContext, tensors: dict[str, torch.Tensor]) -> None:
        plateau = ctx.method_state.get(PLATEAU)
        if plateau is not None and "plateau.lr" in tensors:
            for group in plateau.optimizer.param_groups:
                group["lr"] = float(tensors["plateau.lr"])
            plateau._last_lr = [float(tensors["plateau.lr"])]
            plateau.best = float(tensors["plateau.best"])
            plateau.num_bad_epochs = int(tensors["plateau.bad"])
            plateau.last_epoch = int(tensors["plateau.epoch"])
            plateau.cooldown_counter = int(tensors["plateau.cooldown"])
        net = ctx.method_state.get(SAMPLER)
        if net is None:
            return
        own = {k[len("sampler."):]: v for k, v in tensors.items() if k.startswith("sampler.")}
        if not own:
            raise DDToolError("the checkpoint holds no sampling network, but this run learns one "
                              "(distill.options.sampling_net); resume with the recipe the run was started with")
        net.load_state_dict(own)
        opt = ctx.method_state[SAMPLER_OPT]
        for i, q in enumerate(net.parameters()):
            if f"sampler_opt.{i}" in tensors:
                opt.state[q]["momentum_buffer"] = tensors[f"sampler_opt.{i}"].to(q.device)

    # -- the loss ------------------------------------------------------------------------------

    def frequencies(self, ctx: DistillContext, o: NCFMOptions, dim: int) -> torch.Tensor:
        """The frequency arguments t [F, D] of one class's step: the sampling network's (with a
        graph to its parameters) or ``num_freqs`` N(0, I) draws."""
        net = ctx.method_state.get(SAMPLER)
        if o.sampling_net and net is not None:
            return net(ctx.device)
        return torch.randn(o.num_freqs, dim, device=ctx.device)

    def class_loss(self, ctx: DistillContext, o: NCFMOptions, net: nn.Module, real: torch.Tensor,
                   syn: torch.Tensor) -> torch.Tensor:
        """``loss_scale`` x the NCFD (:func:`cf_distance`) between the normalised features of the
        real and the synthetic images of one class, augmented together with one DiffAug draw."""
        aug = idc_augmentation(ctx.augment.ops, ctx.augment.p, 1, ctx.data.resolution, ctx.device,
                               op_per_group=True)
        embed = forward_fn(ctx.compile, "embed")
        with torch.no_grad():
            fr = F.normalize(embed(net, aug.apply(real)).flatten(1), dim=1)
        fs = F.normalize(embed(net, aug.apply(syn)).flatten(1), dim=1)
        t = self.frequencies(ctx, o, fs.shape[1])
        return o.loss_scale * cf_distance(fr, fs, t, o.alpha, o.beta)

    def loss(self, ctx: DistillContext, syn: SyntheticSet, net: nn.Module) -> torch.Tensor:
        """The matching loss (Eq. 8 x ``loss_scale``) summed over classes at the current images and
        sampling network (what DynaDistill ranks candidate networks with)."""
        o = self.opts(ctx)
        total = syn.images.new_zeros(())
        for c in range(ctx.num_classes):
            total = total + self.class_loss(ctx, o, net, ctx.real_class(c, ctx.cfg.batch_real),
                                            _decoded(syn, c))
        return total

    # -- one iteration -------------------------------------------------------------------------

    def feature_net(self, ctx: DistillContext, trained: nn.Module, o: NCFMOptions) -> nn.Module:
        """The matching network: ``trained`` blended with a fresh initialisation, l ~ U(0, 1)
        (``utils/utils.py:447-456``), or ``trained`` itself without ``blend``."""
        if not o.blend:
            return trained
        init = ctx.fresh_net()
        lam = torch.rand(1, device=ctx.device)
        with torch.no_grad():
            for p, q in zip(init.parameters(), trained.parameters()):
                p.copy_(lam * p + (1 - lam) * q)
            for b, q in zip(init.buffers(), trained.buffers()):
                b.copy_(q)
        return init

    def step(self, ctx: DistillContext, syn: SyntheticSet, opt: torch.optim.Optimizer, it: int) -> float:
        """One iteration (``Condenser.condense``): clamp, the model, then per class a matching step
        (images down, sampling network up), per class a calibration step, and the plateau schedule."""
        o = self.opts(ctx)
        if o.clamp:
            _clamp(ctx, syn)
        trained = ctx.next_model(it)
        trained.requires_grad_(False)
        net = self.feature_net(ctx, trained, o)
        net.requires_grad_(False)
        sampler, sampler_opt = ctx.method_state.get(SAMPLER), ctx.method_state.get(SAMPLER_OPT)
        ascend = list(sampler.parameters()) if o.sampling_net and sampler is not None else []
        match = 0.0
        for c in range(ctx.num_classes):
            real = ctx.real_class(c, ctx.cfg.batch_real)
            loss = self.class_loss(ctx, o, net, real, _decoded(syn, c))
            grads = torch.autograd.grad(loss, [syn.images, *ascend])
            opt.zero_grad(set_to_none=True)
            syn.images.grad = grads[0]
            opt.step()
            if ascend:
                assert sampler_opt is not None
                for q, g in zip(ascend, grads[1:]):
                    q.grad = -g  # the max of Eq. (4): a descent step on -loss
                sampler_opt.step()
            match += float(loss.detach())
        calib = 0.0
        for _ in range(o.iter_calib):
            for c in range(ctx.num_classes):
                aug = idc_augmentation(ctx.augment.ops, ctx.augment.p, 1, ctx.data.resolution, ctx.device,
                                       op_per_group=True)
                x = aug.apply(_decoded(syn, c))
                y = torch.full((len(x),), c, dtype=torch.long, device=x.device)
                loss = o.calib_weight * F.cross_entropy(trained(x), y)
                opt.zero_grad(set_to_none=True)
                syn.images.grad = torch.autograd.grad(loss, syn.images)[0]
                opt.step()
                calib += float(loss.detach())
        current = (match + calib) / ctx.num_classes
        plateau = ctx.method_state.get(PLATEAU)
        if plateau is not None and math.isfinite(current):
            plateau.step(current)
        ctx.selection.after_step(ctx, it, trained)
        return current


def _decoded(syn: SyntheticSet, c: int) -> torch.Tensor:
    """All decoded images of class ``c`` (the reference matches them all: ``class_sample(c)``), with a
    graph to the stored images."""
    rows = syn.labels == c
    return decode(syn.images[rows], syn.labels[rows], syn.factor)[0]


@torch.no_grad()
def _clamp(ctx: DistillContext, syn: SyntheticSet) -> None:
    """Keep the images inside the normalised image of [0, 1] pixels (not on ZCA-whitened data)."""
    if getattr(ctx.data, "zca", None) is not None:
        return
    mean, std = ctx.data.stats(syn.images.device, syn.images.dtype)
    syn.images.copy_(torch.maximum(torch.minimum(syn.images, (1 - mean) / std), -mean / std))
