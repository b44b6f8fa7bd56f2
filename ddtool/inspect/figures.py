"""The report's figure: accuracy against distillation cost, one point per set, the Pareto front marked.

A set is on the front when no other set reaches a higher accuracy at the same or a lower cost.
The cost is what the run records say the set took: the distill run's wall seconds plus the
pretraining of the pool it used (``ReportRow.distill_seconds + pretrain_seconds``); a set whose
distill run is not in the store has no cost and is left out (the caller names it).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ddtool.inspect.chart import new_figure, rgb, save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

POINT = 0  # palette index of the sets' markers
FRONT = 1  # of the Pareto front


def cost_seconds(row: Any) -> float | None:
    """Wall seconds that made the set: distillation plus its pool's pretraining, as recorded."""
    if row.distill_seconds is None:
        return None
    return float(row.distill_seconds) + float(row.pretrain_seconds or 0.0)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (cost, accuracy) points no other point beats (higher accuracy at no more
    cost), by increasing cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def short(ref: str) -> str:
    return ref.removeprefix("synthetic/")


def report_figure(rows: Sequence[Any], size: tuple[int, int] = (800, 500)) -> tuple["Figure", list[str], list[int]]:
    """(the figure, the refs left out for want of a recorded cost, the indices into the plotted rows
    of the Pareto front). Hard-label accuracy in percent with its ± std; the full-data bound as a
    dotted line when every row shares it."""
    plotted = [r for r in rows if cost_seconds(r) is not None]
    left_out = [r.ref for r in rows if cost_seconds(r) is None]
    xs = [cost_seconds(r) or 0.0 for r in plotted]
    ys = [100 * r.accuracy_mean for r in plotted]
    errs = [100 * r.accuracy_std for r in plotted]
    front = pareto_front(list(zip(xs, ys)))
    fig = new_figure(size)
    ax = fig.add_subplot()
    ax.errorbar(xs, ys, yerr=errs, fmt="none", ecolor="0.65", elinewidth=1, capsize=3, zorder=1)
    if front:
        fx, fy = [xs[i] for i in front], [ys[i] for i in front]
        ax.plot(fx, fy, drawstyle="steps-post", linestyle="--", linewidth=1.5, color=rgb(FRONT), zorder=2,
                label="Pareto front")
        ax.scatter(fx, fy, s=260, facecolors="none", edgecolors=[rgb(FRONT)], linewidths=1.5, zorder=2)
    ax.scatter(xs, ys, s=50, color=[rgb(POINT)], marker="o", zorder=3)  # unlabelled: no marker in the legend
    for x, y, r in zip(xs, ys, plotted):
        ax.annotate(f"{short(r.ref)} ({r.method}, ipc {r.ipc})", (x, y), xytext=(8, 8), textcoords="offset points",
                    fontsize=8, color="0.2")
    fulls = {(r.dataset, r.net, r.full_mean) for r in rows}
    if len(fulls) == 1 and rows:
        ax.axhline(100 * rows[0].full_mean, linestyle=":", color="0.4", linewidth=1, label="full data")
    if xs and max(xs) > 20 * max(min(xs), 1e-9):
        ax.set_xscale("log")  # costs an order of magnitude or more apart
    ax.margins(x=0.12, y=0.08)  # room for the names beside the points
    devices = {r.device for r in plotted if r.device}
    pools = any(r.pretrain_seconds for r in plotted)
    ax.set_xlabel("distillation wall seconds" + (" (+ pool pretraining)" if pools else "")
                  + (f" on {devices.pop()}" if len(devices) == 1 else ""))
    ax.set_ylabel("test accuracy (%), hard labels, ± std")
    first = rows[0] if rows else None
    if first is not None:
        ax.set_title(f"accuracy against cost ({first.dataset}, {first.net}, {first.protocol} protocol, "
                     f"{first.epochs} epochs)", fontsize=11)
    ax.grid(True, color="0.9")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig, left_out, front


def save_report_figure(rows: Sequence[Any], path: str | Path, size: tuple[int, int] = (800, 500)
                       ) -> tuple[tuple[int, int], list[str], int]:
    """Write the figure as PNG, SVG or PDF; returns (its size in pixels, the refs left out, the sets
    on the Pareto front)."""
    fig, left_out, front = report_figure(rows, size)
    return save_figure(fig, path), left_out, len(front)
