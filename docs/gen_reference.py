"""Write the generated parts of the documentation from the code that is their source.

Each page keeps hand-written prose around blocks marked

    <!-- BEGIN GENERATED: KIND ARG -->
    ...
    <!-- END GENERATED -->

and this script rewrites what is between the markers: the options of a verb (from the Typer/click
command: names, defaults, help), the recipe keys (from ``ddtool.recipe``'s dataclasses and the
comments beside their fields), the options of every built-in method and selection strategy
(their option dataclasses), the shipped recipes (their ``description``), and the benchmark
summary (from ``docs/benchmarks/results/*.csv``).

    python docs/gen_reference.py           # rewrite the pages
    python docs/gen_reference.py --check   # exit 1, naming the pages, when a page differs

The pages are committed rather than generated inside the MkDocs build so that they read as they
are on GitHub and in a clone, and so that building the site needs only MkDocs, not torch;
tests/test_docs.py runs ``--check``, so a changed option or key fails CI until the pages follow.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import inspect
import re
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
RESULTS = DOCS / "benchmarks" / "results"

BLOCK = re.compile(r"(<!-- BEGIN GENERATED: (?P<kind>[\w-]+)(?: (?P<arg>[^>]*?))? -->\n)(?P<body>.*?)(<!-- END GENERATED -->)",
                   re.S)


def _cell(text: str) -> str:
    """One Markdown table cell: no line breaks, no bare pipes, Rich's escaped brackets plain."""
    text = re.sub(r":\w+:`([^`]+)`", r"`\1`", str(text)).replace("``", "`")
    text = " ".join(text.replace("\\[", "[").split())
    return text.replace("|", "\\|")


# ---------------------------------------------------------------------------------------- verbs

def _command(path: str) -> Any:
    import typer

    from ddtool.cli import app  # the built-in verbs: plugins add theirs only when the CLI's main() runs

    cmd = typer.main.get_command(app)
    for part in path.split():
        cmd = cmd.commands[part]  # type: ignore[attr-defined]
    return cmd


def _param_row(p: Any) -> str:
    if p.param_type_name == "argument":
        name = f"`{(p.metavar or p.name).upper()}`" + (" ..." if p.nargs == -1 else "")
        return f"| {name} | argument{'' if p.required else ', optional'} | {_cell(getattr(p, 'help', '') or '')} |"
    names = ", ".join(f"`{o}`" for o in (*p.opts, *p.secondary_opts))
    if p.is_flag:
        what = "flag"
    else:
        what = f"`{p.metavar or p.name.upper()}`" + (", repeatable" if p.multiple else "")
        if p.default not in (None, (), [], False) and p.show_default is not False:
            what += f"; default `{p.default}`"
    return f"| {names} | {what} | {_cell(p.help or '')} |"


def gen_options(path: str) -> str:
    cmd = _command(path)
    out = [f"`ddtool {path}`: {_cell(cmd.help or '')}", ""]
    subs = getattr(cmd, "commands", None)
    if subs:
        for name, sub in subs.items():
            out += [f"#### `ddtool {path} {name}`", "", _cell(sub.help or ""), ""]
            out += _param_table(sub.params)
    else:
        out += _param_table(cmd.params)
    return "\n".join(out).rstrip() + "\n"


def _param_table(params: list[Any]) -> list[str]:
    rows = [_param_row(p) for p in params if p.name not in ("help", "install_completion", "show_completion")]
    if not rows:
        return ["(no options)", ""]
    return ["| option | takes | what |", "|---|---|---|", *rows, ""]


def gen_global() -> str:
    return "\n".join(_param_table(_command("").params)).rstrip() + "\n"


# ------------------------------------------------------------------------------- recipe keys

def _field_notes(cls: type) -> dict[str, str]:
    """field name -> the comment beside it (and the comment lines just above), from the source."""
    lines, start = inspect.getsourcelines(cls)
    tree = ast.parse(textwrap.dedent("".join(lines)))
    notes: dict[str, str] = {}
    for node in tree.body[0].body:  # type: ignore[attr-defined]
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        i = node.lineno - 1
        above = []
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("#"):
            above.insert(0, lines[j].strip().lstrip("#").strip())
            j -= 1
        end = (node.end_lineno or node.lineno) - 1
        trailing = lines[end].split("  # ", 1)[1].strip() if "  # " in lines[end] else ""
        notes[node.target.id] = " ".join(x for x in (*above, trailing) if x)
    return notes


def _default(f: dataclasses.Field) -> Any:  # type: ignore[type-arg]
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{}" if not value else str(value)
    return str(value)


def _key_table(cls: type, prefix: str, skip: tuple[str, ...] = ()) -> list[str]:
    notes = _field_notes(cls)
    rows = ["| key | default | what |", "|---|---|---|"]
    for f in dataclasses.fields(cls):
        if f.name in skip or dataclasses.is_dataclass(_default(f)):
            continue
        rows.append(f"| `{prefix}{f.name}` | `{_cell(_toml(_default(f)))}` | {_cell(notes.get(f.name, ''))} |")
    return rows + [""]


def gen_recipe_keys() -> str:
    from ddtool import recipe

    out = ["Top level (they describe the file; `wall_*` are not part of the recipe's hash):", ""]
    out += _key_table(recipe.Recipe, "", skip=("origins",))
    for name, f in recipe.SECTIONS.items():
        out += [f"`[{name}]`", ""]
        out += _key_table(type(_default(f)), f"{name}.")
    return "\n".join(out).rstrip() + "\n"


def gen_method_options() -> str:
    from ddtool import plugins

    regs = plugins.registries()
    out: list[str] = []
    for entry in regs.method:
        if not entry.source.startswith("ddtool."):  # built-ins only: the page must not depend on what is installed
            continue
        opts = getattr(entry.obj, "options_type", None)
        head = f"`{entry.name}`" + (f" (aliases {', '.join(entry.aliases)})" if entry.aliases else "")
        if opts is None:
            out += [f"- {head}: no `[distill.options]`.", ""]
            continue
        out += [f"**{head}** (`{opts.__name__}`)", ""]
        out += _key_table(opts, "distill.options.")
    for entry in regs.selection:
        if not entry.source.startswith("ddtool."):
            continue
        module = sys.modules[type(entry.obj).__module__]
        for obj in vars(module).values():
            if (inspect.isclass(obj) and dataclasses.is_dataclass(obj)
                    and f"[distill.options.{entry.name}]" in (obj.__doc__ or "")):
                out += [f"**selection `{entry.name}`** (`{obj.__name__}`)", ""]
                out += _key_table(obj, f"distill.options.{entry.name}.")
    return "\n".join(out).rstrip() + "\n"


def gen_shipped_recipes() -> str:
    import tomllib

    rows = ["| recipe | what it runs |", "|---|---|"]
    for path in sorted((ROOT / "recipes").glob("*.toml")):
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        rows.append(f"| `{path.stem}` | {_cell(raw.get('description', ''))} |")
    return "\n".join(rows) + "\n"


# ------------------------------------------------------------------------------ benchmarks

def read_results(name: str) -> list[dict[str, str]]:
    with (RESULTS / name).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def gen_accuracy_summary() -> str:
    rows = read_results("accuracy.csv")
    out = ["| method | dataset, ipc | budget | ddtool % | reference code % | paper % | ddtool − reference | date, commit | details |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(
            f"| {r['method']} | {r['dataset']}, {r['ipc']} | {_cell(r['budget'])} | {r['ddtool']} | {r['reference'] or '—'} | "
            f"{r['paper'] or '—'} | {r['difference'] or '—'} | {r['date']}, `{r['commit']}` | [{r['page_title']}]({r['page']}) |")
    return "\n".join(out) + "\n"


def gen_speed_summary() -> str:
    rows = read_results("speed.csv")
    out = ["| what | against | ratio | machine | date, commit | details |", "|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {_cell(r['what'])} | {_cell(r['baseline'])} | **{r['ratio']}** | {_cell(r['machine'])} | "
                   f"{r['date']}, `{r['commit']}` | [{r['page_title']}]({r['page']}) |")
    return "\n".join(out) + "\n"


def gen_hookspecs() -> str:
    from ddtool import hookspecs

    out = []
    for name, fn in vars(hookspecs).items():
        if name.startswith("ddtool_") and inspect.isfunction(fn):
            sig = str(inspect.signature(fn)).replace("'", "")
            out += [f"- `{name}{sig}`: {_cell(inspect.getdoc(fn) or '')}"]
    return "\n".join(out) + "\n"


def _first_paragraph(doc: str | None) -> str:
    return _cell((inspect.cleandoc(doc or "").split("\n\n") or [""])[0])


def _members(base: type) -> list[str]:
    """One row per public member the contract defines: attributes with their default and the
    comment beside them, methods with their signature and the first paragraph of their docstring."""
    notes = _field_notes_any(base)
    rows = ["| member | default | what |", "|---|---|---|"]
    for name in getattr(base, "__annotations__", {}):  # declared without a value: the plugin gives it
        if not name.startswith("_") and name not in vars(base):
            rows.append(f"| `{name}` | (required) | {_cell(notes.get(name, ''))} |")
    for name, value in vars(base).items():
        if name.startswith("_"):
            continue
        if inspect.isfunction(value):
            # the whole docstring: its later paragraphs say what a plugin must accept or return
            rows.append(f"| `{name}({_params(value)})` | (method) | {_cell(inspect.cleandoc(value.__doc__ or ''))} |")
        elif isinstance(value, property):
            rows.append(f"| `{name}` | (property) | {_first_paragraph(value.__doc__)} |")
        elif not callable(value) or isinstance(value, type) or value is None:
            shown = value.__name__ if isinstance(value, type) else repr(value)
            rows.append(f"| `{name}` | `{_cell(shown)}` | {_cell(notes.get(name, ''))} |")
    return rows + [""]


def _params(fn: Callable[..., Any]) -> str:
    """The parameter names of a method (its types are in the API), with defaults, less ``self``."""
    out = []
    for p in list(inspect.signature(fn).parameters.values())[1:]:
        prefix = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
        out.append(prefix + p.name + ("" if p.default is p.empty else f"={p.default!r}"))
    return ", ".join(out)


def _field_notes_any(cls: type) -> dict[str, str]:
    """_field_notes for any class: the comment beside (and above) each annotated or assigned name."""
    lines, _ = inspect.getsourcelines(cls)
    tree = ast.parse(textwrap.dedent("".join(lines)))
    notes: dict[str, str] = {}
    for node in tree.body[0].body:  # type: ignore[attr-defined]
        target = node.target if isinstance(node, ast.AnnAssign) else (node.targets[0] if isinstance(node, ast.Assign) else None)
        if not isinstance(target, ast.Name):
            continue
        above, j = [], node.lineno - 2
        while j >= 0 and lines[j].strip().startswith("#"):
            above.insert(0, lines[j].strip().lstrip("#").strip())
            j -= 1
        end = (node.end_lineno or node.lineno) - 1
        trailing = lines[end].split("  # ", 1)[1].strip() if "  # " in lines[end] else ""
        notes[target.id] = " ".join(x for x in (*above, trailing) if x)
    return notes


def gen_contracts() -> str:
    from ddtool import plugins

    out = ["| hook | contract (in `ddtool.api`) | required |", "|---|---|---|"]
    for kind, hookname in plugins.KINDS.items():
        c = plugins.CONTRACTS[kind]
        out.append(f"| `{hookname}` | [`{c.base.__name__}`](#{c.base.__name__.lower()}) | "
                   f"{', '.join(f'`{m}`' for m in c.required)} |")
    out += ["| `ddtool_register_commands` | Typer commands on `app` (`@app.command()`) | |", ""]
    for kind in plugins.KINDS:
        base = plugins.CONTRACTS[kind].base
        out += [f"### {base.__name__}", "", _first_paragraph(base.__doc__), ""]
        out += _members(base)
    return "\n".join(out).rstrip() + "\n"


GENERATORS: dict[str, Callable[..., str]] = {
    "contracts": lambda _arg=None: gen_contracts(),
    "hookspecs": lambda _arg=None: gen_hookspecs(),
    "options": gen_options,
    "global-options": lambda _arg=None: gen_global(),
    "recipe-keys": lambda _arg=None: gen_recipe_keys(),
    "method-options": lambda _arg=None: gen_method_options(),
    "shipped-recipes": lambda _arg=None: gen_shipped_recipes(),
    "accuracy-summary": lambda _arg=None: gen_accuracy_summary(),
    "speed-summary": lambda _arg=None: gen_speed_summary(),
}


def render(text: str) -> str:
    def one(m: re.Match[str]) -> str:
        kind, arg = m["kind"], m["arg"]
        body = GENERATORS[kind](arg) if arg is not None else GENERATORS[kind]()
        return f"{m.group(1)}{body}{m.group(5)}"

    return BLOCK.sub(one, text)


def pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "BEGIN GENERATED" in p.read_text(encoding="utf-8"))


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for page in pages():
        old = page.read_text(encoding="utf-8")
        new = render(old)
        if new != old:
            stale.append(page.relative_to(ROOT))
            if not check:
                page.write_text(new, encoding="utf-8")
    if check and stale:
        print(f"generated docs out of date: {', '.join(map(str, stale))}; run python docs/gen_reference.py",
              file=sys.stderr)
        return 1
    if not check:
        print(f"{len(stale)} page(s) rewritten" if stale else "pages up to date")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main(sys.argv[1:]))
