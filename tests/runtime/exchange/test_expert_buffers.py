"""``store import --kind trajectories`` (ddtool.runtime.exchange.expert_buffers): MTT's and DATM's
``replay_buffer_N.pt`` files become ``trajectories/NAME`` holding the same tensors in the same order,
which an mtt run distils from; a buffer of another network, a file of other objects and a buffer
of mixed epochs are refused in one line."""

from __future__ import annotations

import hashlib
import json
import math
import pathlib
from pathlib import Path

import torch

from ddtool.lookup import build_net
from ddtool.recipe import load_recipe
from ddtool.runtime.distill.planning import net_spec_of
from ddtool.store import Store
from ddtool.store.integrity import gc, verify
from ddtool.store.meta import SyntheticMeta, TrajectoryMeta
from ddtool.trajectories import load_trajectories, unflatten

MTT = str(Path(__file__).resolve().parents[3] / "recipes" / "mtt.toml")
# recipes/mtt.toml on digits: max_start_epoch 10 + expert_epochs 2 needs experts of 11 epochs
EPOCHS = 11


def _net(digits, *sets: str) -> torch.nn.Module:  # type: ignore[no-untyped-def]
    spec = net_spec_of(load_recipe(MTT, list(sets)))
    return build_net(spec, digits.channels, digits.num_classes, digits.resolution)


def fake_buffer(path: Path, experts: int, net: torch.nn.Module, seed: int, epochs: int = EPOCHS
                ) -> list[list[list[torch.Tensor]]]:
    """What buffer.py / buffer_FTD.py save: experts x epochs (epoch 0 first) x net.parameters(), every
    tensor distinct (random steps from the network's initialisation)."""
    g = torch.Generator().manual_seed(seed)
    buf = []
    for _ in range(experts):
        stamps = [[p.detach().clone() for p in net.parameters()]]
        for _ in range(epochs):
            stamps.append([p + 0.01 * torch.randn(p.shape, generator=g) for p in stamps[-1]])
        buf.append(stamps)
    torch.save(buf, path)
    return buf


def _ok(result):  # type: ignore[no-untyped-def]
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def _one_line_usage_error(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_imported_buffers_hold_the_same_tensors_in_order_and_an_mtt_run_distils_from_them(  # type: ignore[no-untyped-def]
        cli, store: Store, digits, tmp_path: Path) -> None:
    net = _net(digits)
    folder = tmp_path / "buffers"
    folder.mkdir()
    # numbered as the reference numbers them: 2 before 10 (not the names' alphabetical order)
    first = fake_buffer(folder / "replay_buffer_2.pt", 2, net, seed=1)
    second = fake_buffer(folder / "replay_buffer_10.pt", 1, net, seed=2)
    (folder / "notes.txt").write_text("not a buffer")
    got = _ok(cli("store", "import", folder, "--kind", "trajectories", "--recipe", MTT, "--json"))
    assert got["ref"] == "trajectories/mtt:v1"  # the recipe's [pretrain] name: what its distill reads
    assert (got["experts"], got["epochs"]) == (3, EPOCHS)
    spec = net_spec_of(load_recipe(MTT, []))
    art, traj = load_trajectories(store, "trajectories/mtt", digits, spec)  # as a distill run reads them
    names = [n for n, _ in net.named_parameters()]
    for i, expert in enumerate([*first, *second]):
        snaps = traj.snapshots(i)
        assert snaps.shape[0] == EPOCHS + 1
        for t, stamp in enumerate(expert):
            params = unflatten(snaps[t], traj.layout)
            assert list(params) == names
            for name, want in zip(names, stamp):
                assert torch.equal(params[name], want)  # exact: float32 copied into the blob, no arithmetic
    # the index says where its experts came from; the run record names each file by its sha256
    sha = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*.pt")}
    training = TrajectoryMeta.from_metadata(store.blob_metadata(art.digest)).training
    assert training["imported"] is True and (training["experts"], training["epochs"]) == (3, EPOCHS)
    assert [(f["name"], f["sha256"], f["experts"]) for f in training["files"]] == [
        ("replay_buffer_2.pt", sha["replay_buffer_2.pt"], 2), ("replay_buffer_10.pt", sha["replay_buffer_10.pt"], 1)]
    record = store.run(got["run"])
    assert record["command"] == "import" and record["outputs"][0]["digest"] == art.digest
    assert [(i["ref"], i["digest"], i["kind"]) for i in record["inputs"]] == [
        (n, sha[n], "file") for n in ("replay_buffer_2.pt", "replay_buffer_10.pt")]
    assert verify(store).ok and gc(store, dry_run=True).blobs == []  # the experts are held by the index

    res = cli("distill", "--recipe", MTT, "--set", "distill.iterations=2", "--set", "distill.ipc=1",
              "--set", "distill.options.syn_steps=2", "--json")
    made = _ok(res)
    run = store.run(made["run"])
    assert [i["digest"] for i in run["inputs"] if i.get("kind") == "trajectories"] == [art.digest]
    assert math.isfinite(run["metrics"]["final_loss"])
    info = SyntheticMeta.from_metadata(store.blob_metadata(store.resolve(made["ref"]).digest))
    assert info.method == "mtt" and info.learned_lr is not None and math.isfinite(info.learned_lr)


def test_a_buffer_of_another_network_is_refused_in_one_line_and_the_store_is_left_as_it_was(  # type: ignore[no-untyped-def]
        cli, store: Store, digits, tmp_path: Path) -> None:
    fake_buffer(tmp_path / "replay_buffer_0.pt", 1, _net(digits, "net.width=16"), seed=0, epochs=2)
    line = _one_line_usage_error(cli("store", "import", tmp_path / "replay_buffer_0.pt", "--kind", "trajectories",
                                     "--recipe", MTT))
    assert "'replay_buffer_0.pt' expert 0: parameter shapes do not match" in line
    assert "parameter 0 (features.0.weight) is [16, 1, 3, 3], the network's is [32, 1, 3, 3]" in line
    assert "--set net.width=" in line  # the fix
    assert store.runs() == [] and store.list() == []
    # the same buffer imports once the [net] says what it is
    got = _ok(cli("store", "import", tmp_path, "--kind", "trajectories", "--recipe", MTT, "--set", "net.width=16",
                  "--name", "narrow", "--json"))
    assert got["ref"] == "trajectories/narrow:v1" and '"width": 16' in got["net"]
    # one parameter tensor too few (a network without the last bias)
    torch.save([[list(_net(digits).parameters())[:-1]] * 3], tmp_path / "short.pt")
    line = _one_line_usage_error(cli("store", "import", tmp_path / "short.pt", "--kind", "trajectories",
                                     "--recipe", MTT))
    assert "9 parameter tensors, the network has 10" in line


def test_a_file_of_other_objects_is_refused_without_unpickling_them(cli, store: Store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "unpickled"

    class Payload:  # unpickling it would create the marker file
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return pathlib.Path.touch, (marker,)

    torch.save([[[torch.zeros(2)], [Payload()]]], tmp_path / "evil.pt")
    line = _one_line_usage_error(cli("store", "import", tmp_path / "evil.pt", "--kind", "trajectories",
                                     "--dataset", "digits"))
    assert "torch.load(weights_only=True)" in line and not marker.exists()
    # what weights_only does build, but is no parameter tensor, is named by its place
    torch.save([[[torch.zeros(2)], ["not a tensor"]]], tmp_path / "strings.pt")
    line = _one_line_usage_error(cli("store", "import", tmp_path / "strings.pt", "--kind", "trajectories",
                                     "--dataset", "digits"))
    assert "expert 0 epoch 1 entry 0 is a str, not a float parameter tensor" in line
    assert store.runs() == []


def test_experts_of_other_epochs_in_a_later_file_fail_the_run_and_leave_nothing_held(  # type: ignore[no-untyped-def]
        cli, store: Store, digits, tmp_path: Path) -> None:
    net = _net(digits)
    fake_buffer(tmp_path / "replay_buffer_0.pt", 1, net, seed=0, epochs=3)
    fake_buffer(tmp_path / "replay_buffer_1.pt", 1, net, seed=1, epochs=2)
    line = _one_line_usage_error(cli("store", "import", tmp_path, "--kind", "trajectories", "--recipe", MTT))
    assert "'replay_buffer_1.pt' expert 0 has 2 epochs, the first expert 3" in line
    [record] = store.runs()
    assert record["status"] == "failed" and record.get("checkpoints") == []
    assert store.list() == []
    assert len(gc(store, dry_run=True).blobs) == 1  # the first file's expert, stored before the failure: free


def test_a_folder_of_buffers_imported_as_a_set_names_the_kind(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "replay_buffer_0.pt").write_bytes(b"")
    line = _one_line_usage_error(cli("store", "import", tmp_path, "--dataset", "digits"))
    assert "--kind trajectories" in line
