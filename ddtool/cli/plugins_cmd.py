"""``ddtool plugins``: every registered method, strategy, schedule, dataset and architecture."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from ddtool.cli import options as o
from ddtool.cli.common import console, guarded, print_json


@guarded
def plugins_cmd(
    kind: Annotated[Optional[str], typer.Option(help="Only this kind: method, selection, schedule, dataset, architecture.")] = None,
    as_json: o.Json = False,
) -> None:
    """Every registered method, selection strategy, schedule, dataset and architecture, and where it came from."""
    from ddtool.errors import UsageError
    from ddtool.plugins import KINDS, registries

    regs = registries()
    if kind is not None and kind not in KINDS:
        raise UsageError(f"unknown kind '{kind}'; choose one of {', '.join(KINDS)}")
    rows = [{"kind": k, "name": e.name, "aliases": list(e.aliases), "plugin": e.source,
             "distribution": e.distribution, "description": getattr(e.obj, "description", "")}
            for k in KINDS if kind in (None, k) for e in regs.kind(k)]
    if as_json:
        print_json(rows)
        return
    table = Table(title="registered plugins")
    for col in ("kind", "name", "aliases", "from", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["kind"], r["name"], ", ".join(r["aliases"]), r["distribution"], r["description"])
    console.print(table)
