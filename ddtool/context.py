"""What a matching method sees during distillation: data, settings, models, augmentation."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from ddtool.augment import Augmenter
from ddtool.data import ImageData
from ddtool.nets import NetSpec
from ddtool.pool import Pool
from ddtool.recipe import DistillSection
from ddtool.trajectories import Trajectories

if TYPE_CHECKING:
    from ddtool.synthetic import SyntheticSet

# The context sits below the contracts that take it (a method's loss(ctx, ...), a strategy's
# select(ctx, it)): it imports none of them, not even for typing, so the fields holding plugin
# objects are typed Any and name their contract in a comment; the runtime's plan resolved them.


@dataclass(slots=True)
class DistillContext:
    """What a matching method sees during a run. Every field is declared here (slots: setting any
    other attribute fails). A run builds it once from its plan and the data
    (:func:`ddtool.runtime.distill.planning.context_of`); tests and benchmarks build one with
    :func:`ddtool.runtime.distill.planning.build_context`, which sees hand-built plugin objects through their
    contracts (``ddtool.plugins.CONTRACTS``).

    The runtime changes only ``compile`` (when ``"auto"`` decides), ``synthetic`` and ``optimizer``
    (once the method made them from this context); strategies set ``perturbation``."""

    data: ImageData
    cfg: DistillSection
    net_spec: NetSpec
    device: torch.device
    iterations: int
    selection: Any  # a ddtool.selection.base.SelectionStrategy
    schedule: Any  # a ddtool.perturb.PerturbationSchedule
    # (spec, channels, classes, resolution) -> a fresh network of the architecture the spec names:
    # the registry look-up (ddtool.lookup.build_net), passed in by the plan
    net_builder: Callable[[NetSpec, int, int, int], nn.Module]
    pool: Pool | None = None
    options: Any = None  # the method's parse_options() of [distill.options]
    impl: str = "vectorized"  # vectorized | loop (ddtool.impl)
    # torch.compile the first-order forwards now (distill.compile = true, or "auto" once the run's
    # loop has found compiling pays: ddtool.runtime.autocompile)
    compile: bool = False
    augment: Augmenter = field(default_factory=Augmenter)
    method: Any = None  # the run's ddtool.methods.base.MatchingMethod
    # expert trajectories (mtt), resolved from [distill.options] trajectories when the run is planned;
    # experts are read from the store when sampled (Trajectories.snapshots)
    trajectories: Trajectories | None = None
    # this process's share of the classes (a ddtool.methods.sharding.ClassShard, from the plan);
    # None: one process's, made when first asked for (ddtool.methods.sharding.shard_of)
    shard: Any = None
    # called by a method after each of its inner steps (IDC's inner loops): the runtime's progress
    on_inner_step: Callable[[], None] | None = field(default=None, repr=False)
    synthetic: SyntheticSet | None = None  # the set being distilled (set by the runtime; DynaDistill ranks models on it)
    # the set's optimizer (set by the runtime with ``synthetic``): a method's ``score`` reads where its
    # next update will evaluate the images (IDC's per-class steps move them by momentum first)
    optimizer: torch.optim.Optimizer | None = None
    # what the schedule added to the selected network in the latest next_model (state_dict keys),
    # kept only for strategies that write trained networks back (``keeps_trained = True``)
    perturbation: dict[str, torch.Tensor] | None = None
    # what the run's method keeps across iterations besides the images and their optimizer (NCFM's
    # sampling network and its optimizer), made when the run starts (the method's init_synthetic or
    # make_optimizer) and checkpointed through MatchingMethod.state / load_state: per run, never on
    # the method object, which the registry shares between runs
    method_state: dict[str, Any] = field(default_factory=dict)
    # the training split on the device, made once (per-step batches are then gathers, not host copies)
    _train: torch.Tensor | None = field(default=None, init=False, repr=False)
    _labels: torch.Tensor | None = field(default=None, init=False, repr=False)
    _by_class: list[torch.Tensor] = field(default_factory=list, init=False, repr=False)
    _template: nn.Module | None = field(default=None, init=False, repr=False)

    def inner_step_done(self) -> None:
        """Tell the runtime one inner step of the outer iteration is done (progress and ETA)."""
        if self.on_inner_step is not None:
            self.on_inner_step()

    def __post_init__(self) -> None:
        # uint8 on the device once: per-step batches are then gathers, not host copies
        self._train = self.data.train_images.to(self.device)
        self._by_class = [i.to(self.device) for i in (self.data.class_indices(c) for c in range(self.num_classes))]
        self._labels = self.data.train_labels.to(self.device)
        if self.pool is not None:
            self.pool = self.pool.to(self.device)  # pool models are loaded every outer loop: no host copies then

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    def real_class(self, c: int, n: int) -> torch.Tensor:
        """Up to n normalised real images of class c, on the device."""
        idx = self._by_class[c]
        # drawn on the device: no host->device copy per class and step (on CPU the same draws as before)
        pick = torch.randperm(len(idx), device=self.device)[:n]
        return self.data.normalize(self._train[idx[pick]])  # type: ignore[index]

    def real_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Up to n real images of every class, concatenated class by class, with labels."""
        xs = [self.real_class(c, n) for c in range(self.num_classes)]
        ys = [torch.full((len(x),), c, dtype=torch.long, device=self.device) for c, x in enumerate(xs)]
        return torch.cat(xs), torch.cat(ys)

    def real_random(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n real images drawn uniformly from the whole training set (IDC's network updates), with labels."""
        pick = torch.randperm(len(self._labels), device=self.device)[:n]
        return self.data.normalize(self._train[pick]), self._labels[pick]  # type: ignore[index]

    def fresh_net(self) -> nn.Module:
        d = self.data
        return self.net_builder(self.net_spec, d.channels, d.num_classes, d.resolution).to(self.device)

    def net_from_state(self, state: dict[str, torch.Tensor]) -> nn.Module:
        """A network of the run's architecture holding ``state`` (a pool model, an average...).

        A copy of a template built once, so no random initialisation is computed only to be
        overwritten; the template is built without touching the global RNG, so runs (and resumed
        runs) draw the same random numbers whenever it is first needed.
        """
        if self._template is None:
            with torch.random.fork_rng(devices=[]):
                self._template = self.fresh_net()
        net = copy.deepcopy(self._template)
        net.load_state_dict(state)
        return net

    def perturb(self, net: nn.Module, it: int, keep: bool = False) -> dict[str, torch.Tensor] | None:
        """Apply the perturbation schedule to ``net`` (in place) for outer loop ``it``; with ``keep``,
        return what it added (by ``state_dict`` key; None when the schedule is ``none``)."""
        if not self.schedule.perturbs:
            return None
        before = {k: v.detach().clone() for k, v in net.state_dict().items()} if keep else None
        self.schedule.perturb(net, it, self.iterations, self.cfg)
        if before is None:
            return None
        return {k: v.detach() - before[k] for k, v in net.state_dict().items()}

    def next_model(self, it: int) -> nn.Module:
        """The network of outer loop ``it``: chosen by the selection strategy, then perturbed (a
        strategy with ``perturbs_candidates`` perturbs its candidates itself, before scoring them)."""
        net = self.selection.select(self, it)
        if not self.selection.perturbs_candidates:
            keep = self.selection.keeps_trained
            delta = self.perturb(net, it, keep=keep)
            if keep:
                self.perturbation = delta
        return net
