"""Fitting a terminal grid to the screen (ddtool.inspect.fit): what is drawn, and the note on what is not."""

from __future__ import annotations

import torch

from ddtool.inspect.fit import LEGIBLE, fit_grid, left_out_note
from ddtool.inspect.grid import HALF, render_grid


def _set(n_classes: int, per_class: int, res: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n_classes * per_class, 1, res, res, generator=g) * 0.8 + 0.2  # no black cells
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    return images, labels, [str(c) for c in range(n_classes)]


def test_an_mnist_sized_ipc10_set_fits_80x24_with_every_class() -> None:
    # 80x24 less the title, a two-line note and the prompt: 20 lines for the grid
    layout = fit_grid(10, 10, 28, 80, 20, 1)
    assert layout.classes == 10 and layout.lines() <= 20  # every class, on the screen
    assert LEGIBLE <= layout.size < 28 and layout.blocks > 1  # classes side by side to make room
    assert 1 <= layout.shown < 10 and layout.block_width() * layout.blocks <= 80
    images, labels, classes = _set(10, 10, 28)
    lines = render_grid(images, labels, classes, layout=layout).plain.rstrip("\n").split("\n")
    assert len(lines) == layout.lines() and max(len(ln) for ln in lines) <= 80
    assert sum(ln.count(HALF) for ln in lines) == 10 * layout.shown * layout.size * -(-layout.size // 2)
    note = left_out_note(layout, 10, 10, 28, "80x24")
    assert note == (f"showing {layout.shown} of 10 images per class, at {layout.size} of 28 px to fit 80x24; "
                    "--max-per-class N and --size PX override")


def test_a_large_screen_shows_more_and_larger() -> None:
    small, large = fit_grid(10, 10, 28, 80, 20, 1), fit_grid(10, 10, 28, 200, 46, 1)
    assert large.classes == 10 and large.lines() <= 46 and large.block_width() * large.blocks <= 200
    assert large.shown * large.size ** 2 > small.shown * small.size ** 2
    # a set that fits whole is drawn whole, one class to a row, and needs no note
    whole = fit_grid(10, 2, 8, 200, 46, 1)
    assert (whole.shown, whole.size, whole.blocks, whole.classes) == (2, 8, 1, 10)
    assert left_out_note(whole, 10, 2, 8, "200x50") is None


def test_classes_are_left_out_rather_than_drawn_illegibly_small() -> None:
    layout = fit_grid(100, 10, 32, 80, 20, 10)  # CIFAR-100: no legible grid holds 100 classes in 20 lines
    assert layout.size >= LEGIBLE and layout.lines() <= 20 and 0 < layout.classes < 100
    assert left_out_note(layout, 100, 10, 32, "80x24").startswith(f"showing the first {layout.classes} of 100 classes")
    tiny = fit_grid(10, 10, 28, 80, 2, 1)  # not even one image fits: the least, one image of one class
    assert (tiny.classes, tiny.shown, tiny.size) == (1, 1, LEGIBLE)


def test_size_and_max_per_class_override_and_every_class_is_drawn() -> None:
    by_size = fit_grid(10, 10, 28, 80, 20, 1, size=16)  # not even one each fits: one each, in the fewest lines
    assert (by_size.size, by_size.classes, by_size.shown) == (16, 10, 1)
    assert by_size.blocks == (80 + 3) // (1 + 1 + 16 + 3) and by_size.lines() > 20
    assert left_out_note(by_size, 10, 10, 28, "80x24", fits=False) == (
        "showing 1 of 10 images per class, at 16 of 28 px (taller than 80x24 even so); "
        "--max-per-class N and --size PX override")
    roomy = fit_grid(2, 10, 28, 200, 46, 1, size=16)
    assert roomy.size == 16 and roomy.classes == 2 and roomy.lines() <= 46 and roomy.shown > 1
    by_count = fit_grid(10, 10, 28, 200, 46, 1, max_per_class=3)
    assert by_count.shown == 3 and by_count.classes == 10 and by_count.lines() <= 46
    assert by_count.size > fit_grid(10, 10, 28, 200, 46, 1, max_per_class=10).size  # fewer images, larger
    both = fit_grid(10, 10, 28, 80, 20, 1, size=20, max_per_class=5)
    assert (both.size, both.shown, both.classes) == (20, 5, 10)
    unfitted = fit_grid(10, 10, 28, 80, 20, 1, max_per_class=10)  # does not fit: smallest legible, all of it
    assert (unfitted.size, unfitted.shown, unfitted.classes) == (LEGIBLE, 10, 10)


def test_without_a_height_every_image_is_drawn_one_class_to_a_row() -> None:
    layout = fit_grid(10, 10, 28, 80, None, 1, size=32)
    assert (layout.classes, layout.shown, layout.size, layout.blocks) == (10, 10, 28, 1)
    assert layout.per_line == (80 - 2 + 1) // 29  # as many as the width holds, the rest wrapping
