"""Where a ``--recipe`` argument points: a TOML file, or a recipe shipped with ddtool, by its name.

The shipped recipes are the repository's top-level ``recipes/`` folder. A wheel installs that
folder as ``ddtool/recipes/`` (pyproject's ``package-dir`` maps the one onto the other, so git holds
one copy); a source checkout (an editable install, or ``PYTHONPATH``) reads the folder itself.

A bare name (``ours10`` or ``ours10.toml``: no folder in it) is a file of that name in the current
folder when there is one (it wins, and :func:`find_recipe` says so), else the shipped recipe of
that name. Anything with a folder in it is a path, as before.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ddtool.errors import UsageError, closest

SUFFIX = ".toml"
LIST_COMMAND = "ddtool recipes"


def shipped_dir() -> Path | None:
    """The folder of the shipped recipes, or None when this install has none."""
    packaged = resources.files("ddtool") / "recipes"
    if isinstance(packaged, Path) and packaged.is_dir():  # a wheel (or sdist) install
        return packaged
    # a source checkout: the recipes/ beside the package that runs, not an installed copy, so a
    # second checkout on PYTHONPATH reads its own recipes
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file() and (checkout / "recipes").is_dir():
        return checkout / "recipes"
    return None


def shipped() -> dict[str, Path]:
    """Every shipped recipe by name (the file's name without .toml), sorted by name."""
    folder = shipped_dir()
    if folder is None:
        return {}
    return {p.stem: p for p in sorted(folder.glob(f"*{SUFFIX}")) if p.is_file()}


@dataclass(frozen=True)
class Found:
    """A recipe file: ``shipped`` when it is one of ddtool's; ``note`` says when a file in the
    current folder was taken over a shipped recipe of the same name."""

    path: Path
    shipped: bool
    note: str = ""


def _is_bare(text: str) -> bool:
    seps = [s for s in (os.sep, os.altsep, "/") if s]
    return bool(text) and not any(s in text for s in seps) and text not in (".", "..")


def find_recipe(ref: str | Path) -> Found:
    """The file ``ref`` names: a path, or a bare name (a local file first, then a shipped recipe).

    Raises a one-line :class:`UsageError` naming the shipped recipes when nothing matches."""
    text = str(ref)
    if not _is_bare(text):
        path = Path(text).expanduser()
        if path.is_file():
            return Found(path, shipped=False)
        raise UsageError(f"recipe file '{text}' not found; a shipped recipe runs by its name, e.g. "
                         f"--recipe ours10 ({LIST_COMMAND} lists them)")
    name = text[: -len(SUFFIX)] if text.endswith(SUFFIX) else text
    candidates = [Path(text)] if text.endswith(SUFFIX) else [Path(text), Path(text + SUFFIX)]
    local = next((c for c in candidates if c.is_file()), None)
    ships = shipped()
    ship = ships.get(name)
    if local is not None and ship is not None:
        if local.resolve() == ship.resolve():  # run from inside the shipped folder: the same file
            return Found(ship, shipped=True)
        return Found(local, shipped=False, note=(
            f"using the file {local} in this folder, not the shipped recipe '{name}' "
            f"(its path: {LIST_COMMAND} --json)"))
    if local is not None:
        return Found(local, shipped=False)
    if ship is not None:
        return Found(ship, shipped=True)
    if not ships:
        raise UsageError(f"recipe file '{text}' not found in this folder, and this install of ddtool ships no "
                         "recipes; give the recipe file's path")
    raise UsageError(f"recipe file '{text}' not found in this folder, and no shipped recipe is named "
                     f"'{name}'{closest(name, list(ships))}; shipped: {', '.join(ships)} ({LIST_COMMAND} describes them)")
