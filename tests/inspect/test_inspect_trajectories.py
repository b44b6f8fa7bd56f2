"""'ddtool inspect trajectories/NAME': each expert's test accuracy per epoch as a curve."""

from __future__ import annotations

import json

import torch

from ddtool.recipe import load_recipe
from ddtool.store import Store


def test_inspect_draws_every_experts_accuracy_per_epoch(cli, store: Store, digits, tmp_path, one_thread) -> None:  # type: ignore[no-untyped-def]
    from ddtool.runtime.pretrain.expert_trajectories import pretrain_trajectories

    made = pretrain_trajectories(store, load_recipe(None, ["net.width=8", "pretrain.n=2", "pretrain.epochs=3",
                                                           'pretrain.name="t"']), digits, torch.device("cpu"))
    _, tensors, _ = store.load(made.artifact.ref)
    res = cli("inspect", "trajectories/t", "--json")
    assert res.exit_code == 0, res.stderr
    shown = json.loads(res.stdout)
    assert shown["epochs"] == [0, 1, 2, 3]
    want = tensors["test_acc"].double()
    want = want * 100 if float(want.max()) <= 1 else want
    torch.testing.assert_close(torch.tensor(shown["accuracy_percent"], dtype=torch.double), want, atol=1e-3, rtol=0)
    res = cli("inspect", "trajectories/t", "--color", "none", "--png", str(tmp_path / "t.png"))
    assert res.exit_code == 0, res.stderr
    assert "mean of 2 experts" in res.stdout and "expert 1" in res.stdout and "expert epoch" in res.stdout
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
