"""bench.methods' rows are valid recipes, and each measures what its label says."""

import pytest

from bench.methods import rows
from ddtool.recipe import load_recipe

TABLE = rows(outer=4, dm_iters=10, idc_inner=2, idc_net_steps=1, factor=1, dc_lr=0.1, idc_lr=0.01)


@pytest.mark.parametrize("name", [n for n in TABLE if n not in ("mtt", "mtt+dynadistill")])
def test_every_row_is_a_recipe_ddtool_accepts(name: str) -> None:
    recipe = load_recipe(None, ["pretrain.name=\"bench\"", *TABLE[name]])
    # the label's first word is the method run (ours = IDC on the pool)
    method = name.split("+")[0].split(" ")[0].replace("ours-wavg", "idc").replace("ours", "idc")
    assert recipe.distill.method == method, name


def test_dream_dynadistill_row_adds_only_feedback_selection_on_the_pool() -> None:
    dream = load_recipe(None, TABLE["dream"]).distill
    both = load_recipe(None, TABLE["dream+dynadistill"]).distill
    assert (both.method, both.selection, both.pool) == ("dream", "dynadistill", "pool/bench")
    assert both.schedule == dream.schedule == "none"  # no Acc-DD perturbation hidden in the row
