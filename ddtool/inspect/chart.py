"""Line charts of accuracy curves: in the terminal (braille dots + markers) and as PNG (PIL).

Nothing here knows about runs or the store; ``ddtool.inspect.curves`` turns eval records into
:class:`Series`. Several series share one chart, each in its own colour and marker, so the
marker tells the series apart even without colour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from rich.text import Text

# (terminal colour, RGB for the PNG, marker)
PALETTE = [
    ("cyan", (31, 119, 180), "●"),
    ("red", (214, 39, 40), "■"),
    ("green", (44, 160, 44), "▲"),
    ("magenta", (148, 103, 189), "◆"),
    ("yellow", (188, 140, 0), "✚"),
    ("blue", (23, 190, 207), "✖"),
]
_BRAILLE = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))  # [row][col] dot bits of a cell


def check_png_path(path: str | Path) -> Path:
    """``path`` when it names a .png file (what --png writes), else a one-line UsageError.

    PIL picks the format from the extension and raises a bare ValueError for a missing or
    unknown one, so the name is checked before anything is drawn."""
    from ddtool.errors import UsageError

    p = Path(path)
    if p.suffix.lower() != ".png":
        got = f"'{p.suffix}'" if p.suffix else "no extension"
        raise UsageError(f"--png writes a PNG file: give a path ending in .png (got {got}: '{p}')")
    return p


@dataclass
class Series:
    name: str
    xs: list[float]
    ys: list[float]  # in the unit shown on the y axis (percent for accuracy)
    errs: list[float] = field(default_factory=list)  # ± per point (std); empty = none


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 x 10^k steps) covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    t = first
    while t <= hi + 1e-9 * step:
        ticks.append(round(t, 10))
        t += step
    return ticks


def fmt_number(v: float) -> str:
    """Short labels: 1200 -> 1.2k, 3.4e12 -> 3.4T."""
    a = abs(v)
    for unit, div in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if a >= div:
            return f"{v / div:.3g}{unit}"
    return f"{v:.4g}"


def _ranges(series: Sequence[Series], with_errs: bool = True) -> tuple[float, float, float, float]:
    xs = [x for s in series for x in s.xs]
    lows = [y - (s.errs[i] if s.errs and with_errs else 0) for s in series for i, y in enumerate(s.ys)]
    highs = [y + (s.errs[i] if s.errs and with_errs else 0) for s in series for i, y in enumerate(s.ys)]
    x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
    y0, y1 = (min(lows), max(highs)) if lows else (0.0, 1.0)
    if x1 <= x0:
        x0, x1 = x0 - 1, x1 + 1
    pad = max((y1 - y0) * 0.05, 0.5)
    return x0, x1, y0 - pad, y1 + pad


def _line(a: tuple[int, int], b: tuple[int, int]) -> list[tuple[int, int]]:
    """Bresenham's line from a to b, both ends included."""
    (x0, y0), (x1, y1) = a, b
    dx, dy = abs(x1 - x0), -abs(y1 - y0)
    sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
    err, out = dx + dy, []
    while True:
        out.append((x0, y0))
        if (x0, y0) == (x1, y1):
            return out
        e2 = 2 * err
        if e2 >= dy:
            err += dy
            x0 += sx
        if e2 <= dx:
            err += dx
            y0 += sy


def render_chart(series: Sequence[Series], width: int = 80, height: int = 16, x_label: str = "outer-loop step",
                 y_label: str = "test accuracy (%)", color: bool = True,
                 x_format: Callable[[float], str] = fmt_number) -> Text:
    """A braille line chart with a marker at every point, y ticks on the left, a legend below.

    The ± std of each point is in the legend (last point) and the PNG, not drawn here.
    """
    x0, x1, y0, y1 = _ranges(series, with_errs=False)
    yticks = [t for t in nice_ticks(y0, y1, max(2, height // 2)) if y0 <= t <= y1]
    ylab = [f"{t:.4g}" for t in yticks]
    lw = max([len(s) for s in ylab] + [1])
    cols, rows = max(width - lw - 2, 10), max(height, 4)
    W, H = cols * 2, rows * 4

    def dot(x: float, y: float) -> tuple[int, int]:
        return (round((x - x0) / (x1 - x0) * (W - 1)), round((y1 - y) / (y1 - y0) * (H - 1)))

    bits = [[0] * cols for _ in range(rows)]
    owner: list[list[int | None]] = [[None] * cols for _ in range(rows)]
    marks: dict[tuple[int, int], int] = {}
    for k, s in enumerate(series):
        pts = [dot(x, y) for x, y in zip(s.xs, s.ys)]
        path = [p for a, b in zip(pts, pts[1:]) for p in _line(a, b)] or pts
        for px, py in path:
            r, c = py // 4, px // 2
            bits[r][c] |= _BRAILLE[py % 4][px % 2]
            owner[r][c] = k
        for px, py in pts:
            marks[(py // 4, px // 2)] = k
    tick_rows = {round((y1 - t) / (y1 - y0) * (H - 1)) // 4: lab for t, lab in zip(yticks, ylab)}
    out = Text()
    out.append(f"{y_label}\n", style="bold" if color else None)
    for r in range(rows):
        lab = tick_rows.get(r)
        out.append((lab or "").rjust(lw) + (" ┤" if lab else " │"))
        for c in range(cols):
            if (r, c) in marks:
                k = marks[(r, c)]
                out.append(PALETTE[k % len(PALETTE)][2], style=PALETTE[k % len(PALETTE)][0] if color else None)
            elif bits[r][c]:
                k = owner[r][c] or 0
                out.append(chr(0x2800 + bits[r][c]), style=PALETTE[k % len(PALETTE)][0] if color else None)
            else:
                out.append(" ")
        out.append("\n")
    # x axis: ticks at nice values, labels centred under them where they do not overlap
    xticks = [t for t in nice_ticks(x0, x1, max(2, cols // 12)) if x0 <= t <= x1]
    axis, labels = ["─"] * cols, [" "] * (cols + 8)
    for t in xticks:
        c = round((t - x0) / (x1 - x0) * (W - 1)) // 2
        axis[c] = "┬"
        lab = x_format(t)
        start = max(0, min(c - len(lab) // 2, len(labels) - len(lab)))
        if all(ch == " " for ch in labels[max(0, start - 1):start + len(lab) + 1]):
            labels[start:start + len(lab)] = list(lab)
    out.append(" " * lw + " └" + "".join(axis) + "\n")
    out.append(" " * (lw + 2) + "".join(labels).rstrip() + "\n")
    out.append(" " * (lw + 2) + x_label.center(cols).rstrip() + "\n")
    for k, s in enumerate(series):
        name, _, marker = PALETTE[k % len(PALETTE)]
        last = f"{s.ys[-1]:.2f}" + (f" ± {s.errs[-1]:.2f}" if s.errs else "") if s.ys else "-"
        out.append(f"  {marker} ", style=name if color else None)
        out.append(f"{s.name}  (last {last})\n")
    return out


def _font(size: int):  # type: ignore[no-untyped-def]
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def save_chart_png(series: Sequence[Series], path: str | Path, size: tuple[int, int] = (800, 500),
                   x_label: str = "outer-loop step", y_label: str = "test accuracy (%)", title: str = "",
                   x_format: Callable[[float], str] = fmt_number) -> tuple[int, int]:
    """Draw the chart with PIL's ImageDraw: grid, axes, lines, markers, ± std bars, legend."""
    from PIL import Image, ImageDraw

    check_png_path(path)
    w, h = size
    legend_h = 18 * len(series)
    left, right, top, bottom = 70, 20, 40 if title else 20, 60 + legend_h
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    font, small = _font(14), _font(12)
    x0, x1, y0, y1 = _ranges(series)
    pw, ph = w - left - right, h - top - bottom

    def px(x: float, y: float) -> tuple[float, float]:
        return left + (x - x0) / (x1 - x0) * pw, top + (y1 - y) / (y1 - y0) * ph

    for t in nice_ticks(y0, y1, 6):
        if y0 <= t <= y1:
            _, y = px(x0, t)
            d.line([(left, y), (left + pw, y)], fill=(225, 225, 225))
            d.text((left - 6, y), f"{t:.4g}", fill="black", font=small, anchor="rm")
    for t in nice_ticks(x0, x1, 6):
        if x0 <= t <= x1:
            x, _ = px(t, y0)
            d.line([(x, top), (x, top + ph)], fill=(225, 225, 225))
            d.text((x, top + ph + 6), x_format(t), fill="black", font=small, anchor="mt")
    d.rectangle([left, top, left + pw, top + ph], outline="black")
    d.text((left + pw / 2, top + ph + 26), x_label, fill="black", font=font, anchor="mt")
    d.text((8, top - 4 if title else 4), y_label, fill="black", font=small, anchor="lt" if not title else "lb")
    if title:
        d.text((w / 2, 8), title, fill="black", font=font, anchor="mt")
    for k, s in enumerate(series):
        rgb = PALETTE[k % len(PALETTE)][1]
        pts = [px(x, y) for x, y in zip(s.xs, s.ys)]
        if len(pts) > 1:
            d.line(pts, fill=rgb, width=2)
        for i, (x, y) in enumerate(pts):
            if s.errs:
                _, ylo = px(s.xs[i], s.ys[i] - s.errs[i])
                _, yhi = px(s.xs[i], s.ys[i] + s.errs[i])
                d.line([(x, ylo), (x, yhi)], fill=rgb, width=1)
                d.line([(x - 3, ylo), (x + 3, ylo)], fill=rgb)
                d.line([(x - 3, yhi), (x + 3, yhi)], fill=rgb)
            d.ellipse([x - 4, y - 4, x + 4, y + 4], fill=rgb)
        ly = h - legend_h - 8 + 18 * k
        d.line([(left, ly + 7), (left + 24, ly + 7)], fill=rgb, width=3)
        d.text((left + 32, ly + 7), s.name, fill="black", font=small, anchor="lm")
    img.save(str(path))
    return img.size
