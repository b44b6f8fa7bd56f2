"""``ddtool recipes``: the recipes shipped with ddtool, each with what it runs and its wall time."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from ddtool.cli import options as o
from ddtool.cli.common import console, guarded, print_json


@guarded
def recipes_cmd(as_json: o.Json = False) -> None:
    """The shipped recipes ('ddtool distill --recipe NAME' runs one), with a line on what each runs and
    its measured wall time on the embedded digits and at the paper's scale."""
    from ddtool.runtime.recipe_catalog import shipped_recipes

    infos = shipped_recipes()
    if as_json:
        print_json([i.to_dict() for i in infos])
        return
    # a name column and a wrapped text column, a blank line between recipes: reads at 80 columns
    table = Table.grid(padding=(0, 2))
    table.add_column(no_wrap=True, style="bold")
    table.add_column(overflow="fold")
    for n, i in enumerate(infos):
        if n:
            table.add_row("", "")
        text = Text(i.description or "(no description)")
        if i.first:
            text.append("\nfirst: ", style="dim").append(i.first)
        text.append("\ndigits: ", style="dim").append(i.wall_digits or "not stated")
        text.append("\npaper: ", style="dim").append(i.wall_paper or "not stated")
        table.add_row(i.name, text)
    if not infos:
        console.print("this install of ddtool ships no recipes")
        return
    console.print(table)
    console.print(Text(f"{len(infos)} recipes; run one with: ddtool distill --recipe NAME", style="dim"))
