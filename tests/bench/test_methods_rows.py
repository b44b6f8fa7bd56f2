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


def test_acc_dd_rows_use_the_diverse_pool_and_idc_dynadistill_rows_the_seed_only_one() -> None:
    for name in ("ours", "ours-wavg", "ours+dynadistill", "ours two_direction", "ours 1/5", "dm+ours"):
        assert load_recipe(None, TABLE[name]).distill.pool == "pool/bench-diverse", name
    for name in ("ours seed-only pool", "idc+random (control)", "idc+dynadistill", "idc+dynadistill zscore",
                 "idc+dd write-back"):
        assert load_recipe(None, TABLE[name]).distill.pool == "pool/bench", name


def test_issue_23_arms_differ_from_their_partner_in_one_setting_only() -> None:
    def distill(name: str) -> dict:
        return vars(load_recipe(None, TABLE[name]).distill)

    def diff(a: str, b: str) -> set[str]:
        x, y = distill(a), distill(b)
        return {k for k in x if x[k] != y[k]}

    assert diff("ours", "ours two_direction") == {"schedule"}
    assert diff("ours", "ours seed-only pool") == {"pool"}
    assert diff("idc+random (control)", "idc+dynadistill") == {"selection"}
    assert diff("idc+dynadistill", "idc+dynadistill zscore") == {"options"}
    assert diff("idc+dynadistill", "idc+dd write-back") == {"options"}
    assert diff("ours+dynadistill", "ours+dd write-back") == {"options"}
    written = load_recipe(None, TABLE["idc+dd write-back"]).distill.options["dynadistill"]
    assert written == {"write_back": True}  # the default keeps the pool; the row writes back
    control = load_recipe(None, TABLE["idc+random (control)"]).distill
    assert (control.selection, control.schedule) == ("random", "none")


def test_every_row_names_a_distinct_valid_set() -> None:
    from bench.methods import artifact_name
    from ddtool.store.refs import check_name

    names = [artifact_name(ipc, row) for ipc in (1, 10) for row in TABLE]
    assert [check_name(n) for n in names] == names
    assert len(set(names)) == len(names)
