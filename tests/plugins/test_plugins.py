"""The plugin path: built-ins, a throwaway plugin module, and the separately installed pixelmmd."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

import ddtool.plugins as plugins
from ddtool import hookspecs
from ddtool.api import (
    Architecture,
    Dataset,
    ImageData,
    PerturbationSchedule,
    RegisterArchitecture,
    RegisterDataset,
    RegisterSchedule,
    RegisterSelection,
    hookimpl,
)
from ddtool.errors import UsageError
from ddtool.store import Store


THROWAWAY = '''
import torch
from ddtool.hookspecs import hookimpl
from ddtool.methods.base import MatchingMethod

class Constant(MatchingMethod):
    """Pulls every synthetic pixel towards 0.25: easy to recognise in the artifact."""
    name = "constant"
    description = "test-only"
    def default_iterations(self, ipc):
        return 3
    def step(self, ctx, syn, opt, it):
        with torch.no_grad():
            syn.images.fill_(0.25)
        return 0.0

@hookimpl
def ddtool_register_matching_methods(register):
    register(Constant(), aliases=("const",))
'''


@pytest.fixture
def throwaway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_registries) -> str:  # type: ignore[no-untyped-def]
    (tmp_path / "ddtool_throwaway.py").write_text(THROWAWAY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("DDTOOL_PLUGINS", "ddtool_throwaway")
    yield "ddtool_throwaway"
    sys.modules.pop("ddtool_throwaway", None)


def test_throwaway_plugin_method_is_used_by_distill(cli, store: Store, tiny_recipe: Path, throwaway: str) -> None:  # type: ignore[no-untyped-def]
    listed = json.loads(cli("plugins", "--kind", "method", "--json").stdout)
    entry = next(r for r in listed if r["name"] == "constant")
    assert entry["plugin"] == throwaway and entry["aliases"] == ["const"]
    res = cli("distill", "-r", tiny_recipe, "--method", "const", "--iterations", "0", "--json")
    assert res.exit_code == 0, res.stderr
    _, tensors, meta = store.load("synthetic/tiny")
    assert meta["ddtool.method"] == "constant" and meta["ddtool.iterations"] == "3"
    assert torch.all(tensors["images"] == 0.25)
    run = store.run(json.loads(res.stdout)["run"])
    assert run["plugins"][throwaway] == "local"


def test_a_step_only_method_with_dynadistill_is_refused_before_the_run(  # type: ignore[no-untyped-def]
        cli, store: Store, tiny_recipe: Path, throwaway: str) -> None:
    """Issue 23 (f): the contract lets a method implement ``step`` alone; DynaDistill ranks networks
    by the method's loss, so the pair is refused in one line (exit 2) before any run is recorded,
    instead of a NotImplementedError traceback at the first outer loop."""
    assert cli("pretrain", "-r", tiny_recipe).exit_code == 0
    runs = sorted(p.name for p in (store.root / "runs").iterdir())
    res = cli("distill", "-r", tiny_recipe, "--method", "const", "--set", 'distill.selection="dynadistill"',
              "--pool", "pool/tinypool")
    assert res.exit_code == 2, res.stderr
    line = res.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "selection 'dynadistill' ranks candidate networks by the method's matching loss" in line
    assert "method 'constant' has none" in line and 'distill.selection = "random"' in line
    assert sorted(p.name for p in (store.root / "runs").iterdir()) == runs  # nothing started
    # with one candidate nothing is ranked: the same method runs
    res = cli("distill", "-r", tiny_recipe, "--method", "const", "--set", 'distill.selection="dynadistill"',
              "--set", "distill.options.dynadistill.m=1", "--pool", "pool/tinypool")
    assert res.exit_code == 0, res.stderr


def test_builtins_register_through_the_hooks(fresh_registries) -> None:  # type: ignore[no-untyped-def]
    regs = plugins.registries()
    for kind, names in {"method": {"dm", "random"}, "selection": {"scratch", "random", "weight_average"},
                        "schedule": {"none", "gaussian", "two_direction"}, "dataset": {"digits", "imagefolder"},
                        "architecture": {"convnet", "convnet3"}}.items():
        entries = {e.name: e for e in regs.kind(kind)}
        assert names <= set(entries), kind
        assert all(entries[n].distribution.startswith("ddtool ") for n in names)
    # every hook spec is exercised by some built-in module (a datasette-style completeness check)
    specs = {n for n in dir(hookspecs) if n.startswith("ddtool_register_")} - {"ddtool_register_commands"}
    assert specs == set(plugins.KINDS.values())


def test_misspelt_hook_is_caught(fresh_registries) -> None:  # type: ignore[no-untyped-def]
    class Typo:
        @hookspecs.hookimpl
        def ddtool_register_matching_method(self, register):  # type: ignore[no-untyped-def]  # missing 's'
            pass

    with pytest.raises(UsageError, match="unknown hook"):
        plugins.reload(Typo())


def test_name_clash_is_an_error(fresh_registries) -> None:  # type: ignore[no-untyped-def]
    from ddtool.methods.dm import DM

    class Clash:
        @hookspecs.hookimpl
        def ddtool_register_matching_methods(self, register):  # type: ignore[no-untyped-def]
            register(DM())

    with pytest.raises(UsageError, match=r"method 'dm' from plugin '\d+' clashes with the method 'dm' from plugin "
                                         r"'ddtool.methods.builtin'"):  # the later plugin is blamed
        plugins.reload(Clash())


CLASHING = '''
from ddtool.hookspecs import hookimpl
from ddtool.methods.dm import DM

class Mine(DM):
    name = NAME

@hookimpl
def ddtool_register_matching_methods(register):
    register(Mine(), aliases=ALIASES)
'''


@pytest.mark.parametrize("name, aliases, message", [
    # a built-in's name taken as an alias
    ("mine", ("dm",), r"alias 'dm' of method 'mine' from plugin 'ddtool_clash' clashes with the method 'dm' "
                      r"from plugin 'ddtool.methods.builtin'"),
    # a built-in's alias taken as an alias
    ("mine", ("random-real",), r"alias 'random-real' of method 'mine' from plugin 'ddtool_clash' clashes with "
                               r"the alias 'random-real' of method 'random'"),
    # a built-in's alias taken as a name
    ("random-real", (), r"method 'random-real' from plugin 'ddtool_clash' clashes with the alias 'random-real'"),
    # a built-in's name taken as a name: the later (third-party) plugin is blamed, not the built-in
    ("dm", (), r"method 'dm' from plugin 'ddtool_clash' clashes with the method 'dm' from plugin "
               r"'ddtool.methods.builtin'"),
])
def test_names_and_aliases_clash_and_the_plugin_is_named(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                                        fresh_registries, name: str, aliases: tuple[str, ...],
                                                        message: str) -> None:
    (tmp_path / "ddtool_clash.py").write_text(f"NAME = {name!r}\nALIASES = {aliases!r}\n" + CLASHING)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("DDTOOL_PLUGINS", "ddtool_clash")
    try:
        with pytest.raises(UsageError, match=message):
            plugins.reload()
        plugins._registries = None
        res = cli("plugins")
        assert res.exit_code == 2 and "Traceback" not in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and "ddtool_clash" in res.stderr
    finally:
        sys.modules.pop("ddtool_clash", None)


def test_registry_checks_every_alias_before_adding_anything() -> None:
    from ddtool.registry import Registry

    class Obj:
        def __init__(self, name: str) -> None:
            self.name = name

    reg: Registry[Obj] = Registry("method")
    reg.add(Obj("a"), aliases=("x",), source="one")
    with pytest.raises(UsageError, match="alias 'x' of method 'b' from plugin 'two' clashes"):
        reg.add(Obj("b"), aliases=("y", "x"), source="two")
    assert "b" not in reg and "y" not in reg  # nothing half-registered
    reg.add(Obj("b"), aliases=("y", "b"), source="two")  # an alias equal to its own name is harmless
    assert reg.get("y").name == "b"


BROKEN_DIST = ("ddtool_broken-0.1.dist-info", "Metadata-Version: 2.1\nName: ddtool-broken\nVersion: 0.1\n",
               "[ddtool]\nbroken = ddtool_broken_plugin\n")


def test_a_broken_installed_plugin_is_named_in_one_line(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                                       capsys: pytest.CaptureFixture[str], fresh_registries) -> None:
    import ddtool.cli as ddcli

    info = tmp_path / BROKEN_DIST[0]
    info.mkdir()
    (info / "METADATA").write_text(BROKEN_DIST[1])
    (info / "entry_points.txt").write_text(BROKEN_DIST[2])
    (tmp_path / "ddtool_broken_plugin.py").write_text("raise ImportError('ddtool-broken needs the [gpu] extra')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(UsageError, match=r"plugin 'broken' \(entry point in group 'ddtool'\) cannot be loaded: "
                                             r"ImportError: ddtool-broken needs the \[gpu\] extra; "
                                             r"skip it with DDTOOL_DISABLE_PLUGINS=broken"):
            plugins.reload()
        plugins._registries = None
        res = cli("plugins")  # every command fails the same way, with one line
        assert res.exit_code == 2 and "Traceback" not in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and "DDTOOL_DISABLE_PLUGINS=broken" in res.stderr

        # the console script: main() loads plugins (their commands) before typer runs
        plugins._registries = None
        monkeypatch.setattr(ddcli, "_commands_added", False)
        monkeypatch.setattr(sys, "argv", ["ddtool", "plugins"])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            ddcli.main()
        assert exit_info.value.code == 2
        out = capsys.readouterr()
        assert out.err.strip().startswith("error: plugin 'broken'") and len(out.err.strip().splitlines()) == 1
        assert "needs the [gpu] extra" in out.err  # rich markup escaped

        # the suggested fix works
        monkeypatch.setenv("DDTOOL_DISABLE_PLUGINS", "broken")
        plugins._registries = None
        assert cli("plugins").exit_code == 0
    finally:
        sys.modules.pop("ddtool_broken_plugin", None)
        plugins._registries = None


def test_disable_plugins_skips_entry_points(monkeypatch: pytest.MonkeyPatch, fresh_registries) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DDTOOL_DISABLE_PLUGINS", "*")
    assert "pixelmmd" not in plugins.registries().method


@pytest.mark.skipif(importlib.util.find_spec("ddtool_pixelmmd") is None,
                    reason="plugins/ddtool-pixelmmd is not installed (make test installs it)")
def test_pixelmmd_installed_plugin_runs_through_distill(cli, store: Store, tiny_recipe: Path, fresh_registries) -> None:  # type: ignore[no-untyped-def]
    listed = json.loads(cli("plugins", "--kind", "method", "--json").stdout)
    entry = next(r for r in listed if r["name"] == "pixelmmd")
    assert entry["distribution"].startswith("ddtool-pixelmmd ")
    res = cli("distill", "-r", tiny_recipe, "--method", "pixelmmd", "--iterations", "30",
              "--set", "distill.lr_img=0.5", "--set", "distill.batch_real=1000", "--name", "mmd", "--json")
    assert res.exit_code == 0, res.stderr
    _, tensors, meta = store.load("synthetic/mmd")
    assert meta["ddtool.method"] == "pixelmmd"
    # linear-kernel MMD pulls each class image to the class mean image
    from ddtool.lookup import load_dataset

    data = load_dataset("digits")
    means = torch.stack([data.normalize(data.train_images[data.train_labels == c]).mean(0) for c in range(10)])
    one_real = torch.stack([data.normalize(data.train_images[data.train_labels == c][:1])[0] for c in range(10)])
    assert (tensors["images"] - means).norm() < 0.05 * (one_real - means).norm()
    bad = cli("distill", "-r", tiny_recipe, "--method", "pixelmmd", "--set", 'distill.options.kernel="rbf"')
    assert bad.exit_code == 2 and "linear" in bad.stderr


class EveryKind:
    """A plugin with one object of every kind, each through its own hook: a dataset and an
    architecture that subclass their contracts, a selection strategy that does not (it gets the
    contract's defaults), a schedule, and a command."""

    perturbed: list[int] = []  # class-level: the runtime works on copies of the registered objects
    selected: list[int] = []

    class Noise(Dataset):
        name = "noise"
        description = "two classes of seeded uniform noise, 8x8 grey (NOISE:SEED)"
        takes_argument = "optional"

        def load(self, arg, root, download):  # type: ignore[no-untyped-def]
            g = torch.Generator().manual_seed(int(arg or 0))
            x = torch.randint(0, 256, (48, 1, 8, 8), generator=g, dtype=torch.uint8)
            y = torch.arange(48) % 2
            return ImageData(f"noise:{int(arg or 0)}", ["a", "b"], x[:40], y[:40], x[40:], y[40:])

    class Flat(Architecture):
        name = "flat"
        description = "one linear layer on the flattened image"

        def build(self, channels, num_classes, resolution, **_ignored):  # type: ignore[no-untyped-def]
            return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(channels * resolution ** 2, num_classes))

    class Fresh:  # duck-typed: no SelectionStrategy base, only the required members
        name = "fresh"

        def select(self, ctx, it):  # type: ignore[no-untyped-def]
            EveryKind.selected.append(it)
            return ctx.fresh_net()

    class Count(PerturbationSchedule):
        name = "count"

        def perturb(self, net, it, total, cfg):  # type: ignore[no-untyped-def]
            EveryKind.perturbed.append(it)

    @hookimpl
    def ddtool_register_datasets(self, register: RegisterDataset) -> None:
        register(self.Noise())

    @hookimpl
    def ddtool_register_architectures(self, register: RegisterArchitecture) -> None:
        register(self.Flat(), aliases=("linear",))

    @hookimpl
    def ddtool_register_selection_strategies(self, register: RegisterSelection) -> None:
        register(self.Fresh())

    @hookimpl
    def ddtool_register_perturbation_schedules(self, register: RegisterSchedule) -> None:
        register(self.Count())

    @hookimpl
    def ddtool_register_commands(self, app) -> None:  # type: ignore[no-untyped-def]
        @app.command("every-kind")
        def every_kind() -> None:
            print("every kind")


def test_a_plugin_registers_every_kind_and_distill_uses_them(store: Store, fresh_registries) -> None:  # type: ignore[no-untyped-def]
    import typer
    from typer.testing import CliRunner

    from ddtool.api import SelectionStrategy
    from ddtool.lookup import load_dataset
    from ddtool.recipe import load_recipe
    from ddtool.runtime.distill import distill

    regs = plugins.reload(EveryKind())
    fresh = regs.selection.get("fresh")
    assert isinstance(fresh, SelectionStrategy) and not fresh.needs_pool and fresh.state() == {}  # the defaults
    data = load_dataset("noise:3")
    assert data.name == "noise:3" and data.num_classes == 2
    EveryKind.perturbed.clear()
    EveryKind.selected.clear()
    recipe = load_recipe(None, ["data.dataset=\"noise:3\"", "net.name=\"linear\"", "distill.method=\"dm\"",
                                "distill.selection=\"fresh\"", "distill.schedule=\"count\"", "distill.iterations=3",
                                "distill.batch_real=8", "distill.augment=\"none\""])
    result = distill(store, recipe, data, torch.device("cpu"))
    _, _, meta = store.load(result.artifact.ref)
    assert (meta["ddtool.selection"], meta["ddtool.schedule"]) == ("fresh", "count")
    assert EveryKind.selected == EveryKind.perturbed == [0, 1, 2]
    app = typer.Typer()
    app.command("other")(lambda: None)  # two commands: typer then dispatches by name
    plugins.plugin_manager().hook.ddtool_register_commands(app=app)
    assert CliRunner().invoke(app, ["every-kind"]).stdout.strip() == "every kind"


def test_plugins_at_80_columns_keep_every_name_whole_and_cut_only_descriptions(cli, throwaway: str) -> None:  # type: ignore[no-untyped-def]
    rows = json.loads(cli("plugins", "--json").stdout)
    res = cli("plugins", env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert max(len(ln) for ln in lines) <= 80
    words = set(res.stdout.replace(",", " ").split())
    for r in rows:  # a name starts its line; aliases may wrap, but only between two of them
        assert any(ln.split()[:1] == [r["name"]] for ln in lines), r["name"]
        assert set(r["aliases"]) <= words, r["aliases"]
    assert "constant" in words and "const" in words  # the throwaway plugin's, too
    long = next(r for r in rows if r["name"] == "herding")["description"]
    row = next(ln for ln in lines if ln.split()[:1] == ["herding"])
    assert row.rstrip().endswith("…") and long[:10] in row and long not in res.stdout
    assert "'ddtool plugins NAME' shows a plugin's whole description" in res.stderr
    # a wide terminal shows short descriptions whole, one line per plugin
    wide = cli("plugins", env={"COLUMNS": "200"}).stdout
    dm = next(r for r in rows if r["name"] == "dm")["description"]
    assert any(ln.split()[:1] == ["dm"] and dm in ln for ln in wide.splitlines())


def test_plugins_name_shows_the_whole_description(cli) -> None:  # type: ignore[no-untyped-def]
    rows = json.loads(cli("plugins", "--json").stdout)
    herding = next(r for r in rows if r["name"] == "herding")
    res = cli("plugins", "herding", env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.stderr
    assert max(len(ln) for ln in res.stdout.splitlines()) <= 80
    flat = " ".join(res.stdout.split())  # wrapped at 80 columns, every word kept
    assert " ".join(herding["description"].split()) in flat and "…" not in res.stdout
    assert "ddtool.methods.builtin" in flat and herding["distribution"] in flat
    # an alias finds the plugin; a name of two kinds shows both
    alias = json.loads(cli("plugins", "uniform", "--json").stdout)
    assert [(r["kind"], r["name"]) for r in alias] == [("selection", "random")]
    both = cli("plugins", "random").stdout
    assert "method" in both and "selection" in both and "random-real" in both and "uniform" in both
    assert [r["kind"] for r in json.loads(cli("plugins", "random", "--kind", "selection", "--json").stdout)] == [
        "selection"]
    bad = cli("plugins", "herdin")
    assert bad.exit_code == 2 and bad.stderr.count("\n") == 1
    assert "no plugin is named 'herdin'" in bad.stderr and "herding" in bad.stderr
