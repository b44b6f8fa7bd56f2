"""Per-method defaults, ipc scaling, per-dataset budgets, pool fallback and inner-step progress
(issue 11: item 3, item 6 and the design card's own flow)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch

from ddtool.errors import UsageError
from ddtool.lookup import load_dataset
from ddtool.recipe import load_recipe, resolve_method_defaults, scale_name
from ddtool.runtime.distill import distill, plan
from ddtool.store import Store

RECIPES = Path(__file__).resolve().parents[3] / "recipes"


def _resolved(overrides: list[str], path: Path | None = None):  # type: ignore[no-untyped-def]
    from ddtool.plugins import registries

    r = load_recipe(path, overrides)
    method = registries().method.get(r.distill.method)
    return resolve_method_defaults(r, method.distill_defaults(), method.name)


@pytest.mark.parametrize("method, lr, batch_real, augment", [
    ("idc", 0.005, 64, "color_crop_cutout"),  # IDC argument.py at ipc 10
    ("dc", 0.1, 256, "color_crop_cutout_flip_scale_rotate"),
    ("dsa", 0.1, 256, "color_crop_cutout_flip_scale_rotate"),
    ("dm", 1.0, 256, "color_crop_cutout_flip_scale_rotate"),
])
def test_each_method_brings_its_own_defaults(method: str, lr: float, batch_real: int, augment: str) -> None:
    r = _resolved([f"distill.method='{method}'", "distill.ipc=10"])
    assert (r.distill.lr_img, r.distill.batch_real, r.distill.augment) == (pytest.approx(lr), batch_real, augment)
    assert r.origins["distill.lr_img"].startswith(f"method default ({method})")


def test_idc_lr_scales_with_ipc_and_an_explicit_value_wins() -> None:
    assert _resolved(["distill.method='idc'", "distill.ipc=1"]).distill.lr_img == pytest.approx(5e-4)
    assert _resolved(["distill.method='idc'", "distill.ipc=50"]).distill.lr_img == pytest.approx(0.025)
    # the recipe's value is the value at ipc 10 (IDC's tune_lr_img), scaled the same way
    r = _resolved(["distill.ipc=1"], RECIPES / "idc.toml")
    assert r.distill.lr_img == pytest.approx(5e-4) and "x ipc/10" in r.origins["distill.lr_img"]
    # lr_img_scale = none keeps the value as written; batch_real from --set beats the method's 64
    r = _resolved(["distill.ipc=1", "distill.lr_img_scale='none'", "distill.batch_real=32"], RECIPES / "idc.toml")
    assert r.distill.lr_img == pytest.approx(0.005) and r.distill.batch_real == 32
    assert r.origins["distill.batch_real"] == "--set"
    # resolved once: a recorded recipe resolves to itself (resume must not scale twice)
    again = _resolved([], None)
    assert resolve_method_defaults(again, {"lr_img": 9.0, "lr_img_scale": "ipc", "batch_real": 9, "augment": "x"},
                                   "m").to_dict() == again.to_dict()


def test_dynadistill_and_its_idc_baseline_run_400_outer_iterations() -> None:
    dyna = tomllib.loads((RECIPES / "dynadistill.toml").read_text())
    base = tomllib.loads((RECIPES / "idc400.toml").read_text())
    assert dyna["distill"]["iterations"] == 400 == base["distill"]["iterations"]  # seed 003 Table 1
    same = ("method", "ipc", "lr_img", "momentum_img", "batch_real", "init", "augment")
    assert {k: dyna["distill"][k] for k in same} == {k: base["distill"][k] for k in same}
    assert dyna["distill"]["options"] | {"dynadistill": None} == base["distill"]["options"] | {"dynadistill": None}
    assert dyna["scale"] == base["scale"]


def test_scale_tables_pick_the_budget_of_the_dataset(tmp_path: Path) -> None:
    digits = load_recipe(RECIPES / "ours10.toml")
    assert digits.distill.iterations == 10 and digits.distill.options["factor"] == 1
    assert digits.origins["distill.iterations"] == "scale.digits"
    paper = load_recipe(RECIPES / "ours10.toml", ["data.dataset='cifar10'"])
    assert paper.distill.iterations == 200 and paper.distill.options["factor"] == 2  # the paper's budget
    assert paper.distill.options["inner_loops"] == 100 and paper.eval.epochs == 1000
    # --set wins over the table
    assert load_recipe(RECIPES / "ours10.toml", ["distill.iterations=3"]).distill.iterations == 3
    # Ours10 keeps a tenth of IDC's outer loops on both scales
    for overrides in ([], ["data.dataset='cifar10'"]):
        ratio = (load_recipe(RECIPES / "idc.toml", overrides).distill.iterations
                 / load_recipe(RECIPES / "ours10.toml", overrides).distill.iterations)
        assert ratio == 10
    assert scale_name({"dataset": f"imagefolder:{tmp_path / 'cifar10'}"}) == "cifar10"
    assert scale_name({"dataset": "digits", "scale": "cifar10"}) == "cifar10"


def test_dry_run_prints_every_value_and_where_it_came_from(cli) -> None:  # type: ignore[no-untyped-def]
    res = cli("distill", "--recipe", RECIPES / "idc.toml", "--set", "distill.ipc=1", "--dry-run", "--no-estimate", "--json")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["distill"]["lr_img"]["value"] == pytest.approx(5e-4)
    assert "x ipc/10" in out["distill"]["lr_img"]["from"]
    assert out["distill"]["ipc"] == {"value": 1, "from": "--set"}
    assert out["distill"]["iterations"]["from"] == "scale.digits"
    assert out["distill"]["batch_real"] == {"value": 64, "from": "recipe"}
    assert out["recipe"]["distill"]["lr_img"] == pytest.approx(5e-4)
    # iterations = 0 is the method's default for the ipc: the table shows the count that will run
    res = cli("distill", "--method", "dsa", "--ipc", "1", "--iterations", "0", "--dry-run", "--no-estimate", "--json")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["distill"]["iterations"]["value"] == out["plan"]["iterations"] > 0
    assert "default at ipc 1" in out["distill"]["iterations"]["from"]


def test_pool_fallback_to_the_newest_compatible_pool(cli, store: Store, digits) -> None:  # type: ignore[no-untyped-def]
    over = ["net.width=8", "distill.iterations=1", "distill.options.inner_loops=2", "distill.options.net_steps=1",
            "distill.ipc=1"]
    recipe = load_recipe(RECIPES / "ours10.toml", over)
    with pytest.raises(Exception) as err:
        plan(store, recipe, digits)
    assert "ddtool pretrain" in str(err.value) and "needs a model pool" in str(err.value)
    for name in ("older", "newer"):
        res = cli("pretrain", "--n", "1", "--epochs", "1", "--name", name, "--set", "net.width=8")
        assert res.exit_code == 0, res.stderr
    cli("pretrain", "--n", "1", "--epochs", "1", "--name", "wider", "--set", "net.width=16")  # another [net]
    p = plan(store, recipe, digits)
    assert p.pool_artifact is not None and p.pool_artifact.ref == "pool/newer:v1"
    assert p.notes and "pool/ours" in p.notes[0] and "pool/newer:v1" in p.notes[0]
    # --dry-run's table names the pool the run will use and why, not the recipe's missing one
    assert p.settings()["pool"] == {"value": "pool/newer:v1", "from": "the newest pool for this data and [net]"}
    assert plan(store, recipe, digits, "pool/older").settings()["pool"] == {"value": "pool/older:v1", "from": "--pool"}
    res = cli("distill", "--recipe", RECIPES / "ours10.toml", *sum((["--set", o] for o in over), []))
    assert res.exit_code == 0, res.stderr
    assert "using pool/newer:v1" in res.stderr


class _Recording:
    def __init__(self) -> None:
        self.totals: list[int] = []
        self.advances: list[int] = []

    def note(self, text: str) -> None:
        pass

    def task(self, description: str, total: int) -> Any:
        self.totals.append(total)
        outer = self

        class _T:
            def advance(self, n: int = 1, **fields: Any) -> None:
                outer.advances.append(n)

        from contextlib import contextmanager

        @contextmanager
        def cm() -> Iterator[_T]:
            yield _T()

        return cm()


def test_progress_ticks_on_inner_steps(store: Store, digits) -> None:  # type: ignore[no-untyped-def]
    recipe = load_recipe(RECIPES / "idc.toml", ["net.width=8", "distill.iterations=2", "distill.ipc=1",
                                                "distill.options.inner_loops=3", "distill.options.net_steps=1"])
    rep = _Recording()
    distill(store, recipe, digits, torch.device("cpu"), rep)
    assert rep.totals == [6]  # 2 outer iterations x 3 inner steps
    assert sum(rep.advances) == 6 and len(rep.advances) == 6  # one tick per inner step


def test_records_from_before_lr_img_scale_resume_unscaled() -> None:
    from ddtool.recipe import Recipe, recipe_from_record

    old = Recipe().to_dict()
    old["distill"].update(method="idc", ipc=1, lr_img=0.005, batch_real=64, augment="color_crop_cutout")
    del old["distill"]["lr_img_scale"]
    del old["data"]["scale"]
    r = _resolved_from(recipe_from_record(old))
    assert r.distill.lr_img == pytest.approx(0.005)  # as the old run used it, not x ipc/10


def _resolved_from(recipe):  # type: ignore[no-untyped-def]
    from ddtool.plugins import registries

    method = registries().method.get(recipe.distill.method)
    return resolve_method_defaults(recipe, method.distill_defaults(), method.name)


def test_a_missing_pool_the_recipe_names_falls_back_or_says_how_to_make_it(cli, store: Store, digits) -> None:  # type: ignore[no-untyped-def]
    # herding uses a pool without needing one: the recipe's named pool is a suggestion too
    recipe = load_recipe(RECIPES / "herding.toml", ["net.width=8", "distill.ipc=1"])
    with pytest.raises(UsageError) as err:
        plan(store, recipe, digits)
    assert "pool/herding" in str(err.value) and "ddtool pretrain --recipe" in str(err.value)
    res = cli("pretrain", "--n", "1", "--epochs", "1", "--name", "any", "--set", "net.width=8")
    assert res.exit_code == 0, res.stderr
    p = plan(store, recipe, digits)
    assert p.pool_artifact is not None and p.pool_artifact.ref == "pool/any:v1"
    assert p.notes and "pool/herding" in p.notes[0] and "pool/any:v1" in p.notes[0]
