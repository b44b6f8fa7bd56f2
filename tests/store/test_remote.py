"""Push and pull between stores (ddtool.store.remote): through a folder, a file:// URL and fsspec's
in-memory filesystem; dedup, verify-on-pull, interrupted transfers, conflicting refs, lineage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ddtool.errors import DDToolError, UsageError
from ddtool.store import Store
from ddtool.store import remote as rm
from ddtool.store.integrity import verify

fsspec = pytest.importorskip("fsspec")


def _put(store: Store, kind: str, name: str, seed: int, meta: dict[str, str] | None = None) -> str:
    g = torch.Generator().manual_seed(seed)
    tensors = {"images": torch.randn(4, 1, 4, 4, generator=g), "labels": torch.arange(4)}
    return store.put(kind, name, tensors, {"ddtool.dataset": "digits", **(meta or {})}).digest


@pytest.fixture(params=["folder", "file-url", "memory"])
def remote(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    """(URL, a Store or an fsspec filesystem path to look inside it)."""
    if request.param == "memory":
        fs = fsspec.filesystem("memory")
        root = f"/ddtool-test-{tmp_path.name}"
        yield f"memory://{root}"
        if fs.exists(root):
            fs.rm(root, recursive=True)
    else:
        folder = tmp_path / "remote"
        yield str(folder) if request.param == "folder" else folder.as_uri()


def _remote_refs(url: str) -> dict:
    return rm.open_remote(url).refs()


def _blob_path(url: str, digest: str) -> str:
    side = rm.open_remote(url)
    if isinstance(side, rm.StoreSide):
        return str(side.store.blob_path(digest))
    return side._blob(digest)


def _corrupt(url: str, digest: str) -> None:
    fs, _ = fsspec.core.url_to_fs(url if "://" in url else f"file://{url}")
    path = _blob_path(url, digest)
    data = bytearray(fs.cat_file(path))
    data[-1] ^= 0xFF
    if not url.startswith("memory"):
        Path(path).chmod(0o644)  # blobs are read-only on disk
    fs.pipe_file(path, bytes(data))


def test_push_then_pull_round_trips_the_set_and_a_second_push_sends_nothing(tmp_path: Path, remote: str) -> None:
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    digest = _put(a, "synthetic", "s", 0)
    res = rm.push(a, remote, ["synthetic/s"])
    assert res.refs == ["synthetic/s:v1"] and res.blobs_sent == 1 and res.bytes_sent > 0
    assert _remote_refs(remote) == {"synthetic/s": {"1": digest}}
    again = rm.push(a, remote, ["synthetic/s"])  # dedup: everything is there already
    assert (again.blobs_sent, again.bytes_sent, again.refs, again.refs_already) == (0, 0, [], ["synthetic/s:v1"])

    got = rm.pull(b, remote, ["synthetic/s:v1"])
    assert got.refs == ["synthetic/s:v1"] and got.blobs_sent == 1
    _, ta, ma = a.load("synthetic/s")
    art, tb, mb = b.load("synthetic/s")
    assert art.digest == digest and ma == mb and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert verify(b).ok
    assert rm.pull(b, remote, ["synthetic/s"]).blobs_sent == 0


def test_a_corrupted_remote_blob_is_refused_on_pull_and_nothing_becomes_visible(tmp_path: Path, remote: str) -> None:
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    digest = _put(a, "synthetic", "s", 0)
    rm.push(a, remote, ["synthetic/s"])
    _corrupt(remote, digest)
    with pytest.raises(DDToolError, match=f"blob {digest[:12]} does not match its digest"):
        rm.pull(b, remote, ["synthetic/s"])
    assert b.list() == [] and list(b.iter_blob_digests()) == []


def test_an_interrupted_push_leaves_no_ref_and_a_rerun_sends_only_the_rest(tmp_path: Path, remote: str,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    a = Store(tmp_path / "a")
    digests = {_put(a, "synthetic", f"s{i}", i) for i in range(3)}
    side_type = type(rm.open_remote(remote))
    real = side_type.write_blob
    calls = []

    def fail_on_second(self, digest: str, data: bytes) -> None:  # type: ignore[no-untyped-def]
        calls.append(digest)
        if len(calls) == 2:
            raise OSError("connection reset")
        real(self, digest, data)

    monkeypatch.setattr(side_type, "write_blob", fail_on_second)
    with pytest.raises(DDToolError, match="failed \\(OSError: connection reset\\); no new ref is visible: rerun"):
        rm.push(a, remote, ["synthetic/s0", "synthetic/s1", "synthetic/s2"])
    assert _remote_refs(remote) == {}  # one blob arrived, no ref names it
    monkeypatch.setattr(side_type, "write_blob", real)
    res = rm.push(a, remote, ["synthetic/s0", "synthetic/s1", "synthetic/s2"])
    assert (res.blobs_sent, res.blobs_already) == (2, 1)
    assert {d for vs in _remote_refs(remote).values() for d in vs.values()} == digests


def test_an_interrupted_pull_leaves_no_ref_and_a_rerun_completes(tmp_path: Path, remote: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    for i in range(2):
        _put(a, "synthetic", f"s{i}", i)
    rm.push(a, remote, ["synthetic/s0", "synthetic/s1"])
    real = rm.StoreSide.write_blob
    monkeypatch.setattr(rm.StoreSide, "write_blob", lambda self, d, data: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        rm.pull(b, remote, ["synthetic/s0", "synthetic/s1"])
    assert b.list() == []
    monkeypatch.setattr(rm.StoreSide, "write_blob", real)
    assert rm.pull(b, remote, ["synthetic/s0", "synthetic/s1"]).refs == ["synthetic/s0:v1", "synthetic/s1:v1"]
    assert verify(b).ok


def test_a_conflicting_ref_is_refused_in_one_line_until_force(tmp_path: Path, remote: str) -> None:
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    ours = _put(a, "synthetic", "s", 0)
    theirs = _put(b, "synthetic", "s", 1)  # the same name made elsewhere
    rm.push(b, remote, ["synthetic/s"])
    with pytest.raises(DDToolError) as exc:
        rm.push(a, remote, ["synthetic/s"])
    msg = str(exc.value)
    assert "synthetic/s:v1" in msg and "--force" in msg and "\n" not in msg
    assert _remote_refs(remote) == {"synthetic/s": {"1": theirs}}
    assert theirs[:12] in msg and ours[:12] in msg
    with pytest.raises(DDToolError, match="synthetic/s:v1.*--force"):  # and the other way round
        rm.pull(a, remote, ["synthetic/s"])
    assert a.resolve("synthetic/s").digest == ours
    assert rm.push(a, remote, ["synthetic/s"], force=True).refs == ["synthetic/s:v1"]
    assert _remote_refs(remote) == {"synthetic/s": {"1": ours}}


def test_lineage_carries_the_pool_the_run_records_and_their_checkpoints(tmp_path: Path, remote: str) -> None:
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    pool = _put(a, "pool", "p", 10, {"ddtool.kind": "pool"})
    teacher = _put(a, "pool", "teacher", 11)
    other = _put(a, "synthetic", "unrelated", 12)
    ckpt = a.put_blob({"images": torch.zeros(2)}, {"ddtool.kind": "checkpoint", "ddtool.iteration": "1"})
    s = _put(a, "synthetic", "s", 0, {"ddtool.parents": json.dumps([pool])})
    made = {"id": "20261207-000000-distill-aaaaaa", "command": "distill", "status": "complete",
            "inputs": [{"ref": "pool/p:v1", "digest": pool, "kind": "pool", "role": "pool"}],
            "outputs": [{"ref": "synthetic/s:v1", "digest": s, "kind": "synthetic", "role": "synthetic"}],
            "checkpoints": [{"iteration": 1, "digest": ckpt}]}
    evaluated = {"id": "20261207-000001-eval-bbbbbb", "command": "eval", "status": "complete",
                 "inputs": [{"ref": "synthetic/s:v1", "digest": s, "kind": "synthetic", "role": "synthetic"},
                            {"ref": "pool/teacher:v1", "digest": teacher, "kind": "pool", "role": "teacher"}],
                 "metrics": {"mean": 0.5, "std": 0.1, "repeats": 2, "net": "convnet", "protocol": "dc"}}
    unrelated = {"id": "20261207-000002-eval-cccccc", "command": "eval", "status": "complete",
                 "inputs": [{"ref": "synthetic/unrelated:v1", "digest": other, "kind": "synthetic"}]}
    pretrained = {"id": "20261206-000000-pretrain-dddddd", "command": "pretrain", "status": "complete",
                  "outputs": [{"ref": "pool/p:v1", "digest": pool, "kind": "pool", "role": "pool"}]}
    for rec in (made, evaluated, unrelated, pretrained):
        a.write_run(rec)

    bare = rm.push(a, remote, ["synthetic/s"])
    assert (bare.refs, bare.runs_sent) == (["synthetic/s:v1"], 0)
    res = rm.push(a, remote, ["synthetic/s"], lineage=True)
    assert res.refs == ["pool/p:v1", "pool/teacher:v1"] and res.runs_sent == 3  # the pool's pretrain too
    assert res.blobs_sent == 3  # pool, teacher, checkpoint: the set went first
    got = rm.pull(b, remote, ["synthetic/s"], lineage=True)
    assert sorted(r["id"] for r in b.runs()) == [pretrained["id"], made["id"], evaluated["id"]]
    assert got.refs == ["pool/p:v1", "pool/teacher:v1", "synthetic/s:v1"]
    assert b.blob_path(ckpt).exists() and not b.blob_path(other).exists()
    report = verify(b)
    assert report.ok and report.unreferenced == [], report.problems
    assert b.lineage(s, depth=2)["made_from"]["pool"][0]["ref"] == "pool/p:v1"


def test_a_trajectories_index_travels_with_its_experts(tmp_path: Path, remote: str) -> None:
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    experts = [a.put_blob({"params": torch.full((3,), float(i))}, {"ddtool.kind": "expert"}) for i in range(2)]
    a.put("trajectories", "t", {"marker": torch.zeros(1)}, {"ddtool.experts": json.dumps(experts)})
    rm.push(a, remote, ["trajectories/t"])
    res = rm.pull(b, remote, ["trajectories/t"])
    assert res.blobs_sent == 3 and all(b.blob_path(d).exists() for d in experts)
    assert verify(b).ok


def test_all_mirrors_every_ref_and_run_record(tmp_path: Path, remote: str) -> None:
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    s = _put(a, "synthetic", "s", 0)
    _put(a, "pool", "p", 1)
    a.write_run({"id": "20261207-000001-eval-bbbbbb", "command": "eval",
                 "inputs": [{"ref": "synthetic/s:v1", "digest": s, "kind": "synthetic"}]})
    rm.push(a, remote, [], everything=True)
    res = rm.pull(b, remote, [], everything=True)
    assert res.refs == ["pool/p:v1", "synthetic/s:v1"] and res.runs_sent == 1
    assert verify(b).ok


def test_bad_requests_are_one_line_usage_errors(tmp_path: Path, remote: str) -> None:
    a = Store(tmp_path / "a")
    _put(a, "synthetic", "s", 0)
    with pytest.raises(UsageError, match="has no 'synthetic/nope'"):
        rm.push(a, remote, ["synthetic/nope"])
    with pytest.raises(UsageError, match="has no synthetic/s:v3; it has v1"):
        rm.push(a, remote, ["synthetic/s:v3"])
    with pytest.raises(UsageError, match="--all"):
        rm.push(a, remote, [])
    with pytest.raises(UsageError, match="has no 'synthetic/s'"):
        rm.pull(a, remote, ["synthetic/s"])  # nothing pushed yet


def test_an_unknown_protocol_names_the_package_to_install() -> None:
    with pytest.raises(UsageError, match="cannot open remote 'nosuchproto://x'"):
        rm.open_remote("nosuchproto://x")


def test_a_corrupted_local_blob_is_not_pushed(tmp_path: Path, remote: str) -> None:
    a = Store(tmp_path / "a")
    digest = _put(a, "synthetic", "s", 0)
    path = a.blob_path(digest)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the tensor data: the header still reads
    path.write_bytes(bytes(data))
    with pytest.raises(DDToolError, match=f"blob {digest[:12]} does not match its digest"):
        rm.push(a, remote, ["synthetic/s"])
    assert _remote_refs(remote) == {} and digest not in rm.open_remote(remote).blob_digests()


def test_a_run_record_held_with_other_content_is_refused_until_force(tmp_path: Path, remote: str) -> None:
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    s = _put(a, "synthetic", "s", 0)
    rec = {"id": "20261207-000001-eval-bbbbbb", "command": "eval", "status": "complete",
           "inputs": [{"ref": "synthetic/s:v1", "digest": s, "kind": "synthetic", "role": "synthetic"}]}
    a.write_run(rec)
    rm.push(a, remote, ["synthetic/s"], lineage=True)
    b.put_blob_bytes(a.blob_path(s).read_bytes())
    b.write_run({**rec, "status": "failed"})
    with pytest.raises(DDToolError, match="run record 20261207-000001-eval-bbbbbb with other content.*--force"):
        rm.pull(b, remote, ["synthetic/s"], lineage=True)
    assert b.run(rec["id"])["status"] == "failed" and b.list() == []
    assert rm.pull(b, remote, ["synthetic/s"], lineage=True, force=True).runs_sent == 1
    assert b.run(rec["id"])["status"] == "complete"
