"""Shipped recipes: a bare name runs one, a path still works, a local file of the same name wins and
says so, an unknown name lists the shipped ones; ``ddtool recipes`` lists them with what each runs
and its wall time; every shipped recipe has a digits budget and states its wall times."""

from __future__ import annotations

import json
import re
import tomllib
import warnings
from pathlib import Path

import pytest

from ddtool.errors import UsageError
from ddtool.recipe import load_recipe
from ddtool.recipe_source import find_recipe, shipped, shipped_dir

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.toml"))
NAMES = [p.stem for p in RECIPES]
# a recipe written for the digits alone: its own budget is the digits one, there is no paper scale
DIGITS_ONLY = {"quickstart"}


def _dry_run(cli, *args: str):  # type: ignore[no-untyped-def]
    return cli("distill", *args, "--dry-run", "--no-estimate", "--json")  # the plan alone: no probe


def test_the_shipped_recipes_are_the_checkouts_recipes_folder() -> None:
    assert shipped_dir() == ROOT / "recipes"
    assert list(shipped()) == NAMES and len(NAMES) >= 18


def test_a_bare_name_runs_the_shipped_recipe(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # outside the checkout: no recipes/ here
    res = _dry_run(cli, "--recipe", "idc")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    shipped_recipe = load_recipe(ROOT / "recipes" / "idc.toml")
    assert out["recipe"]["name"] == "idc" and out["recipe"]["description"] == shipped_recipe.description
    assert out["recipe"]["distill"]["options"] == shipped_recipe.distill.options
    assert out["recipe"]["distill"]["iterations"] == 100  # its [scale.digits] budget applied
    assert "shipped recipe" not in res.stderr  # nothing shadowed it: no note
    assert find_recipe("ours10.toml") == find_recipe("ours10")  # with or without the suffix
    assert find_recipe("ours10").shipped
    assert load_recipe("ours10").to_dict() == load_recipe(ROOT / "recipes" / "ours10.toml").to_dict()  # Python API


def test_a_path_still_works(cli, tiny_recipe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    res = _dry_run(cli, "--recipe", str(tiny_recipe))
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["recipe"]["name"] == "tiny"
    monkeypatch.chdir(ROOT)
    res = _dry_run(cli, "--recipe", "recipes/idc400.toml")  # relative, with a folder: a path, no lookup
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["recipe"]["name"] == "idc400" and res.stderr == ""
    res = _dry_run(cli, "--recipe", str(tmp_path / "nowhere" / "ours10.toml"))  # a path that is not there
    assert res.exit_code == 2
    assert "recipe file" in res.stderr and "not found" in res.stderr and "Traceback" not in res.output


def test_a_local_file_of_the_same_name_wins_and_says_so(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ours10.toml").write_text('description = "mine"\n[distill]\nmethod = "dm"\nipc = 3\n')
    res = _dry_run(cli, "--recipe", "ours10")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["recipe"]["description"] == "mine" and out["recipe"]["distill"]["ipc"] == 3
    note = [line for line in res.stderr.splitlines() if "shipped recipe" in line]
    assert len(note) == 1, res.stderr
    assert "ours10.toml" in note[0] and "not the shipped recipe 'ours10'" in note[0]
    # the same from Python: a warning, the local file read
    with pytest.warns(UserWarning, match="not the shipped recipe 'ours10'"):
        assert load_recipe("ours10").distill.ipc == 3
    # in the shipped folder itself the local file is the shipped one: no note
    monkeypatch.chdir(ROOT / "recipes")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_recipe("ours10").sha256() == load_recipe(ROOT / "recipes" / "ours10.toml").sha256()


@pytest.mark.parametrize("command", [
    ["distill", "--dry-run", "--no-estimate"],
    ["pretrain"],
    ["eval", "synthetic/none"],
    ["report", "--dataset", "digits"],
])
def test_every_recipe_option_resolves_names(cli, command: list[str], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = cli(*command, "--recipe", "ours11")  # unknown: one line naming the shipped ones, exit 2
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.output
    assert "recipe file 'ours11' not found in this folder, and no shipped recipe is named 'ours11'" in lines[0] and "did you mean 'ours10'" in lines[0]
    assert all(name in lines[0] for name in NAMES)
    # a local file of a shipped name is the one read (its bad key is what fails), after the note
    (tmp_path / "quickstart.toml").write_text("[distill]\nipcc = 1\n")
    res = cli(*command, "--recipe", "quickstart")
    assert res.exit_code == 2, res.output
    assert "not the shipped recipe 'quickstart'" in res.stderr and "unknown key 'ipcc'" in res.stderr


def test_unknown_name_from_python_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="no shipped recipe is named 'nosuch'; shipped: datm, datm_dynadistill, dc, dm"):
        load_recipe("nosuch")


def test_recipes_lists_every_shipped_recipe_with_its_facts(cli) -> None:
    res = cli("recipes", "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["name"] for r in rows] == NAMES
    for row, path in zip(rows, RECIPES):
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        assert row["description"] == raw["description"]
        assert row["wall_digits"] == raw["wall_digits"] and row["wall_paper"] == raw["wall_paper"]
        assert row["method"] == raw["distill"]["method"] and Path(row["path"]) == path
    first = {r["name"]: r["first"] for r in rows}
    assert first["ours10"] == "ddtool pretrain --recipe ours10"
    assert first["mtt"] == "ddtool pretrain --trajectories --recipe mtt"
    assert first["dm"] == "" and first["quickstart"] == ""

    res = cli("recipes", env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    flat = " ".join(" ".join(lines).split())  # wrapped text read back as one line
    for row in rows:
        assert f"{row['name']} {' '.join(row['description'].split())}" in flat
        assert f"digits: {' '.join(row['wall_digits'].split())}" in flat
        assert f"paper: {' '.join(row['wall_paper'].split())}" in flat
    assert f"{len(rows)} recipes" in flat


@pytest.mark.parametrize("path", RECIPES, ids=NAMES)
def test_every_shipped_recipe_runs_on_digits_and_states_its_wall_times(path: Path) -> None:
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    assert raw.get("description")
    # a measured figure in seconds, with the load it was measured under
    assert re.search(r"\d+(\.\d+)? s\b", raw.get("wall_digits", "")), raw.get("wall_digits")
    assert "load" in raw["wall_digits"]
    assert raw.get("wall_paper")
    if path.stem in DIGITS_ONLY:
        assert raw["data"]["dataset"] == "digits" and "scale" not in raw
    else:
        assert "digits" in raw.get("scale", {}), f"{path.name} has no [scale.digits] budget"
    r = load_recipe(path)  # the recipe as it runs on its default data, the embedded digits
    assert r.data.dataset == "digits" and r.eval.epochs <= 300
    if path.stem not in DIGITS_ONLY:  # the paper's budget stays the recipe's own elsewhere
        paper = load_recipe(path, ['data.dataset="cifar10"'])
        assert paper.eval.epochs >= r.eval.epochs and paper.distill.iterations >= r.distill.iterations
        assert (paper.eval.epochs, paper.distill.iterations) != (r.eval.epochs, r.distill.iterations)


def test_wall_times_are_strings_outside_the_hash(tiny_recipe: Path) -> None:
    base = load_recipe(tiny_recipe)
    stated = load_recipe(tiny_recipe, ['wall_digits="12 s (load 1.0)"', 'wall_paper="not measured on this CPU"'])
    assert stated.wall_digits == "12 s (load 1.0)" and stated.wall_paper == "not measured on this CPU"
    assert stated.sha256() == base.sha256()  # a re-measured time keeps the hash sets record
    assert "wall_digits" not in stated.to_dict() and "wall_paper" not in stated.to_dict()
    with pytest.raises(UsageError, match="wall_digits must be a string"):
        load_recipe(tiny_recipe, ["wall_digits=12"])
    with pytest.raises(UsageError, match="unknown section or key 'wall_digit' \\(did you mean 'wall_digits'"):
        load_recipe(tiny_recipe, ['wall_digit="12 s"'])
