"""bench.datm_reference: the reference's expert buffers become ddtool trajectories that hold the same
parameters under the same names; a buffer of another network is refused; the reference's set is
imported with each image's class beside its learned logits."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/ lives beside ddtool/, not in it
from bench import datm_reference as dr  # noqa: E402
from ddtool.lookup import build_net, load_dataset  # noqa: E402
from ddtool.recipe import load_recipe  # noqa: E402
from ddtool.runtime.distill.planning import net_spec_of  # noqa: E402
from ddtool.trajectories import load_trajectories, unflatten  # noqa: E402

RECIPE = str(Path(__file__).resolve().parents[2] / "recipes" / "datm.toml")


def fake_buffer(folder: Path, experts: int, epochs: int, net: torch.nn.Module) -> list[list[list[torch.Tensor]]]:
    """What buffer_FTD.py saves: experts x timestamps x net.parameters(), each timestamp distinct."""
    buf = [[[p.detach() + 0.01 * (e + 1) * (t + 1) for p in net.parameters()] for t in range(epochs + 1)]
           for e in range(experts)]
    torch.save(buf, folder / "replay_buffer_0.pt")
    return buf


def test_imported_experts_hold_the_buffers_parameters_by_name(tmp_path, store):
    data = load_dataset("digits")
    spec = net_spec_of(load_recipe(RECIPE, ['data.dataset="digits"']))
    net = build_net(spec, data.channels, data.num_classes, data.resolution)
    buf = fake_buffer(tmp_path, 2, 3, net)
    got = dr.import_experts(tmp_path, store.root, "digits", "ref-experts", RECIPE)
    assert (got["experts"], got["epochs"]) == (2, 3)
    _, traj = load_trajectories(store, "trajectories/ref-experts", data, spec)  # what a datm run reads
    # through ddtool's own import (store import --kind trajectories): the index says so, with its source
    assert traj.training["imported"] and dr.COMMIT in traj.training["source"]
    names = [n for n, _ in net.named_parameters()]
    for e in range(2):
        for t in range(4):
            params = unflatten(traj.snapshots(e)[t], traj.layout)
            assert list(params) == names
            for name, want in zip(names, buf[e][t]):
                assert torch.equal(params[name], want)


def test_a_buffer_of_another_network_is_refused(tmp_path, store):
    data = load_dataset("digits")
    other = build_net(net_spec_of(load_recipe(RECIPE, ['data.dataset="digits"', "net.width=16"])),
                      data.channels, data.num_classes, data.resolution)
    fake_buffer(tmp_path, 1, 2, other)
    with pytest.raises(SystemExit, match="parameter shapes"):
        dr.import_experts(tmp_path, store.root, "digits", "ref-experts", RECIPE)


def test_the_reference_set_keeps_its_classes_beside_the_logits(tmp_path):
    d = tmp_path / "Normal"
    d.mkdir()
    logits = torch.randn(6, 3)
    logits[:, 0] += 10  # every argmax is class 0: the classes must not come from the logits
    torch.save(torch.randn(6, 1, 8, 8), d / "images_4.pt")
    torch.save(logits, d / "labels_4.pt")
    torch.save(torch.tensor(0.02), d / "lr_4.pt")
    got = dr.ref_set(d, 4, tmp_path / "set.pt")
    saved = torch.load(tmp_path / "set.pt", weights_only=True)
    assert saved["labels"].tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.equal(saved["soft_labels"], logits)
    assert got["lr"] == pytest.approx(0.02) and got["argmax_is_class"] == pytest.approx(2 / 6)
