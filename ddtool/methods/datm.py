"""DATM: Towards Lossless Dataset Distillation via Difficulty-Aligned Trajectory Matching (Guo et
al., ICLR 2024; code NUS-HPC-AI-Lab/DATM, ``distill/DATM.py``).

MTT's loss (:mod:`ddtool.methods.mtt`) with three changes, each as the reference does it:

* **Difficulty alignment** (the paper's §4.2, "sequential generation"): the start epoch of outer
  iteration ``it`` is drawn from ``min_start_epoch`` .. ``upper(it) - 1`` with
  ``upper(it) = min(current_max_start_epoch + int((max_start_epoch - current_max_start_epoch) *
  it / expansion_end_epoch), max_start_epoch)``: the early, easy part of the experts' training
  first, later parts as the set grows (``sequential_generation = false``: ``max_start_epoch``
  from the start). The window is handed to the selection strategy, so DynaDistill draws its
  candidates inside it.
* **Learned soft labels**: the set carries logits per image (``SyntheticSet.soft_labels``,
  ``label_kind = "logits"``), initialised to the average logits, over the experts' final
  parameters (``Label_Model_Timestamp = -1``) that classify the image correctly, of the experts;
  the student trains on them with the soft cross-entropy ``mean_b sum_c -log_softmax(out) *
  softmax(y)`` (``SoftCrossEntropy``) and SGD (``lr_y``, ``momentum_y``) moves them with the images.
* **Correct-only initialisation** (``pix_init = "samples_predicted_correctly"``): each class's
  images are real images that an expert's final parameters classify correctly (the reference
  scans a random permutation of the class with expert 0, then the next expert if too few).
  ``init = "real"``: random real images, labels from expert 0's final logits.

An iteration whose loss exceeds ``threshold`` takes no step (the reference computes the loss and
skips all three optimizers). Defaults: the reference's ``configs/CIFAR-10/ConvIN/IPC10.yaml``
(syn_steps 80, expert_epochs 2, lr_img 100, lr_teacher 0.01, lr_lr 1e-5, lr_y 2, Momentum_y 0.9,
threshold 1, current_max_start_epoch 10, max_start_epoch 20, expansion_end_epoch 1000, batch_syn
100 = the whole set at ipc 10, 10000 iterations) and ``utils/cfg.py`` (min_start_epoch 0,
Sequential_Generation True, image and step-size momentum 0.5).

Differences from the reference: experts are drawn uniformly at every iteration (as ddtool's MTT);
labels of an image no expert classifies correctly fall back to the average over all experts (the
reference divides by zero there); the evaluation trains at T = 1 on ``softmax`` of the learned
logits (``eval.labels = "auto"``), as the reference's ``evaluate_synset`` with ``SoftCrossEntropy``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.func import functional_call

from ddtool.context import DistillContext
from ddtool.errors import DDToolError, UsageError
from ddtool.methods.mtt import MTT, MTTOptions
from ddtool.selection.base import Segment
from ddtool.synthetic import SyntheticSet
from ddtool.trajectories import unflatten

INITS = ("correct", "real")


@dataclass
class DATMOptions(MTTOptions):
    """``[distill.options]`` of datm: MTT's, with the reference's CIFAR-10 ipc 10 values, plus its own."""

    syn_steps: int = 80
    expert_epochs: int = 2
    max_start_epoch: int = 20
    min_start_epoch: int = 0
    current_max_start_epoch: int = 10  # the window's upper end at iteration 0
    expansion_end_epoch: int = 1000  # the iteration where it reaches max_start_epoch
    sequential_generation: bool = True
    lr_y: float = 2.0  # SGD on the learned labels
    momentum_y: float = 0.9
    threshold: float = 1.0  # an iteration whose loss is above takes no step
    pix_init: str = "correct"  # correct: real images an expert classifies correctly | real: any real images


def start_window(o: DATMOptions, it: int) -> tuple[int, int]:
    """(first, one past the last) start epoch of outer iteration ``it``: the reference's Upper_Bound."""
    if not o.sequential_generation:
        return o.min_start_epoch, o.max_start_epoch
    upper = o.current_max_start_epoch + int((o.max_start_epoch - o.current_max_start_epoch) * it / o.expansion_end_epoch)
    return o.min_start_epoch, min(upper, o.max_start_epoch)


class DATM(MTT):
    name = "datm"
    description = ("DATM: MTT with a start-epoch window that grows with the iterations, learned soft labels "
                   "and correct-only initialisation (trajectories)")
    options_type = DATMOptions

    def default_iterations(self, ipc: int) -> int:
        return 10000  # configs/CIFAR-10/ConvIN/IPC*.yaml: Iteration

    def distill_defaults(self) -> dict[str, Any]:
        return {**super().distill_defaults(), "lr_img": 100.0}  # IPC1/IPC10.yaml: lr_img 100

    def parse_options(self, raw: dict) -> DATMOptions:  # type: ignore[override]
        o = super().parse_options(raw)
        assert isinstance(o, DATMOptions)
        if not 0 <= o.min_start_epoch < min(o.current_max_start_epoch, o.max_start_epoch):
            raise UsageError("distill.options.min_start_epoch must be >= 0 and below current_max_start_epoch and "
                             f"max_start_epoch, got {o.min_start_epoch}, {o.current_max_start_epoch}, {o.max_start_epoch}")
        if o.expansion_end_epoch < 1:
            raise UsageError(f"distill.options.expansion_end_epoch must be >= 1, got {o.expansion_end_epoch}")
        if not o.lr_y >= 0 or not 0 <= o.momentum_y < 1 or not o.threshold > 0:
            raise UsageError(f"distill.options.lr_y must be >= 0, momentum_y in [0, 1) and threshold > 0, got "
                             f"{o.lr_y}, {o.momentum_y}, {o.threshold}")
        if o.pix_init not in INITS:
            raise UsageError(f"distill.options.pix_init must be {' or '.join(INITS)}, got {o.pix_init!r}")
        return o

    def opts(self, ctx: DistillContext) -> DATMOptions:
        return ctx.options if isinstance(ctx.options, DATMOptions) else DATMOptions()

    def final_logits(self, ctx: DistillContext, expert: int, images: torch.Tensor) -> torch.Tensor:
        """Expert ``expert``'s logits at its last epoch on ``images`` (normalised, on the device)."""
        traj = self._trajectories(ctx)
        theta = traj.snapshots(expert)[-1].to(ctx.device)
        net = self.template(ctx).eval()
        with torch.no_grad():
            return torch.cat([functional_call(net, unflatten(theta, traj.layout), (images[s:s + 256],))
                              for s in range(0, len(images), 256)])

    def init_synthetic(self, ctx: DistillContext) -> SyntheticSet:
        self.check_context(ctx)
        o, data = self.opts(ctx), ctx.data
        if o.pix_init == "real":
            syn = super(MTT, self).init_synthetic(ctx)  # the base class's random real images
        else:
            syn = SyntheticSet(self._correct_images(ctx), torch.arange(data.num_classes, device=ctx.device)
                               .repeat_interleave(ctx.cfg.ipc), ctx.cfg.ipc, 1)
        return dataclasses.replace(syn, info=dataclasses.replace(syn.info, label_kind="logits"),
                                   soft_labels=self._initial_labels(ctx, syn.images, syn.labels).requires_grad_(True))

    def _correct_images(self, ctx: DistillContext) -> torch.Tensor:
        """ipc real images per class that an expert's final parameters classify correctly: a random
        permutation of the class scanned with expert 0, then expert 1, ... while too few are found."""
        data, ipc, experts = ctx.data, ctx.cfg.ipc, len(self._trajectories(ctx))
        out = []
        for c in range(data.num_classes):
            idx = data.class_indices(c)
            idx = idx[torch.randperm(len(idx))]
            images = data.normalize(data.train_images[idx]).to(ctx.device)
            chosen: list[int] = []
            for e in range(experts):
                right = (self.final_logits(ctx, e, images).argmax(1) == c).nonzero().flatten().tolist()
                chosen += [i for i in right if i not in chosen][: ipc - len(chosen)]
                if len(chosen) == ipc:
                    break
            if len(chosen) < ipc:
                raise DDToolError(f"only {len(chosen)} training images of class '{data.classes[c]}' are classified "
                                  f"correctly by any expert, fewer than ipc {ipc}; use distill.options.pix_init = "
                                  "\"real\" or better-trained experts")
            out.append(images[sorted(chosen)])
        return torch.cat(out)

    def _initial_labels(self, ctx: DistillContext, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per image, the average final logits of the experts that classify it correctly (all the
        experts where none does); with ``pix_init = "real"`` expert 0's logits, as the reference."""
        if self.opts(ctx).pix_init == "real":
            return self.final_logits(ctx, 0, images.detach())
        logits = torch.stack([self.final_logits(ctx, e, images.detach()) for e in range(len(self._trajectories(ctx)))])
        right = (logits.argmax(2) == labels.view(1, -1)).unsqueeze(2).float()  # [experts, N, 1]
        count = right.sum(0)
        mean_right = (logits * right).sum(0) / count.clamp(min=1)
        return torch.where(count > 0, mean_right, logits.mean(0)).detach().clone()

    def make_optimizer(self, ctx: DistillContext, syn: SyntheticSet) -> torch.optim.Optimizer:
        """MTT's two groups (images, step size: momentum ``distill.momentum_img``) and the labels'
        (``lr_y``, ``momentum_y``): the reference's three SGDs."""
        opt = super().make_optimizer(ctx, syn)
        o = self.opts(ctx)
        if syn.soft_labels is None:
            raise DDToolError("datm's set carries no label vectors")  # init_synthetic gives them
        opt.add_param_group({"params": [syn.soft_labels], "lr": o.lr_y, "momentum": o.momentum_y})
        return opt

    def student_labels(self, syn: SyntheticSet) -> torch.Tensor:
        assert syn.soft_labels is not None
        return syn.soft_labels

    def select_segment(self, ctx: DistillContext, it: int, score: Callable[[Segment], float]) -> Segment:
        """The strategy's choice inside iteration ``it``'s window (:func:`start_window`): it draws
        from 0 .. upper - first - 1, shifted by ``first``, and scores the shifted segments."""
        first, upper = start_window(self.opts(ctx), it)

        def shifted(seg: Segment) -> Segment:
            return Segment(seg.expert, seg.start + first)

        return shifted(ctx.selection.select_segment(ctx, it, upper - first, lambda s: score(shifted(s))))

    def takes_step(self, ctx: DistillContext, loss: float) -> bool:
        return loss <= self.opts(ctx).threshold  # the reference: no step above the threshold
