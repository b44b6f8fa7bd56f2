"""Draw image sets in the terminal with half-block cells, and as PNG grids (PIL).

Each terminal cell shows two vertically stacked pixels: the upper half block '▀' in the
foreground colour of the top pixel over the background colour of the bottom one.

Colours are downgraded here, explicitly, to the colour system asked for (``truecolor``, ``256``,
``standard``) instead of leaving it to rich: rich caches the ANSI codes of a style the first
time it is rendered, so in one process the second console of another colour system would
receive the first one's codes. ``none`` draws no colour at all but a grey-scale glyph ramp
(one character per two stacked pixels, darkest ' ' to brightest '@').

Rows that do not fit the width wrap onto further lines; images larger than ``max_size`` (or
than the width allows) are downsampled by area averaging.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from rich.color import Color, ColorSystem
from rich.style import Style
from rich.text import Text

if TYPE_CHECKING:
    from ddtool.synthetic import SyntheticSet

HALF = "▀"
RAMP = " .:-=+*#%@"  # grey-scale glyphs, dark to bright
SEPARATOR = " │ "  # between the synthetic and the real images of a class
COLOR_MODES = ("truecolor", "256", "standard", "none")
_SYSTEMS = {"truecolor": ColorSystem.TRUECOLOR, "256": ColorSystem.EIGHT_BIT, "standard": ColorSystem.STANDARD}


def color_mode_of(color_system: str | None) -> str:
    """The grid colour mode for a rich console's ``color_system`` (None -> truecolor, rich strips it)."""
    return {"truecolor": "truecolor", "256": "256", "standard": "standard", "windows": "standard"}.get(
        color_system or "", "truecolor")


def _rgb(img: torch.Tensor) -> torch.Tensor:
    """[C, H, W] in [0, 1] -> [H, W, 3] uint8; grey images repeat their channel."""
    if img.shape[0] == 1:
        img = img.expand(3, -1, -1)
    return (img[:3].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0)


def fit_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize square images to ``size`` pixels a side (area averaging down, nearest up)."""
    if images.shape[-1] == size:
        return images
    mode = "area" if images.shape[-1] > size else "nearest"
    return F.interpolate(images, size=(size, size), mode=mode)


def layout(n_per_class: int, resolution: int, width: int, label_width: int,
           max_per_class: int | None = None, max_size: int = 32, groups: int = 1) -> tuple[int, int]:
    """(images per line and group, pixels per image side) that fit ``width`` terminal columns.

    ``groups`` sets of images (synthetic, real) share each line, separated by ``SEPARATOR``.
    Images are downsampled only when not even one per group fits at ``max_size``.
    """
    size = min(resolution, max_size)
    per_row = max(1, min(n_per_class, max_per_class or n_per_class))
    avail = max(width - label_width - 1 - (groups - 1) * len(SEPARATOR), 4)

    def need(k: int, s: int) -> int:
        return groups * (k * (s + 1) - 1)

    while per_row > 1 and need(per_row, size) > avail:
        per_row -= 1
    while size > 2 and need(1, size) > avail:
        size -= 1
    return per_row, size


def _cells(img: torch.Tensor, y: int, mode: str) -> Text:
    """One terminal line (pixel rows y and y+1) of one [H, W, 3] uint8 image."""
    size = img.shape[1]
    out = Text()
    for x in range(size):
        top = img[y, x].tolist()
        bottom = img[y + 1, x].tolist() if y + 1 < img.shape[0] else None
        if mode == "none":
            lum = sum(top) / 3 if bottom is None else (sum(top) + sum(bottom)) / 6
            out.append(RAMP[min(len(RAMP) - 1, int(lum / 256 * len(RAMP)))])
            continue
        fg = Color.from_rgb(*top)
        bg = Color.from_rgb(*(bottom or [0, 0, 0]))
        if mode != "truecolor":
            fg, bg = fg.downgrade(_SYSTEMS[mode]), bg.downgrade(_SYSTEMS[mode])
        out.append(HALF, Style(color=fg, bgcolor=bg))
    return out


def render_grid(images: torch.Tensor, labels: torch.Tensor, classes: list[str], width: int = 80,
                max_per_class: int | None = None, max_size: int = 32, color: str = "truecolor",
                real: tuple[torch.Tensor, torch.Tensor] | None = None) -> Text:
    """One band per class, class name at the left; ``images`` are [N, C, H, W] in [0, 1].

    A class with more images than fit one line wraps onto further lines. ``real`` (images,
    labels in [0, 1]) is drawn to the right of each class's synthetic images, after '│'.
    """
    if color not in COLOR_MODES:
        raise ValueError(f"color must be one of {COLOR_MODES}, got {color!r}")
    label_width = min(max((len(c) for c in classes), default=1), 16)
    labels = labels.cpu()
    counts = torch.bincount(labels, minlength=len(classes))
    per_class = int(counts.max()) if len(counts) else 0
    shown = min(per_class, max_per_class or per_class)
    groups = [(images, labels)] + ([(real[0], real[1].cpu())] if real is not None else [])
    per_row, size = layout(per_class, images.shape[-1], width, label_width, max_per_class, max_size, len(groups))
    groups = [(fit_images(x.detach().float().cpu(), size), y) for x, y in groups]
    out = Text()
    for c, name in enumerate(classes):
        pix = [[_rgb(img) for img in x[y == c][:shown]] for x, y in groups]
        if not pix[0]:
            continue
        n_lines = -(-max(len(p) for p in pix) // per_row)
        for line in range(n_lines):
            chunk = [p[line * per_row:(line + 1) * per_row] for p in pix]
            for y in range(0, size, 2):
                out.append((name[:label_width] if line == 0 and y == 0 else "").ljust(label_width) + " ")
                for g, imgs in enumerate(chunk):
                    if g:
                        out.append(SEPARATOR)
                    for k in range(per_row if g < len(chunk) - 1 else len(imgs)):
                        if k:
                            out.append(" ")
                        out.append_text(_cells(imgs[k], y, color) if k < len(imgs) else Text(" " * size))
                out.append("\n")
    return out


def _group_grid(x: torch.Tensor, y: torch.Tensor, rows: list[int], n: int, scale: int) -> torch.Tensor:
    """[3, H, W] in [0, 1]: ``n`` images per class row, upscaled, ``scale`` px apart on white.

    The same picture torchvision's ``make_grid(padding=scale, pad_value=1)`` draws, without
    importing torchvision (seconds of start-up for one PNG).
    """
    side = x.shape[-1] * scale
    step = side + scale
    grid = torch.ones(3, len(rows) * step + scale, n * step + scale)
    for i, c in enumerate(rows):
        mine = x[y.cpu() == c][:n].detach().float().cpu()
        if len(mine) == 0:
            continue
        big = F.interpolate(mine, scale_factor=scale, mode="nearest")
        big = big.expand(-1, 3, -1, -1) if big.shape[1] == 1 else big[:, :3]
        for k, img in enumerate(big):
            grid[:, scale + i * step: scale + i * step + side, scale + k * step: scale + k * step + side] = img
    return grid


def save_png(images: torch.Tensor, labels: torch.Tensor, path: str | Path, min_side: int = 64,
             max_per_class: int | None = None, real: tuple[torch.Tensor, torch.Tensor] | None = None,
             num_classes: int | None = None) -> tuple[int, int]:
    """Write a grid (one row per class) upscaled so each image is at least ``min_side`` px.

    ``images`` are in [0, 1] (denormalised); each pixel becomes a ``scale`` x ``scale`` block
    (nearest neighbour) and images are ``scale`` px apart on a white background, so image k of
    the i-th row starts at ``(scale + k * (side + scale), scale + i * (side + scale))`` with
    ``side = resolution * scale``. ``real`` images follow on the same rows, after a further
    gap of ``2 * scale`` px. Pixels are written as ``floor(x * 255 + 0.5)`` (torchvision's
    ``save_image`` rounding), always RGB. Returns the (width, height) of the written file.
    """
    from PIL import Image

    from ddtool.inspect.chart import check_png_path

    check_png_path(path)
    labels = labels.cpu()
    num_classes = num_classes or int(labels.max()) + 1
    rows = [c for c in range(num_classes) if (labels == c).any()]
    scale = png_scale(images.shape[-1], min_side)
    parts: list[torch.Tensor] = []
    for x, y in [(images, labels)] + ([real] if real is not None else []):
        n = int(torch.bincount(y.cpu(), minlength=num_classes).max())
        n = min(n, max_per_class or n)
        if parts:
            parts.append(torch.ones(3, parts[0].shape[1], 2 * scale))
        parts.append(_group_grid(x, y, rows, n, scale))
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
