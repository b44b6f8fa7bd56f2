"""Soft-label evaluation (ddtool.runtime.evaluate.soft_labels): a teacher's temperature-scaled outputs as
targets, KL loss x T², the teacher in the eval record and the lineage; ``ddtool report --teacher``
with hard and soft accuracy side by side and the soft labels' storage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from ddtool.lookup import build_net
from ddtool.nets import NetSpec
from ddtool.pool import Pool
from ddtool.recipe import EvalSection
from ddtool.store import Store
from ddtool.store.meta import DatasetSignature

SPEC = NetSpec("convnet", {"width": 16})


def oracle_pool(store: Store, digits, images: torch.Tensor, labels: torch.Tensor, scale: float = 1000.0,  # type: ignore[no-untyped-def]
                name: str = "oracle") -> str:
    """Store a one-model pool whose logits on ``images`` are ``scale`` x one-hot(``labels``): the
    identity of the labels. Its last linear layer is solved by least squares on the features."""
    torch.manual_seed(0)
    net = build_net(SPEC, digits.channels, digits.num_classes, digits.resolution).eval()
    last = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
    feats: list[torch.Tensor] = []
    handle = last.register_forward_hook(lambda m, inp, out: feats.append(inp[0].detach()))
    with torch.no_grad():
        net(images)
    handle.remove()
    f = torch.cat([feats[0], torch.ones(len(images), 1)], dim=1).double()
    target = scale * torch.nn.functional.one_hot(labels, digits.num_classes).double()
    w = torch.linalg.lstsq(f, target, driver="gelsd").solution  # [features + 1, classes]
    with torch.no_grad():
        last.weight.copy_(w[:-1].T.float())
        last.bias.copy_(w[-1].float())
        logits = net(images)
    assert (logits.argmax(1) == labels).all() and (logits - target.float()).abs().max() < 0.5
    pool = Pool(SPEC, [{k: v.clone() for k, v in net.state_dict().items()}], [{"index": 0}],
                DatasetSignature.of(digits))
    return store.put("pool", name, *pool.to_artifact()).ref


def test_soft_targets_of_an_identity_teacher_are_one_hot_and_train_like_hard_labels(digits) -> None:
    from ddtool.runtime.evaluate.soft_labels import soft_targets, storage_bytes
    from ddtool.runtime.supervised import TrainSettings, train

    labels = torch.arange(10).repeat(2)
    targets = soft_targets(lambda x: 1000.0 * torch.nn.functional.one_hot(labels[: len(x)], 10).float(),
                           torch.zeros(20, 1, 8, 8), temperature=1.0)
    assert targets.dtype == torch.float32 and torch.equal(targets, torch.nn.functional.one_hot(labels, 10).float())  # exact: exp(-1000) underflows to 0
    assert storage_bytes(targets) == 20 * 10 * 4
    idx = torch.cat([digits.class_indices(c)[:2] for c in range(10)])
    images, hard = digits.normalize(digits.train_images[idx]), digits.train_labels[idx]
    settings = TrainSettings(epochs=3, batch=8, cutmix=0.5)  # CutMix mixes soft targets like hard ones

    def trained(y: torch.Tensor) -> dict[str, torch.Tensor]:
        torch.manual_seed(1)
        net = build_net(SPEC, 1, 10, 8)
        train(net, images, y, settings)
        return net.state_dict()

    a, b = trained(hard), trained(torch.nn.functional.one_hot(hard, 10).float())
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    # a soft target that is not one-hot trains differently (the test above can fail)
    c = trained(torch.full((20, 10), 0.1))
    assert not all(torch.allclose(a[k], c[k], atol=1e-3) for k in a)


def test_temperature_scales_the_kl_loss_by_t_squared(digits) -> None:
    from ddtool.runtime.supervised import TrainSettings, train

    x = torch.zeros(4, 1, 8, 8)
    target = torch.softmax(torch.randn(4, 10, generator=torch.Generator().manual_seed(0)), 1)
    losses = {}
    for t in (1.0, 4.0):
        torch.manual_seed(0)
        net = build_net(SPEC, 1, 10, 8)
        with torch.no_grad():
            logits = net(x)
        losses[t] = train(net, x, target, TrainSettings(epochs=1, lr=0.0, batch=4, temperature=t))
        want = t * t * torch.nn.functional.cross_entropy(logits / t, target)
        assert losses[t] == pytest.approx(float(want), rel=1e-5)


def test_soft_label_eval_with_an_identity_teacher_equals_hard_and_records_the_teacher(
        store: Store, digits, put_set, cli) -> None:  # type: ignore[no-untyped-def]
    from ddtool.runtime.evaluate.train_eval import evaluate
    from ddtool.synthetic import SyntheticSet

    put_set(store, digits, ipc=2)
    art, tensors, meta = store.load("synthetic/s")
    syn = SyntheticSet.from_artifact(tensors, meta, art.digest)
    teacher = oracle_pool(store, digits, *syn.decoded())
    cfg = EvalSection(epochs=4, repeats=2, batch=8, impl="loop")
    cpu = torch.device("cpu")
    hard = evaluate(store, "synthetic/s", digits, cfg, cpu)
    soft_cfg = EvalSection(epochs=4, repeats=2, batch=8, impl="loop", labels="soft", teacher=teacher + "#0",
                           temperature=1.0)
    soft = evaluate(store, "synthetic/s", digits, soft_cfg, cpu)
    assert soft.accuracies == pytest.approx(hard.accuracies, abs=2 / len(digits.test_labels))
    rec = store.run(soft.run_id)
    assert rec["soft"]["ref"] == teacher and rec["soft"]["model"] == 0 and rec["soft"]["temperature"] == 1.0
    assert rec["settings"]["labels"] == "soft" and rec["metrics"]["teacher"] == teacher
    assert rec["metrics"]["soft_label_bytes"] == 20 * 10 * 4 == soft.soft["soft_label_bytes"]
    assert {"role": "teacher", "ref": teacher, "kind": "pool"}.items() <= rec["inputs"][1].items()
    assert "soft" not in store.run(hard.run_id)
    # the lineage: the eval is among what the teacher pool was used for
    tree = json.loads(cli("store", "show", teacher, "--tree", "--json").stdout)
    assert soft.run_id in json.dumps(tree)


def test_eval_full_data_save_teacher_then_soft_labels_from_it(cli, store: Store, digits, put_set, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import ddtool.runtime.evaluate.train_eval as evaluate_module

    put_set(store, digits, ipc=1)
    seeded: list[int] = []
    real_seed = torch.manual_seed
    with monkeypatch.context() as m:  # only around the full-data run
        m.setattr(evaluate_module.torch, "manual_seed", lambda s: (seeded.append(int(s)), real_seed(s))[1])
        res = cli("eval", "--full-data", "--dataset", "digits", "--save-teacher", "--epochs", "1", "--repeats", "1",
                  "--net", "convnet", "--set", "net.width=16", "--json")
    assert res.exit_code == 0, res.stderr
    full_run = json.loads(res.stdout)[0]["run"]
    out = [o for o in store.run(full_run)["outputs"] if o["role"] == "pool"]
    assert len(out) == 1 and out[0]["ref"] == "pool/teacher-digits-convnet:v1"
    tensors, meta = store.read_blob(out[0]["digest"])
    pool = Pool.from_artifact(tensors, meta, out[0]["digest"])
    assert len(pool) == 1 and pool.models[0]["full_data"] and pool.models[0]["eval_run"] == full_run
    # the teacher trained from a seed of its own, not eval.seed + i (repeat i of a soft-label
    # evaluation would start from teacher i's initial weights): the seed recorded is the one used
    from ddtool.runtime.seeds import role_seed
    assert pool.models[0]["seed"] == role_seed("teacher", 0, 0) == store.run(full_run)["metrics"]["teacher_seeds"][0]
    assert role_seed("teacher", 0, 0) in seeded and 0 not in seeded
    from ddtool.pool import newest_compatible
    assert newest_compatible(store, digits, pool.net) is None  # a converged teacher is no pool to distill with
    res = cli("eval", "synthetic/s", "--teacher", "pool/teacher-digits-convnet", "--temperature", "2",
              "--epochs", "2", "--repeats", "1", "--net", "convnet", "--json")
    assert res.exit_code == 0, res.stderr
    soft = json.loads(res.stdout)[0]["soft"]
    assert soft["ref"] == "pool/teacher-digits-convnet:v1" and soft["full_data"] and soft["temperature"] == 2.0
    assert soft["soft_label_bytes"] == 10 * 10 * 4
    table = cli("eval", "synthetic/s", "--teacher", "pool/teacher-digits-convnet", "--epochs", "1", "--repeats", "1")
    assert table.exit_code == 0 and "soft labels: teacher pool/teacher-digits-convnet:v1#0" in table.stderr
    assert "400 B" in table.stderr


@pytest.mark.parametrize("args, message", [
    (["--labels", "soft"], "--labels soft needs --teacher"),
    (["--teacher", "pool/nope"], "--teacher 'pool/nope': unknown ref 'pool/nope'"),
    (["--teacher", "synthetic/s"], "is a synthetic artifact, but a pool artifact is needed"),
    (["--teacher", "pool/other"], "teacher 'pool/other:v1' was trained on dataset 'other', but this set is of "
                                  "'digits'"),
    (["--teacher", "pool/few"], "teacher 'pool/few:v1' was trained on classes '3 classes', but this set is of "
                                "'10 classes'"),
    (["--teacher", "pool/oracle#3"], "teacher 'pool/oracle:v1' holds 1 model(s) (#0..#0); got #3"),
    (["--teacher", "pool/oracle#x"], "write the model index as a number after '#'"),
    (["--labels", "hard", "--teacher", "pool/oracle"], "eval.labels is 'hard'; add --labels soft"),
    (["--labels", "soft", "--teacher", "pool/oracle", "--temperature", "0"], "eval.temperature must be > 0"),
    (["--labels", "fuzzy"], "eval.labels must be auto, hard, learned or soft"),
    (["--save-teacher"], "--save-teacher stores the full-data networks: add --full-data"),
])
def test_soft_label_usage_errors_are_one_line(cli, store: Store, digits, put_set, args: list[str],  # type: ignore[no-untyped-def]
                                              message: str) -> None:
    import dataclasses

    images = put_set(store, digits, ipc=1)
    oracle_pool(store, digits, images, torch.arange(10))
    tensors, meta = store.read_blob(store.resolve("pool/oracle").digest)
    store.put("pool", "other", tensors, {**meta, "ddtool.dataset": "other"})
    few = dataclasses.replace(DatasetSignature.of(digits), classes=("0", "1", "2"))
    store.put("pool", "few", tensors, {**meta, **few.to_metadata()})
    before = len(store.runs())
    res = cli("eval", "synthetic/s", "--epochs", "1", "--repeats", "1", *args)
    assert res.exit_code == 2, res.stdout + res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert all(r.get("status") != "complete" for r in store.runs()[before:])  # no accuracy recorded


def test_new_eval_keys_leave_the_recipe_hash_alone_until_set(tiny_recipe: Path) -> None:
    from ddtool.recipe import load_recipe

    base = load_recipe(tiny_recipe)
    d = base.to_dict()
    for key in ("labels", "teacher", "temperature", "compile"):  # [eval] keys added after hashing began
        d["eval"].pop(key)
    # [pretrain] keys added after hashing began (issue 23; lr_milestones, lr_gamma: issue 24)
    for key in ("diverse", "lr_factors", "augments", "lr_milestones", "lr_gamma"):
        d["pretrain"].pop(key)
    d["distill"]["compile"] = False  # "auto" hashes as the former default (ddtool.runtime.autocompile)
    import hashlib

    assert base.sha256() == hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()
    assert load_recipe(tiny_recipe, ["eval.labels=\"soft\""]).sha256() != base.sha256()
    assert load_recipe(tiny_recipe, ["eval.temperature=2"]).sha256() != base.sha256()


# -- the report ---------------------------------------------------------------------------------------
REPORT_FAST = ["--epochs", "2", "--repeats", "2", "--full-epochs", "1", "--baseline-subsets", "1"]


def test_report_shows_hard_and_soft_side_by_side_with_soft_label_storage(cli, store: Store, digits, put_set,  # type: ignore[no-untyped-def]
                                                                         one_thread) -> None:
    from ddtool.runtime.report.rows import ReportRow
    from ddtool.runtime.report.tables import to_csv

    images = put_set(store, digits, ipc=1)
    teacher = oracle_pool(store, digits, images, torch.arange(10))
    res = cli("-q", "report", "synthetic/s", *REPORT_FAST, "--teacher", teacher, "--temperature", "1", "--json")
    assert res.exit_code == 0, res.stderr
    row = ReportRow.from_dict(json.loads(res.stdout)[0])
    assert row.teacher == teacher and row.teacher_model == 0 and row.temperature == 1.0
    assert row.soft_label_bytes == 10 * 10 * 4 and row.total_storage_bytes == row.storage_bytes + 400
    assert row.soft_repeats == 2 and len(row.soft_eval_runs) == 1
    # an identity teacher at T 1: the soft labels are the hard ones, so the accuracy is too
    assert row.soft_accuracies == row.accuracies and row.soft_eval_runs != row.eval_runs
    rec = store.run(row.soft_eval_runs[0])
    assert rec["soft"]["ref"] == teacher and rec["settings"]["labels"] == "soft"
    assert "soft_label_bytes" in to_csv([row]).splitlines()[0]
    # the second report reads both back: no new eval runs
    runs = len(store.runs())
    table = cli("report", "synthetic/s", *REPORT_FAST, "--teacher", teacher, "--temperature", "1")
    assert table.exit_code == 0, table.stderr
    assert len(store.runs()) == runs
    soft_table = table.stdout[table.stdout.index("hard and soft labels"):]
    line = next(ln for ln in soft_table.splitlines() if ln.startswith(" s:v1"))
    hard = f"{100 * row.accuracy_mean:.1f} ± {100 * row.accuracy_std:.1f}"
    assert "oracle:v1#0" in line and line.count(hard) == 2 and "400 B" in line  # hard, then soft
    assert all(len(ln) <= 80 for ln in table.stdout.splitlines())
    assert "bytes = fp32, N (training images) x classes x 4" in table.stderr
    md = cli("-q", "report", "synthetic/s", *REPORT_FAST, "--teacher", teacher, "--temperature", "1", "--markdown").stdout
    assert "| accuracy % | soft-label % |" in md.splitlines()[0] and "| storage | soft labels |" in md
    assert f"{teacher}#0, T 1" in md and "400 B" in md
    # another temperature is another record: for the set and for its one random subset on soft labels
    res = cli("-q", "report", "synthetic/s", *REPORT_FAST, "--teacher", teacher, "--temperature", "2", "--json")
    assert res.exit_code == 0 and len(store.runs()) == runs + 2
    # without --teacher: no soft columns
    plain = json.loads(cli("-q", "report", "synthetic/s", *REPORT_FAST, "--json").stdout)[0]
    assert plain["soft_mean"] is None and plain["soft_label_bytes"] is None


def test_report_soft_refusals(cli, store: Store, digits, put_set) -> None:  # type: ignore[no-untyped-def]
    put_set(store, digits, ipc=1)
    res = cli("report", "synthetic/s", *REPORT_FAST, "--teacher", "pool/none")
    assert res.exit_code == 2 and "--teacher 'pool/none': unknown ref 'pool/none'" in res.stderr
    assert not [a for a in store.list() if "report-random" in a.ref]  # refused before any baseline was made
    res = cli("report", "synthetic/s", *REPORT_FAST, "--set", 'eval.labels="soft"')
    assert res.exit_code == 2 and "soft labels need a teacher" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1



def test_report_soft_random_baseline_and_soft_lrs(cli, store: Store, digits, put_set, one_thread) -> None:  # type: ignore[no-untyped-def]
    """DD-Ranking compares a soft-label set with random real images on the same teacher's soft labels.
    With a teacher that is the identity of the labels on the set *and* on the random subset, the soft
    random baseline equals the hard one, so soft IOR and soft LRS equal the hard scores; another teacher
    trains the set and every subset again."""
    from ddtool.runtime.report import dd_ranking as metrics
    from ddtool.runtime.report.rows import ReportRow

    FAST = [*REPORT_FAST[:-1], "2"]  # two random subsets (seed 0's images are the set's own here)
    images = put_set(store, digits, ipc=1)
    first = ReportRow.from_dict(json.loads(cli("-q", "report", "synthetic/s", *FAST, "--json").stdout)[0])
    assert first.soft_random_mean is None and first.soft_lrs is None and len(first.baselines) == 2
    subsets = [store.read_blob(b["digest"])[0] for b in first.baselines]
    both = torch.cat([images, *(t["images"] for t in subsets)])
    labels = torch.cat([torch.arange(10), *(t["labels"] for t in subsets)])
    teacher = oracle_pool(store, digits, both, labels, name="oracle-both")
    res = cli("-q", "report", "synthetic/s", *FAST, "--teacher", teacher, "--temperature", "1", "--json")
    assert res.exit_code == 0, res.stderr
    row = ReportRow.from_dict(json.loads(res.stdout)[0])
    assert row.random_mean == first.random_mean
    assert row.soft_random_mean == pytest.approx(row.random_mean, abs=1e-6)
    assert row.soft_ior == pytest.approx(row.ior, abs=1e-6) and row.soft_lrs == pytest.approx(row.lrs, abs=1e-4)
    assert row.soft_lrs == pytest.approx(metrics.lrs(row.hlr, row.soft_mean - row.soft_random_mean, row.w))
    md = cli("-q", "report", "synthetic/s", *FAST, "--teacher", teacher, "--temperature", "1",
             "--markdown").stdout
    assert "| soft random % | soft IOR | soft LRS |" in md.splitlines()[0]
    table = cli("report", "synthetic/s", *FAST, "--teacher", teacher, "--temperature", "1")
    line = next(ln for ln in table.stdout[table.stdout.index("hard and soft labels"):].splitlines()
                if ln.startswith(" s:v1"))
    assert f"{100 * row.soft_random_mean:.1f}" in line and f"{row.soft_lrs:.1f}" in line
    assert all(len(ln) <= 80 for ln in table.stdout.splitlines())
    # another teacher: the set and the subsets are trained again, on that teacher's soft labels
    only_set = oracle_pool(store, digits, images, torch.arange(10), name="oracle-set")
    before = len(store.runs())
    res = cli("-q", "report", "synthetic/s", *FAST, "--teacher", only_set, "--temperature", "1", "--json")
    assert res.exit_code == 0, res.stderr
    taught = {(i["role"], i["digest"]) for r in store.runs() if (r.get("soft") or {}).get("ref") == only_set
              for i in r.get("inputs") or [] if i.get("role") == "synthetic"}
    assert len(store.runs()) == before + 3
    assert taught == {("synthetic", b["digest"]) for b in first.baselines} | {("synthetic", row.digest)}
