"""The recipes shipped with ddtool: what each runs, what it needs first, and its measured wall time."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ddtool.recipe import load_recipe
from ddtool.recipe_source import shipped


@dataclass(frozen=True)
class RecipeInfo:
    name: str  # what --recipe takes
    description: str
    method: str
    first: str  # the command that makes what the recipe needs (a pool, expert trajectories), or ''
    wall_digits: str  # measured on the embedded digits (the recipe's [scale.digits] budget)
    wall_paper: str  # at the paper's scale
    path: str  # the file read

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _first(name: str, recipe: Any) -> str:
    if recipe.distill.options.get("trajectories"):
        return f"ddtool pretrain --trajectories --recipe {name}"
    if recipe.distill.pool:
        return f"ddtool pretrain --recipe {name}"
    return ""


def shipped_recipes() -> list[RecipeInfo]:
    """Every shipped recipe, by name, as it runs on its own ``[data]`` (the embedded digits)."""
    out = []
    for name, path in shipped().items():
        r = load_recipe(path)
        out.append(RecipeInfo(name=name, description=r.description, method=r.distill.method, first=_first(name, r),
                              wall_digits=r.wall_digits, wall_paper=r.wall_paper, path=str(path)))
    return out
