"""``ddtool plugins``: every registered method, strategy, schedule, dataset and architecture."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from ddtool.cli import options as o
from ddtool.cli.common import console, err, guarded, print_json
from ddtool.cli.render import Col, fitted_table

BUILT_IN = "(built-in)"


def _origin(distribution: str) -> str:
    """'built-in', or the distribution without its version: the list's short 'from' cell."""
    return "built-in" if distribution.endswith(BUILT_IN) else distribution.split(" ")[0]


def _print_list(rows: list[dict[str, Any]], kinds: list[str]) -> None:
    """One table, a heading row per kind; names and aliases whole, descriptions cut to the width."""
    cols = [Col("name"), Col("aliases", wrap=True), Col("from", drop=2), Col("description", whole=False, min_width=12)]
    cells: list[list[str]] = []
    styles: list[str | None] = []
    for k in kinds:
        mine = [r for r in rows if r["kind"] == k]
        if mine:
            cells.append([k, "", "", ""])
            cells += [["  " + r["name"], ", ".join(r["aliases"]), _origin(r["distribution"]), r["description"]]
                      for r in mine]
            styles += ["bold"] + [None] * len(mine)
    table, lost = fitted_table("registered plugins", cols, cells, console.width, styles)
    console.print(table)
    if "description" in lost:
        err.print("'ddtool plugins NAME' shows a plugin's whole description", highlight=False)


def _print_one(rows: list[dict[str, Any]]) -> None:
    for n, r in enumerate(rows):
        if n:
            console.print()
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()  # wraps at the terminal's width
        # plain text: a plugin's own strings are no markup
        for label, value in (("kind", r["kind"]), ("name", r["name"]), ("aliases", ", ".join(r["aliases"]) or "none"),
                             ("from", f"{r['distribution']}, plugin module {r['plugin']}"),
                             ("description", r["description"] or "none given")):
            grid.add_row(label, Text(value))
        console.print(grid, highlight=False)


@guarded
def plugins_cmd(
    name: Annotated[Optional[str], typer.Argument(
        help="One plugin (a name or an alias) in full: its whole description, aliases and where it came from.",
        show_default=False)] = None,
    kind: Annotated[Optional[str], typer.Option(help="Only this kind: method, selection, schedule, dataset, architecture.")] = None,
    as_json: o.Json = False,
) -> None:
    """Every registered method, selection strategy, schedule, dataset and architecture, and where it came from.

    Descriptions are cut to the terminal's width; 'ddtool plugins NAME' shows one whole.
    """
    from ddtool.errors import UsageError, closest
    from ddtool.plugins import KINDS, registries

    regs = registries()
    if kind is not None and kind not in KINDS:
        raise UsageError(f"unknown kind '{kind}'; choose one of {', '.join(KINDS)}")
    rows = [{"kind": k, "name": e.name, "aliases": list(e.aliases), "plugin": e.source,
             "distribution": e.distribution, "description": getattr(e.obj, "description", "")}
            for k in KINDS if kind in (None, k) for e in regs.kind(k)]
    if name is not None:
        rows = [r for r in rows if name == r["name"] or name in r["aliases"]]
        if not rows:
            known = sorted({n for k in KINDS if kind in (None, k) for n in regs.kind(k).names()})
            where = f" {kind}" if kind else ""
            raise UsageError(f"no{where} plugin is named '{name}'{closest(name, known)}; 'ddtool plugins' lists them")
    if as_json:
        print_json(rows)
    elif name is not None:
        _print_one(rows)
    else:
        _print_list(rows, list(KINDS))
