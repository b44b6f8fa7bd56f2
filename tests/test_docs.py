"""The documentation cannot drift from the code: the generated parts of docs/ are what
docs/gen_reference.py prints, the Python examples of README.md and docs/ run as written (read from
the Markdown, not copied here), the plugin tutorial is the example plugin, every benchmark figure
of the CSV files is on the page it links to, and README's links resolve."""

from __future__ import annotations

import csv
import importlib.util
import os
import re
import shlex
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
BENCH = DOCS / "benchmarks"
FENCE = re.compile(r"^(?P<marker><!-- docs-test: (?P<what>[^>]*?) -->\n)?```python\n(?P<code>.*?)^```", re.S | re.M)
# pages whose examples another test runs and checks in detail (it reads them from the page too)
RUN_ELSEWHERE = {"docs/python-api.md": "tests/test_python_api.py",
                 "docs/sharing.md": "tests/runtime/exchange/test_hf_folder.py"}  # beside a folder it exports


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _markdown() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def python_blocks(path: Path) -> list[tuple[str | None, str]]:
    """(marker, code) of each fenced ```python block, in order; marker is the text of a
    ``<!-- docs-test: ... -->`` line right above the fence."""
    return [(m["what"], m["code"]) for m in FENCE.finditer(path.read_text(encoding="utf-8"))]


def test_generated_pages_are_what_the_generator_prints() -> None:
    gen = _generator()
    pages = gen.pages()
    assert {p.name for p in pages} >= {"pretrain.md", "distill.md", "eval.md", "report.md", "inspect.md",
                                        "store.md", "plugins.md", "recipes.md", "index.md"}
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert gen.render(text) == text, f"{page.relative_to(ROOT)} differs from the code: run python docs/gen_reference.py"


def test_the_generator_notices_a_changed_option() -> None:
    gen = _generator()
    text = (DOCS / "eval.md").read_text(encoding="utf-8")
    stale = text.replace("| `--repeats` |", "| `--repeatz` |")
    assert stale != text and gen.render(stale) == text
    # every recipe key of the code is on the recipes page
    from ddtool import recipe

    page = (DOCS / "recipes.md").read_text(encoding="utf-8")
    for section, f in recipe.SECTIONS.items():
        for key in f.default_factory().__dataclass_fields__:  # type: ignore[misc]
            assert f"`{section}.{key}`" in page, (section, key)


@pytest.mark.parametrize("page", [p for p in _markdown() if python_blocks(p)], ids=lambda p: str(p.relative_to(ROOT)))
def test_python_examples_run_as_written(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread) -> None:  # type: ignore[no-untyped-def]
    rel = str(page.relative_to(ROOT))
    if rel in RUN_ELSEWHERE:
        owner = ROOT / RUN_ELSEWHERE[rel]
        assert rel in owner.read_text(encoding="utf-8"), f"{owner.name} should read its example from {rel}"
        pytest.skip(f"run and checked by {RUN_ELSEWHERE[rel]}")
    blocks = python_blocks(page)
    to_run = [code for what, code in blocks if not (what or "").startswith("skip")]
    # a page's blocks are one program, in order (a tutorial builds on its earlier steps), run in an
    # empty folder with the repository's docs/ and recipes/ beside it and a store of its own
    for name in ("docs", "recipes"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DDTOOL_HOME", str(tmp_path / "store"))
    scope: dict[str, object] = {"__name__": "docs_example"}
    # dont_inherit: the example runs as a reader runs it, without this module's __future__ imports
    exec(compile("\n".join(to_run), rel, "exec", dont_inherit=True), scope)  # noqa: S102 - the docs' own code
    assert to_run, f"every block of {rel} is marked skip"


CONSOLE = re.compile(r"^<!-- docs-test: run -->\n```console\n(?P<body>.*?)^```", re.S | re.M)


def console_blocks() -> list[tuple[Path, list[list[str]]]]:
    """(page, the argument lists of its `$ ddtool ...` lines) of each console block marked to run."""
    out = []
    for page in _markdown():
        for m in CONSOLE.finditer(page.read_text(encoding="utf-8")):
            lines = [line[2:] for line in m["body"].splitlines() if line.startswith("$ ")]
            assert lines and all(line.startswith("ddtool ") for line in lines), (page.name, lines)
            out.append((page, [shlex.split(line, comments=True)[1:] for line in lines]))
    return out


@pytest.mark.parametrize("page,commands", console_blocks(), ids=lambda v: v.name if isinstance(v, Path) else "")
def test_marked_console_blocks_run_as_written(page: Path, commands: list[list[str]], cli, tmp_path: Path,  # type: ignore[no-untyped-def]
                                              monkeypatch: pytest.MonkeyPatch, one_thread) -> None:
    monkeypatch.chdir(tmp_path)  # relative --store folders land here
    for args in commands:
        res = cli(*args)
        assert res.exit_code == 0, f"{page.name}: ddtool {' '.join(args)} -> exit {res.exit_code}: {res.stderr or res.stdout}"
        assert res.stdout.strip(), f"{page.name}: ddtool {' '.join(args)} printed nothing"


def test_illustrative_blocks_say_why_and_are_counted() -> None:
    skipped, total = [], 0
    for page in _markdown():
        for what, _ in python_blocks(page):
            total += 1
            if what is not None:
                assert re.fullmatch(r"skip \S.*", what), f"{page.name}: a docs-test marker is 'skip REASON', got {what!r}"
                skipped.append((page.name, what))
    assert total >= 7  # the Python API example, the tutorial's five steps, the CSV reader
    print(f"{len(skipped)} of {total} Python blocks are illustrative only: {skipped}")


def test_the_plugin_tutorial_is_the_example_plugin() -> None:
    source = (ROOT / "plugins" / "ddtool-pixelmmd" / "ddtool_pixelmmd" / "__init__.py").read_text(encoding="utf-8")
    blocks = [code for _, code in python_blocks(DOCS / "plugin-tutorial.md")]
    assert len(blocks) == 4  # one per step that writes code
    pos = 0
    for code in blocks:  # each step is in the plugin verbatim, in the tutorial's order
        i = source.find(code, pos)
        assert i >= 0, f"tutorial block not in the plugin as written:\n{code}"
        pos = i + len(code)
    pyproject = (ROOT / "plugins" / "ddtool-pixelmmd" / "pyproject.toml").read_text(encoding="utf-8")
    toml = re.search(r"```toml\n(.*?)```", (DOCS / "plugin-tutorial.md").read_text(encoding="utf-8"), re.S)
    assert toml and all(line in pyproject for line in toml[1].splitlines())


def _figures(cell: str) -> list[str]:
    return re.findall(r"[−+]?\d[\d,]*(?:\.\d+)?x?|\b[0-9a-f]{7}\b", cell)


@pytest.mark.parametrize("name,columns", [("accuracy.csv", ("ddtool", "reference", "paper", "difference", "commit")),
                                          ("speed.csv", ("ratio", "baseline", "commit"))])
def test_every_benchmark_figure_is_on_its_dated_page(name: str, columns: tuple[str, ...]) -> None:
    with (BENCH / "results" / name).open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows
    for row in rows:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", row["date"]) and row["command"] and row["machine"], row
        page = (BENCH / row["page"]).read_text(encoding="utf-8")
        for col in columns:
            for figure in _figures(row[col]):
                assert figure in page, f"{name}: {figure} ({col}) is not on {row['page']}"
    summary = (BENCH / "index.md").read_text(encoding="utf-8")
    assert all(row["page"] in summary for row in rows)


def _slug(heading: str) -> str:
    """Python-Markdown's toc slug, which MkDocs uses for anchors."""
    text = re.sub(r"[`*\[\]()]", "", heading).strip().lower()
    text = re.sub(r"[^\w\s-]", "", text)
    return re.sub(r"[-\s]+", "-", text)


@pytest.mark.parametrize("doc", ["README.md", "BENCHMARKS.md", "plugins/ddtool-pixelmmd/README.md"])
def test_links_outside_the_site_resolve(doc: str) -> None:
    """MkDocs checks docs/; these files link into it from outside, so they are checked here."""
    path = ROOT / doc
    for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+://", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        assert dest.exists(), f"{doc}: link to a missing file {target}"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", dest.read_text(encoding="utf-8"), re.M)
            assert anchor in {_slug(h) for h in headings}, f"{doc}: no heading for #{anchor} in {file}"


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, len(lines)
