"""distill.compile = "auto": the decision (from a timed eager iteration), the fallback without a
compiler, what the run record says, and a compiled rest of a run within the compile tests' tolerance."""

from __future__ import annotations

import shutil

import pytest
import torch

from ddtool.errors import UsageError
from ddtool.recipe import load_recipe
from ddtool.runtime import autocompile
from ddtool.runtime.autocompile import AutoCompile, pays
from ddtool.runtime.distill import distill
from ddtool.store import Store

CPU = torch.device("cpu")
pytestmark = pytest.mark.usefixtures("one_thread")


class Ctx:
    compile = False


def clock(monkeypatch, times):
    ticks = iter(times)
    monkeypatch.setattr(autocompile.time, "perf_counter", lambda: next(ticks))


def test_pays_weighs_the_remaining_run_against_the_compile_cost():
    cost = autocompile.expected_cost(CPU)
    # exactly at the break-even point it does not pay; a little more work does
    at = cost / autocompile.GAIN
    assert not pays(100, at / 100, CPU)
    assert pays(100, at / 100 * 1.01, CPU)
    assert not pays(0, 1e6, CPU)
    assert autocompile.expected_cost(torch.device("cuda")) > cost  # Triton's first compile is the slower one


def test_auto_compiles_the_rest_of_a_long_run_and_records_why(monkeypatch):
    monkeypatch.setattr(autocompile, "compiler_present", lambda d: (True, "c++"))
    lines: list[str] = []
    ac = AutoCompile("auto", CPU, note=lines.append)
    ctx = Ctx()
    assert ac.start() is False and lines == []
    ac.before(0, 0)  # the first iteration carries the FLOP counter: not timed
    ac.after(ctx, 0, 200)
    assert not ac.decided
    clock(monkeypatch, [10.0, 12.0, 20.0, 50.0])
    ac.before(1, 0)
    ac.after(ctx, 1, 200)  # 2 s eager x 198 remaining x GAIN >> the expected cost
    assert ctx.compile is True and ac.compiled and ac.info["decided_at"] == 1
    assert ac.info["eager_seconds_per_iteration"] == 2.0 and ac.info["remaining"] == 198
    assert len(lines) == 1 and "compiling the rest" in lines[0] and "distill.compile = false" in lines[0]
    ac.before(2, 0)
    ac.after(ctx, 2, 200)  # the first compiled iteration took 30 s: ~28 s of it was compiling
    assert ac.info["compile_seconds"] == 28.0
    ac.before(3, 0)
    ac.after(ctx, 3, 200)  # decided once: nothing more is timed
    assert len(lines) == 1 and ac.info["compile_seconds"] == 28.0


def test_auto_stays_eager_when_the_run_is_too_short(monkeypatch):
    monkeypatch.setattr(autocompile, "compiler_present", lambda d: (True, "c++"))
    lines: list[str] = []
    ac = AutoCompile("auto", CPU, note=lines.append)
    ctx = Ctx()
    ac.start()
    clock(monkeypatch, [0.0, 0.05])
    ac.before(1, 0)
    ac.after(ctx, 1, 200)
    assert ctx.compile is False and ac.decided and ac.info["compiled"] is False
    assert "too short" in ac.info["reason"] and lines == []  # a quick run's output stays as it was


def test_auto_without_a_compiler_stays_eager_with_one_line_when_it_would_pay(monkeypatch):
    monkeypatch.setattr(autocompile, "compiler_present", lambda d: (False, "no C++ compiler"))
    lines: list[str] = []
    ac = AutoCompile("auto", CPU, note=lines.append)
    assert ac.start() is False
    ctx = Ctx()
    clock(monkeypatch, [0.0, 5.0])
    ac.before(1, 0)
    ac.after(ctx, 1, 10**6)
    assert ctx.compile is False and ac.decided
    assert ac.info["compiled"] is False and "no compiler" in ac.info["reason"]
    assert len(lines) == 1 and "no C++ compiler" in lines[0] and "running eager" in lines[0]


@pytest.mark.parametrize("flag", [True, False])
def test_true_and_false_force_the_choice_from_the_first_iteration(monkeypatch, flag):
    monkeypatch.setattr(autocompile, "compiler_present", lambda d: pytest.fail("not asked when forced"))
    ac = AutoCompile(flag, CPU)
    assert ac.start() is flag
    assert ac.info["reason"] == f"distill.compile = {str(flag).lower()}"


def test_the_recipe_accepts_true_false_auto_and_defaults_to_auto():
    assert load_recipe(None, []).distill.compile == "auto"
    assert load_recipe(None, ["distill.compile=true"]).distill.compile is True
    with pytest.raises(UsageError, match=r'distill.compile must be true, false or "auto"'):
        load_recipe(None, ['distill.compile="sometimes"'])
    with pytest.raises(UsageError, match="distill.compile must be"):
        load_recipe(None, ["distill.compile=1"])


def test_a_quick_run_records_an_eager_decision(digits, tmp_path):
    store = Store(tmp_path)
    recipe = load_recipe(None, ["net.width=16", "distill.iterations=4"])
    result = distill(store, recipe, digits, CPU)
    info = store.run(result.run_id)["compile"]
    assert info["setting"] == "auto" and info["compiled"] is False
    if shutil.which("c++") or shutil.which("g++") or shutil.which("clang++"):
        assert info["decided_at"] == 1 and info["remaining"] == 2


@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")),
                    reason="torch.compile's CPU backend needs a C++ compiler")
def test_a_run_that_switches_to_compiled_matches_eager(digits, tmp_path, monkeypatch):
    base = ["net.width=16", "distill.iterations=4", "distill.ipc=2"]
    eager = distill(Store(tmp_path / "a"), load_recipe(None, [*base, "distill.compile=false"]), digits, CPU)
    monkeypatch.setitem(autocompile.COMPILE_COST, "cpu", 0.0)  # any remaining work pays
    store = Store(tmp_path / "b")
    auto = distill(store, load_recipe(None, base), digits, CPU)
    info = store.run(auto.run_id)["compile"]
    assert info["compiled"] is True and info["decided_at"] == 1 and info["compile_seconds"] >= 0
    torch.testing.assert_close(auto.synthetic.images.detach(), eager.synthetic.images.detach(), rtol=1e-3, atol=1e-4)
