"""Options several commands share, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

Recipe = Annotated[Optional[str], typer.Option(
    "--recipe", "-r", metavar="NAME|FILE",
    help="A shipped recipe by name (e.g. ours10; 'ddtool recipes' lists them) or a TOML recipe file. A file of "
         "that name in the current folder wins over the shipped one, and a note says so.")]
Set = Annotated[Optional[list[str]], typer.Option(
    "--set", "-s", help="Override a recipe key: SECTION.KEY=VALUE (repeatable), e.g. distill.ipc=10.")]
Device = Annotated[str, typer.Option(help="Where to compute: auto (CUDA when available), cpu, cuda or cuda:N (GPU number N).")]
DataRoot = Annotated[Optional[Path], typer.Option(
    help="Folder with downloaded datasets (default: $DDTOOL_DATA or the user cache dir).")]
Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
