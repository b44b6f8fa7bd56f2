"""Expert trajectories as a store artifact: one blob per expert plus an index naming them by digest
(ddtool.trajectories), checked by 'store verify', kept by 'store gc', made by 'pretrain --trajectories'."""

from __future__ import annotations

import pytest
import torch

from ddtool.errors import DDToolError
from ddtool.nets import NetSpec
from ddtool.recipe import load_recipe
from ddtool.store import Store
from ddtool.store.integrity import gc, verify
from ddtool.store.meta import DatasetSignature
from ddtool.trajectories import Trajectories, expert_artifact, param_layout

SPEC = NetSpec("convnet", {"width": 8, "norm": "instance"})
LAYOUT = [("a.weight", (3, 2)), ("a.bias", (3,)), ("b.weight", (2, 3))]  # P = 15
SIG = DatasetSignature("digits", tuple(str(c) for c in range(10)), "1x8x8")


def _put(store: Store, n: int = 3, epochs: int = 4, name: str = "t") -> tuple[Trajectories, list[torch.Tensor]]:
    """n experts of random snapshots stored as trajectories/NAME; returns (the index as made, the snapshots)."""
    g = torch.Generator().manual_seed(0)
    snaps = [torch.randn(epochs + 1, 15, generator=g) for _ in range(n)]
    digests = [store.put_blob(*expert_artifact(s, SIG, SPEC, seed=i)) for i, s in enumerate(snaps)]
    traj = Trajectories(SPEC, LAYOUT, epochs, digests, {"lr": 0.01, "momentum": 0.0, "batch": 256, "zca": False},
                        torch.rand(n, epochs + 1, generator=g), torch.rand(n, epochs, generator=g), SIG,
                        recipe_sha256="ab" * 32, seed=7)
    art = store.put("trajectories", name, *traj.to_artifact())
    traj.digest = art.digest
    return traj, snaps


def test_trajectories_round_trip_bit_exactly_and_read_only_the_sampled_expert(store: Store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    made, snaps = _put(store)
    art, tensors, meta = store.load("trajectories/t")
    read: list[str] = []
    real = store.read_blob
    monkeypatch.setattr(store, "read_blob", lambda d: (read.append(d), real(d))[1])
    back = Trajectories.from_artifact(tensors, meta, art.digest, store)
    assert (back.net, back.layout, back.epochs, back.experts, back.training, back.signature, back.recipe_sha256,
            back.seed, back.digest) == (made.net, made.layout, made.epochs, made.experts, made.training,
                                        made.signature, made.recipe_sha256, made.seed, made.digest)
    assert torch.equal(back.test_acc, made.test_acc) and torch.equal(back.train_loss, made.train_loss)  # exact: safetensors round trip
    assert read == []  # the index alone: no expert read yet
    assert torch.equal(back.snapshots(1), snaps[1])  # bit-exact
    assert read == [made.experts[1]]
    back.snapshots(1)
    assert read == [made.experts[1]]  # cached
    assert all(torch.equal(back.snapshots(i), snaps[i]) for i in range(3))
    # the same content stores to the same digest (the index is deterministic)
    assert store.put("trajectories", "t2", *back.to_artifact()).digest == made.digest


def test_verify_checks_the_experts_an_index_names(store: Store, cli) -> None:  # type: ignore[no-untyped-def]
    made, _ = _put(store)
    report = verify(store)
    assert report.ok, report.problems
    assert report.unreferenced == []  # the experts count as referenced through the index
    store.blob_path(made.experts[1]).unlink()
    report = verify(store)
    assert report.problems == [f"ref trajectories/t:v1: expert blob {made.experts[1][:12]} is missing"]
    res = cli("store", "verify")
    assert res.exit_code == 1 and f"expert blob {made.experts[1][:12]} is missing" in res.stderr


def test_verify_catches_a_corrupt_expert_and_a_non_expert_named_as_one(store: Store) -> None:
    made, _ = _put(store)
    path = store.blob_path(made.experts[0])
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    other = store.put("pool", "p", {"x": torch.zeros(1)}, {})
    bad = Trajectories(SPEC, LAYOUT, made.epochs, [other.digest], signature=SIG)
    store.put("trajectories", "wrong", *bad.to_artifact())
    problems = verify(store).problems
    assert any(p.startswith("ref trajectories/t:v1: expert blob:") and "does not match its digest" in p
               for p in problems), problems
    assert f"ref trajectories/wrong:v1: blob {other.digest[:12]} it names as an expert is a pool blob" in problems


def test_gc_keeps_the_experts_while_the_index_is_there(store: Store) -> None:
    made, _ = _put(store)
    stray = store.put_blob(*expert_artifact(torch.zeros(5, 15), SIG, SPEC))  # named by nothing
    removed = {d for d, _ in gc(store).blobs}
    assert removed == {stray}
    assert all(store.blob_path(d).exists() for d in made.experts)
    store.remove("trajectories/t")
    removed = {d for d, _ in gc(store).blobs}
    assert removed == set(made.experts)
    assert verify(store).ok


def test_a_missing_expert_is_one_error_when_sampled(store: Store) -> None:
    made, _ = _put(store)
    store.blob_path(made.experts[2]).unlink()
    _, tensors, meta = store.load("trajectories/t")
    back = Trajectories.from_artifact(tensors, meta, made.digest, store)
    back.snapshots(0)
    try:
        back.snapshots(2)
    except DDToolError as exc:
        assert "is missing" in str(exc) and "store verify" in str(exc)
    else:
        raise AssertionError("a missing expert blob was read")


def test_pretrain_trajectories_stores_a_snapshot_per_epoch_as_the_mtt_buffer_trains(store: Store, digits) -> None:  # type: ignore[no-untyped-def]
    from ddtool.lookup import build_net
    from ddtool.runtime.supervised import accuracy
    from ddtool.runtime.pretrain.expert_trajectories import pretrain_trajectories
    from ddtool.trajectories import flat_params

    recipe = load_recipe(None, ["net.width=8", "pretrain.n=2", "pretrain.epochs=2", "pretrain.seed=3",
                                'pretrain.name="x"'])
    res = pretrain_trajectories(store, recipe, digits, torch.device("cpu"))
    traj = res.trajectories
    assert res.artifact.ref == "trajectories/x:v1" and len(traj) == 2 and traj.epochs == 2
    # MTT buffer.py's settings where the recipe does not state them (the pool defaults are 64, a chain, CutMix)
    assert traj.training == {"lr": 0.01, "momentum": 0.0, "weight_decay": 0.0, "batch": 256, "epochs": 2,
                             "augment": "color_crop_cutout_flip_scale_rotate", "cutmix": 0.0, "zca": False}
    rec = store.run(res.run_id)
    assert rec["recipe"]["pretrain"]["batch"] == 256 and rec["checkpoints"] == []
    assert [o["digest"] for o in rec["outputs"]] == [res.artifact.digest]
    _, tensors, meta = store.load("trajectories/x")
    back = Trajectories.from_artifact(tensors, meta, res.artifact.digest, store)
    from ddtool.runtime.seeds import role_seed

    torch.manual_seed(role_seed("expert", 3, 1))  # expert 1 of pretrain.seed 3 (its own stream, not 3 + 1)
    init = flat_params(build_net(traj.net, 1, 10, 8))
    snaps = back.snapshots(1)
    assert snaps.shape == (3, init.numel()) and back.layout == param_layout(build_net(traj.net, 1, 10, 8))
    assert torch.equal(snaps[0], init)  # exact: the same seeded initialisation
    assert not torch.equal(snaps[1], snaps[0]) and not torch.equal(snaps[2], snaps[1])
    # the recorded accuracy per epoch is that of the stored snapshot
    net = build_net(traj.net, 1, 10, 8)
    torch.nn.utils.vector_to_parameters(snaps[2], net.parameters())
    assert back.test_acc.shape == (2, 3)
    acc = accuracy(net, digits.test_images, digits.test_labels, digits.normalize)
    assert back.test_acc[1, 2].item() == pytest.approx(acc, abs=1e-6)  # stored as float32
    assert verify(store).ok


def test_pretrain_trajectories_from_the_cli(cli, store: Store) -> None:  # type: ignore[no-untyped-def]
    import json

    res = cli("pretrain", "--trajectories", "--n", "1", "--epochs", "1", "--name", "c", "--set", "net.width=8", "--json")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["ref"] == "trajectories/c:v1" and len(out["experts"]) == 1 and len(out["experts"][0]["test_acc"]) == 2
    assert store.resolve("trajectories/c").digest == out["digest"]
    res = cli("pretrain", "--trajectories", "--set", "pretrain.lr_cycle=true", "--set", "net.width=8")
    assert res.exit_code == 2 and "pretrain.lr_cycle is for pools" in res.stderr
    res = cli("pretrain", "--trajectories", "--set", "net.norm=\"batch\"", "--set", "net.width=8")
    assert res.exit_code == 2 and "batch norm's running statistics" in res.stderr


def test_inspect_of_trajectories_draws_the_experts_accuracy_per_epoch(store: Store, cli) -> None:  # type: ignore[no-untyped-def]
    # (inspect used to refuse trajectories; tests/inspect/test_inspect_trajectories.py checks the values)
    _put(store, name="exp")
    res = cli("inspect", "trajectories/exp", "--color", "none")
    assert res.exit_code == 0 and "Traceback" not in res.stderr
    assert "mean of 3 experts" in res.stdout and "expert epoch" in res.stdout
