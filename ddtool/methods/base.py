"""The contract of a matching method (built-in or plugin); re-exported as ``ddtool.api.MatchingMethod``.

The runtime owns the loop, progress, checkpoints and the artifact; a method owns one outer
iteration. Subclass :class:`MatchingMethod` and override what differs::

    class MyMethod(MatchingMethod):
        name = "mine"
        def loss(self, ctx, syn, net):
            ...                   # from ctx.real_batch(...), syn.decoded(), net
            return loss           # the default step selects, perturbs and steps the images
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ddtool.errors import DDToolError, UsageError
from ddtool.recipe import parse_section
from ddtool.synthetic import SyntheticSet, init_synthetic

def check_factor(factor: int, resolution: int) -> None:
    """Refuse a multi-formation factor below 1 or one that does not divide the image size."""
    if factor < 1:
        raise UsageError(f"distill.options.factor must be >= 1, got {factor}")
    if resolution % factor:
        raise UsageError(
            f"distill.options.factor={factor} does not divide the image size {resolution}; "
            f"pick a factor that does (e.g. 2 for 32x32, 3 for 224x224 is not exact: use 2 or 4)"
        )


def at_least_one(options: Any, keys: tuple[str, ...]) -> None:
    """Refuse, in one line, the first of ``keys`` whose value in the parsed options is below 1."""
    for key in keys:
        if getattr(options, key) < 1:
            raise UsageError(f"distill.options.{key} must be >= 1, got {getattr(options, key)}")


if TYPE_CHECKING:  # the context holds the contracts (ddtool.context imports this module)
    from ddtool.context import DistillContext


class MatchingMethod:
    """What the runtime calls of a method. Every member has a default except ``name`` and ``loss``
    (or ``step``, which by default takes one SGD step on the images down ``loss``)."""

    name: str = ""  # the registry name: [distill] method = "NAME", --method NAME
    description: str = ""  # one line for 'ddtool plugins'
    iterative: bool = True  # False: the initial set is the result (coresets)
    factor: int = 1  # multi-formation factor of the stored images (see factor_for)
    options_type: type | None = None  # dataclass for [distill.options]; None: the method takes none

    # What the runtime needs to know about a method: declared here, with a default, and read as
    # attributes (never guessed from the method's name or its options' fields).

    # True when ``step`` trains the outer loop's network (DC/DSA/IDC); False when the network is
    # only used as it was selected and perturbed (DM). DynaDistill writes a network back into its
    # pool only when it was trained, so perturbations alone do not accumulate in the pool.
    trains_network: bool = False
    # True when the loss of a class needs only that class's images (per-sample norms): a run
    # launched on N processes (torchrun, --nproc) splits the classes across them
    # (ddtool.methods.sharding). False: the method runs in one process, and a multi-process
    # launch is refused before any work.
    class_sharded: bool = False
    # False for a method that matches without a network (in pixel space): the default ``step``
    # then asks no network of the selection strategy and the schedule (no ``ctx.next_model``) and
    # calls ``loss(ctx, syn, None)``.
    uses_network: bool = True
    # The ``[distill.options]`` key that names the expert trajectories the method matches (mtt:
    # "trajectories"), or None for a method that matches none. The plan loads the trajectories it
    # names (``ctx.trajectories``), and refuses a run that names none.
    trajectories_option: str | None = None

    def default_iterations(self, ipc: int) -> int:
        """Outer iterations when the recipe leaves ``distill.iterations = 0``."""
        return 1000

    def trajectory_start_epochs(self, options: Any) -> int | None:
        """How many start epochs of an expert a trajectory method draws from (mtt's
        ``max_start_epoch``), for the plan's note on a strategy's draw; None: it draws none."""
        return None

    def progress_steps(self, options: Any) -> int:
        """Progress ticks per outer iteration: a method with inner steps (IDC's inner loops) returns
        their count and calls ``ctx.inner_step_done()`` after each, so a long run's ETA shows early."""
        return 1

    def distill_defaults(self) -> dict[str, Any]:
        """The ``[distill]`` values this method runs with where a recipe leaves them unset
        (``lr_img = 0``, ``batch_real = 0``, ``augment = ""``, ``lr_img_scale = ""``). The default
        is DM's (seed 004): pixel lr 1, 256 real images per class, every DSA operation."""
        return {"lr_img": 1.0, "lr_img_scale": "none", "batch_real": 256,
                "augment": "color_crop_cutout_flip_scale_rotate"}

    def factor_for(self, options: Any, resolution: int | None = None) -> int:
        """The multi-formation factor a run with these parsed options makes: ``factor``, unless the
        options have a ``factor`` setting (IDC's, NCFM's; its default when ``options`` are not this
        method's), which is checked against the image size ``resolution`` when given. The runtime
        checks the data has ``ipc * factor**2`` images per class."""
        if self.options_type is None or not hasattr(self.options_type, "factor"):
            return self.factor
        factor = options.factor if isinstance(options, self.options_type) else self.options_type.factor
        if resolution is not None:
            check_factor(factor, resolution)
        return factor

    def init_synthetic(self, ctx: DistillContext) -> SyntheticSet:
        """The starting set: real images of each class (``distill.init = "real"``) or noise.

        A method that learns the set's labels too (DATM) returns a set with label vectors
        (``soft_labels``, a leaf tensor that requires grad, and ``info.label_kind``) and puts them
        in :meth:`make_optimizer`'s optimizer: the run checkpoints their values with the images,
        the optimizer's state with its state, and stores them with the set."""
        return init_synthetic(ctx.data, ctx.cfg.ipc, ctx.cfg.init, self.factor, ctx.device)

    def make_optimizer(self, ctx: DistillContext, syn: SyntheticSet) -> torch.optim.Optimizer:
        """The optimizer of the synthetic images (SGD with ``lr_img`` and ``momentum_img``); one
        that learns labels adds them as a parameter group of their own (their lr and momentum)."""
        return torch.optim.SGD([syn.images], lr=ctx.cfg.lr_img, momentum=ctx.cfg.momentum_img)

    def loss(self, ctx: DistillContext, syn: SyntheticSet, net: torch.nn.Module) -> torch.Tensor:
        """The matching loss of ``syn`` under ``net`` (DynaDistill ranks models with it)."""
        raise NotImplementedError(f"method '{self.name}' has no matching loss")

    def score(self, ctx: DistillContext, syn: SyntheticSet, net: torch.nn.Module) -> float:
        """DynaDistill's ``L_i`` of a candidate network (seed 003 Algorithm 1 line 9): the loss the
        first update of this outer loop takes under ``net``, as a number, with no graph to the images.

        It must draw the random numbers that update draws, in the same order, and evaluate at the
        images that update sees: the strategy then puts the RNG back to the chosen candidate's
        state, so the update descends exactly the loss that was sampled (line 12). The default is
        :meth:`loss` of the detached images, which is that for the default :meth:`step`."""
        frozen = type(syn)(syn.images.detach(), syn.labels, syn.ipc, syn.factor)
        return float(self.loss(ctx, frozen, net).detach())

    def replays_score(self, ctx: DistillContext, net: torch.nn.Module) -> bool:
        """Whether :meth:`step`, given ``net`` with the RNG where :meth:`score` of it started, takes its
        first update down exactly that score (the same draws, images and network). The default
        step does; a method that overrides ``step`` says so itself (default then: False, and a
        strategy leaves the RNG where scoring left it, so the update draws afresh)."""
        own = type(getattr(self, "_wrapped", self))  # a plugin object seen through the contract: its own class
        return getattr(own, "step", MatchingMethod.step) is MatchingMethod.step

    def step(self, ctx: DistillContext, syn: SyntheticSet, opt: torch.optim.Optimizer, it: int) -> float:
        """One outer iteration: the network of the loop (``ctx.next_model``; none when the method
        declares ``uses_network = False``), one step of ``opt`` down ``loss``, then the selection
        strategy's ``after_step`` of that network. Returns the loss."""
        net = ctx.next_model(it) if self.uses_network else None
        loss = self.loss(ctx, syn, net)  # type: ignore[arg-type]  # None: a method without a network
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if net is not None:
            ctx.selection.after_step(ctx, it, net)
        return float(loss.detach())

    def state(self, ctx: DistillContext) -> dict[str, torch.Tensor]:
        """Tensors of the run that the method keeps besides the images and their optimizer (which the
        runtime checkpoints itself), so that ``ddtool distill --resume`` continues identically: NCFM's
        sampling network. Checkpoints store them as ``method.<key>``; the runtime takes them between
        two iterations. Keep such state per run in ``ctx.method_state`` (made in ``init_synthetic`` or
        ``make_optimizer``, which run before a resume restores), not on ``self``: the registry's
        method object is shared by every run of the process. Default: nothing."""
        return {}

    def load_state(self, ctx: DistillContext, tensors: dict[str, torch.Tensor]) -> None:
        """Put back what :meth:`state` returned (``--resume``), after ``init_synthetic`` and
        ``make_optimizer`` of the resumed run and before the RNG is restored. A method whose
        ``state`` returns tensors must override this; the default accepts only nothing."""
        if tensors:
            raise DDToolError(
                f"method '{self.name}' saved state in the checkpoint but cannot load it "
                "(it does not implement load_state); this run cannot be resumed exactly"
            )

    def parse_options(self, raw: dict[str, Any]) -> Any:
        """``[distill.options]`` (less the selection strategy's sub-table) as ``options_type``;
        what it returns is ``ctx.options``."""
        if self.options_type is None:
            if raw:
                raise UsageError(f"method '{self.name}' takes no [distill.options] (got {sorted(raw)})")
            return None
        return parse_section("distill.options", self.options_type, raw)


def can_score(method: Any) -> bool:
    """Whether ``method`` can score a candidate network (its own ``score`` or ``loss``): the contract
    lets a method implement ``step`` alone, and then a strategy that ranks networks by their loss
    (DynaDistill) has nothing to rank with. ``method`` may be a plugin object seen through the
    contract (``ddtool.registry.adapt``): its own class is what counts."""
    own = type(getattr(method, "_wrapped", method))
    return any(getattr(own, name, None) not in (None, getattr(MatchingMethod, name)) for name in ("score", "loss"))


def class_means(emb: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The mean row of ``emb`` [N, D] per class of ``labels`` [N]: [num_classes, D] (zeros for a
    class without rows); one index_add instead of a Python loop over classes. A helper of the
    public API (``ddtool.api.class_means``): DM, DREAM and plugins match such means."""
    sums = torch.zeros(num_classes, emb.shape[1], device=emb.device, dtype=emb.dtype).index_add_(0, labels, emb)
    counts = torch.bincount(labels, minlength=num_classes).clamp_min(1).to(emb.dtype)
    return sums / counts[:, None]


def per_sample_forward(net: nn.Module) -> bool:
    """Whether the network's output for a sample is independent of the rest of its batch.

    False with a BatchNorm module in training mode: it normalises with batch statistics (and
    updates running buffers), so one forward over all classes differs from a forward per class,
    and ``torch.func.vmap`` cannot batch the buffer update. Instance/group norm and BatchNorm in
    eval mode (running statistics) are per sample.
    """
    return not any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in net.modules())
