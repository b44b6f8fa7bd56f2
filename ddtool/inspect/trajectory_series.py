"""Expert trajectories read back for drawing: each expert's test accuracy after every epoch
(``trajectories/NAME``'s ``test_acc`` tensor, epoch 0 = the initialisation) as chart series."""

from __future__ import annotations

from typing import Any

import torch

from ddtool.errors import DDToolError
from ddtool.inspect.chart import Series
from ddtool.trajectories import TEST_ACC

SHOWN = 5  # experts drawn one by one beside the mean (a buffer of 100 curves is a blur)


def accuracy_table(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """``[experts, epochs + 1]`` test accuracy in percent; NaN where an epoch was not evaluated."""
    acc = tensors.get(TEST_ACC)
    if acc is None or acc.dim() != 2:
        raise DDToolError("these trajectories record no per-epoch accuracy (no 'test_acc' tensor)")
    acc = acc.double()
    return acc * 100 if float(acc.nan_to_num(0).abs().max()) <= 1.0 else acc


def trajectory_series(tensors: dict[str, torch.Tensor], shown: int = SHOWN) -> list[Series]:
    """The mean over experts (± std across them) and the first ``shown`` experts, accuracy against epoch."""
    acc = accuracy_table(tensors)
    epochs = [float(e) for e in range(acc.shape[1])]
    keep = ~acc.isnan().all(0)
    if not bool(keep.any()):
        raise DDToolError("these trajectories record no per-epoch accuracy (every value is NaN)")
    xs = [e for e, k in zip(epochs, keep.tolist()) if k]
    mean = acc[:, keep].nanmean(0)
    std = (acc[:, keep] - mean).nan_to_num(0).pow(2).mean(0).sqrt() if acc.shape[0] > 1 else torch.zeros_like(mean)
    out = [Series(f"mean of {acc.shape[0]} experts", xs, mean.tolist(), std.tolist())]
    for i in range(min(shown, acc.shape[0])):
        out.append(Series(f"expert {i}", xs, acc[i, keep].tolist()))
    return out


def trajectory_summary(tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Every expert's curve for ``--json``: ``{"epochs": [...], "accuracy_percent": [[...], ...]}``."""
    acc = accuracy_table(tensors)
    rows = [[None if v != v else round(v, 4) for v in row] for row in acc.tolist()]
    return {"epochs": list(range(acc.shape[1])), "accuracy_percent": rows}
