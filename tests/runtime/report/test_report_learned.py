"""``ddtool report`` on a set that carries its own (learned) label vectors, e.g. DATM's: its accuracy
on them beside the hard one (never pooled with it), DD-Ranking's soft-label IOR and LRS against the
random subsets on a teacher's soft labels at T 1 (``ddranking/metrics/soft_label.py``, mode "S"),
the label vectors in the storage column; without a teacher, one line saying how to add one. A set
with hard labels only reports as before."""

from __future__ import annotations

import json
import statistics

import pytest
import torch

from ddtool.nets import NetSpec
from ddtool.store import Store
from ddtool.store.meta import DatasetSignature, SyntheticMeta
from ddtool.synthetic import SyntheticSet

CPU = torch.device("cpu")
SPEC = NetSpec("convnet", {"width": 8})
REPORT_FAST = ["--epochs", "2", "--repeats", "2", "--full-epochs", "1", "--baseline-subsets", "1"]


def twin_sets(store: Store, digits) -> None:  # type: ignore[no-untyped-def]
    """The same ten real digits (ipc 1) twice: 'hard' with its classes only, 'datm' with logits that
    name the next class for every image (labels far from the classes: pooling them would show)."""
    g = torch.Generator().manual_seed(0)
    idx = torch.cat([digits.sample_class(c, 1, generator=g) for c in range(10)])
    images, labels = digits.normalize(digits.train_images[idx]), torch.arange(10)
    logits = 8.0 * torch.nn.functional.one_hot((labels + 1) % 10, 10).float()
    for name, soft in (("hard", None), ("datm", logits)):
        info = SyntheticMeta(signature=DatasetSignature.of(digits), method="datm" if soft is not None else "dm",
                             mean=digits.mean, std=digits.std, net=SPEC.to_json(), parents=(),
                             label_kind="logits" if soft is not None else None)
        store.put("synthetic", name, *SyntheticSet(images, labels, 1, 1, info, soft_labels=soft).to_artifact())


def random_teacher(store: Store, digits) -> str:  # type: ignore[no-untyped-def]
    """A one-model pool of an untrained network: any teacher will do for the arithmetic."""
    from ddtool.lookup import build_net
    from ddtool.pool import Pool

    torch.manual_seed(0)
    net = build_net(SPEC, digits.channels, digits.num_classes, digits.resolution)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    pool = Pool(SPEC, [state], [{"index": 0}], DatasetSignature.of(digits))
    return store.put("pool", "t", *pool.to_artifact()).ref


def _settings(teacher: str = ""):  # type: ignore[no-untyped-def]
    from ddtool.recipe import EvalSection
    from ddtool.runtime.report.rows import ReportSettings

    soft = {"labels": "soft", "teacher": teacher} if teacher else {}
    return ReportSettings(eval=EvalSection(epochs=2, repeats=2, **soft), full_epochs=1, baseline_subsets=2)


def test_learned_labels_are_scored_apart_from_hard_and_against_soft_labelled_random(store: Store, digits,  # type: ignore[no-untyped-def]
                                                                                     one_thread) -> None:
    from ddtool.runtime.report import dd_ranking as metrics
    from ddtool.runtime.report.rows import build_report

    twin_sets(store, digits)
    hard, datm = build_report(store, ["synthetic/hard", "synthetic/datm"], _settings(), CPU)
    runs = {r["id"]: r for r in store.runs()}
    # the hard-label set: no learned columns
    assert hard.label_kind is None and hard.learned_mean is None and hard.learned_label_bytes is None
    assert hard.learned_ior is None and hard.learned_missing is None and hard.learned_eval_runs == []
    # the same images on their classes: the hard accuracy is the twin's (same kernels, inputs, seeds), read
    # from hard-label runs only, and the learned one from learned-label runs only
    assert datm.accuracies == hard.accuracies
    assert datm.hlr == hard.hlr == pytest.approx(hard.full_mean - hard.accuracy_mean)
    assert {runs[i]["settings"]["labels"] for i in datm.eval_runs} == {"hard"}
    assert {runs[i]["settings"]["labels"] for i in datm.learned_eval_runs} == {"learned"}
    recorded = [a for i in datm.learned_eval_runs for a in runs[i]["metrics"]["accuracies"]]
    assert datm.learned_accuracies == recorded and datm.learned_repeats == 2 and datm.learned_seeds == [0, 1]
    assert datm.learned_mean == pytest.approx(statistics.fmean(recorded))
    # the label vectors are counted in the storage column: 10 x 10 fp32 more than the twin
    assert datm.label_kind == "logits" and datm.learned_label_bytes == 10 * 10 * 4
    assert datm.storage_bytes == hard.storage_bytes + 400
    # no teacher: the hard scores stand, the learned IOR and LRS say what they lack
    assert datm.ior == hard.ior and datm.learned_ior is None and datm.learned_lrs is None
    assert "--teacher pool/NAME" in datm.learned_missing
    assert "'ddtool eval --full-data --dataset digits --save-teacher'" in datm.learned_missing

    teacher = random_teacher(store, digits)
    before = set(runs)
    hard2, datm2 = build_report(store, ["synthetic/hard", "synthetic/datm"], _settings(teacher), CPU)
    new = [r for r in store.runs() if r["id"] not in before]
    # the learned and hard accuracies are read back; only soft-label runs are new
    assert datm2.learned_eval_runs == datm.learned_eval_runs and datm2.eval_runs == datm.eval_runs
    assert {r["settings"]["labels"] for r in new} == {"soft"}
    # the random baseline of the learned IOR: each subset on the teacher's soft labels at T 1
    subsets = {b["digest"] for b in datm2.baselines}
    at_one = {r["inputs"][0]["digest"]: r["metrics"]["mean"] for r in new
              if r["soft"]["temperature"] == 1.0 and r["inputs"][0]["digest"] in subsets}
    assert set(at_one) == subsets and all(r["soft"]["digest"] == store.resolve(teacher).digest for r in new)
    assert datm2.learned_random_mean == pytest.approx(statistics.fmean(at_one.values()))
    assert datm2.learned_ior == pytest.approx(datm2.learned_mean - datm2.learned_random_mean)
    hlr = datm2.full_mean - datm2.accuracy_mean  # HLR stays the hard one
    assert datm2.learned_lrs == pytest.approx(metrics.lrs(hlr, datm2.learned_ior, 0.5))
    assert datm2.learned_missing is None and datm2.hlr == datm.hlr
    # the hard-label set gets the teacher's soft column as before, and no learned one
    assert hard2.soft_mean is not None and hard2.learned_mean is None and hard2.learned_random_mean is None
    # a third report trains nothing
    count = len(store.runs())
    again = build_report(store, ["synthetic/hard", "synthetic/datm"], _settings(teacher), CPU)
    assert len(store.runs()) == count and [r.to_dict() for r in again] == [hard2.to_dict(), datm2.to_dict()]


def test_cli_names_the_missing_teacher_then_shows_the_learned_table(cli, store: Store, digits, one_thread) -> None:  # type: ignore[no-untyped-def]
    from ddtool.runtime.report.rows import ReportRow

    twin_sets(store, digits)
    res = cli("report", "synthetic/datm", "synthetic/hard", *REPORT_FAST, "--json")
    assert res.exit_code == 0, res.stderr
    datm, hard = (ReportRow.from_dict(d) for d in json.loads(res.stdout))
    assert datm.learned_mean is not None and datm.learned_ior is None and hard.learned_mean is None
    lines = [ln for ln in res.stderr.splitlines() if "carries learned labels" in ln]
    assert len(lines) == 1 and "synthetic/datm:v1" in lines[0] and "--teacher" in lines[0]
    # the command the line names makes a teacher; with it the learned scores are filled
    made = cli("-q", "eval", "--full-data", "--dataset", "digits", "--save-teacher", "--epochs", "1", "--repeats", "1",
               "--net", "convnet", "--set", "net.width=8", "--json")
    assert made.exit_code == 0, made.stderr
    args = ["synthetic/datm", "synthetic/hard", *REPORT_FAST, "--teacher", "pool/teacher-digits-convnet"]
    row = ReportRow.from_dict(json.loads(cli("-q", "report", *args, "--json").stdout)[0])
    assert row.learned_ior == pytest.approx(row.learned_mean - row.learned_random_mean)
    table = cli("report", *args)
    assert table.exit_code == 0, table.stderr
    part = table.stdout[table.stdout.index("learned labels"):]
    line = next(ln for ln in part.splitlines() if ln.startswith(" datm:v1"))
    assert "logits" in line and f"{100 * row.learned_ior:.1f}" in line and "400 B" in line
    assert not any(ln.startswith(" hard:v1") for ln in part.splitlines())  # a hard-label set has no learned row
    assert all(len(ln) <= 80 for ln in table.stdout.splitlines())
    assert "carries learned labels" not in table.stderr and "DD-Ranking's soft-label IOR" in table.stderr
    md = cli("-q", "report", *args, "--markdown").stdout.splitlines()
    assert "| learned-label % | learned random % | learned IOR | learned LRS |" in md[0]
    head, first, second = ([c.strip() for c in ln.strip("|").split("|")] for ln in (md[0], md[2], md[3]))
    assert first[head.index("learned IOR")] == f"{100 * row.learned_ior:.2f}"
    assert [second[head.index(c)] for c in ("learned-label %", "learned IOR", "learned LRS")] == ["-"] * 3
    csv_head = cli("-q", "report", *args, "--csv").stdout.splitlines()[0].split(",")
    assert {"learned_mean", "learned_ior", "learned_lrs", "learned_label_bytes"} <= set(csv_head)
    assert "learned_accuracies" not in csv_head
