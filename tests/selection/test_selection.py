"""Selection strategies (ddtool.selection.builtin): weight averaging."""

from __future__ import annotations

import torch

from ddtool.selection.builtin import average_state


def test_weight_average_is_the_elementwise_mean() -> None:
    states = [{"w": torch.full((2, 2), float(i)), "n": torch.tensor(i)} for i in (1, 2, 6)]
    avg = average_state(states)
    assert torch.equal(avg["w"], torch.full((2, 2), 3.0))  # exact: (1 + 2 + 6) / 3 in float32
    assert avg["n"].item() == 1  # integer buffers are not averaged
