"""Draw image sets in the terminal with half-block cells, and as PNG grids.

Each terminal cell shows two vertically stacked pixels: the upper half block '▀' in the
foreground colour of the top pixel over the background colour of the bottom one. rich
downgrades the colours itself when the terminal lacks truecolor (256 colours, or none).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from rich.color import Color
from rich.style import Style
from rich.text import Text

HALF = "▀"


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
           max_per_class: int | None = None, max_size: int = 32) -> tuple[int, int]:
    """(images per row, pixels per image side) that fit ``width`` terminal columns."""
    size = min(resolution, max_size)
    per_row = min(n_per_class, max_per_class or n_per_class)
    avail = max(width - label_width - 1, 4)
    while per_row > 1 and per_row * (size + 1) > avail:
        per_row -= 1
    if size + 1 > avail:
        size = max(avail - 1, 2)
    return per_row, size


def render_grid(images: torch.Tensor, labels: torch.Tensor, classes: list[str], width: int = 80,
                max_per_class: int | None = None, max_size: int = 32) -> Text:
    """One row per class, class name at the left; ``images`` are [N, C, H, W] in [0, 1]."""
    label_width = min(max((len(c) for c in classes), default=1), 16)
    counts = torch.bincount(labels.cpu(), minlength=len(classes))
    per_class = int(counts.max()) if len(counts) else 0
    per_row, size = layout(per_class, images.shape[-1], width, label_width, max_per_class, max_size)
    images = fit_images(images.detach().float().cpu(), size)
    out = Text()
    for c, name in enumerate(classes):
        chosen = images[labels.cpu() == c][:per_row]
        if len(chosen) == 0:
            continue
        pix = [_rgb(img) for img in chosen]
        for y in range(0, size, 2):
            out.append((name[:label_width] if y == 0 else "").ljust(label_width) + " ")
            for k, p in enumerate(pix):
                for x in range(size):
                    top = p[y, x].tolist()
                    bottom = p[y + 1, x].tolist() if y + 1 < size else [0, 0, 0]
                    out.append(HALF, Style(color=Color.from_rgb(*top), bgcolor=Color.from_rgb(*bottom)))
                if k < len(pix) - 1:
                    out.append(" ")
            out.append("\n")
    return out


def save_png(images: torch.Tensor, labels: torch.Tensor, path: str | Path, min_side: int = 64) -> tuple[int, int]:
    """Write a grid (one row per class) upscaled so each image is at least ``min_side`` px.

    Returns the (width, height) of the written file.
    """
    from torchvision.utils import make_grid, save_image

    labels = labels.cpu()
    order = torch.argsort(labels, stable=True)
    per_class = int(torch.bincount(labels).max())
    scale = max(1, -(-min_side // images.shape[-1]))
    big = F.interpolate(images[order].detach().float().cpu(), scale_factor=scale, mode="nearest")
    grid = make_grid(big, nrow=per_class, padding=scale, pad_value=1.0)
    save_image(grid, str(path))
    return int(grid.shape[-1]), int(grid.shape[-2])
