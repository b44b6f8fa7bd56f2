"""How a terminal image grid fits the screen: image size, images per class, classes side by side.

A grid is drawn as class *blocks* (the class name, then its images, ``per_line`` to a line,
wrapping onto further lines), ``blocks`` of them side by side, ``BLOCK_GAP`` apart; each line
of text holds two pixel rows (half blocks). Given the terminal's width and height, :func:`fit_grid`
picks the layout that shows the most classes, then the most images per class, then the largest
images, never below ``LEGIBLE`` pixels (a 28 px digit drawn at 4 px is no digit); what does not fit
is left out and :func:`left_out_note` says what.

``size`` and ``max_per_class`` (``--size``, ``--max-per-class``) fix what they name; every class
is then drawn, and the other one is still fitted: the largest size at which the asked images
fit, or as many images as fit at the asked size (at least one). When nothing fits, the least is
drawn: one image per class (or the asked number) at ``LEGIBLE`` px (or the asked size), one
class when no option was given.
"""

from __future__ import annotations

from dataclasses import dataclass

SEPARATOR = " │ "  # between the synthetic and the real images of a class
BLOCK_GAP = "   "  # between two class blocks on one line
LEGIBLE = 8  # smallest side, in pixels, the fitted grid draws an image at (smaller images as they are)
LARGEST = 32  # largest side the fitted grid draws: more pixels mostly cost lines


@dataclass(frozen=True)
class GridLayout:
    """What a terminal grid draws: the first ``classes`` classes, ``blocks`` side by side, each
    with at most ``shown`` images of ``size`` px a side, ``per_line`` to a line."""

    size: int
    per_line: int
    shown: int
    blocks: int
    classes: int
    label_width: int
    groups: int = 1  # image sets per class block: synthetic, then real

    def block_width(self) -> int:
        return block_width(self.per_line, self.size, self.label_width, self.groups)

    def lines(self) -> int:
        """Terminal lines the grid takes when every class has ``shown`` images."""
        bands = -(-self.shown // self.per_line)
        return -(-self.classes // self.blocks) * bands * -(-self.size // 2)


def block_width(per_line: int, size: int, label_width: int, groups: int = 1) -> int:
    """Terminal columns of one class block: its name, a space, then ``groups`` runs of images."""
    return label_width + 1 + groups * (per_line * (size + 1) - 1) + (groups - 1) * len(SEPARATOR)


def _across(width: int, most: int, per_line: int, size: int, label_width: int, groups: int) -> int:
    """How many class blocks stand side by side in ``width`` columns (1 to ``most``)."""
    return max(1, min(most, (width + len(BLOCK_GAP)) // (block_width(per_line, size, label_width, groups)
                                                       + len(BLOCK_GAP))))


def fit_grid(n_classes: int, per_class: int, resolution: int, width: int, height: int | None,
             label_width: int, groups: int = 1, size: int | None = None,
             max_per_class: int | None = None) -> GridLayout:
    """The layout of ``n_classes`` classes of up to ``per_class`` images of ``resolution`` px in
    ``width`` columns and ``height`` lines (None: as many as it takes). See the module's doc."""
    wanted = max(1, min(per_class, max_per_class or per_class))
    top = min(resolution, size or LARGEST)
    while top > 2 and block_width(1, top, label_width, groups) > width:  # one image must fit the width
        top -= 1
    low = top if size is not None else min(top, LEGIBLE)
    asked = size is not None or max_per_class is not None
    best: tuple[tuple[int, ...], GridLayout] | None = None
    for s in range(top, low - 1, -1):
        rows_per_band = -(-s // 2)
        k_max = 1
        while k_max < wanted and block_width(k_max + 1, s, label_width, groups) <= width:
            k_max += 1
        for k in range(1, k_max + 1):
            blocks = _across(width, n_classes, k, s, label_width, groups)
            for bands in range(1, -(-wanted // k) + 1):
                shown = min(wanted, k * bands)
                if max_per_class is not None and shown < wanted:
                    continue
                fit_rows = n_classes if height is None else height // (bands * rows_per_band)
                classes = min(n_classes, blocks * fit_rows)
                if classes == 0 or (asked and classes < n_classes):
                    break  # more bands only take more lines
                used = -(-classes // fit_rows)  # the fewest blocks side by side that hold them
                layout = GridLayout(s, k, shown, used, classes, label_width, groups)
                # most classes, most images, largest images; then one class to a row, then fewest lines
                key = (classes, shown, s, -used, -layout.lines())
                if best is None or key > best[0]:
                    best = (key, layout)
    if best is not None:
        return best[1]
    # nothing fits: the least, in as few lines as the width allows
    shown = wanted if max_per_class is not None else 1
    classes = n_classes if asked else min(n_classes, 1)
    least: GridLayout | None = None
    for k in range(1, shown + 1):
        if k > 1 and block_width(k, low, label_width, groups) > width:
            break
        blocks = _across(width, classes, k, low, label_width, groups)
        layout = GridLayout(low, k, shown, blocks, classes, label_width, groups)
        if least is None or layout.lines() < least.lines():
            least = layout
    assert least is not None
    return least


def left_out_note(layout: GridLayout, n_classes: int, per_class: int, resolution: int,
                  screen: str, fits: bool = True) -> str | None:
    """'showing the first 5 of 10 classes, 4 of 10 images per class, at 8 of 28 px to fit 80x24; ...',
    or None when the grid draws every image whole. ``fits`` False: the grid is taller than
    ``screen`` even so (the options asked for more than it holds), and the note says that."""
    parts = []
    if layout.classes < n_classes:
        parts.append(f"the first {layout.classes} of {n_classes} classes")
    if layout.shown < per_class:
        parts.append(f"{layout.shown} of {per_class} images per class")
    if layout.size < resolution:
        parts.append(f"at {layout.size} of {resolution} px")
    if not parts:
        return None
    where = f"to fit {screen}" if fits else f"(taller than {screen} even so)"
    return f"showing {', '.join(parts)} {where}; --max-per-class N and --size PX override"
