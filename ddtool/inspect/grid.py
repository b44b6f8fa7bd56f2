"""Draw image sets in the terminal with half-block cells, and as PNG grids (PIL).

Each terminal cell shows two vertically stacked pixels: the upper half block '▀' in the
foreground colour of the top pixel over the background colour of the bottom one.

Colours are downgraded here, explicitly, to the colour system asked for (``truecolor``, ``256``,
``standard``) instead of leaving it to rich: rich caches the ANSI codes of a style the first
time it is rendered, so in one process the second console of another colour system would
receive the first one's codes. ``none`` draws no colour at all but a grey-scale glyph ramp
(one character per two stacked pixels, darkest ' ' to brightest '@').

How much of a set the terminal grid draws, and how, is :mod:`ddtool.inspect.fit`'s choice;
images drawn smaller than they are stored are downsampled by area averaging. The PNG grid draws
every image, one column per class with the class's images going down (as papers show them).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from rich.color import Color, ColorSystem
from rich.style import Style
from rich.text import Text

from ddtool.inspect.fit import BLOCK_GAP, SEPARATOR, GridLayout, fit_grid, left_out_note

if TYPE_CHECKING:
    from ddtool.synthetic import SyntheticSet

HALF = "▀"
RAMP = " .:-=+*#%@"  # grey-scale glyphs, dark to bright
COLOR_MODES = ("truecolor", "256", "standard", "none")
MAX_COLUMNS = 20  # classes side by side in a PNG before they go in rows of ten
_SYSTEMS = {"truecolor": ColorSystem.TRUECOLOR, "256": ColorSystem.EIGHT_BIT, "standard": ColorSystem.STANDARD}


def color_mode_of(color_system: str | None) -> str:
    """The grid colour mode for a rich console's ``color_system`` (None -> truecolor, rich strips it)."""
    return {"truecolor": "truecolor", "256": "256", "standard": "standard", "windows": "standard"}.get(
        color_system or "", "truecolor")


def _rgb(images: torch.Tensor) -> list[list[list[list[int]]]]:
    """[N, C, H, W] in [0, 1] -> per image, H rows of W [r, g, b] (0..255, Python ints: read pixel
    by pixel, where a tensor's per-element access cost most of a grid's drawing); grey images
    repeat their channel."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return (images[:, :3].clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).tolist()


def fit_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize square images to ``size`` pixels a side (area averaging down, nearest up)."""
    if images.shape[-1] == size:
        return images
    mode = "area" if images.shape[-1] > size else "nearest"
    return F.interpolate(images, size=(size, size), mode=mode)


@functools.lru_cache(maxsize=65536)
def _style(top: tuple[int, int, int], bottom: tuple[int, int, int], mode: str) -> Style:
    """The half block's style: foreground the upper pixel, background the lower, in ``mode``'s colours."""
    fg, bg = Color.from_rgb(*top), Color.from_rgb(*bottom)
    if mode != "truecolor":
        fg, bg = fg.downgrade(_SYSTEMS[mode]), bg.downgrade(_SYSTEMS[mode])
    return Style(color=fg, bgcolor=bg)


def _cells(img: list[list[list[int]]], y: int, mode: str) -> Text:
    """One terminal line (pixel rows y and y+1) of one image (:func:`_rgb`)."""
    top_row = img[y]
    bottom_row = img[y + 1] if y + 1 < len(img) else None
    out = Text()
    for x, top in enumerate(top_row):
        bottom = bottom_row[x] if bottom_row is not None else None
        if mode == "none":
            lum = sum(top) / 3 if bottom is None else (sum(top) + sum(bottom)) / 6
            out.append(RAMP[min(len(RAMP) - 1, int(lum / 256 * len(RAMP)))])
            continue
        out.append(HALF, _style(tuple(top), tuple(bottom or (0, 0, 0)), mode))
    return out


def render_grid(images: torch.Tensor, labels: torch.Tensor, classes: list[str], width: int = 80,
                max_per_class: int | None = None, max_size: int = 32, color: str = "truecolor",
                real: tuple[torch.Tensor, torch.Tensor] | None = None, layout: GridLayout | None = None) -> Text:
    """Class blocks (class name at the left, then its images) as ``layout`` places them
    (:mod:`ddtool.inspect.fit`); ``images`` are [N, C, H, W] in [0, 1].

    Without a layout, one class to a row: every image (or ``max_per_class``) at up to
    ``max_size`` px, a class with more images than fit one line wrapping onto further lines.
    ``real`` (images, labels in [0, 1]) is drawn to the right of each class's synthetic images,
    after '│'.
    """
    if color not in COLOR_MODES:
        raise ValueError(f"color must be one of {COLOR_MODES}, got {color!r}")
    labels = labels.cpu()
    counts = torch.bincount(labels, minlength=len(classes))
    present = [c for c in range(len(classes)) if c < len(counts) and counts[c] > 0]
    groups = [(images, labels)] + ([(real[0], real[1].cpu())] if real is not None else [])
    if layout is None:
        layout = fit_grid(len(present), int(counts.max()) if len(counts) else 0, images.shape[-1], width, None,
                          label_width_of(classes), len(groups), size=max_size, max_per_class=max_per_class)
    size, per_line, lw = layout.size, layout.per_line, layout.label_width
    groups = [(fit_images(x.detach().float().cpu(), size), y) for x, y in groups]
    drawn = present[:layout.classes]
    out = Text()
    for first in range(0, len(drawn), layout.blocks):
        row = drawn[first:first + layout.blocks]
        pix = [[_rgb(x[y == c][:layout.shown]) for x, y in groups] for c in row]
        n_bands = max(-(-len(p) // per_line) for block in pix for p in block)
        for band in range(n_bands):
            for y in range(0, size, 2):
                for b, (c, block) in enumerate(zip(row, pix)):
                    if b:
                        out.append(BLOCK_GAP)
                    out.append((classes[c][:lw] if band == 0 and y == 0 else "").ljust(lw) + " ")
                    for g, imgs in enumerate(block):
                        if g:
                            out.append(SEPARATOR)
                        chunk = imgs[band * per_line:(band + 1) * per_line]
                        # pad every run but the line's last: the separator and the next block line up
                        last = g == len(block) - 1 and b == len(row) - 1
                        for k in range(len(chunk) if last else per_line):
                            if k:
                                out.append(" ")
                            out.append_text(_cells(chunk[k], y, color) if k < len(chunk) else Text(" " * size))
                out.append("\n")
    return out


def fit_terminal(images: torch.Tensor, labels: torch.Tensor, classes: list[str], width: int, height: int | None,
                 real: tuple[torch.Tensor, torch.Tensor] | None = None, size: int | None = None,
                 max_per_class: int | None = None, screen: str | None = None) -> tuple[GridLayout, str | None]:
    """(the layout of a set's grid in ``width`` x ``height`` terminal cells, the note on what it
    leaves out or None); ``height`` None: as many lines as it takes (:func:`ddtool.inspect.fit.fit_grid`).
    ``screen`` names what the grid was fitted to in the note (default: the cells it was given)."""
    counts = torch.bincount(labels.cpu(), minlength=len(classes))
    n_classes, per_class = int((counts > 0).sum()), int(counts.max()) if len(counts) else 0
    layout = fit_grid(n_classes, per_class, images.shape[-1], width, height, label_width_of(classes),
                      2 if real is not None else 1, size=size, max_per_class=max_per_class)
    if max_per_class is not None:
        per_class = min(per_class, max_per_class)  # what was asked is not 'left out'
    screen = screen or (f"{width}x{height}" if height is not None else f"{width} columns")
    fits = height is None or layout.lines() <= height
    return layout, left_out_note(layout, n_classes, per_class, images.shape[-1], screen, fits)


def label_width_of(classes: list[str]) -> int:
    """Columns of the class names at the left of each block (long names are cut to 16)."""
    return min(max((len(c) for c in classes), default=1), 16)


def png_columns(n_classes: int) -> int:
    """Classes side by side in the PNG: all of them up to ``MAX_COLUMNS``, else rows of ten
    (CIFAR-100 at ipc 1: a 10 x 10 grid, not a 100-image strip)."""
    return n_classes if n_classes <= MAX_COLUMNS else 10


def _group_grid(x: torch.Tensor, y: torch.Tensor, classes: list[int], n: int, scale: int, columns: int) -> torch.Tensor:
    """[3, H, W] in [0, 1]: one column per class, its first ``n`` images going down, upscaled,
    ``scale`` px apart on white; ``columns`` classes to a row of blocks, blocks ``2 * scale`` apart.

    The picture torchvision's ``make_grid(padding=scale, pad_value=1)`` draws of each block,
    without importing torchvision (seconds of start-up for one PNG).
    """
    side = x.shape[-1] * scale
    step = side + scale
    block = n * step + scale  # one row of blocks, with the gap below it
    n_blocks = -(-len(classes) // columns)
    grid = torch.ones(3, n_blocks * block, min(columns, len(classes)) * step + scale)
    for i, c in enumerate(classes):
        mine = x[y.cpu() == c][:n].detach().float().cpu()
        if len(mine) == 0:
            continue
        big = F.interpolate(mine, scale_factor=scale, mode="nearest")
        big = big.expand(-1, 3, -1, -1) if big.shape[1] == 1 else big[:, :3]
        left = scale + (i % columns) * step
        for k, img in enumerate(big):
            top = scale + (i // columns) * block + k * step
            grid[:, top: top + side, left: left + side] = img
    return grid


def save_png(images: torch.Tensor, labels: torch.Tensor, path: str | Path, min_side: int = 64,
             max_per_class: int | None = None, real: tuple[torch.Tensor, torch.Tensor] | None = None,
             num_classes: int | None = None) -> tuple[int, int]:
    """Write a grid as papers draw one: one column per class, the class's images going down,
    upscaled so each image is at least ``min_side`` px.

    ``images`` are in [0, 1] (denormalised); each pixel becomes a ``scale`` x ``scale`` block
    (nearest neighbour) and images are ``scale`` px apart on a white background, so image k of
    the class in column j starts at ``(scale + j * (side + scale), scale + k * (side + scale))``
    with ``side = resolution * scale``. More than ``MAX_COLUMNS`` classes go in rows of ten
    columns, each row of blocks ``n * (side + scale) + scale`` px below the last (``n`` images
    per class). ``real`` images form a second grid to the right, after a further gap of
    ``2 * scale`` px. Pixels are written as ``floor(x * 255 + 0.5)`` (torchvision's
    ``save_image`` rounding), always RGB. Returns the (width, height) of the written file.
    """
    from PIL import Image

    from ddtool.inspect.chart import check_png_path

    check_png_path(path)
    labels = labels.cpu()
    num_classes = num_classes or int(labels.max()) + 1
    classes = [c for c in range(num_classes) if (labels == c).any()]
    scale = png_scale(images.shape[-1], min_side)
    columns = png_columns(len(classes))
    parts: list[torch.Tensor] = []
    for x, y in [(images, labels)] + ([real] if real is not None else []):
        n = int(torch.bincount(y.cpu(), minlength=num_classes).max())
        n = min(n, max_per_class or n)
        part = _group_grid(x, y, classes, n, scale, columns)
        if parts:
            height = max(parts[0].shape[1], part.shape[1])  # the same height: pad the shorter with white
            parts = [F.pad(t, (0, 0, 0, height - t.shape[1]), value=1.0) for t in parts]
            part = F.pad(part, (0, 0, 0, height - part.shape[1]), value=1.0)
            parts.append(torch.ones(3, height, 2 * scale))
        parts.append(part)
    grid = torch.cat(parts, dim=2)
    pixels = grid.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    Image.fromarray(pixels, mode="RGB").save(str(path))
    return int(grid.shape[-1]), int(grid.shape[-2])


def png_scale(resolution: int, min_side: int = 64) -> int:
    """The integer upscaling factor of ``save_png`` (also its padding in pixels)."""
    return max(1, -(-min_side // resolution))


def grid_images(syn: SyntheticSet, decoded: bool = False, real_data=None,  # type: ignore[no-untyped-def]
                max_per_class: int | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
    """(images in [0, 1], labels, real images and labels or None) of a stored synthetic set.

    ``decoded`` splits IDC's multi-formation images (``syn.factor``) into the training images
    they decode to. ``real_data`` (an ImageData) adds as many real training images per class as
    are shown of the synthetic ones, drawn with a fixed seed per class.
    """
    from ddtool.synthetic import decode

    images, labels = syn.images.detach().float().cpu(), syn.labels.cpu()
    if decoded:
        images, labels = decode(images, labels, syn.factor)
    # sets without statistics (hand-made ones) are shown as stored, clamped to [0, 1]
    mean = torch.tensor(syn.info.mean if syn.info.mean is not None else (0.0,)).view(1, -1, 1, 1)
    std = torch.tensor(syn.info.std if syn.info.std is not None else (1.0,)).view(1, -1, 1, 1)
    images = (images * std + mean).clamp(0, 1)
    real = None
    if real_data is not None:
        xs, ys = [], []
        counts = torch.bincount(labels, minlength=real_data.num_classes)
        for c in range(real_data.num_classes):
            n = min(int(counts[c]), max_per_class or int(counts[c]))
            if n == 0:
                continue
            idx = real_data.sample_class(c, n, generator=torch.Generator().manual_seed(c))
            xs.append(real_data.train_images[idx].float() / 255.0)
            ys.append(torch.full((len(idx),), c, dtype=torch.long))
        if xs:
            x = fit_images(torch.cat(xs), images.shape[-1])
            real = (x, torch.cat(ys))
    return images, labels, real
