"""MTT: Dataset Distillation by Matching Training Trajectories (Cazenavette et al., CVPR 2022).

Every outer iteration (the reference's ``distill.py``):

* an expert is drawn uniformly from the trajectories (``ctx.trajectories``, made by ``ddtool
  pretrain --trajectories``) and a start epoch t uniformly from 0 .. T+ - 1 (``max_start_epoch``);
* a student starts from the expert's parameters at epoch t and takes N (``syn_steps``) plain SGD
  steps on minibatches of the synthetic set (``batch_syn``; the whole set by default), each
  minibatch DSA-augmented with one operation and per-sample parameters (``distill.augment``), at
  a learnable step size (initialised to ``lr_teacher``);
* loss = ||theta_student(t+N) - theta_expert(t+M)||^2 / ||theta_expert(t) - theta_expert(t+M)||^2
  over the flat parameter vector (M = ``expert_epochs``), back-propagated through all N steps to
  the images and the step size, which SGD (momentum ``distill.momentum_img``, 0.5 as the
  reference) updates with ``lr_img`` and ``lr_lr``.

The student is one network whose parameters are a flat tensor: each step is a
``torch.func.functional_call`` on views of it (no copy of the network per step), so the unrolled
graph holds N forward and backward passes (the reference's ReparamModule does the same).
``unroll = "checkpointed"`` bounds that memory: the steps run in segments of ``segment`` steps
that keep only their starting parameters in the forward pass and are recomputed, with their
graph, one at a time in the backward pass (twice the forward compute; memory of one segment
instead of all N steps). Both give the same image gradient up to float rounding.

The expert and the start epoch come from the selection strategy (``select_segment``, see
``ddtool.selection.base``): ``scratch`` draws both uniformly (the reference); ``dynadistill``
(seed 003) draws ``m`` of them, scores each with :meth:`MTT.segment_loss` on the current synthetic
set and samples one with a temperature softmax; the step's update then replays the chosen segment's
score (the strategy leaves the RNG where that scoring started, so the student's minibatches and
augmentations are drawn again, the same), descending exactly the sampled loss (Algorithm 1 line
12). That is m + 1 unrolls per iteration, only the update's with a graph kept.

Differences from the reference: experts are drawn uniformly at every iteration (the reference
walks a shuffled buffer file expert by expert, or draws uniformly with ``--load_all``); ZCA
whitening is the data option ``DATASET+zca`` (``ddtool.data.zca``) rather than a flag. The learned
step size is recorded in the set (``ddtool.learned_lr``); the reference evaluates at it, ddtool
when ``eval.lr = "learned"`` (the mtt recipes' setting; ``ddtool eval --lr learned``).

The learnable step size is the second parameter group of the optimizer. Checkpoints save the
optimizer's state but, of the parameters, only the images, so the step mirrors the step size's
value into its optimizer state (``LR_STATE``) and reads it back at the start of the next step:
``--resume`` continues with the step size the run had reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ddtool.augment import DEFAULT_STRATEGY, Augmenter, Draw, GroupDraw
from ddtool.context import DistillContext
from ddtool.errors import UsageError
from ddtool.methods.base import MatchingMethod, at_least_one
from ddtool.selection.base import Segment
from ddtool.synthetic import LEARNED_LR_STATE, SyntheticSet
from ddtool.trajectories import Layout, Trajectories, check_parameters_only, param_layout, unflatten

UNROLLS = ("plain", "checkpointed")
LR_STATE = LEARNED_LR_STATE  # the learnable step size's value, kept in its optimizer state (see the module docstring)


@dataclass
class MTTOptions:
    """``[distill.options]`` of mtt; defaults are the reference's ``distill.py`` defaults."""

    trajectories: str = ""  # "trajectories/NAME": from 'ddtool pretrain --trajectories' or 'store import --kind trajectories'
    syn_steps: int = 20  # N: student steps on the synthetic set per iteration
    expert_epochs: int = 3  # M: the target is the expert's parameters M epochs after the start
    max_start_epoch: int = 25  # T+: the start epoch is drawn from 0 .. T+ - 1
    lr_lr: float = 1e-5  # SGD on the learnable student step size
    lr_teacher: float = 0.01  # the learnable step size's initial value
    batch_syn: int = 0  # synthetic images per student step (0 = the whole set, as the reference)
    unroll: str = "plain"  # plain | checkpointed (memory of one segment of steps, twice the forward compute)
    segment: int = 10  # student steps per checkpointed segment


@dataclass
class StudentDraw:
    """The randomness of one student step, drawn before the unroll so a checkpointed segment
    recomputes exactly the same step: which synthetic images, and their augmentation."""

    idx: torch.Tensor
    aug: Draw | GroupDraw


class Student:
    """A network run on a flat parameter vector: the student of trajectory matching."""

    def __init__(self, net: nn.Module, layout: Layout) -> None:
        self.net, self.layout = net, layout

    def step(self, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        """One SGD step of the cross-entropy on (x, y) from ``theta`` (which must require grad),
        differentiable with respect to ``theta``, ``x`` and ``lr`` (and ``y`` when it is a set's
        learned logits, [batch, classes] float: the soft cross-entropy to ``softmax(y)``, DATM's
        ``SoftCrossEntropy``)."""
        out = functional_call(self.net, unflatten(theta, self.layout), (x,))
        target = torch.softmax(y, dim=1) if y.is_floating_point() else y
        (grad,) = torch.autograd.grad(F.cross_entropy(out, target), theta, create_graph=True)
        return theta - lr * grad


def draw_student_steps(n_images: int, steps: int, batch: int, augment: Augmenter, size: int,
                       device: torch.device | str) -> list[StudentDraw]:
    """Minibatches as the reference takes them (a permutation split into ``batch`` chunks, used
    from the last chunk, a new permutation when they run out) and one augmentation draw each
    (one operation per minibatch, parameters per image)."""
    chunks: list[torch.Tensor] = []
    out = []
    for _ in range(steps):
        if not chunks:
            chunks = list(torch.randperm(n_images, device=device).split(batch))
        idx = chunks.pop()
        out.append(StudentDraw(idx, augment.sample(len(idx), size, device)))
    return out


def _run_steps(student: Student, theta: torch.Tensor, images: torch.Tensor, labels: torch.Tensor,
               lr: torch.Tensor, draws: list[StudentDraw], augment: Augmenter, keep_graph: bool) -> torch.Tensor:
    for d in draws:
        if not keep_graph:  # each step's graph is dropped as soon as the next step starts
            theta = theta.detach().requires_grad_(True)
        x = augment.apply(images[d.idx], d.aug)
        # the step's graph is built even when it is dropped: the differentiable backward rounds
        # differently from a first-order one, and a recomputation must retrace the forward exactly
        theta = student.step(theta, x, labels[d.idx], lr)
    return theta


class _Segment(torch.autograd.Function):
    """Student steps whose graph is not kept: the forward computes the end parameters dropping each
    step's graph as it goes; the backward recomputes the steps with their full graph (from the
    saved start) and back-propagates through them. Memory: one segment's graph at a time.

    (``torch.utils.checkpoint`` does not fit: its recommended non-reentrant variant, asked for the
    inner ``autograd.grad`` of every student step during the forward, recomputes there and kept more
    memory than the plain unroll when measured; the reentrant one refuses ``autograd.grad`` outside.)"""

    @staticmethod
    def forward(ctx: Any, theta: torch.Tensor, images: torch.Tensor, lr: torch.Tensor,  # type: ignore[override]
                labels: torch.Tensor, student: Student, draws: list[StudentDraw], augment: Augmenter) -> torch.Tensor:
        ctx.save_for_backward(theta, images, lr, labels)
        ctx.rest = (student, draws, augment)
        with torch.enable_grad():
            end = _run_steps(student, theta.detach(), images.detach(), labels.detach(), lr.detach(), draws, augment,
                             keep_graph=False)
        return end.detach()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        theta, images, lr, labels = ctx.saved_tensors
        student, draws, augment = ctx.rest
        learned = labels.is_floating_point() and ctx.needs_input_grad[3]  # a set's learned logits (DATM) get one too
        with torch.enable_grad():
            inputs = [t.detach().requires_grad_(True) for t in (theta, images, lr)]
            y = labels.detach().requires_grad_(True) if learned else labels
            end = _run_steps(student, inputs[0], inputs[1], y, inputs[2], draws, augment, keep_graph=True)
            grads = torch.autograd.grad(end, [*inputs, *([y] if learned else [])], grad, allow_unused=True)
        return (*grads[:3], grads[3] if learned else None, None, None, None)


def unroll(student: Student, start: torch.Tensor, images: torch.Tensor, labels: torch.Tensor, lr: torch.Tensor,
           draws: list[StudentDraw], augment: Augmenter, mode: str = "plain", segment: int = 10) -> torch.Tensor:
    """The student's parameters after the steps of ``draws`` from ``start``, differentiable with
    respect to ``images`` and ``lr`` (and ``labels`` when they are learned logits); ``mode =
    "checkpointed"`` recomputes segments of ``segment`` steps in the backward pass instead of
    keeping the whole graph."""
    theta = start.detach().requires_grad_(True)
    if mode == "plain":
        return _run_steps(student, theta, images, labels, lr, draws, augment, keep_graph=True)
    for s in range(0, len(draws), segment):
        theta = _Segment.apply(theta, images, lr, labels, student, draws[s:s + segment], augment)
    return theta


def trajectory_loss(student_end: torch.Tensor, start: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """||student_end - target||^2 / ||start - target||^2 (the reference also divides both by the
    parameter count, which cancels)."""
    return (student_end - target).pow(2).sum() / (start - target).pow(2).sum()


def synthetic_lr(opt: torch.optim.Optimizer) -> torch.Tensor:
    """The learnable step size (the optimizer's second group), set to the value its optimizer state
    holds: after ``--resume`` that is the checkpoint's."""
    lr = opt.param_groups[1]["params"][0]
    saved = opt.state[lr].get(LR_STATE)
    if saved is not None:
        with torch.no_grad():
            lr.copy_(saved)
    return lr


class MTT(MatchingMethod):
    name = "mtt"
    description = "MTT: N student steps from an expert's epoch t match its epoch t+M, learnable step size (trajectories)"
    options_type = MTTOptions
    trains_network = False
    trajectories_option = "trajectories"  # [distill.options] trajectories = "trajectories/NAME"

    def default_iterations(self, ipc: int) -> int:
        return 5000  # the reference's --Iteration

    def trajectory_start_epochs(self, options: Any) -> int | None:
        return int(options.max_start_epoch)

    def distill_defaults(self) -> dict[str, Any]:
        # distill.py: lr_img 1000, DSA color_crop_cutout_flip_scale_rotate; no real batches are drawn
        return {"lr_img": 1000.0, "lr_img_scale": "none", "batch_real": 256, "augment": DEFAULT_STRATEGY}

    def parse_options(self, raw: dict) -> MTTOptions:  # type: ignore[override]
        o = super().parse_options(raw)
        at_least_one(o, ("syn_steps", "expert_epochs", "max_start_epoch", "segment"))
        if o.batch_syn < 0:
            raise UsageError(f"distill.options.batch_syn must be >= 1 (or 0 for the whole set), got {o.batch_syn}")
        if not o.lr_teacher > 0 or o.lr_lr < 0:
            raise UsageError(f"distill.options.lr_teacher must be > 0 and lr_lr >= 0, got {o.lr_teacher}, {o.lr_lr}")
        if o.unroll not in UNROLLS:
            raise UsageError(f"distill.options.unroll must be {' or '.join(UNROLLS)}, got {o.unroll!r}")
        return o

    def opts(self, ctx: DistillContext) -> MTTOptions:
        return ctx.options if isinstance(ctx.options, MTTOptions) else MTTOptions()

    def _trajectories(self, ctx: DistillContext) -> Trajectories:
        if ctx.trajectories is None:
            raise UsageError("mtt needs expert trajectories: set [distill.options] trajectories = \"trajectories/NAME\" "
                             "and make them with 'ddtool pretrain --trajectories --recipe RECIPE'")
        return ctx.trajectories

    def template(self, ctx: DistillContext) -> nn.Module:
        """The student network (its parameter values are never used: every step passes its own)."""
        with torch.random.fork_rng(devices=[]):  # no draw from the run's RNG
            net = ctx.fresh_net()
        return net.train()

    def init_synthetic(self, ctx: DistillContext) -> SyntheticSet:
        """The real-image start (as the base class), after the checks that need the context: every
        one fails here, before the run record exists."""
        self.check_context(ctx)
        return super().init_synthetic(ctx)

    def check_context(self, ctx: DistillContext) -> None:
        """What the run's trajectories, selection, schedule and network must be for trajectory matching."""
        o, traj = self.opts(ctx), self._trajectories(ctx)
        last = o.max_start_epoch - 1 + o.expert_epochs
        if last > traj.epochs:
            raise UsageError(
                f"distill.options.max_start_epoch {o.max_start_epoch} with expert_epochs {o.expert_epochs} needs "
                f"expert epoch {last}, but the trajectories end at epoch {traj.epochs}; lower them or train "
                f"longer experts ('ddtool pretrain --trajectories --epochs {last}')")
        if not ctx.selection.draws_trajectories or ctx.schedule.perturbs:
            raise UsageError("mtt starts its student from the experts' parameters: set distill.selection = \"scratch\" "
                             "(or \"dynadistill\", which draws experts by feedback) and distill.schedule = \"none\" "
                             f"(got {ctx.selection.name}, {ctx.schedule.name})")
        net = self.template(ctx)
        check_parameters_only(net, "mtt")
        if param_layout(net) != traj.layout:
            raise UsageError("the trajectories' parameters do not fit the recipe's [net]; make them with the same [net]")

    def make_optimizer(self, ctx: DistillContext, syn: SyntheticSet) -> torch.optim.Optimizer:
        """SGD on the images (``lr_img``) and on the learnable step size (``lr_lr``), both with
        momentum ``distill.momentum_img`` (the reference: two SGDs, momentum 0.5 each)."""
        o = self.opts(ctx)
        lr = torch.tensor(o.lr_teacher, device=syn.images.device, requires_grad=True)
        opt = torch.optim.SGD([{"params": [syn.images], "lr": ctx.cfg.lr_img}, {"params": [lr], "lr": o.lr_lr}],
                              momentum=ctx.cfg.momentum_img)
        opt.state[lr][LR_STATE] = lr.detach().clone()
        return opt

    def match(self, ctx: DistillContext, syn: SyntheticSet, lr: torch.Tensor, start: torch.Tensor,
              target: torch.Tensor, student: Student | None = None, keep_graph: bool = True) -> torch.Tensor:
        """The trajectory-matching loss of ``syn`` from expert parameters ``start`` to ``target``
        (both flat, on the device), differentiable with respect to the images and ``lr``; with
        ``keep_graph = False`` a value only (each student step's graph dropped as the next starts:
        the same draws and arithmetic, the memory of one step)."""
        o = self.opts(ctx)
        student = student or Student(self.template(ctx), self._trajectories(ctx).layout)
        n = syn.images.shape[0]
        batch = o.batch_syn if 0 < o.batch_syn < n else n
        draws = draw_student_steps(n, o.syn_steps, batch, ctx.augment, ctx.data.resolution, ctx.device)
        labels = self.student_labels(syn)
        if keep_graph:
            end = unroll(student, start, syn.images, labels, lr, draws, ctx.augment, o.unroll, o.segment)
        else:
            end = _run_steps(student, start.detach().requires_grad_(True), syn.images, labels, lr, draws,
                             ctx.augment, keep_graph=False)
        return trajectory_loss(end, start, target)

    def student_labels(self, syn: SyntheticSet) -> torch.Tensor:
        """What the student trains on: the classes (DATM: the set's learned logits)."""
        return syn.labels

    def endpoints(self, ctx: DistillContext, seg: Segment) -> tuple[torch.Tensor, torch.Tensor]:
        """The expert's flat parameters at the segment's start epoch and ``expert_epochs`` later, on the device."""
        snaps = self._trajectories(ctx).snapshots(seg.expert)
        return snaps[seg.start].to(ctx.device), snaps[seg.start + self.opts(ctx).expert_epochs].to(ctx.device)

    def segment_loss(self, ctx: DistillContext, syn: SyntheticSet, lr: torch.Tensor, seg: Segment) -> float:
        """The matching loss of ``syn`` on one segment, as a score (DynaDistill ranks segments with it):
        the draws and arithmetic of the step's unroll, without a graph to the images or the step
        size, so the step replaying the chosen segment from the same RNG state takes this loss."""
        start, target = self.endpoints(ctx, seg)
        frozen = type(syn)(syn.images.detach(), syn.labels, syn.ipc, syn.factor, syn.info,
                           soft_labels=None if syn.soft_labels is None else syn.soft_labels.detach())
        return float(self.match(ctx, frozen, lr.detach(), start, target, keep_graph=False).detach())

    def replays_score(self, ctx: DistillContext, net: nn.Module | None) -> bool:
        return True  # the step's match draws as segment_loss did

    def select_segment(self, ctx: DistillContext, it: int, score: Callable[[Segment], float]) -> Segment:
        """The expert and start epoch of outer iteration ``it``: the selection strategy's, from
        start epochs 0 .. ``max_start_epoch`` - 1 (DATM: a window that grows with ``it``)."""
        return ctx.selection.select_segment(ctx, it, self.opts(ctx).max_start_epoch, score)

    def takes_step(self, ctx: DistillContext, loss: float) -> bool:
        """Whether an iteration with this loss updates the set (always; DATM: not above its threshold)."""
        return True

    def step(self, ctx: DistillContext, syn: SyntheticSet, opt: torch.optim.Optimizer, it: int) -> float:
        lr = synthetic_lr(opt)
        seg = self.select_segment(ctx, it, lambda s: self.segment_loss(ctx, syn, lr, s))
        start, target = self.endpoints(ctx, seg)
        loss = self.match(ctx, syn, lr, start, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.takes_step(ctx, float(loss.detach())):
            opt.step()
        opt.state[lr][LR_STATE] = lr.detach().clone()
        return float(loss.detach())
