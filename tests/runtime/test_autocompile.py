"""distill.compile = "auto": the decision (from a timed eager iteration), the fallback without a
compiler, what the run record says, and a compiled rest of a run within the compile tests' tolerance."""

from __future__ import annotations

import dataclasses
import json
import platform
import shutil

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from ddtool.compiled import compiler_usable
from ddtool.errors import UsageError
from ddtool.lookup import build_net
from ddtool.nets import NetSpec
from ddtool.recipe import load_recipe
from ddtool.runtime import autocompile
from ddtool.runtime.autocompile import AutoCompile, pays
from ddtool.runtime.distill import distill
from ddtool.store import Store

CPU = torch.device("cpu")
NET = NetSpec("convnet", {"width": 16})
pytestmark = pytest.mark.usefixtures("one_thread")


def clock(monkeypatch, times):
    ticks = iter(times)
    monkeypatch.setattr(autocompile.time, "perf_counter", lambda: next(ticks))


def test_pays_weighs_the_eager_seconds_saved_against_the_compile_cost():
    cost, rate = autocompile.expected_cost(CPU), autocompile.EAGER_RATE["cpu"]
    at = cost / autocompile.GAIN * rate  # FLOPs whose eager seconds x GAIN equal the cost
    assert not pays(at, CPU) and pays(at * 1.01, CPU)
    assert not pays(0, CPU)
    assert autocompile.expected_cost(torch.device("cuda")) > cost  # Triton's first compile is the slower one


def test_auto_compiles_the_rest_of_a_large_run_and_records_why(monkeypatch):
    monkeypatch.setattr(autocompile, "compiler_present", lambda d: (True, "c++"))
    monkeypatch.setattr(autocompile, "compiler_usable", lambda d: (True, "avx2"))
    lines: list[str] = []
    ac = AutoCompile("auto", CPU, note=lines.append)
    assert ac.start() is False and lines == []
    ac.before()
    ac.after()  # nothing compiled yet: nothing timed
    assert ac.decide(56e12, at=0) is True  # a CIFAR-10 DM run: 200 iterations x 280 GFLOP
    assert ac.info["compiled"] and ac.info["decided_at"] == 0 and ac.info["remaining_flops"] == int(56e12)
    assert len(lines) == 1 and "compiling" in lines[0] and "compile = false" in lines[0]
    assert ac.decide(0.0) is True and len(lines) == 1  # decided once
    clock(monkeypatch, [0.0, 30.0, 40.0, 42.0])
    for _ in range(3):  # the first compiled unit took 30 s, the second 2 s: ~28 s of compiling
        ac.before()
        ac.after()
    assert ac.info["compile_seconds"] == 28.0


def test_auto_stays_eager_where_inductor_cannot_build_for_the_cpu(monkeypatch):
    """A C++ compiler but no vector ISA for inductor (a CPU without AVX2, ATEN_CPU_CAPABILITY=default):
    torch 2.14's kernels fail to build there, so a run that would compile stays eager and says why."""
    monkeypatch.setattr(autocompile, "compiler_present", lambda d: (True, "c++"))
    monkeypatch.setattr(autocompile, "compiler_usable", lambda d: (False, "inductor picks no vector ISA"))
    lines: list[str] = []
    ac = AutoCompile("auto", CPU, note=lines.append)
    ac.start()
    assert ac.decide(56e12, at=0) is False and ac.info["compiled"] is False
    assert "no vector ISA" in ac.info["reason"] and len(lines) == 1 and "running eager" in lines[0]


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or not shutil.which("c++"),
                    reason="x86 capabilities, probed with a C++ compiler")
def test_the_vector_isa_probe_agrees_with_the_kernels_aten_runs():
    """ATen's portable kernels (ATEN_CPU_CAPABILITY=default) and inductor's missing vector ISA go
    together: the test-isa pass of CI runs this under both, so the probe is checked against each."""
    from ddtool.compiled import _lowered_below_hardware, inductor_vector_isa

    usable, why = inductor_vector_isa()
    # AVX2 kernels forced on an AVX-512 CPU are refused as well (compiled losses came out NaN there)
    assert usable == (torch.backends.cpu.get_cpu_capability() != "DEFAULT" and not _lowered_below_hardware()), why


def test_auto_stays_eager_silently_when_the_work_is_small(monkeypatch):
    monkeypatch.setattr(autocompile, "compiler_present", lambda d: (True, "c++"))
    monkeypatch.setattr(autocompile, "compiler_usable", lambda d: (True, "avx2"))
    lines: list[str] = []
    ac = AutoCompile("auto", CPU, note=lines.append)
    ac.start()
    assert ac.decide(0.5e12, at=0) is False  # the digits quick start: about half a TFLOP in all
    assert ac.decided and ac.info["compiled"] is False and "too little" in ac.info["reason"]
    assert lines == []  # a quick run's output stays as it was


def test_auto_without_a_compiler_stays_eager_with_one_line_when_it_would_pay(monkeypatch):
    monkeypatch.setattr(autocompile, "compiler_present", lambda d: (False, "no C++ compiler"))
    lines: list[str] = []
    ac = AutoCompile("auto", CPU, note=lines.append)
    assert ac.start() is False
    assert ac.decide(1e15) is False
    assert "no compiler" in ac.info["reason"]
    assert len(lines) == 1 and "no C++ compiler" in lines[0] and "running eager" in lines[0]


@pytest.mark.parametrize("flag", [True, False])
def test_true_and_false_force_the_choice_from_the_first_iteration(monkeypatch, flag):
    monkeypatch.setattr(autocompile, "compiler_present", lambda d: pytest.fail("not asked when forced"))
    ac = AutoCompile(flag, CPU)
    assert ac.start() is flag
    assert ac.info["reason"] == f"compile = {str(flag).lower()}"
    assert ac.decide(1e18) is flag  # a forced setting is not re-decided


def test_the_recipe_accepts_true_false_auto_and_defaults_to_auto():
    assert load_recipe(None, []).distill.compile == "auto"
    assert load_recipe(None, ["distill.compile=true"]).distill.compile is True
    with pytest.raises(UsageError, match=r'distill.compile must be true, false or "auto"'):
        load_recipe(None, ['distill.compile="sometimes"'])
    with pytest.raises(UsageError, match="distill.compile must be"):
        load_recipe(None, ["distill.compile=1"])


def test_a_quick_run_records_an_eager_decision_from_its_flops(digits, tmp_path):
    store = Store(tmp_path)
    recipe = load_recipe(None, ["net.width=16", "distill.iterations=4"])
    result = distill(store, recipe, digits, CPU)
    record = store.run(result.run_id)
    info = record["compile"]
    assert info["setting"] == "auto" and info["compiled"] is False and info["decided_at"] == 0
    assert info["remaining_flops"] == record["flops_per_iteration"] * 3 > 0


@pytest.mark.skipif(not compiler_usable(CPU)[0], reason=f"torch.compile cannot build here: {compiler_usable(CPU)[1]}")
def test_a_run_that_switches_to_compiled_matches_eager(digits, tmp_path, monkeypatch):
    base = ["net.width=16", "distill.iterations=4", "distill.ipc=2"]
    eager = distill(Store(tmp_path / "a"), load_recipe(None, [*base, "distill.compile=false"]), digits, CPU)
    monkeypatch.setitem(autocompile.COMPILE_COST, "cpu", 0.0)  # any remaining work pays
    store = Store(tmp_path / "b")
    auto = distill(store, load_recipe(None, base), digits, CPU)
    info = store.run(auto.run_id)["compile"]
    assert info["compiled"] is True and info["decided_at"] == 0 and info["compile_seconds"] >= 0
    torch.testing.assert_close(auto.synthetic.images.detach(), eager.synthetic.images.detach(), rtol=1e-3, atol=1e-4)


def test_auto_hashes_as_the_former_default_so_recipes_keep_their_hash():
    auto = load_recipe(None, [])
    assert auto.sha256() == load_recipe(None, ["distill.compile=false"]).sha256()
    assert auto.sha256() != load_recipe(None, ["distill.compile=true"]).sha256()
    assert auto.to_dict()["distill"]["compile"] == "auto"  # recorded as it was asked


def _eval_set(digits):
    from ddtool.synthetic import SyntheticSet

    idx = torch.cat([digits.class_indices(c)[:3] for c in range(digits.num_classes)])
    return SyntheticSet(digits.normalize(digits.train_images[idx]), digits.train_labels[idx], 3)


def test_eval_decides_from_its_planned_flops_and_records_it(digits):
    from ddtool.recipe import EvalSection
    from ddtool.runtime.evaluate.train_eval import evaluate_set

    info: dict = {}
    cfg = EvalSection(epochs=2, repeats=2, batch=16, impl="loop")
    evaluate_set(_eval_set(digits), digits, NET, cfg, CPU, compile_info=info)
    assert info["setting"] == "auto" and info["compiled"] is False and "too little" in info["reason"]
    net = build_net(NET, digits.channels, digits.num_classes, digits.resolution)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(_eval_set(digits).images[:16])
    # forward and backward (3x a forward) of 30 images, 2 epochs, 2 repeats
    assert info["remaining_flops"] == int(3 * counter.get_total_flops() / 16 * 30 * 2 * 2)


@pytest.mark.skipif(not compiler_usable(CPU)[0], reason=f"torch.compile cannot build here: {compiler_usable(CPU)[1]}")
def test_a_compiled_eval_trains_the_networks_eager_does(digits, monkeypatch):
    from ddtool.recipe import EvalSection
    from ddtool.runtime.evaluate.train_eval import evaluate_set

    cfg = EvalSection(epochs=3, repeats=1, batch=16, impl="loop", augment="none")
    eager: list = []
    evaluate_set(_eval_set(digits), digits, NET, dataclasses.replace(cfg, compile=False), CPU, trained=eager)
    monkeypatch.setitem(autocompile.COMPILE_COST, "cpu", 0.0)  # any work pays
    info: dict = {}
    compiled: list = []
    evaluate_set(_eval_set(digits), digits, NET, cfg, CPU, trained=compiled, compile_info=info)
    assert info["compiled"] is True and "compile_seconds" in info
    for a, b in zip(eager[0].parameters(), compiled[0].parameters()):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4)


# -- the machine's measured compile cost (ddtool.runtime.machine) ------------------------------------
def _auto(monkeypatch, lines: list[str]) -> AutoCompile:
    monkeypatch.setattr(autocompile, "compiler_present", lambda d: (True, "c++"))
    monkeypatch.setattr(autocompile, "compiler_usable", lambda d: (True, "avx2"))
    ac = AutoCompile("auto", CPU, note=lines.append)
    ac.start()
    return ac


def test_the_first_compile_records_its_seconds_and_eager_rate_and_the_next_decision_uses_them(monkeypatch):
    from ddtool.runtime import machine

    lines: list[str] = []
    ac = _auto(monkeypatch, lines)
    # the counted eager iteration: 100 GFLOP in 2.5 s = 40 GFLOP/s
    assert ac.decide(56e12, at=0, eager=(100e9, 2.5)) is True
    assert "assumed: 60 GFLOP/s eager, compile 30 s" in lines[0]
    assert ac.info["rates"]["compile_from"] == "assumed"
    clock(monkeypatch, [0.0, 24.0, 30.0, 32.0])  # 24 s then 2 s: 22 s of compiling
    for _ in range(2):
        ac.before()
        ac.after()
    assert ac.info["compile_seconds"] == 22.0 and ac.info["machine_recorded"] is True
    got = machine.measured(CPU)
    assert got.compile_seconds == 22.0 and got.eager_flops_per_s == pytest.approx(40e9)
    # the file is keyed by device kind, CPU name and torch version
    saved = json.loads((machine.cache_dir() / machine.MACHINE_FILE).read_text())
    assert list(saved) == [machine.machine_key(CPU)] and torch.__version__ in machine.machine_key(CPU)

    again: list[str] = []
    nxt = _auto(monkeypatch, again)
    assert nxt.decide(56e12, at=0) is True
    assert "measured here: 40 GFLOP/s eager, compile 22 s" in again[0]
    assert nxt.info["rates"] == {"eager_flops_per_s": pytest.approx(40e9), "compile_seconds": 22.0,
                                 "eager_from": "measured", "compile_from": "measured"}
    # the first measurement stays: a later (warm-cache) compile does not overwrite it
    assert machine.record(CPU, compile_seconds=3.0) is False and machine.measured(CPU).compile_seconds == 22.0


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"cpu | x": 5}', ""])
def test_a_corrupt_machine_file_is_ignored(monkeypatch, content):
    from ddtool.runtime import machine

    path = machine.cache_dir() / machine.MACHINE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    assert machine.measured(CPU) == machine.MachineRates()
    assert autocompile.rates(CPU).compile_seconds == autocompile.COMPILE_COST["cpu"]
    lines: list[str] = []
    assert _auto(monkeypatch, lines).decide(56e12) is True and "assumed" in lines[0]


def test_an_unreadable_key_entry_or_bad_values_fall_back_to_the_assumed_constants():
    from ddtool.runtime import machine

    path = machine.cache_dir() / machine.MACHINE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({machine.machine_key(CPU): {"compile_seconds": -4, "eager_flops_per_s": "fast"}}))
    r = autocompile.rates(CPU)
    assert not r.eager_measured and not r.compile_measured and r.eager_flops_per_s == autocompile.EAGER_RATE["cpu"]


@pytest.mark.parametrize("compile_s, compiles", [(1e6, False), (0.5, True)])
def test_the_recorded_compile_cost_flips_the_decision(monkeypatch, compile_s, compiles):
    from ddtool.runtime import machine

    flops = 10e12  # at the assumed 60 GFLOP/s: ~167 s eager, x 0.3 = 50 s > 30 s: compiles
    assert pays(flops, CPU)
    flops_small = 0.2e12  # ~3.3 s eager: never repays the assumed 30 s (1 s saved), repays 0.5 s
    assert not pays(flops_small, CPU)
    monkeypatch.setattr(machine, "measured", lambda d: machine.MachineRates(compile_seconds=compile_s))
    work = flops if not compiles else flops_small
    lines: list[str] = []
    ac = _auto(monkeypatch, lines)
    assert ac.decide(work) is compiles  # the assumed constants would decide the other way
    assert ac.info["rates"]["compile_from"] == "measured" and ac.info["rates"]["eager_from"] == "assumed"
    assert f"compile {compile_s:.3g} s (measured here)" in ac.info["reason"]
    if compiles:
        assert "60 GFLOP/s eager (assumed), compile 0.5 s (measured here)" in lines[0]


def test_the_machine_file_is_written_atomically_and_an_unwritable_cache_changes_nothing(tmp_path, monkeypatch):
    from ddtool.runtime import machine

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("DDTOOL_CACHE", str(blocker / "cache"))  # a folder that cannot be made
    assert machine.record(CPU, compile_seconds=5.0) is False and machine.measured(CPU) == machine.MachineRates()
    monkeypatch.setenv("DDTOOL_CACHE", str(tmp_path / "c"))
    assert machine.record(CPU, compile_seconds=5.0) is True
    assert [p.name for p in (tmp_path / "c").iterdir()] == [machine.MACHINE_FILE]  # no temporary left
