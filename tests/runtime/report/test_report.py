"""The report (ddtool.runtime.report: .rows, .dd_ranking, .stored_accuracies, .random_baseline): DD-Ranking's scores against
hand-computed values, and rows built from what the store holds, made only where it holds nothing."""

from __future__ import annotations

import math

import pytest
import torch

from ddtool.store import Store

CPU = torch.device("cpu")
TINY_SET = ["net.width=8", "distill.iterations=2", "distill.ipc=1"]


# -- metrics -----------------------------------------------------------------------------------------
def test_hlr_ior_lrs_against_hand_computed_values() -> None:
    from ddtool.runtime.report.dd_ranking import hlr, ior, lrs

    assert hlr(0.90, 0.60) == pytest.approx(0.30) and ior(0.60, 0.45) == pytest.approx(0.15)
    # α = 0.5 * 0.15 - 0.5 * 0.30 = -0.075; (e^-0.075 - e^-1) / (e - e^-1) * 100
    assert lrs(0.30, 0.15) == pytest.approx((0.9277434863 - 0.3678794412) / (2.7182818285 - 0.3678794412) * 100)
    assert lrs(0.30, 0.15) == pytest.approx(23.8199, abs=1e-3)
    # w moves the weight: w = 1 is IOR alone, w = 0 is -HLR alone
    assert lrs(0.30, 0.15, w=1.0) == pytest.approx((math.exp(0.15) - math.exp(-1)) / (math.e - math.exp(-1)) * 100)
    assert lrs(0.30, 0.15, w=0.0) == pytest.approx((math.exp(-0.3) - math.exp(-1)) / (math.e - math.exp(-1)) * 100)


def test_lrs_at_its_bounds() -> None:
    from ddtool.runtime.report.dd_ranking import lrs

    assert lrs(hlr_value=0.0, ior_value=1.0, w=1.0) == pytest.approx(100.0)  # α = 1
    assert lrs(hlr_value=-1.0, ior_value=1.0) == pytest.approx(100.0)  # α = 0.5 + 0.5
    assert lrs(hlr_value=1.0, ior_value=0.0, w=0.0) == pytest.approx(0.0, abs=1e-12)  # α = -1
    assert lrs(hlr_value=1.0, ior_value=-1.0) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="w must be in"):
        lrs(0.1, 0.1, w=1.5)


def test_ars_as_dd_ranking_defines_it() -> None:
    from ddtool.runtime.report.dd_ranking import ars

    # β = 0.5 * (0.70 - 0.60) + 0.5 * (0.50 - 0.45) = 0.075
    want = (math.exp(0.075) - math.exp(-1)) / (math.e - math.exp(-1)) * 100
    assert ars(0.70, 0.50, 0.60, 0.45) == pytest.approx(want) == pytest.approx(30.2078, abs=1e-3)
    # γ = 1: the augmented gap alone (β = 0.1); γ = 0: the plain gap alone (β = 0.05)
    assert ars(0.70, 0.50, 0.60, 0.45, gamma=1.0) == pytest.approx(
        (math.exp(0.1) - math.exp(-1)) / (math.e - math.exp(-1)) * 100)
    assert ars(0.70, 0.50, 0.60, 0.45, gamma=0.0) == pytest.approx(
        (math.exp(0.05) - math.exp(-1)) / (math.e - math.exp(-1)) * 100)
    with pytest.raises(ValueError, match="gamma"):
        ars(0.7, 0.5, 0.6, 0.45, gamma=-0.1)


# -- seeds -------------------------------------------------------------------------------------------
def test_missing_seeds_fill_the_lowest_gaps() -> None:
    from ddtool.runtime.report.stored_accuracies import missing_ranges

    assert missing_ranges(set(), 0, 3) == [(0, 3)]
    assert missing_ranges({0, 1, 3}, 0, 5) == [(2, 1), (4, 1)]
    assert missing_ranges({0, 1, 3}, 0, 6) == [(2, 1), (4, 2)]
    assert missing_ranges({0, 1, 2, 3, 4, 5}, 0, 5) == []  # more recorded than asked: nothing to train
    assert missing_ranges({0}, 10, 2) == [(10, 2)]  # seeds below the first do not count


# -- rows --------------------------------------------------------------------------------------------
def _settings(**kw):  # type: ignore[no-untyped-def]
    from ddtool.recipe import EvalSection
    from ddtool.runtime.report.rows import ReportSettings

    return ReportSettings(eval=EvalSection(epochs=2, repeats=2), full_epochs=1, **kw)


def _distill(store: Store, digits, name: str, *extra: str):  # type: ignore[no-untyped-def]
    from ddtool.recipe import load_recipe
    from ddtool.runtime.distill import distill

    return distill(store, load_recipe(None, [*TINY_SET, *extra]), digits, CPU, name=name)


def test_report_rows_reuse_records_and_make_the_random_baseline_once(store: Store, digits, one_thread) -> None:  # type: ignore[no-untyped-def]
    from ddtool.nets import NetSpec
    from ddtool.recipe import EvalSection
    from ddtool.runtime.report import dd_ranking as metrics
    from ddtool.runtime.evaluate.train_eval import evaluate
    from ddtool.runtime.report.rows import build_report
    from ddtool.store.meta import SyntheticMeta

    made = _distill(store, digits, "dm1")
    mine = _distill(store, digits, "mine", 'distill.method="random"')  # the user's own random subset, seed 0
    spec = NetSpec.from_json(SyntheticMeta.from_metadata(store.blob_metadata(made.artifact.digest)).net or "")
    earlier = evaluate(store, "synthetic/dm1", digits, EvalSection(epochs=2, repeats=1), CPU, spec)

    rows = build_report(store, ["synthetic/dm1"], _settings(baseline_subsets=3), CPU)
    (row,) = rows
    # the recorded repeat (seed 0) is read back; only seed 1 was trained, in an eval run of its own
    assert row.seeds == [0, 1] and row.accuracies[0] == earlier.accuracies[0] and row.repeats == 2
    new_eval = store.run(row.eval_runs[1])
    assert earlier.run_id == row.eval_runs[0] and new_eval["settings"]["seed"] == 1
    assert new_eval["metrics"]["repeats"] == 1
    # baseline: seeds 0..2; seed 0 is the user's own random set, 1 and 2 were made by the report
    assert [b["seed"] for b in row.baselines] == [0, 1, 2]
    assert row.baselines[0]["ref"] == mine.artifact.ref
    made_by_report = sorted(a.ref for a in store.list() if a.name.startswith("report-random-"))
    assert made_by_report == ["synthetic/report-random-digits-ipc1-seed1:v1",
                              "synthetic/report-random-digits-ipc1-seed2:v1"]
    means = [b["mean"] for b in row.baselines]
    assert row.random_mean == pytest.approx(sum(means) / 3) and row.random_subsets == 3
    # the scores are the metrics of the row's own numbers
    assert row.hlr == pytest.approx(row.full_mean - row.accuracy_mean)
    assert row.ior == pytest.approx(row.accuracy_mean - row.random_mean)
    assert row.lrs == pytest.approx(metrics.lrs(row.hlr, row.ior, 0.5)) and row.ars is None
    full = store.run(row.full_runs[0])
    assert full["full_data"] is True and full["settings"]["epochs"] == 1 and row.full_repeats == 1
    # cost from the distill run record, storage from the tensors (10 images of 1x8x8 float32 + 10 int64)
    record = store.run(made.run_id)
    assert row.distill_run == made.run_id and row.distill_seconds == record["wall_seconds"]
    assert row.flops == record["flops"] and row.device == "cpu" and row.peak_memory_bytes == record["peak_rss_bytes"]
    assert row.storage_bytes == 10 * 64 * 4 + 10 * 8 and row.recipe_sha256 == record["recipe_sha256"]
    assert row.method == "dm" and row.ipc == 1 and row.dataset == "digits"

    # a second report trains nothing and makes nothing: the same numbers, read back
    artifacts, runs = store.list(), [r["id"] for r in store.runs()]
    again = build_report(store, ["synthetic/dm1"], _settings(baseline_subsets=3), CPU)
    assert store.list() == artifacts and [r["id"] for r in store.runs()] == runs
    assert [r.to_dict() for r in again] == [r.to_dict() for r in rows]


def test_other_settings_are_other_records_and_ars_evaluates_without_augmentation(store: Store, digits, one_thread) -> None:  # type: ignore[no-untyped-def]
    from ddtool.runtime.report import dd_ranking as metrics
    from ddtool.runtime.report.rows import build_report

    _distill(store, digits, "dm1")
    from ddtool.recipe import EvalSection
    from ddtool.runtime.report.rows import ReportSettings

    (row,) = build_report(store, ["synthetic/dm1"], _settings(baseline_subsets=1, ars=True, gamma=0.25), CPU)
    plain = [r for r in store.runs() if r["command"] == "eval" and r["settings"]["augment"] == "none"]
    assert len(plain) == 2  # the set and its one random subset, without augmentation
    assert row.ars == pytest.approx(metrics.ars(row.accuracy_mean, row.plain_mean, row.random_mean,
                                                row.random_plain_mean, 0.25))
    # 3 epochs is another protocol: nothing recorded under 2 is reused
    before = len(store.runs())
    (other,) = build_report(store, ["synthetic/dm1"], ReportSettings(
        eval=EvalSection(epochs=3, repeats=2), full_epochs=1, baseline_subsets=1), CPU)
    assert len(store.runs()) - before == 2  # the set and the subset at 3 epochs; the full-data bound is reused
    assert other.epochs == 3 and other.full_runs == row.full_runs


def test_report_refuses_bad_settings_before_any_work(store: Store, digits, store_snapshot) -> None:  # type: ignore[no-untyped-def]
    from ddtool.errors import UsageError
    from ddtool.runtime.report.rows import build_report

    _distill(store, digits, "dm1")
    before = store_snapshot(store.root)
    for kw, msg in (({"w": 1.5}, "--w must be in"), ({"gamma": 2.0}, "--gamma"), ({"net": "resnet99"}, "resnet99"),
                    ({"baseline_subsets": 0}, "--baseline-subsets")):
        with pytest.raises(UsageError, match=msg):
            build_report(store, ["synthetic/dm1"], _settings(**kw), CPU)
    with pytest.raises(UsageError, match="no synthetic sets of dataset 'cifar10'"):
        build_report(store, [], _settings(), CPU, dataset="cifar10")
    assert store_snapshot(store.root) == before
