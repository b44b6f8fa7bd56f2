"""Line charts of accuracy curves: in the terminal (plotext) and as PNG, SVG or PDF (matplotlib).

Nothing here knows about runs or the store; ``ddtool.inspect.curve_series`` turns eval records into
:class:`Series`. Several series share one chart, each in its own colour and marker, so the
marker tells the series apart even without colour. Both libraries are imported only when a
chart is drawn (matplotlib's pyplot alone takes about 0.4 s to import), and matplotlib is used
through its object API (a ``Figure`` and the Agg canvas): no pyplot state, no display needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from rich.text import Text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# (terminal colour, RGB for the figures, terminal marker, matplotlib marker)
PALETTE = [
    ("cyan", (31, 119, 180), "●", "o"),
    ("red", (214, 39, 40), "■", "s"),
    ("green", (44, 160, 44), "▲", "^"),
    ("magenta", (148, 103, 189), "◆", "D"),
    ("yellow", (188, 140, 0), "✚", "P"),
    ("blue", (23, 190, 207), "✖", "X"),
]
FIGURE_FORMATS = (".png", ".svg", ".pdf")


def check_png_path(path: str | Path) -> Path:
    """``path`` when it names a .png file (what --png writes), else a one-line UsageError.

    PIL and matplotlib pick the format from the extension and raise a bare ValueError for a
    missing or unknown one, so the name is checked before anything is drawn."""
    from ddtool.errors import UsageError

    p = Path(path)
    if p.suffix.lower() != ".png":
        got = f"'{p.suffix}'" if p.suffix else "no extension"
        raise UsageError(f"--png writes a PNG file: give a path ending in .png (got {got}: '{p}')")
    return p


def check_figure_path(path: str | Path, option: str = "--figure") -> Path:
    """``path`` when it ends in .png, .svg or .pdf (the formats papers take), else a one-line UsageError."""
    from ddtool.errors import UsageError

    p = Path(path)
    if p.suffix.lower() not in FIGURE_FORMATS:
        got = f"'{p.suffix}'" if p.suffix else "no extension"
        raise UsageError(f"{option} writes PNG, SVG or PDF: give a path ending in .png, .svg or .pdf "
                         f"(got {got}: '{p}')")
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


def render_chart(series: Sequence[Series], width: int = 80, height: int = 16, x_label: str = "outer-loop step",
                 y_label: str = "test accuracy (%)", color: bool = True,
                 x_format: Callable[[float], str] = fmt_number) -> Text:
    """A plotext line chart (braille lines, a marker at every point) under the y label, with a
    legend below: each series' marker, name and last value (± std; the std is not drawn here)."""
    import plotext

    fig = plotext.figure  # plotext's one master figure: cleared for every chart
    fig.clear()
    fig.theme("colorless")  # no background: the chart sits on the terminal's own
    fig.plot_size(max(width, 20), max(height, 4) + 3)  # + the x axis, its tick labels and its label
    for k, s in enumerate(series):  # every line first, then every marker: no line covers a point
        if len(s.xs) > 1:
            fig.draw(fig.signal(s.xs, s.ys, marker=plotext.marker("braille", PALETTE[k % len(PALETTE)][0])).lines())
    for k, s in enumerate(series):
        colour, _, marker, _ = PALETTE[k % len(PALETTE)]
        fig.draw(fig.signal(s.xs, s.ys, marker=plotext.marker(marker, colour)))
    x0, x1, y0, y1 = _ranges(series, with_errs=False)
    fig.ruler("x").lim(x0, x1)
    fig.ruler("y").lim(y0, y1)
    xticks = [t for t in nice_ticks(x0, x1, max(2, width // 12)) if x0 <= t <= x1]
    yticks = [t for t in nice_ticks(y0, y1, max(2, height // 2)) if y0 <= t <= y1]
    fig.ruler("x").ticks(xticks, [x_format(t) for t in xticks])
    fig.ruler("y").ticks(yticks, [f"{t:.4g}" for t in yticks])
    fig.label(x_label, "x")
    drawn = fig.build().string(colorless=not color)
    out = Text()
    out.append(f"{y_label}\n", style="bold" if color else None)
    body = Text.from_ansi(drawn) if color else Text(drawn)
    out.append_text(body)
    if not out.plain.endswith("\n"):
        out.append("\n")
    for k, s in enumerate(series):
        name, _, marker, _ = PALETTE[k % len(PALETTE)]
        last = f"{s.ys[-1]:.2f}" + (f" ± {s.errs[-1]:.2f}" if s.errs else "") if s.ys else "-"
        out.append(f"  {marker} ", style=name if color else None)
        out.append(f"{s.name}  (last {last})\n")
    if not color:
        out.spans.clear()
    return out


def rgb(k: int) -> tuple[float, float, float]:
    """Series ``k``'s colour as matplotlib takes it (0..1)."""
    r, g, b = PALETTE[k % len(PALETTE)][1]
    return r / 255, g / 255, b / 255


def new_figure(size: tuple[int, int]) -> "Figure":
    """A matplotlib Figure of ``size`` pixels at 100 dpi on the Agg canvas (no display, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] / 100, size[1] / 100), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def chart_figure(series: Sequence[Series], size: tuple[int, int] = (800, 500), x_label: str = "outer-loop step",
                 y_label: str = "test accuracy (%)", title: str = "",
                 x_format: Callable[[float], str] = fmt_number) -> "Figure":
    """The curves as a matplotlib Figure: one line with a marker per point and ± std error bars per
    series, a grid, the legend under the axes."""
    from matplotlib.ticker import FuncFormatter

    fig = new_figure(size)
    ax = fig.add_subplot()
    for k, s in enumerate(series):
        ax.errorbar(s.xs, s.ys, yerr=s.errs or None, color=rgb(k), marker=PALETTE[k % len(PALETTE)][3],
                    markersize=6, linewidth=2, capsize=3, label=s.name)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: x_format(v)))
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.grid(True, color="0.88")
    if title:
        ax.set_title(title)
    # the legend under the x axis label, one line per series (room made for it, as many as there are)
    w, h = size
    fig.subplots_adjust(left=80 / w, right=1 - 20 / w, top=1 - (40 if title else 20) / h,
                        bottom=min(0.6, (60 + 18 * len(series)) / h))
    fig.legend(loc="lower left", bbox_to_anchor=(70 / w, 4 / h), ncol=1, frameon=False, fontsize=9)
    return fig


def save_figure(fig: "Figure", path: str | Path) -> tuple[int, int]:
    """Write ``fig`` as PNG, SVG or PDF (by the extension); returns its size in pixels at 100 dpi."""
    check_figure_path(path)
    fig.savefig(str(path), format=Path(path).suffix.lower()[1:], dpi=100)
    w, h = fig.get_size_inches() * fig.dpi
    return round(w), round(h)


def save_chart_png(series: Sequence[Series], path: str | Path, size: tuple[int, int] = (800, 500),
                   x_label: str = "outer-loop step", y_label: str = "test accuracy (%)", title: str = "",
                   x_format: Callable[[float], str] = fmt_number) -> tuple[int, int]:
    """Draw the chart with matplotlib (:func:`chart_figure`) into a PNG file of ``size`` pixels."""
    check_png_path(path)
    return save_figure(chart_figure(series, size, x_label, y_label, title, x_format), path)
