"""End-to-end through the CLI: what each verb writes to the store and prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from ddtool.store import Store


def _json(result) -> object:  # type: ignore[no-untyped-def]
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_pretrain_writes_a_pool_with_per_model_metadata(cli, store: Store, tiny_recipe: Path) -> None:  # type: ignore[no-untyped-def]
    out = _json(cli("pretrain", "--recipe", tiny_recipe, "--epochs", "1", "--n", "3", "--json"))
    assert out["ref"] == "pool/tinypool:v1" and len(out["models"]) == 3
    _, tensors, meta = store.load("pool/tinypool")
    assert meta["ddtool.n"] == "3" and meta["ddtool.dataset"] == "digits" and meta["ddtool.epochs"] == "1"
    assert {k.split(".")[0] for k in tensors} == {"m0", "m1", "m2"}
    models = json.loads(meta["ddtool.models"])
    from ddtool.runtime.seeds import role_seed

    assert [m["seed"] for m in models] == [role_seed("pool", 0, i) for i in range(3)]
    # Acc-DD's pretraining by default: one lr, IDC's chain, CutMix, batch 64; diverse by seed only
    assert {(m["lr"], m["augment"], m["cutmix"], m["batch"]) for m in models} == {(0.01, "color_crop", 0.5, 64)}
    assert all(0.0 <= m["test_acc"] <= 1.0 for m in models)
    run = store.run(out["run"])
    assert run["outputs"][0]["digest"] == out["digest"] and run["status"] == "complete"
    assert run["recipe"]["pretrain"]["n"] == 3 and run["wall_seconds"] > 0


def test_distill_eval_inspect_pipeline_with_lineage(cli, store: Store, tiny_recipe: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pool = _json(cli("pretrain", "--recipe", tiny_recipe, "--json"))
    syn = _json(cli("distill", "--recipe", tiny_recipe, "--set", 'distill.pool="pool/tinypool"',
                    "--set", 'distill.selection="random"', "--set", 'distill.schedule="gaussian"',
                    "--set", "distill.checkpoint_every=2", "--json"))
    assert syn["ref"] == "synthetic/tiny:v1" and syn["iterations"] == 6
    art, tensors, meta = store.load("synthetic/tiny")
    assert tensors["images"].shape == (10, 1, 8, 8) and tensors["labels"].tolist() == list(range(10))
    assert json.loads(meta["ddtool.parents"]) == [pool["digest"]]
    assert (meta["ddtool.method"], meta["ddtool.selection"], meta["ddtool.schedule"]) == ("dm", "random", "gaussian")
    assert "ddtool.arch" not in meta and json.loads(meta["ddtool.net"])["name"] == "convnet"  # arch: net's name, once
    run = store.run(syn["run"])
    assert run["inputs"][0]["digest"] == pool["digest"] and run["outputs"][0]["digest"] == art.digest
    assert [c["iteration"] for c in run["checkpoints"]] == [2, 4]
    ckpt, _ = store.read_blob(run["checkpoints"][0]["digest"])
    assert ckpt["images"].shape == tensors["images"].shape

    ev = _json(cli("eval", "synthetic/tiny", "--epochs", "5", "--repeats", "2", "--json"))[0]
    assert len(ev["accuracies"]) == 2 and all(0 <= a <= 1 for a in ev["accuracies"])
    assert ev["mean"] == pytest.approx(sum(ev["accuracies"]) / 2)
    record = store.run(ev["run"])
    assert record["inputs"][0]["digest"] == art.digest and record["metrics"]["epochs"] == 5

    shown = _json(cli("store", "show", "synthetic/tiny", "--json"))
    assert [r["run"] for r in shown["made_by"]] == [syn["run"]]
    assert [r["run"] for r in shown["used_by"]] == [ev["run"]]
    assert shown["parents"] == [pool["digest"]]

    png = tmp_path / "grid.png"
    res = cli("inspect", "synthetic/tiny", "--png", png)
    assert res.exit_code == 0, res.stderr
    # one row of half-block cells per two pixel rows of each class: 10 classes x 4 lines + a title
    lines = res.stdout.rstrip("\n").split("\n")
    assert sum(line.startswith(("0 ", "1 ", "9 ")) for line in lines) == 3
    assert sum("▀" in line for line in lines) == 10 * 4
    with Image.open(png) as im:
        assert im.size[0] >= 10 * 64 and im.size[1] > 64  # upscaled, one column per class


def test_eval_table_and_random_baseline(cli, store: Store, tiny_recipe: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("distill", "-r", tiny_recipe, "--method", "random", "--name", "rnd").exit_code == 0
    meta = store.blob_metadata(store.resolve("synthetic/rnd").digest)
    assert meta["ddtool.method"] == "random" and meta["ddtool.iterations"] == "0"
    res = cli("eval", "synthetic/rnd", "-r", tiny_recipe)
    assert res.exit_code == 0, res.stderr
    assert "synthetic/rnd:v1" in res.stdout and "±" in res.stdout and "2" in res.stdout


def test_store_ls_and_rm(cli, store: Store, tiny_recipe: Path) -> None:  # type: ignore[no-untyped-def]
    cli("distill", "-r", tiny_recipe, "--method", "random", "--name", "a")
    cli("distill", "-r", tiny_recipe, "--method", "random", "--name", "a", "--set", "distill.seed=1")
    rows = _json(cli("store", "ls", "--json"))
    assert [r["ref"] for r in rows] == ["synthetic/a:v1", "synthetic/a:v2"]
    res = cli("store", "rm", "synthetic/a:v1")
    assert res.exit_code == 0 and "removed synthetic/a:v1" in res.stdout
    assert [r["ref"] for r in _json(cli("store", "ls", "--json"))] == ["synthetic/a:v2"]
    listing = cli("inspect")
    assert "synthetic/a:v2" in listing.stdout and "synthetic/a:v1" not in listing.stdout


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["distill", "--recipe", "nope.toml"], 2, "recipe file 'nope.toml' not found"),
        (["distill", "--recipe", "{tiny}", "--dataset", "cifar11"], 2, "unknown dataset 'cifar11'"),
        (["distill", "--recipe", "{tiny}", "--method", "dmm"], 2, "unknown method 'dmm'.*did you mean 'dm'"),
        (["distill", "--recipe", "{tiny}", "--set", 'net.name="resnet999"'], 2, "unknown architecture 'resnet999'"),
        (["distill", "--recipe", "{tiny}", "--ipc", "500"], 2, "needs 500 real images per class"),
        (["distill", "--recipe", "{tiny}", "--set", 'distill.selection="random"'], 2, "needs a model pool"),
        (["distill", "--recipe", "{tiny}", "--pool", "pool/none"], 2, "unknown ref 'pool/none'"),
        (["distill", "--recipe", "{tiny}", "--set", "distill.bogus=1"], 2, "unknown key 'bogus'"),
        (["distill", "--recipe", "{tiny}", "--device", "tpu"], 2, "unknown device 'tpu'"),
        (["eval", "synthetic/missing"], 2, "unknown ref 'synthetic/missing'"),
        (["eval", "pool/p"], 2, "is a pool artifact, but a synthetic artifact is needed"),
        (["eval", "synthetic/s", "--net", "vgg99"], 2, "unknown architecture 'vgg99'"),
        (["inspect", "../../etc/passwd"], 2, "unknown artifact kind '..'"),
        (["store", "rm", "synthetic/s:v9"], 2, "unknown ref"),
        (["plugins", "--kind", "widget"], 2, "unknown kind 'widget'"),
    ],
)
def test_bad_input_is_one_line_with_exit_code_and_store_untouched(store_snapshot, 
    cli, store: Store, tiny_recipe: Path, args: list[str], code: int, message: str  # type: ignore[no-untyped-def]
) -> None:
    import re

    import torch

    store.put("pool", "p", {"x": torch.zeros(1)}, {})
    store.put("synthetic", "s", {"images": torch.zeros(10, 1, 8, 8), "labels": torch.arange(10)},
              {"ddtool.dataset": "digits"})
    before = store_snapshot(store.root)
    res = cli(*[a.replace("{tiny}", str(tiny_recipe)) for a in args])
    assert res.exit_code == code, (res.stdout, res.stderr)
    assert re.search(message, res.stderr), res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    assert len(res.stderr.strip().splitlines()) == 1
    after = store_snapshot(store.root)
    assert {k: v for k, v in after.items() if not k.startswith("runs/")} == before
    assert not [k for k in after if k.startswith("runs/")]  # no run was recorded


def test_version_and_help_explain_options(cli) -> None:  # type: ignore[no-untyped-def]
    from ddtool import __version__

    assert cli("--version").stdout.strip() == f"ddtool {__version__}"
    help_text = cli("distill", "--help").stdout
    for option in ("--recipe", "--set", "--pool", "--dry-run", "--device"):
        assert option in help_text


def test_store_runs_lists_records_with_metrics(cli, store: Store, tiny_recipe: Path) -> None:  # type: ignore[no-untyped-def]
    cli("distill", "-r", tiny_recipe, "--method", "random", "--name", "r")
    ev = _json(cli("eval", "synthetic/r", "--epochs", "2", "--repeats", "1", "--json"))[0]
    runs = _json(cli("store", "runs", "--command", "eval", "--json"))
    assert [r["id"] for r in runs] == [ev["run"]] and runs[0]["metrics"]["mean"] == ev["mean"]
    table = cli("store", "runs").stdout
    assert ev["run"] in table and "distill" in table


@pytest.mark.parametrize("given, expected", [(["--epochs", "300"], 300), (["--epochs", "7"], 7), ([], 30)])
def test_eval_full_data_honours_epochs_even_when_it_equals_the_default(
    cli, monkeypatch: pytest.MonkeyPatch, given: list[str], expected: int  # type: ignore[no-untyped-def]
) -> None:
    import ddtool.runtime.evaluate.train_eval as evaluate
    from ddtool.runtime.evaluate.train_eval import EvalResult

    seen: list[int] = []

    def fake(store, data, cfg, device, net, reporter=None):  # type: ignore[no-untyped-def]
        seen.append(cfg.epochs)
        return EvalResult("full:digits", net.name, [0.5], 0.0, "r", dict(cfg.__dict__))

    monkeypatch.setattr(evaluate, "evaluate_full_data", fake)
    res = cli("eval", "--full-data", "--dataset", "digits", *given, "--json")
    assert res.exit_code == 0, res.stderr
    assert seen == [expected]


def test_ctrl_c_outside_distill_does_not_claim_a_checkpoint(store_snapshot, cli, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import ddtool.runtime.pretrain.pool_training as pretrain

    def interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(pretrain, "pretrain", interrupted)
    before = store_snapshot(store.root)
    res = cli("pretrain", "--dataset", "digits")
    assert res.exit_code == 130
    assert res.stderr.strip() == "interrupted; nothing was written for the work in progress"
    assert "checkpoint" not in res.stderr and store_snapshot(store.root) == before


def test_help_keeps_bracketed_text_that_rich_would_take_for_markup(cli) -> None:  # type: ignore[no-untyped-def]
    wide = {"COLUMNS": "300", "TERMINAL_WIDTH": "300"}
    distill = cli("distill", "--help", env=wide).stdout
    assert "(overrides [distill] ipc)" in distill and "(overrides [data] dataset)" in distill
    assert "[default: the recipe's top-level name, else the recipe file's name" in distill
    assert "cuda:N" in distill
    pretrain = cli("pretrain", "--help", env=wide).stdout
    assert "Models in the pool. [default: 5]" in pretrain and "[default: DATASET-NET]" in pretrain
    eval_help = cli("eval", "--help", env=wide).stdout
    assert "Training epochs. [default: 300]" in eval_help and "none needed with --full-data" in eval_help
    assert "Works without REFS" in eval_help and "the recipe's [data] dataset" in eval_help


def test_pyproject_declares_what_ddtool_imports_and_the_python_it_needs() -> None:
    import ast
    import re
    import sys
    import tomllib

    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    dist_of = {"PIL": "pillow", "sklearn": "scikit-learn"}
    imported: set[str] = set()
    for path in (root / "ddtool").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {dist_of.get(m, m).lower() for m in imported if m not in sys.stdlib_module_names and m != "ddtool"}
    assert third_party <= declared, third_party - declared
    assert project["requires-python"] == ">=3.11"  # recipe.py reads TOML with tomllib (3.11+)
    typer_floor = next(d for d in project["dependencies"] if d.startswith("typer"))
    assert typer_floor == "typer>=0.19"  # typing.Literal options arrived in typer 0.19.0
    plugin = tomllib.loads((root / "plugins" / "ddtool-pixelmmd" / "pyproject.toml").read_text())["project"]
    assert plugin["requires-python"] == ">=3.11"


def test_run_records_hold_cost_and_show_prints_it(cli, store: Store, tiny_recipe: Path) -> None:  # type: ignore[no-untyped-def]
    out = _json(cli("distill", "-r", tiny_recipe, "--json"))
    run = store.run(out["run"])
    assert run["flops_per_iteration"] > 0 and run["flops"] == run["flops_per_iteration"] * 6
    assert run["peak_rss_bytes"] > 10 * 2**20
    shown = cli("store", "show", "synthetic/tiny").stdout
    assert f"{run['flops'] / 1e9:.3g} GFLOP" in shown and "peak" in shown
    ev = _json(cli("eval", "synthetic/tiny", "--epochs", "2", "--repeats", "1", "--json"))[0]
    assert store.run(ev["run"])["peak_rss_bytes"] > 0
