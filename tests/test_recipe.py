from __future__ import annotations

from pathlib import Path

import pytest

from ddtool.errors import UsageError
from ddtool.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_recipes_all_load() -> None:
    paths = sorted((ROOT / "recipes").glob("*.toml"))
    assert len(paths) >= 4
    for path in paths:
        r = load_recipe(path)
        assert r.name == path.stem and r.distill.ipc >= 1


def test_recipes_sharing_a_pool_name_make_it_the_same_way() -> None:
    """``pretrain --recipe A`` then ``distill --recipe B`` uses A's pool when both name it: the two must
    describe one pool (a seed-only pool silently standing in for Acc-DD's diverse one is what issue 23
    found), and the Acc-DD pool is the diverse one its CIFAR-10 table chose."""
    by_name: dict[str, list[tuple[str, object]]] = {}
    for path in sorted((ROOT / "recipes").glob("*.toml")):
        r = load_recipe(path)
        if r.pretrain.name:
            by_name.setdefault(r.pretrain.name, []).append((path.stem, r.pretrain))
    for name, makers in by_name.items():
        first_stem, first = makers[0]
        for stem, p in makers[1:]:
            assert p == first, f"recipes {first_stem} and {stem} both name pool '{name}' but pretrain it differently"
    assert "ours10" in {s for s, _ in by_name["ours"]}
    assert all(p.diverse for _, p in by_name["ours"])

def test_overrides_apply_with_types_and_change_the_hash(tiny_recipe: Path) -> None:
    base = load_recipe(tiny_recipe)
    r = load_recipe(tiny_recipe, ["distill.ipc=3", "distill.lr_img=2", "data.dataset=digits", "distill.options.k=1"])
    assert r.distill.ipc == 3 and r.distill.lr_img == 2.0 and isinstance(r.distill.lr_img, float)
    assert r.distill.options == {"k": 1}
    assert r.sha256() != base.sha256()
    assert load_recipe(tiny_recipe).sha256() == base.sha256()


@pytest.mark.parametrize(
    "override, message",
    [
        ("distill.ipcc=3", "unknown key 'ipcc' in \\[distill\\] \\(did you mean 'ipc'\\?\\)"),
        ("distill.ipc=ten", "distill.ipc must be an integer"),
        ("distill.ipc=0", "distill.ipc must be >= 1"),
        ("distill.lr_img=-1", "distill.lr_img must be > 0"),
        ("eval.epochs=0", "eval.epochs must be >= 1"),
        ("eval.protocol=\"x\"", "eval.protocol must be dsa, idc or ncfm"),
        ("distil.ipc=3", "unknown section or key 'distil'"),
        ("noequals", "write SECTION.KEY=VALUE"),
    ],
)
def test_bad_values_name_the_key(tiny_recipe: Path, override: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        load_recipe(tiny_recipe, [override])


def test_toml_syntax_error_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[distill]\nipc = = 3\n")
    with pytest.raises(UsageError, match="not valid TOML.*line 2"):
        load_recipe(bad)
    with pytest.raises(UsageError, match="not found"):
        load_recipe(tmp_path / "missing.toml")
