"""What a recipe resolves to before any work starts: its plugins, pool, expert trajectories,
iterations, impl and class shard (:func:`plan`, an immutable :class:`Plan`, also what ``ddtool
distill --dry-run`` prints), and the context a matching method then sees, built from the plan
and the data once (:func:`context_of`; :func:`build_context` for tests and benchmarks)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch

from ddtool.augment import Augmenter
from ddtool.context import DistillContext
from ddtool.data import ImageData
from ddtool.errors import UsageError
from ddtool.impl import resolve_impl
from ddtool.methods.base import MatchingMethod, can_score
from ddtool.lookup import build_net
from ddtool.methods.sharding import ClassShard
from ddtool.nets import NetSpec
from ddtool.perturb import PerturbationSchedule
from ddtool.plugins import CONTRACTS, registries
from ddtool.pool import Pool, newest_compatible
from ddtool.recipe import DistillSection, Recipe, resolve_method_defaults
from ddtool.registry import adapt
from ddtool.runtime.distributed import process_group as distributed
from ddtool.selection.base import SelectionStrategy
from ddtool.store import Artifact, Store
from ddtool.trajectories import Trajectories, load_trajectories


def net_spec_of(recipe: Recipe) -> NetSpec:
    """The network a recipe's ``[net]`` names."""
    n = recipe.net
    options = {"width": n.width, "norm": n.norm}
    if n.depth:
        options["depth"] = n.depth
    return NetSpec(n.name, options)


def check_registered(recipe: Recipe, *, distill: bool = False) -> None:
    """Refuse a name the recipe looks up in the registries that nothing registers (a typo, an
    uninstalled plugin's): its ``[net]`` and, with ``distill``, its method, selection strategy and
    perturbation schedule. A lookup only: cheap enough to come before the data is loaded (a
    download), and so before any run record."""
    regs = registries()
    regs.architecture.get(recipe.net.name)
    if distill:
        regs.method.get(recipe.distill.method)
        regs.selection.get(recipe.distill.selection)
        regs.schedule.get(recipe.distill.schedule)


@dataclass(frozen=True)
class Plan:
    """Everything a recipe resolves to before any work starts (also what --dry-run prints): what a
    run's context is built from, and what its record and artifact say. Frozen: nothing later in
    the run re-resolves or rebinds it."""

    # the recipe with the method's defaults filled in and the trajectories pinned to a version (what
    # the run records and hashes); its ``origins`` say where each value came from
    recipe: Recipe
    net_spec: NetSpec  # the recipe's [net]
    method: MatchingMethod
    selection: SelectionStrategy  # the run's own copy (a strategy may hold state)
    schedule: PerturbationSchedule
    options: Any  # the method's parse of [distill.options]
    iterations: int
    checkpoint_every: int
    checkpoint_seconds: float  # 0: none by seconds
    impl: str  # the recipe's distill.impl resolved for the device
    device: torch.device
    shard: ClassShard  # this process's share of the classes (one process: all of them)
    pool: Pool | None = None
    pool_artifact: Artifact | None = None
    pool_from: str = ""  # where the pool in use came from, when not the recipe's [distill] pool
    # expert trajectories, for a method that declares the option naming them (mtt: [distill.options] trajectories)
    trajectories: Trajectories | None = None
    trajectories_artifact: Artifact | None = None
    notes: tuple[str, ...] = ()  # choices the user should hear about (a pool picked)

    @property
    def cfg(self) -> DistillSection:
        """The resolved ``[distill]`` section (``distill.compile`` is the compile decision's input)."""
        return self.recipe.distill

    def describe(self) -> dict[str, Any]:
        out = {
            "method": self.method.name, "selection": self.selection.name, "schedule": self.schedule.name,
            "pool": self.pool_artifact.ref if self.pool_artifact else None,
            "iterations": self.iterations, "checkpoint_every": self.checkpoint_every,
            "checkpoint_seconds": self.checkpoint_seconds, "impl": self.impl,
        }
        if self.trajectories_artifact is not None:
            out["trajectories"] = self.trajectories_artifact.ref
        return out

    def inputs(self) -> list[tuple[Artifact, str]]:
        """The stored artifacts the run reads, with their role: its run record's inputs and the
        synthetic set's parents."""
        pairs = [(self.pool_artifact, "pool"), (self.trajectories_artifact, "trajectories")]
        return [(art, role) for art, role in pairs if art is not None]

    def settings(self) -> dict[str, dict[str, Any]]:
        """Every resolved ``[distill]`` value and where it came from (``--dry-run``)."""
        origins = self.recipe.origins
        out = {}
        for key, value in self.recipe.to_dict()["distill"].items():
            if key == "options":
                for k, v in value.items():
                    out[f"options.{k}"] = {"value": v, "from": origins.get(f"distill.options.{k}", "recipe")}
                continue
            out[key] = {"value": value, "from": origins.get(f"distill.{key}", "default")}
        if self.pool_from and self.pool_artifact is not None:  # --pool, or the newest pool stood in
            out["pool"] = {"value": self.pool_artifact.ref, "from": self.pool_from}
        if out.get("iterations", {}).get("value") == 0 and self.iterations:  # 0 means the method's default
            ipc = self.recipe.distill.ipc
            out["iterations"] = {"value": self.iterations,
                                 "from": f"{self.method.name}'s default at ipc {ipc} (iterations = 0)"}
        return out


def plan(store: Store, recipe: Recipe, data: ImageData, pool_ref: str | None = None,
         device: torch.device | str = "cpu") -> Plan:
    """Resolve and check the recipe against the registries, the store and the data."""
    regs = registries()
    method = regs.method.get(recipe.distill.method)
    recipe = resolve_method_defaults(recipe, method.distill_defaults(), method.name)
    cfg = recipe.distill
    notes: list[str] = []
    selection = copy.deepcopy(regs.selection.get(cfg.selection))
    schedule = regs.schedule.get(cfg.schedule)
    # a sub-table of [distill.options] named after the selection strategy is the strategy's own
    # (e.g. [distill.options.dynadistill]); the rest belongs to the method
    method_raw = dict(cfg.options)
    selection.configure(method_raw.pop(selection.name, None))
    options = method.parse_options(method_raw)
    schedule.check(cfg)
    spec = net_spec_of(recipe)
    build_net(spec, data.channels, data.num_classes, data.resolution)  # a bad [net] fails before any work
    traj = traj_art = None
    if method.trajectories_option is not None:  # a method that matches expert trajectories names them (mtt)
        traj_art, traj = load_trajectories(store, _trajectories_ref(method, options), data, spec)
        recipe = _pin_trajectories(recipe, traj_art, method.trajectories_option)
    if selection.scores_candidates and traj is None and not can_score(method):
        raise UsageError(
            f"selection '{selection.name}' ranks candidate networks by the method's matching loss, but method "
            f"'{method.name}' has none (it implements step, not loss or score): use distill.selection = \"random\" "
            "(or \"scratch\"), or give the method a loss")
    pool = pool_art = None
    # a strategy that draws from a pool draws from the trajectories when the method matches them
    # (dynadistill over mtt's experts): no model pool is needed then
    needs_pool = selection.needs_pool and not (traj is not None and selection.draws_trajectories)
    ref = pool_ref or cfg.pool
    pool_from = "--pool" if pool_ref else ""
    # a pool the recipe names is a suggestion (--pool is not): when it is missing, or none is named,
    # the newest pool made for this data and net will do
    # (a method may use a pool without needing one: herding embeds with the recipe's pool if named)
    named_missing = bool(ref) and not pool_ref and not _in_store(store, ref)
    if (needs_pool and not pool_ref and not ref) or named_missing:
        pool_art = newest_compatible(store, data, spec)
        if pool_art is not None:
            missing = f"pool '{ref}' is not in the store; " if ref else ""
            notes.append(f"{missing}using {pool_art.ref}, the newest pool for {data.name} and this [net] "
                         "(pass --pool to choose)")
        elif named_missing and not needs_pool:
            raise UsageError(
                f"pool '{ref}' ([distill] pool) is not in the store, nor any pool for {data.name} and this "
                "[net]: make it with 'ddtool pretrain --recipe RECIPE' (the same recipe), pass --pool, or "
                "--set distill.pool='\"\"' to run without one")
        ref = pool_art.ref if pool_art is not None else ""
        pool_from = "the newest pool for this data and [net]" if pool_art is not None else ""
    if ref:
        pool_art, tensors, meta = store.load(ref, kind="pool")
        pool = Pool.from_artifact(tensors, meta, pool_art.digest)
        pool.check_compatible(data, spec, ref)
    if needs_pool and pool is None:
        raise UsageError(
            f"selection '{selection.name}' needs a model pool, and the store has none for {data.name} and "
            "this [net]: make one with 'ddtool pretrain --recipe RECIPE' (the same recipe) or "
            "'ddtool pretrain --epochs 2 --n 5' for the default [net], or pass --pool"
        )
    # how the strategy's draw meets what the run has (dynadistill's m beyond the pool or the experts);
    # the start epochs are those a trajectory method draws from (mtt's max_start_epoch)
    note = selection.plan_note(len(pool) if pool is not None and traj is None else None,
                               len(traj) if traj is not None else None,
                               method.trajectory_start_epochs(options) if traj is not None else None)
    if note:
        notes.append(note)
    # a method whose multi-formation factor is a setting (IDC) says which one this run uses
    factor = method.factor_for(options, data.resolution)
    need = cfg.ipc * factor**2
    smallest = min(data.class_counts())
    if cfg.init == "real" and smallest < need:
        c = data.class_counts().index(smallest)
        raise UsageError(
            f"distill.ipc={cfg.ipc} needs {need} real images per class, but class '{data.classes[c]}' "
            f"has {smallest}; lower distill.ipc"
        )
    iterations = cfg.iterations or method.default_iterations(cfg.ipc) if method.iterative else 0
    # checkpoints spaced in seconds replace the periodic ones by iteration unless both are asked for
    every = cfg.checkpoint_every or (max(1, iterations) if cfg.checkpoint_seconds else max(1, iterations // 10))
    impl = resolve_impl(cfg.impl, device)
    return Plan(recipe=recipe, net_spec=spec, method=method, selection=selection, schedule=schedule, options=options,
                iterations=iterations, checkpoint_every=every,
                checkpoint_seconds=float(cfg.checkpoint_seconds), impl=impl, device=torch.device(device),
                shard=distributed.class_shard(data.num_classes), pool=pool, pool_artifact=pool_art,
                pool_from=pool_from, trajectories=traj, trajectories_artifact=traj_art, notes=tuple(notes))


def _trajectories_ref(method: MatchingMethod, options: Any) -> str:
    """The trajectories ref the method's declared option holds, or a one-line error when the recipe names none."""
    key = method.trajectories_option
    ref = getattr(options, key, None) if options is not None else None  # the option the method declared
    if not isinstance(ref, str) or not ref:
        raise UsageError(
            f"method '{method.name}' matches expert trajectories: set [distill.options] {key} = \"trajectories/NAME\" "
            "and make them with 'ddtool pretrain --trajectories --recipe RECIPE'")
    return ref


def _pin_trajectories(recipe: Recipe, art: Artifact, option: str) -> Recipe:
    """The recipe naming the trajectories by the version it resolved to (``trajectories/NAME:vN``),
    so the recorded recipe (and ``--resume``) reads the same experts after a newer version is made."""
    options = {**recipe.distill.options, option: art.ref}
    out = replace(recipe, distill=replace(recipe.distill, options=options))
    key = f"distill.options.{option}"
    out.origins = {**recipe.origins, key: f"{recipe.origins.get(key, 'recipe')}, the version in the store"}
    return out


def context_of(p: Plan, data: ImageData, *, compile: bool | None = None,
               on_inner_step: Callable[[], None] | None = None) -> DistillContext:
    """The :class:`DistillContext` of a run planned as ``p`` on ``data``: everything from the plan,
    nothing resolved again. ``compile``: whether the run compiles from its start (default: the
    recipe's ``distill.compile = true``); ``on_inner_step``: the run's progress.

    It builds no network and draws no random numbers: seeding before it keeps a run's draws."""
    cfg = p.cfg
    return DistillContext(data=data, cfg=cfg, net_spec=p.net_spec, device=p.device, iterations=p.iterations,
                          selection=p.selection, schedule=p.schedule, net_builder=build_net, pool=p.pool, options=p.options, impl=p.impl,
                          compile=cfg.compile is True if compile is None else compile, augment=Augmenter(cfg.augment),
                          method=p.method, trajectories=p.trajectories, shard=p.shard, on_inner_step=on_inner_step)


def build_context(source: Recipe | DistillSection, data: ImageData, device: torch.device | str = "cpu", *,
                  plan: Plan | None = None, net_spec: NetSpec | None = None,
                  method: MatchingMethod | None = None, selection: SelectionStrategy | None = None,
                  schedule: PerturbationSchedule | None = None, pool: Pool | None = None, options: Any = None,
                  iterations: int | None = None, impl: str | None = None,
                  augment: Augmenter | None = None, trajectories: Trajectories | None = None) -> DistillContext:
    """A :class:`DistillContext` for tests and benchmarks (a run uses :func:`context_of`).

    With ``plan``: the plan's context (:func:`context_of`), any piece passed by keyword replacing
    the plan's. Without: ``source`` is a recipe (its ``[distill]`` section, and its ``[net]``
    unless ``net_spec`` is given) or a ``[distill]`` section with ``net_spec``; the section's keys
    left to the method take ``method``'s values, and the context gets the section's selection
    strategy and perturbation schedule from the registries, ``method``'s parse of
    ``[distill.options]``, one iteration (or ``distill.iterations``), the section's ``impl`` for
    the device and its augmentation, unless passed by keyword. Hand-built plugin objects are seen
    through their contracts (``ddtool.plugins.CONTRACTS``).

    It builds no network and draws no random numbers.
    """
    given = {"method": method, "selection": selection, "schedule": schedule, "pool": pool, "options": options,
             "iterations": iterations, "impl": impl, "augment": augment, "trajectories": trajectories}
    for kind in ("method", "selection", "schedule"):
        if given[kind] is not None:
            given[kind] = adapt(given[kind], CONTRACTS[kind].base)
    if plan is not None:
        ctx = context_of(plan, data)
        return replace(ctx, **{k: v for k, v in given.items() if v is not None}) if any(
            v is not None for v in given.values()) else ctx
    if isinstance(source, Recipe):
        cfg, net_spec = source.distill, net_spec or net_spec_of(source)
    elif net_spec is None:
        raise TypeError("build_context: a [distill] section needs net_spec (a recipe brings its [net])")
    else:
        cfg = source
    # keys left to the method (lr_img = 0, batch_real = 0, augment = ""): the method's values
    chosen = given["method"] or MatchingMethod()
    cfg = resolve_method_defaults(Recipe(distill=cfg), chosen.distill_defaults(), chosen.name or "base").distill
    regs = registries()
    if given["selection"] is None:  # a copy, as plan() takes: a strategy may hold state
        given["selection"] = copy.deepcopy(regs.selection.get(cfg.selection))
    if given["schedule"] is None:
        given["schedule"] = regs.schedule.get(cfg.schedule)
    if options is None and method is not None:
        given["options"] = given["method"].parse_options(dict(cfg.options))
    defaults = {"iterations": cfg.iterations or 1, "impl": resolve_impl(cfg.impl, device),
                "augment": Augmenter(cfg.augment)}
    pieces = {k: defaults[k] if v is None and k in defaults else v for k, v in given.items()}
    return DistillContext(data=data, cfg=cfg, net_spec=net_spec, device=torch.device(device),
                          compile=cfg.compile is True, net_builder=build_net, **pieces)


def _in_store(store: Store, ref: str) -> bool:
    try:
        store.resolve(ref, kind="pool")
    except UsageError:
        return False
    return True

