"""Figures drawn with matplotlib (ddtool.inspect.chart, ddtool.inspect.figures): the curve chart's
lines hold the series' values, the report's figure has one marker per set and marks the Pareto
front, in PNG, SVG and PDF."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from ddtool.inspect.chart import PALETTE, Series, chart_figure, save_figure
from ddtool.inspect.figures import pareto_front, report_figure, save_report_figure
from ddtool.store import Store


def _row(ref: str, seconds: float | None, acc: float, std: float = 0.01, pretrain: float | None = None):  # type: ignore[no-untyped-def]
    return SimpleNamespace(ref=f"synthetic/{ref}", method="dm", ipc=1, distill_seconds=seconds,
                           pretrain_seconds=pretrain, accuracy_mean=acc, accuracy_std=std, dataset="digits",
                           net="convnet", full_mean=0.95, device="cpu", protocol="dsa", epochs=300)


def _blobs(png: Path, colour: tuple[int, int, int]) -> int:
    """Connected regions of pixels of exactly ``colour`` (a marker's inside) of 5 pixels or more."""
    from scipy import ndimage

    with Image.open(png) as im:
        pixels = np.asarray(im.convert("RGB"))
    labels, n = ndimage.label((pixels == np.array(colour)).all(axis=2))
    sizes = np.bincount(labels.ravel())[1:]
    return int((sizes >= 5).sum())


def test_pareto_front_keeps_the_sets_nothing_beats() -> None:
    points = [(1.0, 50.0), (2.0, 40.0), (3.0, 60.0), (3.0, 55.0), (5.0, 60.0), (0.5, 30.0)]
    assert pareto_front(points) == [5, 0, 2]  # (5, 60) is not better than (3, 60): not on it
    assert pareto_front([]) == []


def test_report_figure_has_one_marker_per_set_and_the_front_marked(tmp_path: Path) -> None:
    rows = [_row("a", 10.0, 0.50), _row("b", 200.0, 0.80, pretrain=100.0), _row("c", 100.0, 0.40),
            _row("d", 1000.0, 0.70), _row("imported", None, 0.9)]
    fig, left_out, front = report_figure(rows)
    assert left_out == ["synthetic/imported"]
    ax = fig.axes[0]
    offsets = [c.get_offsets().tolist() for c in ax.collections if len(c.get_offsets())]
    points = max(offsets, key=len)  # the sets' markers (the front's rings are a subset)
    assert [tuple(p) for p in points] == [(10.0, 50.0), (300.0, 80.0), (100.0, 40.0), (1000.0, 70.0)]
    assert front == [0, 1]  # a, then b (pool pretraining counted into its cost)
    front_line = next(ln for ln in ax.lines if ln.get_label() == "Pareto front")
    assert list(front_line.get_xdata()) == [10.0, 300.0] and list(front_line.get_ydata()) == [50.0, 80.0]
    assert ax.get_xscale() == "log"  # 10 s .. 1000 s
    png = tmp_path / "r.png"
    (w, h), _, n_front = save_report_figure(rows, png)
    assert (w, h) == (800, 500) and n_front == 2
    with Image.open(png) as im:
        assert im.size == (800, 500)
    assert _blobs(png, PALETTE[0][1]) == 4  # one marker per plotted set
    for suffix, magic in ((".svg", b"<?xml"), (".pdf", b"%PDF")):
        save_report_figure(rows, tmp_path / f"r{suffix}")
        assert (tmp_path / f"r{suffix}").read_bytes().startswith(magic)


def test_curve_chart_lines_hold_the_series_and_write_svg_and_pdf(tmp_path: Path) -> None:
    series = [Series("dm", [2, 4, 6], [60.0, 70.0, 75.0], [1.0, 1.0, 1.0]),
              Series("dm+pool", [2, 4, 6, 8], [65.0, 74.0, 79.0, 80.0])]
    fig = chart_figure(series, x_label="outer-loop step")
    containers = fig.axes[0].containers  # one errorbar per series: its data line, caps and bars
    assert [c.get_label() for c in containers] == ["dm", "dm+pool"]
    lines = [c.lines[0] for c in containers]
    assert [list(ln.get_xdata()) for ln in lines] == [[2, 4, 6], [2, 4, 6, 8]]
    assert [list(ln.get_ydata()) for ln in lines] == [[60.0, 70.0, 75.0], [65.0, 74.0, 79.0, 80.0]]
    assert [ln.get_marker() for ln in lines] == [PALETTE[0][3], PALETTE[1][3]]  # a marker at every point
    assert fig.axes[0].get_xlabel() == "outer-loop step"
    png = tmp_path / "c.png"
    save_figure(fig, png)
    assert _blobs(png, PALETTE[1][1]) >= 1
    for suffix, magic in ((".svg", b"<?xml"), (".pdf", b"%PDF")):
        save_figure(fig, tmp_path / f"c{suffix}")
        assert (tmp_path / f"c{suffix}").read_bytes().startswith(magic)


def test_report_figure_from_the_cli(cli, store: Store, tiny_recipe: Path, tmp_path: Path, one_thread) -> None:  # type: ignore[no-untyped-def]
    for method, name in (("dm", "dm1"), ("herding", "herd1")):
        res = cli("distill", "-r", tiny_recipe, "--method", method, "--name", name, "--iterations", "2",
                  "--set", "net.width=8", "--json")
        assert res.exit_code == 0, res.stderr
    fast = ["--epochs", "1", "--repeats", "1", "--full-epochs", "1", "--baseline-subsets", "1"]
    png = tmp_path / "cost.png"
    res = cli("-q", "report", "synthetic/dm1", "synthetic/herd1", *fast, "--json", "--figure", png)
    assert res.exit_code == 0, res.stderr
    rows = [SimpleNamespace(**d) for d in json.loads(res.stdout)]
    assert len(rows) == 2 and f"wrote {png} (800x500: 2 sets" in res.stderr
    with Image.open(png) as im:
        assert im.size == (800, 500)
    assert _blobs(png, PALETTE[0][1]) >= 1  # two markers, one blob when the two sets land close together
    # the markers sit at each set's recorded cost and accuracy (what the PNG drew)
    ax = report_figure(rows)[0].axes[0]
    points = max((c.get_offsets().tolist() for c in ax.collections), key=len)
    assert points == [[r.distill_seconds + (r.pretrain_seconds or 0), 100 * r.accuracy_mean] for r in rows]
    assert all(r.distill_seconds > 0 for r in rows)


@pytest.mark.parametrize("name, got", [("fig", "no extension"), ("fig.jpg", "'.jpg'")])
def test_report_figure_path_is_checked_before_any_work(cli, store: Store, name: str, got: str,  # type: ignore[no-untyped-def]
                                                       tmp_path: Path) -> None:
    res = cli("report", "synthetic/none", "--figure", tmp_path / name)
    want = f"--figure writes PNG, SVG or PDF: give a path ending in .png, .svg or .pdf (got {got}"
    assert res.exit_code == 2 and want in res.stderr
    assert store.runs() == []


def test_report_figure_needs_a_recorded_cost(cli, store: Store, digits, put_set, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    put_set(store, digits, ipc=1)  # a set with no distill run in the store
    res = cli("-q", "report", "synthetic/s", "--epochs", "1", "--repeats", "1", "--full-epochs", "1",
              "--baseline-subsets", "1", "--figure", tmp_path / "f.svg")
    assert res.exit_code == 2 and "no set has a recorded distillation cost" in res.stderr
    assert not (tmp_path / "f.svg").exists()
