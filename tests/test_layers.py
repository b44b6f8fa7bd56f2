"""No layer reaches up: importing a layer loads nothing from the layers above it.

The layering (README, "Developing ddtool"): ``store`` < ``data``, ``nets``, ``synthetic``,
``pool``, ``trajectories`` < ``methods``, ``selection``, ``perturb`` (with ``context``, ``compiled``, ``plugins``
and the public ``api``) < ``runtime`` < ``cli``; ``inspect`` draws beside the runtime: it reads
the store and the data and neither trains nor distils. Each layer is imported, every module of it,
in a fresh interpreter and its ``sys.modules`` is checked.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

TRAINING = ["methods", "selection", "perturb", "context", "compiled", "plugins", "api"]
# (a layer: the ddtool packages or modules it is made of) -> what it must not load
ABOVE: dict[str, list[str]] = {
    "store": ["data", "nets", "synthetic", "pool", "trajectories", *TRAINING, "runtime", "inspect", "cli"],
    "data": [*TRAINING, "runtime", "inspect", "cli"],
    "nets": [*TRAINING, "runtime", "inspect", "cli"],
    "synthetic": [*TRAINING, "runtime", "inspect", "cli"],
    "pool": [*TRAINING, "runtime", "inspect", "cli"],
    "trajectories": [*TRAINING, "runtime", "inspect", "cli"],
    **{name: ["runtime", "inspect", "cli"] for name in TRAINING},
    "runtime": ["inspect", "cli"],
    "inspect": [*TRAINING, "runtime", "cli"],  # draws, does not train
}

# every module of a package, one after the other; prints what each import left loaded
PROBE = """
import importlib, json, pkgutil, sys
name = "ddtool." + sys.argv[1]
mod = importlib.import_module(name)
names = [name] + sorted(m.name for m in pkgutil.walk_packages(getattr(mod, "__path__", []), name + "."))
loaded = {}
for n in names:
    importlib.import_module(n)
    loaded[n] = sorted(m for m in sys.modules if m == "ddtool" or m.startswith("ddtool."))
print(json.dumps(loaded))
"""


def _loaded(layer: str) -> dict[str, list[str]]:
    """For each module of the layer (in import order), the ddtool modules loaded once it was imported."""
    out = subprocess.run([sys.executable, "-c", PROBE, layer], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.parametrize("layer", list(ABOVE))
def test_a_layer_imports_nothing_above_it(layer: str) -> None:
    loaded = _loaded(layer)
    assert len(loaded) >= 1 and f"ddtool.{layer}" in loaded
    for module, modules in loaded.items():  # the first module that pulled one in is named
        above = [m for m in modules if m.count(".") and m.split(".")[1] in ABOVE[layer]]
        assert above == [], (module, above)


def test_import_ddtool_store_does_not_load_the_api() -> None:
    """The re-export of the public API from ``ddtool`` is lazy: a low layer does not pull in the methods."""
    loaded = _loaded("store")
    assert "ddtool.api" not in loaded["ddtool.store"] and "ddtool.store" in loaded["ddtool.store"]


def test_every_package_and_module_has_a_place() -> None:
    """A new package or top-level module of ddtool is placed in the layering (or is a shared helper)."""
    import pkgutil

    import ddtool

    helpers = {"errors", "progress", "impl", "registry", "hookspecs", "recipe", "recipe_source", "augment", "cli",
               "__main__"}
    found = {m.name for m in pkgutil.iter_modules(ddtool.__path__)}
    assert found - helpers <= set(ABOVE), found - helpers - set(ABOVE)


def test_test_modules_share_fixtures_not_imports() -> None:
    """Tests mirror the packages: helpers are fixtures in tests/conftest.py, no test module imports
    another (or conftest), and test file names are unique across folders (pytest imports them by name)."""
    import ast
    from pathlib import Path

    tests = Path(__file__).resolve().parent
    files = sorted(tests.rglob("test_*.py"))
    names = [p.name for p in files]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    ours = {p.stem for p in files} | {"conftest", "tests"}
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        imported += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [m for m in imported if m.split(".")[0] in ours], (path.relative_to(tests), imported)
