"""Distillation runs (ddtool.runtime.distill.loop): a short recipe run of each gradient-matching method and
herding stores its synthetic set."""

from __future__ import annotations

import pytest
import torch

from ddtool.recipe import load_recipe
from ddtool.runtime.distill import distill
from ddtool.store import Store

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


RUNS = {
    "dc": ["distill.lr_img=0.1", "distill.options.inner=2", "distill.options.inner_net=2"],
    "dsa": ["distill.lr_img=0.1", "distill.options.inner=2", "distill.options.inner_net=1"],
    "idc": ["distill.lr_img=0.005", "distill.batch_real=32", "distill.options.inner_loops=2",
            "distill.options.net_steps=2"],
    "herding": [],
}


@pytest.mark.parametrize("method", sorted(RUNS))
def test_short_run_produces_artifact(digits, tmp_path, method):
    store = Store(tmp_path)
    recipe = load_recipe(None, [f"distill.method={method}", "net.width=16", "distill.ipc=2",
                                "distill.iterations=2", *RUNS[method]])
    result = distill(store, recipe, digits, CPU)
    _, tensors, meta = store.load(result.artifact.ref, kind="synthetic")
    assert tensors["images"].shape == (20, 1, 8, 8)
    assert torch.bincount(tensors["labels"]).tolist() == [2] * 10
    assert meta["ddtool.method"] == method
    assert meta["ddtool.factor"] == ("2" if method == "idc" else "1")
    assert len(result.losses) == (0 if method == "herding" else 2)
    assert all(torch.isfinite(torch.tensor(result.losses)))
