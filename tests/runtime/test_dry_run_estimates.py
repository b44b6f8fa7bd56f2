"""eval and pretrain --dry-run (ddtool.runtime.dry_run_estimates, evaluate/eval_plan.py,
pretrain/pretrain_plan.py): the plan and the estimate's fields on digits with tiny budgets, nothing
written to the store, the out-of-memory advice on a faked small device limit, --no-estimate, and the
estimate's sums on a faked probe."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from ddtool.augment import DEFAULT_STRATEGY
from ddtool.runtime import dry_run_estimates as dre
from ddtool.store import Store

pytestmark = pytest.mark.usefixtures("one_thread")
DISTILL_FIELDS = {"seconds_per_iteration", "seconds_total", "iterations", "flops_per_iteration", "peak_memory_bytes",
                  "memory_limit_bytes", "memory_limit_from", "memory_measures", "fits", "advice", "probe", "device"}
FIELDS = DISTILL_FIELDS | {"unit", "parts"}
PART = {"what", "networks", "role", "epochs", "images", "batch", "stacked", "seconds_per_epoch",
        "seconds_per_network", "warmup_seconds", "seconds_total", "flops_per_epoch"}


def _json(res):  # type: ignore[no-untyped-def]
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_eval_dry_run_plans_each_set_and_the_full_data_bound_and_stores_nothing(
        cli, store: Store, digits, put_set, store_snapshot, tiny_recipe: Path) -> None:  # type: ignore[no-untyped-def]
    put_set(store, digits, "s", ipc=2)
    before = store_snapshot(store.root)
    dry = _json(cli("eval", "synthetic/s", "--full-data", "-r", tiny_recipe, "--epochs", "3", "--repeats", "2",
                    "--dry-run", "--json"))
    assert store_snapshot(store.root) == before  # no run record, no artifact, no teacher
    plan = dry["plan"]
    assert [(r["set"], r["images"], r["net"]) for r in plan] == [("synthetic/s:v1", 20, "convnet"),
                                                                  ("full:digits", 1437, "convnet")]
    assert {(r["repeats"], r["epochs"], r["batch"], r["labels"], r["impl"]) for r in plan} == {(2, 3, 256, "hard", "loop")}
    e = dry["estimate"]
    assert set(e) >= DISTILL_FIELDS and set(e) == FIELDS  # distill's fields, and the parts
    assert e["unit"] == "epoch" and e["device"] == "cpu" and e["iterations"] == 2 * 2 * 3  # one repeat at a time
    assert e["peak_memory_bytes"] > 0 and e["fits"] is True and e["advice"] is None
    parts = e["parts"]
    assert [set(p) for p in parts] == [PART, PART]
    assert [(p["what"], p["role"], p["networks"], p["epochs"], p["stacked"]) for p in parts] == [
        ("synthetic/s:v1 on convnet", "repeat", 2, 3, False), ("full:digits on convnet", "repeat", 2, 3, False)]
    for p in parts:
        assert p["seconds_total"] == pytest.approx(2 * p["seconds_per_network"] + p["warmup_seconds"])
        assert p["warmup_seconds"] >= 0
        assert p["seconds_per_network"] > 3 * p["seconds_per_epoch"] > 0  # its epochs, then its test
    assert e["seconds_total"] == pytest.approx(sum(p["seconds_total"] for p in parts))
    # FLOPs are counted on one batch and scaled by images: the same network on 1437 images, not 20
    assert parts[1]["flops_per_epoch"] == pytest.approx(parts[0]["flops_per_epoch"] * 1437 / 20, rel=1e-6)


def test_pretrain_dry_run_plans_a_pool_or_the_experts_and_stores_nothing(
        cli, store: Store, store_snapshot, tiny_recipe: Path) -> None:  # type: ignore[no-untyped-def]
    before = store_snapshot(store.root)
    dry = _json(cli("pretrain", "-r", tiny_recipe, "--n", "3", "--epochs", "2", "--dry-run", "--json"))
    plan = dry["plan"]
    assert (plan["artifact"], plan["models"], plan["epochs"], plan["train_images"]) == ("pool/tinypool", 3, 2, 1437)
    assert plan["augment"] == ["color_crop"] * 3 and plan["impl"] == "loop"
    e = dry["estimate"]
    assert set(e) == FIELDS and e["iterations"] == 3 * 2 and e["fits"] is True
    (part,) = e["parts"]
    assert (part["role"], part["networks"], part["epochs"], part["images"], part["stacked"]) == ("model", 3, 2, 1437,
                                                                                                 False)
    assert part["seconds_per_network"] > 2 * part["seconds_per_epoch"] > 0  # and its train and test accuracy

    traj = _json(cli("pretrain", "-r", tiny_recipe, "--trajectories", "--epochs", "2", "--dry-run", "--json"))
    plan = traj["plan"]
    # MTT buffer.py's values where the recipe states none, as the run records them
    assert plan["artifact"] == "trajectories/tinypool" and plan["batch"] == 256 == traj["recipe"]["pretrain"]["batch"]
    assert plan["augment"] == DEFAULT_STRATEGY and plan["snapshots"] == 3
    (part,) = traj["estimate"]["parts"]
    assert (part["role"], part["networks"], part["epochs"], part["batch"]) == ("expert", 2, 2, 256)
    assert store_snapshot(store.root) == before and store.runs() == []


def test_dry_runs_refuse_what_they_cannot_plan(cli, store: Store, digits, put_set) -> None:  # type: ignore[no-untyped-def]
    put_set(store, digits, "s")
    res = cli("eval", "synthetic/s", "--checkpoints", "--dry-run")
    assert res.exit_code == 2 and "drop --checkpoints or --dry-run" in res.stderr
    res = cli("pretrain", "--resume", "20261207-000000-pretrain-abcdef", "--dry-run")
    assert res.exit_code == 2 and "--dry-run plans a new run; drop --resume" in res.stderr
    res = cli("eval", "synthetic/s", "--net", "convnet", "--labels", "learned", "--dry-run")  # resolved as the run
    assert res.exit_code == 2 and "carries no label vectors" in res.stderr
    assert store.runs() == []


def test_over_a_faked_small_device_limit_the_dry_runs_name_the_fix(cli, store: Store, digits, put_set,
                                                                    tiny_recipe: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    put_set(store, digits, "s")
    monkeypatch.setattr(dre, "memory_limit", lambda d: (2**20, "available RAM"))  # 1 MiB
    args = ["eval", "synthetic/s", "--repeats", "2", "--epochs", "2", "--set", "eval.impl=vectorized", "--dry-run"]
    e = _json(cli(*args, "--json"))["estimate"]
    # the repeats train as one stacked ensemble: an epoch of the ensemble is the iteration
    assert e["parts"][0]["stacked"] is True and e["iterations"] == 2
    assert e["fits"] is False and e["memory_limit_bytes"] == 2**20
    assert e["advice"].startswith("estimated peak memory ") and "exceeds the available RAM (0.000977 GiB)" in e["advice"]
    assert "--batch (now 256)" in e["advice"] and "one repeat at a time instead of 2 stacked: --set eval.impl=loop" \
        in e["advice"] and "--nproc" in e["advice"]
    lines = cli(*args).stdout.splitlines()
    over = [line for line in lines if "exceeds" in line]
    assert len(over) == 1 and over[0].startswith("estimated peak memory ")  # one line, unwrapped
    assert any(line.startswith("estimate: ~") and "for the whole evaluation (2 epochs, eager)" in line for line in lines)

    pool = ["pretrain", "-r", tiny_recipe, "--set", "pretrain.augment=alternate", "--set", "pretrain.cutmix=0",
            "--set", "pretrain.impl=vectorized", "--dry-run", "--json"]
    e = _json(cli(*pool))["estimate"]
    assert e["parts"][0]["stacked"] is True and e["fits"] is False
    assert "pretrain.batch=N (now 64)" in e["advice"] and "--set pretrain.impl=loop, or fewer models (--n)" in e["advice"]
    monkeypatch.setattr(dre, "memory_limit", lambda d: (2**50, "available RAM"))
    assert "exceeds" not in cli(*args).stdout
    assert store.runs() == []


def test_no_estimate_prints_the_plan_only(cli, store: Store, digits, put_set, tiny_recipe: Path,
                                          monkeypatch) -> None:  # type: ignore[no-untyped-def]
    put_set(store, digits, "s")
    monkeypatch.setattr(dre, "probe_job", lambda *a, **k: pytest.fail("--no-estimate trains no step"))
    dry = _json(cli("eval", "synthetic/s", "--dry-run", "--no-estimate", "--json"))
    assert "estimate" not in dry and dry["plan"][0]["set"] == "synthetic/s:v1"
    dry = _json(cli("pretrain", "-r", tiny_recipe, "--dry-run", "--no-estimate", "--json"))
    assert "estimate" not in dry and dry["plan"]["models"] == 2
    assert "estimate" not in cli("pretrain", "-r", tiny_recipe, "--dry-run", "--no-estimate").stdout


def test_the_estimate_adds_its_parts_and_weighs_the_epochs(monkeypatch) -> None:
    """Two kinds of network: the total is their sum, the seconds per epoch their mean weighted by the
    epochs each trains, the peak the larger one's."""
    jobs = [SimpleNamespace(what=w, networks=n, role="repeat", settings=SimpleNamespace(epochs=e, batch=256),
                            images=torch.zeros(10)) for w, n, e in (("a", 2, 10), ("b", 1, 30))]
    probes = {"a": dre.JobProbe(False, 1.0, 5.0, 22.0, 20, 100, 3),
              "b": dre.JobProbe(False, 3.0, 1.0, 91.0, 30, 300, 0, warmup_seconds=1.0)}
    monkeypatch.setattr(dre, "probe_job", lambda job, device, budget_s: probes[job.what])
    monkeypatch.setattr(dre, "memory_limit", lambda d: (None, "unknown (no /proc/meminfo)"))
    e = dre.training_estimate(jobs, torch.device("cpu"), lambda parts: pytest.fail("no limit: no advice"))  # type: ignore[arg-type]
    assert e.seconds_total == 113.0 and e.iterations == 50
    assert e.seconds_per_iteration == pytest.approx((1.0 * 20 + 3.0 * 30) / 50)
    assert e.flops_per_iteration == pytest.approx((5.0 * 20 + 1.0 * 30) / 50)
    assert e.peak_memory_bytes == 300 and e.fits is None and e.advice is None
    assert "1 past the probe's budget timed on the first batch only" in e.probe
    assert [p["seconds_per_network"] for p in e.parts] == [11.0, 90.0]  # the warm-up is paid once, not per network
