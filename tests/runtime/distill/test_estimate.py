"""distill --dry-run's estimate (ddtool.runtime.distill.estimate): its fields, its arithmetic on a faked
probe, the out-of-memory advice on a faked small device, and the run recording it beside the actual."""

from __future__ import annotations

import json
from types import SimpleNamespace
from pathlib import Path

import pytest
import torch

from ddtool.runtime.distill import estimate as est_mod
from ddtool.runtime.distill.estimate import Replay, advice
from ddtool.store import Store

CPU = torch.device("cpu")
pytestmark = pytest.mark.usefixtures("one_thread")
FIELDS = {"seconds_per_iteration", "seconds_total", "iterations", "flops_per_iteration", "peak_memory_bytes",
          "memory_limit_bytes", "memory_limit_from", "memory_measures", "fits", "advice", "probe", "device"}


def _json(res):  # type: ignore[no-untyped-def]
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_the_dry_run_json_holds_a_positive_estimate_whose_flops_the_run_counts_too(cli, tiny_recipe: Path,
                                                                                   store: Store) -> None:
    dry = _json(cli("distill", "-r", tiny_recipe, "--dry-run", "--json"))
    e = dry["estimate"]
    assert set(e) == FIELDS
    assert e["iterations"] == 6 and e["device"] == "cpu"
    assert e["seconds_per_iteration"] > 0 and e["seconds_total"] == pytest.approx(6 * e["seconds_per_iteration"])
    assert e["peak_memory_bytes"] > 0 and e["memory_limit_bytes"] > 0
    assert e["fits"] is True and e["advice"] is None  # a tiny digits run fits any machine that runs the tests
    assert "iteration 0 FLOP-counted" in e["probe"]
    assert store.runs() == []  # a dry-run stores nothing
    run = _json(cli("distill", "-r", tiny_recipe, "--json"))
    record = store.run(run["run"])
    # the probe replays the run's own first iteration: the same FLOPs the run counts
    assert e["flops_per_iteration"] == record["flops_per_iteration"] > 0
    # the run finds the dry-run's estimate (same recipe, data, device) and puts its own numbers beside it
    assert record["estimate"]["estimated"] == e
    actual = record["estimate"]["actual"]
    assert actual["seconds_per_iteration"] > 0 and actual["peak_memory_bytes"] > 0
    assert actual["seconds_per_iteration"] <= record["wall_seconds"] / 6


def test_a_run_of_another_recipe_finds_no_estimate(cli, tiny_recipe: Path, store: Store) -> None:
    _json(cli("distill", "-r", tiny_recipe, "--dry-run", "--json"))
    run = _json(cli("distill", "-r", tiny_recipe, "--iterations", "2", "--json"))  # another resolved recipe
    assert store.run(run["run"])["estimate"]["estimated"] is None


def test_no_estimate_prints_the_plan_only(cli, tiny_recipe: Path, monkeypatch) -> None:
    monkeypatch.setattr(est_mod, "replay", lambda *a, **k: pytest.fail("--no-estimate runs no iteration"))
    dry = _json(cli("distill", "-r", tiny_recipe, "--dry-run", "--no-estimate", "--json"))
    assert "estimate" not in dry and dry["plan"]["iterations"] == 6


def test_the_estimate_extrapolates_the_median_timed_iteration(digits, monkeypatch) -> None:
    from ddtool.recipe import load_recipe
    from ddtool.runtime.distill import plan

    p = plan(Store(Path("unused")), load_recipe(None, ["net.width=16", "distill.iterations=40"]), digits, None, CPU)
    # iteration 0 (counted, warming up) is slow; the median of the timed ones is the rate
    monkeypatch.setattr(est_mod, "replay", lambda *a, **k: Replay(3e9, [9.0, 2.0, 3.0], 5 * 2**30))
    monkeypatch.setattr(est_mod, "memory_limit", lambda d: (8 * 2**30, "available RAM"))
    e = est_mod.estimate(p, digits, CPU)
    assert e.seconds_per_iteration == 2.5 and e.seconds_total == 100.0 and e.flops_per_iteration == 3e9
    assert e.fits is True and e.advice is None
    monkeypatch.setattr(est_mod, "replay", lambda *a, **k: Replay(3e9, [9.0], 5 * 2**30))  # over budget: one
    assert est_mod.estimate(p, digits, CPU).seconds_per_iteration == 9.0
    assert "the only one probed: FLOP counter's overhead included" in est_mod.estimate(p, digits, CPU).probe
    monkeypatch.setattr(est_mod, "memory_limit", lambda d: (None, "unknown (no /proc/meminfo)"))
    e = est_mod.estimate(p, digits, CPU)
    assert e.fits is None and e.advice is None  # nothing to compare with: no advice


def test_over_a_faked_small_device_limit_the_dry_run_names_the_fix(cli, tiny_recipe: Path, monkeypatch) -> None:
    monkeypatch.setattr(est_mod, "memory_limit", lambda d: (2**20, "available RAM"))  # 1 MiB
    dry = _json(cli("distill", "-r", tiny_recipe, "--dry-run", "--json", "--set", "distill.batch_real=64"))
    e = dry["estimate"]
    assert e["fits"] is False and e["memory_limit_bytes"] == 2**20
    assert e["advice"].startswith("estimated peak memory") and "exceeds the available RAM (0.000977 GiB)" in e["advice"]
    assert "distill.batch_real (now 64)" in e["advice"] and "--nproc" in e["advice"]
    text = cli("distill", "-r", tiny_recipe, "--dry-run").stdout
    lines = text.splitlines()
    over = [line for line in lines if "exceeds" in line]  # one line, unwrapped (the peak may differ: a 2nd probe)
    assert len(over) == 1 and over[0].startswith("estimated peak memory ")
    assert over[0].endswith(e["advice"].split(" GiB exceeds", 1)[1].replace("(now 64)", "(now 256)"))
    assert any(line.startswith("estimate: ") and " s per iteration, ~" in line for line in lines)
    monkeypatch.setattr(est_mod, "memory_limit", lambda d: (2**50, "available RAM"))
    assert "exceeds" not in cli("distill", "-r", tiny_recipe, "--dry-run").stdout


def _plan(unroll: str | None, **cfg):  # type: ignore[no-untyped-def]
    """What advice() reads of a plan: the method's options, the [distill] section, the device."""
    options = SimpleNamespace(unroll=unroll, segment=5, syn_steps=30, batch_syn=0) if unroll else SimpleNamespace()
    return SimpleNamespace(options=options, cfg=SimpleNamespace(batch_real=cfg.get("batch_real", 0)),
                           device=torch.device(cfg.get("device", "cpu")))


def test_the_advice_names_the_checkpointed_unroll_and_its_segment_for_trajectory_matching() -> None:
    plain = advice(_plan("plain"), 90 * 2**30, 80 * 2**30, "NVIDIA H100 memory")  # type: ignore[arg-type]
    assert plain.startswith("estimated peak memory 90 GiB exceeds the NVIDIA H100 memory (80 GiB); try ")
    assert 'distill.options.unroll = "checkpointed" (memory of distill.options.segment = 5 student steps ' \
           "instead of 30)" in plain
    assert "distill.options.batch_syn (now the whole set)" in plain
    checkpointed = advice(_plan("checkpointed", device="cuda"), 2, 1, "GPU memory")  # type: ignore[arg-type]
    assert "a smaller distill.options.segment (now 5)" in checkpointed and "unroll" not in checkpointed
    assert "fewer processes per GPU" in checkpointed
    gradient = advice(_plan(None, batch_real=256), 2, 1, "available RAM")  # type: ignore[arg-type]
    assert "segment" not in gradient and "distill.batch_real (now 256)" in gradient


def test_an_iteration_of_inner_steps_is_probed_in_part_and_scaled_to_the_whole(digits) -> None:
    """IDC's iteration is ``progress_steps`` inner loops: past the budget the probe stops after the
    first (FLOPs) or second (seconds) inner step and scales; its FLOPs come near the whole iteration's."""
    from ddtool.recipe import load_recipe
    from ddtool.runtime.distill import plan

    recipe = load_recipe(None, ["distill.method=idc", "net.width=16", "distill.ipc=2", "distill.iterations=5",
                                "distill.batch_real=32", "distill.options.inner_loops=4", "distill.options.net_steps=1"])
    p = plan(Store(Path("unused")), recipe, digits, None, CPU)
    steps = p.method.progress_steps(p.options)
    assert steps == 4
    whole = est_mod.replay(p, digits, CPU, budget_s=float("inf"))
    assert whole.fraction == 1.0 and len(whole.seconds) == 1
    part = est_mod.replay(p, digits, CPU, iterations=3, scaled=True, budget_s=0.0)
    assert part.fraction == 1 / steps
    # the first inner step holds the iteration's set-up work too: near, not equal
    assert 0.5 * whole.flops < part.flops < 2 * whole.flops
    assert len(part.seconds) == 1 and part.seconds[0] > 0  # no budget left for a timed iteration
    # iteration 0 is always cut to its first inner step when scaled; with budget, iteration 1 runs whole
    more = est_mod.replay(p, digits, CPU, iterations=2, scaled=True, budget_s=float("inf"))
    assert more.fraction == 1 / steps and more.flops == part.flops and len(more.seconds) == 2
    # a whole replay's RNG is forked: the caller's stream is untouched
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    est_mod.replay(p, digits, CPU, budget_s=float("inf"))
    assert torch.equal(torch.rand(1), before)


def test_a_coreset_is_estimated_by_making_its_set_once_not_by_replaying_iterations(cli, tiny_recipe: Path,
                                                                                   monkeypatch) -> None:
    """random and herding have no iterations (their initial set is the result): the dry-run used to
    replay one and end in NotImplementedError ("has no matching loss")."""
    monkeypatch.setattr(est_mod, "replay", lambda *a, **k: pytest.fail("a coreset has no iteration to replay"))
    res = cli("distill", "-r", tiny_recipe, "--method", "random", "--dry-run")
    assert res.exit_code == 0, res.output
    assert "no iterations" in res.output and "Traceback" not in res.output
    e = _json(cli("distill", "-r", tiny_recipe, "--method", "random", "--dry-run", "--json"))["estimate"]
    assert set(e) == FIELDS
    assert e["iterations"] == 0 and e["seconds_per_iteration"] == 0 and e["flops_per_iteration"] == 0
    assert e["seconds_total"] > 0 and e["peak_memory_bytes"] > 0 and e["fits"] is True
    assert "without iterations" in e["probe"]
