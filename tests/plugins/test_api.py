"""The public plugin API: every hook documented and exercised, the example plugin on the public
API only, the contracts' defaults, and what the registry refuses."""

from __future__ import annotations

import ast
import copy
import inspect
from pathlib import Path

import pytest
import torch

import ddtool
import ddtool.api as api
import ddtool.plugins as plugins
from ddtool import hookspecs
from ddtool.errors import UsageError
from ddtool.registry import Registry


ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "plugins" / "ddtool-pixelmmd" / "ddtool_pixelmmd" / "__init__.py"


def hooks() -> list[str]:
    return sorted(n for n, f in vars(hookspecs).items() if n.startswith("ddtool_") and inspect.isfunction(f))


def _probe(kind: str) -> object:
    """The smallest object of each kind that its contract accepts."""
    name = f"probe-{kind}"
    if kind == "method":
        return type("Probe", (api.MatchingMethod,), {"name": name, "loss": lambda self, ctx, syn, net=None: torch.zeros(())})()
    if kind == "selection":
        return type("Probe", (api.SelectionStrategy,), {"name": name, "select": lambda self, ctx, it: None})()
    if kind == "schedule":
        return type("Probe", (api.PerturbationSchedule,), {"name": name, "perturb": lambda self, net, it, total, cfg: None})()
    if kind == "dataset":
        return type("Probe", (api.Dataset,), {"name": name, "description": "probe", "load": lambda self, arg, root, download: None})()
    assert kind == "architecture"
    return type("Probe", (api.Architecture,), {"name": name, "description": "probe",
                                               "build": lambda self, channels, num_classes, resolution, **o: None})()


def test_every_hook_is_documented() -> None:
    names = hooks()
    assert len(names) == 6 and set(plugins.KINDS.values()) < set(names)
    page = (ROOT / "docs" / "plugin-reference.md").read_text(encoding="utf-8")
    table = page[page.index("## Hooks and contracts"):page.index("## Rules the registry enforces")]
    for name in names:
        assert f"`{name}" in table, f"{name} is not in the hook table of docs/plugin-reference.md"


def test_every_hook_called_through_the_plugin_manager_has_its_effect(fresh_registries) -> None:  # type: ignore[no-untyped-def]
    """Each hook spec, implemented by a plugin object and called the way ddtool calls it: the object
    it registers is in the registry under the plugin's name (or, for commands, on the app). A new
    hook spec without a case here fails, rather than passing because its name appears in a test."""
    import typer

    probes = {kind: _probe(kind) for kind in plugins.KINDS}

    class Plugin:
        pass

    plugin = Plugin()
    for kind, hookname in plugins.KINDS.items():
        def impl(register, _o=probes[kind]):  # type: ignore[no-untyped-def]
            register(_o, aliases=(f"{_o.name}-alias",))
        impl.__name__ = hookname
        setattr(plugin, hookname, hookspecs.hookimpl(impl))

    def ddtool_register_commands(app: typer.Typer) -> None:
        @app.command("probe-command")
        def probe_command() -> None:
            typer.echo("probe")

    plugin.ddtool_register_commands = hookspecs.hookimpl(ddtool_register_commands)  # type: ignore[attr-defined]
    regs = plugins.reload(plugin)
    exercised = set()
    for kind, hookname in plugins.KINDS.items():
        entry = regs.kind(kind).entry(f"probe-{kind}-alias")  # found by the alias it registered
        assert entry.obj is probes[kind] and entry.source == plugins.plugin_manager().get_name(plugin), kind
        exercised.add(hookname)
    app = typer.Typer()
    plugins.plugin_manager().hook.ddtool_register_commands(app=app)
    assert [c.name for c in app.registered_commands] == ["probe-command"]
    exercised.add("ddtool_register_commands")
    assert exercised == set(hooks())


def test_registration_hooks_take_a_typed_register_from_the_api() -> None:
    for kind, name in plugins.KINDS.items():
        annotation = inspect.signature(getattr(hookspecs, name)).parameters["register"].annotation
        assert annotation in api.__all__ and annotation.startswith("Register"), (kind, annotation)
        # the contract of the kind is the type of what register takes
        obj, aliases = list(inspect.signature(getattr(api, annotation).__call__).parameters.values())[1:]
        assert obj.annotation == plugins.CONTRACTS[kind].base.__name__ and aliases.name == "aliases"


def test_example_plugin_imports_only_the_public_api() -> None:
    tree = ast.parse(PLUGIN.read_text(encoding="utf-8"))
    modules = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    modules += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0]
    ours = {m for m in modules if m == "ddtool" or m.startswith("ddtool.")}
    assert ours and ours <= {"ddtool", "ddtool.api"}, ours
    readme = (PLUGIN.parents[1] / "README.md").read_text(encoding="utf-8")
    assert "ddtool.api" in readme


def test_api_names_resolve_from_ddtool_api_and_ddtool() -> None:
    assert len(api.__all__) == len(set(api.__all__))
    for name in api.__all__:
        assert getattr(ddtool, name) is getattr(api, name), name
    assert set(api.__all__) <= set(dir(ddtool))
    with pytest.raises(AttributeError):
        ddtool.no_such_name  # noqa: B018
    for name in ("hookimpl", "MatchingMethod", "SelectionStrategy", "PerturbationSchedule", "Dataset",
                 "Architecture", "DistillContext", "SyntheticSet", "Pool", "NetSpec", "ImageData",
                 "UsageError", "DDToolError", "parse_section", "class_means"):
        assert name in api.__all__


def test_selection_configure_default_refuses_settings_in_one_line() -> None:
    s = api.SelectionStrategy()
    s.name = "mine"
    s.configure(None)
    s.configure({})
    with pytest.raises(UsageError, match=r"selection 'mine' takes no settings \(got \[distill.options.mine\] "
                                         r"\['m'\]\)") as info:
        s.configure({"m": 3})
    assert "\n" not in str(info.value)


def test_strategy_settings_table_goes_to_configure_not_to_the_method(tmp_path: Path) -> None:
    from ddtool.lookup import load_dataset
    from ddtool.recipe import load_recipe
    from ddtool.runtime.distill import plan
    from ddtool.store import Store

    data = load_dataset("digits")
    with pytest.raises(UsageError, match=r"selection 'scratch' takes no settings"):
        plan(Store(tmp_path), load_recipe(None, ["distill.options.scratch.m=2"]), data)


def test_contract_defaults() -> None:
    class Three(api.MatchingMethod):
        name = "three"
        factor = 3

    m = Three()
    assert m.factor_for(None, 32) == 3 and m.factor_for(object()) == 3
    assert (m.iterative, m.trains_network, m.options_type, m.default_iterations(10)) == (True, False, None, 1000)
    assert m.parse_options({}) is None
    with pytest.raises(UsageError, match=r"method 'three' takes no \[distill.options\]"):
        m.parse_options({"x": 1})
    s = api.SelectionStrategy()
    assert (s.needs_pool, s.keeps_trained, s.state()) == (False, False, {})
    with pytest.raises(NotImplementedError):
        api.PerturbationSchedule().perturb(torch.nn.Linear(1, 1), 0, 1, api.DistillSection())
    assert api.Dataset.takes_argument is False


def test_parse_section_is_the_recipes_parser() -> None:
    from dataclasses import dataclass

    @dataclass
    class Opts:
        k: int = 1
        t: float = 0.5

    assert api.parse_section("distill.options.mine", Opts, {"k": 2, "t": 1}) == Opts(2, 1.0)
    with pytest.raises(UsageError, match=r"unknown key 'x' in \[distill.options.mine\]; allowed: k, t"):
        api.parse_section("distill.options.mine", Opts, {"x": 1})
    with pytest.raises(UsageError, match=r"distill.options.mine.k must be an integer"):
        api.parse_section("distill.options.mine", Opts, {"k": "2"})


def test_registry_refuses_an_object_missing_a_required_member_in_one_line() -> None:
    class NoSelect:
        name = "lazy"

    reg: Registry[api.SelectionStrategy] = Registry("selection", plugins.CONTRACTS["selection"])
    with pytest.raises(UsageError, match=r"^selection 'lazy' from plugin 'mine' does not provide 'select'; define it "
                                         r"\(or subclass ddtool.api.SelectionStrategy\)$"):
        reg.add(NoSelect(), source="mine")
    assert "lazy" not in reg

    class Undescribed(api.Dataset):  # a subclass inherits every default, but the base sets no description
        name = "undescribed"

        def load(self, arg, root, download):  # type: ignore[no-untyped-def]
            raise AssertionError

    data: Registry[api.Dataset] = Registry("dataset", plugins.CONTRACTS["dataset"])
    with pytest.raises(UsageError, match=r"dataset 'undescribed' from plugin 'mine' does not provide 'description'; "
                                         r"define it$"):
        data.add(Undescribed(), source="mine")


def test_the_plugin_is_named_when_its_object_breaks_the_contract(fresh_registries) -> None:  # type: ignore[no-untyped-def]
    class Shapeless:
        name = "shapeless"

    class Plugin:
        @api.hookimpl
        def ddtool_register_perturbation_schedules(self, register):  # type: ignore[no-untyped-def]
            register(Shapeless())

    with pytest.raises(UsageError, match=r"schedule 'shapeless' from plugin '\d+' does not provide 'perturb'"):
        plugins.reload(Plugin())


def test_an_object_that_does_not_subclass_its_contract_gets_the_defaults() -> None:
    class Duck:
        name = "duck"
        needs_pool = True  # its own members win over the defaults

        def __init__(self) -> None:
            self.calls = 0

        def select(self, ctx, it):  # type: ignore[no-untyped-def]
            self.calls += 1
            return torch.nn.Linear(1, 1)

    reg: Registry[api.SelectionStrategy] = Registry("selection", plugins.CONTRACTS["selection"])
    duck = Duck()
    reg.add(duck, source="mine")
    s = reg.get("duck")
    assert isinstance(s, api.SelectionStrategy) and s.name == "duck" and s.needs_pool is True
    assert s.keeps_trained is False and s.state() == {} and s.after_step(None, 0, None) is None  # type: ignore[arg-type]
    s.configure(None)
    with pytest.raises(UsageError, match="selection 'duck' takes no settings"):
        s.configure({"x": 1})
    s.select(None, 0)  # type: ignore[arg-type]
    assert duck.calls == 1
    s.extra = 5  # attributes land on the object itself
    assert duck.extra == 5  # type: ignore[attr-defined]
    copied = copy.deepcopy(s)  # the runtime works on a copy of the registered strategy
    copied.select(None, 0)  # type: ignore[arg-type]
    assert isinstance(copied, api.SelectionStrategy) and copied.calls == 2 and duck.calls == 1
    # registered objects that subclass their contract are stored as they are
    reg.add(type("Sub", (api.SelectionStrategy,), {"name": "sub", "select": Duck.select})(), source="mine")
    assert type(reg.get("sub")).__name__ == "Sub"


def test_one_impl_vocabulary_with_stacked_kept_as_an_alias() -> None:
    from ddtool.impl import resolve_impl
    from ddtool.recipe import load_recipe

    for section in ("pretrain", "distill", "eval"):
        for value in ("auto", "vectorized", "loop", "stacked"):
            recipe = load_recipe(None, [f"{section}.impl=\"{value}\""])
            assert getattr(recipe, section).impl == value  # kept as written: the recipe's hash does not move
        with pytest.raises(UsageError, match=rf"{section}.impl must be auto, vectorized or loop, got 'batched'"):
            load_recipe(None, [f"{section}.impl=\"batched\""])
    assert [resolve_impl(v, "cpu") for v in ("auto", "vectorized", "loop", "stacked")] == \
        ["loop", "vectorized", "loop", "vectorized"]
    assert resolve_impl("auto", "cuda") == "vectorized"


def test_a_context_sees_hand_built_plugin_objects_through_their_contracts(digits) -> None:  # type: ignore[no-untyped-def]
    """Objects handed to a DistillContext directly (tests, notebooks) get the defaults too."""
    from ddtool.nets import NetSpec
    from ddtool.recipe import DistillSection
    from ddtool.runtime.distill.planning import build_context

    class Same:
        name = "same"

        def select(self, ctx, it):  # type: ignore[no-untyped-def]
            return torch.nn.Linear(2, 2)

    class Still:
        def perturb(self, net, it, total, cfg):  # type: ignore[no-untyped-def]
            pass

    ctx = build_context(DistillSection(), digits, torch.device("cpu"), net_spec=NetSpec(), iterations=1,
                        selection=Same(), schedule=Still())
    assert isinstance(ctx.selection, api.SelectionStrategy) and isinstance(ctx.schedule, api.PerturbationSchedule)
    ctx.next_model(0)  # reads selection.keeps_trained: the default
    assert ctx.perturbation is None
    scratch = plugins.registries().selection.get("scratch")
    ctx.selection = scratch
    assert ctx.selection is scratch  # a subclass is kept as it is
