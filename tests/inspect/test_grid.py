"""Looking at sets (ddtool.inspect.grid, ``ddtool inspect``): terminal grids per colour system,
PNG grids, pools."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
import torch
from PIL import Image
from rich.console import Console

from ddtool.inspect.chart import Series, save_chart_png
from ddtool.inspect.fit import fit_grid
from ddtool.inspect.grid import HALF, RAMP, png_scale, render_grid, save_png
from ddtool.nets import NetSpec
from ddtool.store import Store


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _printed(text, color_system: str | None, width: int = 80) -> str:  # type: ignore[no-untyped-def]
    buf = io.StringIO()
    Console(file=buf, color_system=color_system, width=width).print(text)  # type: ignore[arg-type]
    return buf.getvalue()


def _grid_inputs(digits, per_class: int = 2, size: int = 8):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(1)
    idx = torch.cat([digits.sample_class(c, per_class, generator=g) for c in range(10)])
    images = digits.train_images[idx].float() / 255
    if size != 8:
        images = torch.nn.functional.interpolate(images.expand(-1, 3, -1, -1), size=(size, size))
    return images, digits.train_labels[idx], digits.classes


def test_grid_rows_cells_and_colours_per_colour_system(digits) -> None:  # type: ignore[no-untyped-def]
    images, labels, classes = _grid_inputs(digits)
    outputs = {}
    for mode, system in (("truecolor", "truecolor"), ("256", "256"), ("standard", "standard"), ("none", None)):
        text = render_grid(images, labels, classes, width=80, color=mode)
        out = _printed(text, system)
        outputs[mode] = out
        lines = ANSI.sub("", out).rstrip("\n").split("\n")
        assert len(lines) == 10 * 4  # 10 classes x (8 pixel rows / 2 per cell)
        assert [ln[0] for ln in lines[::4]] == list("0123456789")
        cells = [ln[2:].replace(" ", "") if mode != "none" else ln[2:] for ln in lines]
        if mode != "none":
            assert all(c == HALF * 16 for c in cells)  # 2 images x 8 columns of half blocks
        else:
            assert all(len(ln) <= 2 + 17 for ln in lines) and set("".join(cells)) <= set(RAMP)
    assert re.search(r"\x1b\[38;2;\d+;\d+;\d+;48;2;\d+;\d+;\d+m", outputs["truecolor"])
    assert re.search(r"\x1b\[38;5;\d+;48;5;\d+m", outputs["256"]) and "38;2;" not in outputs["256"]
    assert re.search(r"\x1b\[(3[0-7]|9[0-7]);(4[0-7]|10[0-7])m", outputs["standard"])
    assert "38;2;" not in outputs["standard"] and "38;5;" not in outputs["standard"]
    assert "\x1b[" not in outputs["none"]
    assert len(set(outputs.values())) == 4  # every colour system renders differently


def test_grey_fallback_has_no_colours_and_a_glyph_ramp(digits) -> None:  # type: ignore[no-untyped-def]
    images, labels, classes = _grid_inputs(digits)
    text = render_grid(images, labels, classes, color="none")
    assert not text.spans  # not one styled segment, let alone an RGB colour
    console = Console(record=True, width=80, color_system="truecolor", file=io.StringIO())
    console.print(text)
    assert all(seg.style is None or seg.style.color is None for seg in console._record_buffer)
    # a bright pixel pair draws a dense glyph, a black one a blank
    white = torch.ones(1, 1, 2, 2)
    black = torch.zeros(1, 1, 2, 2)
    bright = render_grid(white, torch.tensor([0]), ["a"], color="none").plain
    dark = render_grid(black, torch.tensor([0]), ["a"], color="none").plain
    assert bright == "a @@\n" and dark == "a   \n"
    # the coloured grid's segments carry the pixels' RGB values
    coloured = render_grid(white, torch.tensor([0]), ["a"], color="truecolor")
    assert {s.style.color.triplet for s in coloured.spans} == {(255, 255, 255)}  # type: ignore[union-attr]


def test_grid_wraps_to_the_width_and_downsamples(digits) -> None:  # type: ignore[no-untyped-def]
    images, labels, classes = _grid_inputs(digits, per_class=12)
    text = render_grid(images, labels, classes, width=40)
    lines = text.plain.rstrip("\n").split("\n")
    per_line = fit_grid(10, 12, 8, 40, None, 1, size=32).per_line
    assert per_line == 4 and all(len(ln) <= 40 for ln in lines)
    assert len(lines) == 10 * 3 * 4  # 12 images per class wrap onto 3 bands of 4 lines
    assert sum(ln.replace(" ", "").count(HALF) for ln in lines) == 10 * 12 * 8 * 4
    # --max-per-class
    capped = render_grid(images, labels, classes, width=40, max_per_class=1).plain.rstrip("\n").split("\n")
    assert len(capped) == 10 * 4 and all(ln.count(HALF) == 8 for ln in capped)
    # images wider than the terminal are area-downsampled to fit
    big, labels2, _ = _grid_inputs(digits, per_class=1, size=32)
    narrow = render_grid(big, labels2, classes, width=20).plain.rstrip("\n").split("\n")
    assert all(len(ln) <= 20 for ln in narrow)
    side = max(ln.count(HALF) for ln in narrow)
    assert side < 32 and len(narrow) == 10 * (-(-side // 2))


def test_real_images_beside_synthetic(digits) -> None:  # type: ignore[no-untyped-def]
    images, labels, classes = _grid_inputs(digits)
    real, real_labels, _ = _grid_inputs(digits, per_class=3)
    text = render_grid(images, labels, classes, width=80, real=(real, real_labels))
    lines = text.plain.rstrip("\n").split("\n")
    assert len(lines) == 40 and all(" │ " in ln for ln in lines)
    left, right = lines[0].split(" │ ")
    assert left[2:].count(HALF) == 16 and right.count(HALF) == 16  # as many real as synthetic images


def test_inspect_cli_colour_options_real_and_decoded(put_set, cli, store: Store, digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    put_set(store, digits, "s", ipc=2)
    put_set(store, digits, "idc", ipc=1, factor=2)
    runs = {c: cli("inspect", "synthetic/s", "--color", c) for c in ("truecolor", "256", "none")}
    assert all(r.exit_code == 0 for r in runs.values()), [r.stderr for r in runs.values()]
    assert "\x1b[38;2;" in runs["truecolor"].stdout
    assert "\x1b[38;5;" in runs["256"].stdout and "\x1b[38;2;" not in runs["256"].stdout
    assert "\x1b[" not in runs["none"].stdout and HALF not in runs["none"].stdout
    res = cli("inspect", "synthetic/s", "--real", "--color", "none")
    assert res.exit_code == 0, res.stderr
    assert "(synthetic │ real)" in res.stdout.splitlines()[0]
    assert sum(" │ " in ln for ln in res.stdout.splitlines()[1:]) == 40
    # IDC: one stored 8x8 image per class decodes to 4 training images
    stored = cli("inspect", "synthetic/idc").stdout.splitlines()
    decoded = cli("inspect", "synthetic/idc", "--decoded").stdout.splitlines()
    assert max(ln.count(HALF) for ln in stored) == 8 and max(ln.count(HALF) for ln in decoded) == 4 * 8
    assert "factor=2 (decoded)" in decoded[0]
    png = tmp_path / "idc.png"
    assert cli("inspect", "synthetic/idc", "--decoded", "--real", "--png", png).exit_code == 0
    scale = png_scale(8)
    with Image.open(png) as im:  # one column per class, the 4 decoded images going down; real ones to the right
        cell = 8 * scale + scale
        assert im.size == (2 * (10 * cell + scale) + 2 * scale, 4 * cell + scale)
    bad = cli("inspect", "synthetic/s", "synthetic/idc")
    assert bad.exit_code == 2 and "several only with --curve" in bad.stderr


def test_png_grid_is_denormalised_and_upscaled(put_set, denorm_uint8, cli, store: Store, digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    images = put_set(store, digits, "s", ipc=3)
    png = tmp_path / "g.png"
    res = cli("inspect", "synthetic/s", "--png", png, "--max-per-class", "2")
    assert res.exit_code == 0, res.stderr
    scale = png_scale(8)  # 8 px digits -> x8, 64 px per image
    side = 8 * scale
    expected = denorm_uint8(images, digits)  # [30, 1, 8, 8]
    with Image.open(png) as im:  # as papers draw it: a column per class, its images going down
        assert im.size == (10 * (side + scale) + scale, 2 * (side + scale) + scale)
        rgb = im.convert("RGB")
        for cls, k, py, px in ((0, 0, 3, 4), (3, 1, 5, 2), (9, 1, 7, 7)):
            x0, y0 = scale + cls * (side + scale), scale + k * (side + scale)
            want = int(expected[cls * 3 + k, 0, py, px])
            for dy, dx in ((0, 0), (scale - 1, scale - 1)):  # both corners of the upscaled pixel block
                assert rgb.getpixel((x0 + px * scale + dx, y0 + py * scale + dy)) == (want, want, want)
        assert rgb.getpixel((0, 0)) == (255, 255, 255)  # white padding


def test_save_png_pads_uneven_classes() -> None:
    images = torch.rand(3, 3, 4, 4)
    labels = torch.tensor([0, 0, 1])
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        w, h = save_png(images, labels, Path(d) / "x.png")
        with Image.open(Path(d) / "x.png") as im:
            assert im.size == (w, h) == (2 * (64 + 16) + 16, 2 * (64 + 16) + 16)
            assert im.convert("RGB").getpixel((16 + 80 + 5, 16 + 80 + 5)) == (255, 255, 255)  # blank cell


@pytest.mark.parametrize("name", ["grid", "grid.xyz", "grid.PNG.txt"])
def test_png_writers_refuse_other_extensions_with_a_usage_error(tmp_path: Path, name: str) -> None:
    from ddtool.errors import UsageError

    with pytest.raises(UsageError, match=r"ending in \.png"):
        save_png(torch.rand(2, 1, 4, 4), torch.tensor([0, 1]), tmp_path / name)
    with pytest.raises(UsageError, match=r"ending in \.png"):
        save_chart_png([Series("a", [1, 2], [1.0, 2.0])], tmp_path / name)
    assert list(tmp_path.iterdir()) == []
    save_png(torch.rand(2, 1, 4, 4), torch.tensor([0, 1]), tmp_path / "upper.PNG")  # the case does not matter


def test_inspect_pool_lists_models(cli, store: Store) -> None:  # type: ignore[no-untyped-def]
    models = [{"index": i, "seed": i, "lr": 0.01 * (i + 1), "augment": "none", "epochs": 1,
               "train_acc": 0.9, "test_acc": 0.875 - i / 10} for i in range(2)]
    store.put("pool", "p", {"m0.w": torch.zeros(2), "m1.w": torch.zeros(2)},
              {"ddtool.dataset": "digits", "ddtool.n": "2", "ddtool.net": NetSpec("convnet").to_json(),
               "ddtool.models": json.dumps(models)})
    res = cli("inspect", "pool/p")
    assert res.exit_code == 0, res.stderr
    assert "pool/p:v1: 2 x convnet on digits" in res.stdout and "87.5%" in res.stdout and "77.5%" in res.stdout
    out = json.loads(cli("inspect", "pool/p", "--json").stdout)
    assert [m["seed"] for m in out["models"]] == [0, 1] and out["net"]["name"] == "convnet"


def _put_28px(store: Store, digits, name: str = "m", ipc: int = 10) -> None:  # type: ignore[no-untyped-def]
    """An MNIST-sized set: ipc digits per class, upsampled to 28 x 28, stored as distill stores them."""
    g = torch.Generator().manual_seed(0)
    idx = torch.cat([digits.sample_class(c, ipc, generator=g) for c in range(10)])
    images = torch.nn.functional.interpolate(digits.train_images[idx].float() / 255, size=(28, 28), mode="bilinear")
    meta = {**digits.signature(), "ddtool.shape": "1x28x28", "ddtool.ipc": str(ipc), "ddtool.method": "dm",
            "ddtool.factor": "1", "ddtool.mean": "[0.0]", "ddtool.std": "[1.0]",
            "ddtool.net": NetSpec("convnet").to_json(), "ddtool.parents": "[]"}
    store.put("synthetic", name, {"images": images, "labels": digits.train_labels[idx]}, meta)


def _drawn(lines: list[str], size: int) -> int:
    """Images drawn in a grid of ``size`` px images (each ``size`` x ceil(size / 2) half blocks)."""
    return sum(ln.count(HALF) for ln in lines) // (size * -(-size // 2))


def test_inspect_fits_an_mnist_sized_ipc10_set_to_the_terminal(cli, store: Store, digits) -> None:  # type: ignore[no-untyped-def]
    _put_28px(store, digits)
    for cols, rows in ((80, 24), (200, 50)):
        res = cli("inspect", "synthetic/m", env={"COLUMNS": str(cols), "LINES": str(rows)})
        assert res.exit_code == 0, res.stderr
        lines = res.stdout.rstrip("\n").split("\n")
        assert len(lines) <= rows - 1 and max(len(ANSI.sub("", ln)) for ln in lines) <= cols  # and the prompt
        note = " ".join(lines[-2:]) if cols == 80 else lines[-1]
        match = re.search(r"showing (?:(\d+) of 10 images per class, )?at (\d+) of 28 px to fit (\d+)x(\d+)", note)
        assert match and match.groups()[2:] == (str(cols), str(rows)), note
        shown, size = int(match[1] or 10), int(match[2])
        assert size >= 8 and _drawn(lines, size) == 10 * shown  # every class, `shown` images each
        labels = {w for ln in lines[1:-2] for w in ANSI.sub("", ln).split() if w.isdigit()}
        assert labels == set("0123456789")  # every class is named
    # the options override: every class with what was asked, and no note when nothing is left out
    res = cli("inspect", "synthetic/m", "--max-per-class", "2", "--size", "28", env={"COLUMNS": "80", "LINES": "24"})
    lines = res.stdout.rstrip("\n").split("\n")
    assert _drawn(lines, 28) == 20 and "showing" not in res.stdout and len(lines) > 24  # taller than the screen
    sized = cli("inspect", "synthetic/m", "--size", "12", env={"COLUMNS": "200", "LINES": "50"}).stdout
    assert "at 12 of 28 px" in sized and _drawn(sized.split("\n"), 12) % 10 == 0
    # a pipe or a file (no terminal, no LINES) gets every image at up to 32 px, one class to a row
    piped = cli("inspect", "synthetic/m", env={"COLUMNS": "80"}).stdout.rstrip("\n").split("\n")
    assert _drawn(piped, 28) == 100 and "showing" not in "\n".join(piped)
    assert [ln[0] for ln in piped[1:] if ln[:1].strip()] == list("0123456789")


def test_png_grid_puts_classes_side_by_side_as_papers_do(put_set, cli, store: Store, digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    put_set(store, digits, "one", ipc=1)
    png = tmp_path / "ipc1.png"
    assert cli("inspect", "synthetic/one", "--png", png).exit_code == 0
    with Image.open(png) as im:
        step = png_scale(8) * 9
        assert im.size == (10 * step + png_scale(8), step + png_scale(8))  # one row: ten columns, one per class
        assert im.size[0] > 5 * im.size[1]
    # 100 classes at ipc 1 (CIFAR-100): ten rows of ten, not a 100-image strip
    images, labels = torch.rand(100, 3, 4, 4), torch.arange(100)
    w, h = save_png(images, labels, tmp_path / "c100.png")
    scale = png_scale(4)
    step = 4 * scale + scale
    assert (w, h) == (10 * step + scale, 10 * (step + scale))
    with Image.open(tmp_path / "c100.png") as im:
        rgb = im.convert("RGB")
        # class 37: row of blocks 3, column 7, its image's top-left pixel
        x0, y0 = scale + 7 * step, scale + 3 * (step + scale)
        want = tuple(int(v) for v in (images[37, :, 0, 0] * 255 + 0.5).floor())
        assert rgb.getpixel((x0, y0)) == want
