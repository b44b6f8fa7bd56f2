"""Plugin manager: built-ins and third-party plugins register through the same hooks.

Third-party plugins are found through the entry-point group ``ddtool``. Two environment
variables steer loading:

* ``DDTOOL_DISABLE_PLUGINS``: ``*`` skips every entry-point plugin; a comma-separated list
  skips those entry-point names.
* ``DDTOOL_PLUGINS``: comma-separated importable module names registered as extra plugins
  (handy for a plugin under development, or a notebook).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any, Sequence

import pluggy

from ddtool import hookspecs
from ddtool.data.dataset import Dataset
from ddtool.errors import DDToolError, UsageError
from ddtool.methods.base import MatchingMethod
from ddtool.nets.factory import Architecture
from ddtool.perturb import PerturbationSchedule
from ddtool.registry import Contract, Registry
from ddtool.selection.base import SelectionStrategy
from ddtool.version import __version__

BUILTIN_MODULES = (
    "ddtool.data.builtin",
    "ddtool.data.torchvision_sets",
    "ddtool.nets.builtin",
    "ddtool.nets.zoo",
    "ddtool.methods.builtin",
    "ddtool.selection.builtin",
    "ddtool.perturb",
)

KINDS = {
    "method": "ddtool_register_matching_methods",
    "selection": "ddtool_register_selection_strategies",
    "schedule": "ddtool_register_perturbation_schedules",
    "dataset": "ddtool_register_datasets",
    "architecture": "ddtool_register_architectures",
}

# what each kind's objects must provide themselves; the base class has a default for every other
# member (an object that does not subclass it is seen through it)
CONTRACTS = {
    "method": Contract(MatchingMethod, ("name", "step")),
    "selection": Contract(SelectionStrategy, ("name", "select")),
    "schedule": Contract(PerturbationSchedule, ("name", "perturb")),
    "dataset": Contract(Dataset, ("name", "description", "load")),
    "architecture": Contract(Architecture, ("name", "description", "build")),
}


@dataclass
class Registries:
    method: Registry[MatchingMethod]
    selection: Registry[SelectionStrategy]
    schedule: Registry[PerturbationSchedule]
    dataset: Registry[Dataset]
    architecture: Registry[Architecture]

    def kind(self, kind: str) -> Registry[Any]:
        return getattr(self, kind)


_pm: pluggy.PluginManager | None = None
_registries: Registries | None = None


def _build_manager(extra: tuple[Any, ...] = ()) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.NAME)
    pm.add_hookspecs(hookspecs)
    for modname in BUILTIN_MODULES:
        pm.register(importlib.import_module(modname), name=modname)
    disabled = os.environ.get("DDTOOL_DISABLE_PLUGINS", "").strip()
    if disabled != "*":
        for name in filter(None, (n.strip() for n in disabled.split(","))):
            pm.set_blocked(name)
        _load_entry_points(pm)
    for modname in filter(None, (m.strip() for m in os.environ.get("DDTOOL_PLUGINS", "").split(","))):
        try:
            module = importlib.import_module(modname)
        except Exception as exc:  # ImportError, or whatever the module raises while it is imported
            raise UsageError(f"DDTOOL_PLUGINS names '{modname}', which cannot be imported: {_one_line(exc)}") from None
        if not pm.is_registered(module):
            pm.register(module, name=modname)
    for obj in extra:
        pm.register(obj)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise UsageError(f"a plugin implements an unknown hook: {exc}") from None
    return pm


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    """pluggy's ``load_setuptools_entrypoints``, one entry point at a time, so that a plugin that
    fails to import is named (with how to skip it) instead of breaking every command."""
    from importlib.metadata import entry_points

    for name in sorted({ep.name for ep in entry_points(group=hookspecs.NAME)}):
        if pm.is_blocked(name) or pm.get_plugin(name) is not None:
            continue
        try:
            pm.load_setuptools_entrypoints(hookspecs.NAME, name=name)
        except Exception as exc:
            raise UsageError(
                f"plugin '{name}' (entry point in group '{hookspecs.NAME}') cannot be loaded: {_one_line(exc)}; "
                f"skip it with DDTOOL_DISABLE_PLUGINS={name}"
            ) from None


def _distribution_of(pm: pluggy.PluginManager) -> dict[str, str]:
    dists = {name: "local" for name, _ in pm.list_name_plugin() if name is not None}
    dists.update({pm.get_name(p): f"{d.project_name} {d.version}" for p, d in pm.list_plugin_distinfo()})
    for modname in BUILTIN_MODULES:
        dists[modname] = f"ddtool {__version__} (built-in)"
    return dists


def _fill(pm: pluggy.PluginManager) -> Registries:
    regs = Registries(**{kind: Registry(kind, CONTRACTS[kind]) for kind in KINDS})
    dists = _distribution_of(pm)
    for kind, hookname in KINDS.items():
        hook = getattr(pm.hook, hookname)
        # get_hookimpls() lists plain implementations in registration order (pluggy *calls* them
        # in reverse, LIFO); tryfirst/trylast move them to its end/start. The built-ins go first
        # whatever their markers, so a name clash blames the plugin registered later.
        impls = sorted(hook.get_hookimpls(), key=lambda i: pm.get_name(i.plugin) not in BUILTIN_MODULES)
        for impl in impls:
            source = pm.get_name(impl.plugin) or repr(impl.plugin)

            def register(obj: Any, aliases: Sequence[str] = (), *, _s: str = source,
                         _k: str = kind) -> None:
                regs.kind(_k).add(obj, aliases=aliases, source=_s,
                                  distribution=dists.get(_s, "local"))

            try:
                impl.function(**{a: register for a in impl.argnames})
            except DDToolError:
                raise
            except Exception as exc:
                raise UsageError(f"plugin '{source}' failed to register its {kind}s: {_one_line(exc)}; "
                                 f"disable it with DDTOOL_DISABLE_PLUGINS (entry points) or drop it "
                                 f"from DDTOOL_PLUGINS") from None
    return regs


def registries() -> Registries:
    """The registries, built on first use from built-ins, entry points and DDTOOL_PLUGINS."""
    global _pm, _registries
    if _registries is None:
        _pm = _build_manager()
        _registries = _fill(_pm)
    return _registries


def plugin_manager() -> pluggy.PluginManager:
    registries()
    assert _pm is not None
    return _pm


def reload(*extra: Any) -> Registries:
    """Rebuild everything, optionally with extra plugin objects (tests, notebooks)."""
    global _pm, _registries
    _pm = _build_manager(extra)
    _registries = _fill(_pm)
    return _registries


def plugin_versions() -> dict[str, str]:
    """Plugin name -> distribution and version, for run records."""
    return dict(sorted(_distribution_of(plugin_manager()).items()))
