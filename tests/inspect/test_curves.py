"""Accuracy curves: ``ddtool eval RUN --checkpoints`` stores them (ddtool.runtime.evaluate.accuracy_curves),
``ddtool inspect RUN --curve`` draws them (ddtool.inspect.chart, ddtool.inspect.curve_series)."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from ddtool.inspect.chart import PALETTE, Series, nice_ticks, render_chart, save_chart_png
from ddtool.store import Store


def test_eval_checkpoints_stores_a_curve_and_inspect_plots_it(cli, store: Store, tiny_recipe: Path,
                                                              tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    syn = json.loads(cli("-q", "distill", "-r", tiny_recipe, "--set", "distill.checkpoint_every=2",
                         "--set", "distill.batch_real=32", "--json").stdout)
    run_id = syn["run"]
    res = cli("-q", "eval", run_id, "--checkpoints", "--epochs", "1", "--repeats", "1", "--json")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)[0]
    points = out["curve"]
    assert [p["iteration"] for p in points] == [2, 4, 6]
    distill_rec = store.run(run_id)
    ckpts = distill_rec["checkpoints"]
    assert [p["seconds"] for p in points] == [c["seconds"] for c in ckpts] + [distill_rec["wall_seconds"]]
    assert all(0 <= p["mean"] <= 1 and p["std"] >= 0 and len(p["accuracies"]) == 1 for p in points)
    flops = out["flops_per_iteration"]
    assert flops and flops > 0 and [p["flops"] for p in points] == [flops * 2, flops * 4, flops * 6]
    record = store.run(out["run"])
    assert record["source_run"] == run_id and record["curve"] == points
    assert [i["digest"] for i in record["inputs"]] == [c["digest"] for c in ckpts] + [syn["digest"]]
    assert record["metrics"]["mean"] == points[-1]["mean"]

    chart = cli("inspect", run_id, "--curve")
    assert chart.exit_code == 0, chart.stderr
    assert chart.stdout.count(PALETTE[0][2]) >= 3 + 1  # three points and the legend marker
    assert "outer-loop step" in chart.stdout and "synthetic/tiny:v1 · dm" in chart.stdout
    by_flops = cli("inspect", run_id[: run_id.index("distill") + 7], "--curve", "--x", "flops", "--json")
    assert json.loads(by_flops.stdout)[0]["xs"] == [flops * 2, flops * 4, flops * 6]
    png = tmp_path / "curve.png"
    assert cli("inspect", "synthetic/tiny", "--curve", "--x", "seconds", "--png", png).exit_code == 0
    with Image.open(png) as im:
        assert im.size == (800, 500)
        assert PALETTE[0][1] in {c for _, c in im.convert("RGB").getcolors(1 << 16)}
    # the lineage tree lists the curve eval with its accuracy
    tree = cli("store", "show", "synthetic/tiny", "--tree").stdout
    assert "curve of 3 points" in tree and "%" in tree
    hint = cli("eval", run_id)
    assert hint.exit_code == 2 and "add --checkpoints" in hint.stderr


def test_curve_errors(cli, store: Store) -> None:  # type: ignore[no-untyped-def]
    store.write_run({"id": "20260101-000000-distill-aaaaaa", "command": "distill", "checkpoints": [], "outputs": [],
                     "inputs": [], "recipe": {}, "status": "failed"})
    res = cli("inspect", "20260101-000000-distill-aaaaaa", "--curve")
    assert res.exit_code == 2 and "no accuracy curve yet" in res.stderr
    res = cli("eval", "20260101-000000", "--checkpoints")
    assert res.exit_code == 2 and "no checkpoints to evaluate" in res.stderr
    res = cli("inspect", "20260101-000000-nope", "--curve")
    assert res.exit_code == 2 and "unknown run" in res.stderr
    res = cli("eval", "synthetic/x", "--every", "2")
    assert res.exit_code == 2 and "add --checkpoints" in res.stderr


def test_chart_draws_several_series(tmp_path: Path) -> None:
    series = [Series("dm", [2, 4, 6], [60.0, 70.0, 75.0], [1.0, 1.0, 1.0]),
              Series("dm+pool", [2, 4, 6, 8], [65.0, 74.0, 79.0, 80.0])]
    text = render_chart(series, width=60, height=12)
    plain = text.plain
    assert plain.count("●") == 3 + 1 and plain.count("■") == 4 + 1
    assert "dm+pool  (last 80.00)" in plain and "dm  (last 75.00 ± 1.00)" in plain
    assert all(len(ln) <= 60 for ln in plain.splitlines())
    assert {"cyan", "red"} <= {str(s.style) for s in text.spans}
    assert not render_chart(series, color=False).spans
    assert nice_ticks(59.3, 81.2, 4) == [60, 70, 80]
    w, h = save_chart_png(series, tmp_path / "c.png", size=(640, 400))
    with Image.open(tmp_path / "c.png") as im:
        colours = {c for _, c in im.convert("RGB").getcolors(1 << 16)}
        assert (w, h) == im.size == (640, 400) and PALETTE[0][1] in colours and PALETTE[1][1] in colours
