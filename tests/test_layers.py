"""No layer reaches up and no two modules import each other, read from the code with ``ast``.

The layering (README, "Developing ddtool"), lowest first; a module imports only from its own layer
and the ones below it:

0. helpers: ``errors``, ``progress``, ``impl``, ``registry``, ``recipe`` (with ``recipe_source``),
   ``augment``, ``version``, ``markers`` (the hook markers), ``collective`` (torch.distributed calls);
1. ``store``;
2. the data types: ``data``, ``nets``, ``synthetic``, ``pool``, ``trajectories`` and ``context``
   (what a method sees in a run: it holds the plan's plugin objects without importing their contracts);
3. training: ``methods``, ``selection``, ``perturb``, ``compiled``, ``hookspecs``,
   ``plugins``, ``lookup`` (names made into objects through the registries) and the public ``api``;
4. the runtime, in three steps: what several verbs share (``runtime.distributed``, ``run_records``,
   ``seeds``, ``supervised``, ``ensemble``, ``autocompile``, ``recipe_catalog``), then the verbs
   (``runtime.distill``, ``.evaluate``, ``.pretrain``, ``.report``, ``.exchange``), then
   ``runtime.python_api`` over them; ``inspect`` draws beside the runtime: it reads layers 0-2,
   neither trains nor distils, and the runtime does not import it;
5. ``cli``;
6. the package itself (``ddtool/__init__.py``, a lazy facade over ``api`` and ``python_api``) and
   ``__main__``.

Every ``import`` and ``from ... import`` is read: at module level, inside functions, and under
``if TYPE_CHECKING:`` (typing-only imports are held to the same layers: a type names a layer
too). A package's ``__init__`` importing its own submodules (a re-export) is not an edge for the
cycle check; any other cycle is one, within a package or across packages.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ddtool"

RUNTIME_VERBS = ["runtime.distill", "runtime.evaluate", "runtime.pretrain", "runtime.report", "runtime.exchange"]
# (layer, the module prefixes under ddtool. that make it), lowest first
LAYERS: list[tuple[str, list[str]]] = [
    ("helpers", ["errors", "progress", "impl", "registry", "recipe", "recipe_source", "augment", "version",
                 "markers", "collective", "flop_count"]),
    ("store", ["store"]),
    ("data types", ["data", "nets", "synthetic", "pool", "trajectories", "context"]),
    ("training", ["methods", "selection", "perturb", "compiled", "hookspecs", "plugins", "lookup",
                  "api"]),
    ("runtime (shared)", ["runtime", "runtime.distributed"]),
    ("inspect", ["inspect"]),  # beside the runtime: see BESIDE
    ("runtime verbs", RUNTIME_VERBS),
    ("runtime python api", ["runtime.python_api"]),
    ("cli", ["cli"]),
    ("package", ["__main__"]),  # and ddtool/__init__.py
]
RANK = {name: i for i, (name, _) in enumerate(LAYERS)}
RUNTIME = ["runtime (shared)", "runtime verbs", "runtime python api"]
# pairs of layers that neither import the other although their ranks would let one of them
BESIDE = {("inspect", layer) for layer in ["training", *RUNTIME]} | {(layer, "inspect") for layer in RUNTIME}

# Imports that close a cycle, known and left on purpose: each is left out of the cycle check, with
# why and who removes it. The test fails when one no longer closes a cycle (so the list cannot go stale).
KNOWN_CYCLE_EDGES: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, dotted
    target: str  # the imported module (a submodule when ``from pkg import submodule``)
    file: str
    line: int
    typing_only: bool  # under ``if TYPE_CHECKING:``
    in_function: bool


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def module_names(files: dict[str, str], root: str = "ddtool") -> dict[str, bool]:
    """Dotted module name -> is a package, for files given by their path relative to the root's parent."""
    names = {}
    for rel in files:
        parts = rel[: -len(".py")].split("/")
        is_pkg = parts[-1] == "__init__"
        names[".".join(parts[:-1] if is_pkg else parts)] = is_pkg
    assert all(n == root or n.startswith(root + ".") for n in names), names
    return names


def read_imports(files: dict[str, str], root: str = "ddtool") -> list[Import]:
    """Every import of ``root`` in the sources ``files`` (relative path -> text), wherever it is made."""
    names = module_names(files, root)
    found: list[Import] = []
    for rel, text in files.items():
        parts = rel[: -len(".py")].split("/")
        is_pkg = parts[-1] == "__init__"
        module = ".".join(parts[:-1] if is_pkg else parts)

        def record(node: ast.Import | ast.ImportFrom, typing_only: bool, in_function: bool) -> None:
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative: from the module's package, one level up per extra dot
                    package = module if is_pkg else module.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        package = package.rpartition(".")[0]
                    base = f"{package}.{base}" if base else package
                # ``from pkg import sub`` imports the submodule sub; ``from mod import name`` the module
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in names else base for a in node.names]
            for target in dict.fromkeys(targets):
                if target == root or target.startswith(root + "."):
                    found.append(Import(module, target, rel, node.lineno, typing_only, in_function))

        def visit(node: ast.AST, typing_only: bool, in_function: bool) -> None:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                record(node, typing_only, in_function)
                return
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                for child in node.body:
                    visit(child, True, in_function)
                for child in node.orelse:
                    visit(child, typing_only, in_function)
                return
            inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            for child in ast.iter_child_nodes(node):
                visit(child, typing_only, inner)

        visit(ast.parse(text, filename=rel), False, False)
    return found


def layer_of(module: str, root: str = "ddtool") -> str:
    """The layer of a module: the one whose prefix matches the most of its dotted name."""
    if module == root:
        return "package"
    rest = module[len(root) + 1:]
    matches = [(len(prefix), name) for name, prefixes in LAYERS for prefix in prefixes
               if rest == prefix or rest.startswith(prefix + ".")]
    assert matches, f"{module} has no place in the layering (tests/test_layers.py, LAYERS)"
    return max(matches)[1]


def upward(imports: list[Import], root: str = "ddtool") -> list[str]:
    """An import from a layer to one above it (or beside it, where they stay apart), one line each."""
    bad = []
    for imp in imports:
        src, dst = layer_of(imp.source, root), layer_of(imp.target, root)
        if RANK[dst] > RANK[src] or (src, dst) in BESIDE:
            how = "typing-only " if imp.typing_only else ("function-level " if imp.in_function else "")
            bad.append(f"{imp.file}:{imp.line}: {how}import of {imp.target} ({dst}) from {imp.source} ({src})")
    return bad


def cycles(imports: list[Import]) -> list[list[str]]:
    """The import cycles (strongly connected components of more than one module), each sorted.

    A package's ``__init__`` importing its own submodules is a re-export, not an edge."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.target.startswith(imp.source + ".") or imp.target == imp.source:
            continue
        graph.setdefault(imp.source, set()).add(imp.target)
        graph.setdefault(imp.target, set())
    # Tarjan's algorithm, iterative (the graph is a few hundred modules)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return sorted(found)


def _describe(component: list[str], imports: list[Import]) -> str:
    members = set(component)
    edges = sorted({f"{i.source} -> {i.target} ({i.file}:{i.line}{', typing-only' if i.typing_only else ''})"
                    for i in imports if i.source in members and i.target in members and i.source != i.target
                    and not i.target.startswith(i.source + ".")})
    return "cycle of " + ", ".join(component) + ":\n    " + "\n    ".join(edges)


def _sources(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder.parent).as_posix()): p.read_text(encoding="utf-8")
            for p in sorted(folder.rglob("*.py"))}


@pytest.fixture(scope="module")
def ddtool_imports() -> list[Import]:
    return read_imports(_sources(PACKAGE))


def test_no_layer_imports_one_above_it(ddtool_imports: list[Import]) -> None:
    bad = upward(ddtool_imports)
    assert bad == [], "imports from a lower layer to a higher one:\n" + "\n".join(bad)


def test_no_import_cycles(ddtool_imports: list[Import]) -> None:
    kept = [i for i in ddtool_imports if (i.source, i.target) not in KNOWN_CYCLE_EDGES]
    found = [_describe(c, kept) for c in cycles(kept)]
    assert found == [], "import cycles:\n" + "\n".join(found)
    # each known edge still exists and still closes a cycle
    components = [set(c) for c in cycles(ddtool_imports)]
    stale = [edge for edge in KNOWN_CYCLE_EDGES if not any(set(edge) <= c for c in components)]
    assert stale == [], f"no longer a cycle: remove from KNOWN_CYCLE_EDGES: {stale}"


def test_every_module_has_a_layer(ddtool_imports: list[Import]) -> None:
    for module in module_names(_sources(PACKAGE)):
        layer_of(module)  # raises, naming the module, when it has none


def test_module_names_are_unique() -> None:
    """One name, one module: ``ddtool.x.curves`` beside ``ddtool.y.curves`` sends a reader to the wrong
    file. The one repeat allowed is the layout every plugin kind's package shares: ``base.py`` (the
    kind's contract) and ``builtin.py`` (its built-in registrations), and ``__init__.py``."""
    names = [p.name for p in PACKAGE.rglob("*.py") if p.name not in ("__init__.py", "builtin.py", "base.py")]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []


def test_every_package_says_what_it_owns() -> None:
    """Each package's ``__init__`` opens with a docstring whose first line says what the package owns."""
    missing = [str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("__init__.py")
               if len((ast.get_docstring(ast.parse(p.read_text(encoding="utf-8"))) or "").split("\n")[0]) < 20]
    assert missing == []


# -- the checker catches what it should: a synthetic package, parsed the same way ----------------------

SYNTHETIC = {
    "ddtool/__init__.py": "",
    "ddtool/errors.py": "",
    "ddtool/store/__init__.py": "from ddtool.store.store import Store\n",
    "ddtool/store/store.py": "from ddtool.errors import DDToolError\n",
    "ddtool/data/__init__.py": "",
    "ddtool/data/dataset.py": (
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "from ddtool.store import Store\n"          # down: fine
        "if TYPE_CHECKING:\n"
        "    from ddtool.methods.base import M\n"   # typing-only, up
        "    from ddtool.errors import X\n"         # typing-only, down: fine
        "def load():\n"
        "    from ddtool.plugins import registries\n"  # function-level, up
        "    return registries()\n"),
    "ddtool/nets/__init__.py": "from ddtool.runtime import x\n",  # module level, up
    "ddtool/methods/__init__.py": "",
    "ddtool/methods/base.py": "from ddtool.compiled import C\n",
    "ddtool/compiled.py": "from . import plugins\nfrom .methods import base\n",
    "ddtool/plugins.py": "import ddtool.methods.base as b\n",
    "ddtool/runtime/__init__.py": "",
    "ddtool/runtime/x.py": "from ..errors import DDToolError\n",
    "ddtool/inspect/__init__.py": "from ddtool.runtime import x\n",  # beside: not allowed
}


def test_the_checker_finds_upward_imports_of_every_kind() -> None:
    bad = upward(read_imports(SYNTHETIC))
    assert len(bad) == 4, bad
    assert any(b.startswith("ddtool/data/dataset.py:5: typing-only import of ddtool.methods.base (training)")
               for b in bad), bad
    assert any(b.startswith("ddtool/data/dataset.py:8: function-level import of ddtool.plugins (training)")
               for b in bad), bad
    assert any(b.startswith("ddtool/nets/__init__.py:1: import of ddtool.runtime.x (runtime (shared))")
               for b in bad), bad
    assert any(b.startswith("ddtool/inspect/__init__.py:1: import of ddtool.runtime.x") for b in bad), bad
    # the downward imports (typing-only included) and relative ones that point down pass
    assert not any("ddtool.errors" in b or "ddtool.store" in b for b in bad), bad


def test_the_checker_finds_a_cycle_between_packages() -> None:
    imports = read_imports(SYNTHETIC)
    assert cycles(imports) == [["ddtool.compiled", "ddtool.methods.base", "ddtool.plugins"]]
    text = _describe(cycles(imports)[0], imports)
    assert "ddtool.methods.base -> ddtool.compiled (ddtool/methods/base.py:1)" in text, text
    # relative imports resolve: ``from . import plugins`` is ddtool.plugins, ``from .methods import base``
    # the submodule
    assert {(i.source, i.target) for i in imports if i.source == "ddtool.compiled"} == {
        ("ddtool.compiled", "ddtool.plugins"), ("ddtool.compiled", "ddtool.methods.base")}
    # a package re-exporting its own submodule is no cycle
    assert cycles(read_imports({"ddtool/__init__.py": "", "ddtool/store/__init__.py": "from ddtool.store import s\n",
                                "ddtool/store/s.py": "from ddtool.store import t\n",
                                "ddtool/store/t.py": ""})) == []


def test_the_checker_reads_this_package() -> None:
    """Not an empty scan: the imports made inside functions and under TYPE_CHECKING are seen."""
    imports = read_imports(_sources(PACKAGE))
    assert len(imports) > 500
    assert sum(i.in_function for i in imports) > 50 and sum(i.typing_only for i in imports) > 5


# -- what importing loads, in a fresh interpreter: the lazy re-exports the ast cannot see ---------------

PROBE = """
import json, sys
import ddtool.store
print(json.dumps(sorted(m for m in sys.modules if m == "ddtool" or m.startswith("ddtool."))))
"""


def test_import_ddtool_store_does_not_load_the_api() -> None:
    """``ddtool/__init__`` re-exports the public API and the verbs lazily (``__getattr__``, which the
    ast check does not follow): importing a low layer through it loads nothing above that layer."""
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    assert "ddtool.store" in loaded
    assert [m for m in loaded if layer_of(m) not in ("package", "helpers", "store")] == []


def test_test_modules_share_fixtures_not_imports() -> None:
    """Tests mirror the packages: helpers are fixtures in tests/conftest.py, no test module imports
    another (or conftest), and test file names are unique across folders (pytest imports them by name)."""
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
