"""The wheel: every ddtool package and the shipped recipes are in it, and an install of it runs a
shipped recipe by name from a folder outside the checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

from setuptools import find_packages

from ddtool.store import Store

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def test_the_package_list_covers_every_ddtool_package() -> None:
    # pyproject lists the packages (a find would miss ddtool.recipes): a new subpackage must be added there
    listed = set(PYPROJECT["packages"])
    assert listed - {"ddtool.recipes"} == set(find_packages(str(ROOT), include=["ddtool", "ddtool.*"]))
    assert PYPROJECT["package-dir"] == {"ddtool.recipes": "recipes"}
    assert not (ROOT / "ddtool" / "recipes").exists()  # one copy in git: the top-level recipes/


def _env() -> dict[str, str]:
    """The environment without this checkout on PYTHONPATH (the tests run with it there)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = "1"
    env.pop("DDTOOL_HOME", None)  # the run names its store
    return env


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{args}: {res.stdout}\n{res.stderr}"
    return res


def test_a_wheel_install_runs_a_shipped_recipe_by_name(tmp_path: Path) -> None:
    import setuptools

    major, minor = (int(x) for x in setuptools.__version__.split(".")[:2])
    assert (major, minor) >= (70, 1), (f"setuptools {setuptools.__version__} cannot build a wheel offline: "
                                       "pip install -e '.[test]' (the test extra asks for >= 70.1)")
    # build from a copy of the sources, so the build leaves no build/ or egg-info in the checkout;
    # no network: the test venv's setuptools builds it (--no-build-isolation)
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("ddtool", "recipes"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", str(dist), str(src)], cwd=tmp_path)
    (wheel,) = dist.glob("ddtool-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = sorted(p.name for p in (ROOT / "recipes").glob("*.toml"))
    assert sorted(n.removeprefix("ddtool/recipes/") for n in names if n.startswith("ddtool/recipes/")) == shipped

    # a fresh venv with only the wheel (pip --no-deps); torch and the rest come from this test's
    # venv through a .pth path line, which adds the folder but runs none of its .pth files (so not
    # the editable finder of the checkout): the wheel's own ddtool is the one imported
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
          str(wheel)], cwd=tmp_path)
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=tmp_path).stdout.strip())
    (site / "_ddtool_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    work = tmp_path / "elsewhere"  # outside the checkout, no recipes/ beside it
    work.mkdir()
    where = json.loads(_run([str(python), "-c", (
        "import json, ddtool; from ddtool.recipe_source import find_recipe, shipped_dir; "
        "print(json.dumps([ddtool.__file__, str(shipped_dir()), str(find_recipe('quickstart').path)]))")],
        cwd=work).stdout)
    assert Path(where[0]).is_relative_to(site / "ddtool"), where  # the wheel's ddtool
    assert Path(where[1]) == site / "ddtool" / "recipes"
    assert Path(where[2]) == site / "ddtool" / "recipes" / "quickstart.toml"

    store = tmp_path / "store"
    res = _run([str(venv / "bin" / "ddtool"), "--store", str(store), "-q", "distill", "--recipe", "quickstart",
                "--set", "distill.iterations=1", "--json"], cwd=work)
    made = json.loads(res.stdout)
    assert made["ref"] == "synthetic/quickstart:v1" and made["iterations"] == 1
    art, tensors, meta = Store(store).load(made["ref"])  # the artifact in the temporary store
    assert art.digest == made["digest"] and meta["ddtool.method"] == "dm" and meta["ddtool.ipc"] == "1"
    assert tuple(tensors["images"].shape) == (10, 1, 8, 8)  # quickstart: ipc 1 on the 8x8 digits
    record = json.loads((store / "runs" / f"{made['run']}.json").read_text())
    assert record["status"] == "complete" and record["recipe"]["name"] == "quickstart"
    assert record["recipe"]["description"] == tomllib.loads(
        (ROOT / "recipes" / "quickstart.toml").read_text(encoding="utf-8"))["description"]
