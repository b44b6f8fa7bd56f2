"""The artifact store (ddtool.store): versions, digests, read-only blobs, refs, run records, lineage."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
import torch

from ddtool.errors import DDToolError, UsageError
from ddtool.store import Store, parse_ref


def test_versions_increase_and_latest_resolves(store: Store) -> None:
    a = store.put("synthetic", "s", {"x": torch.zeros(2)}, {"ddtool.method": "dm"})
    b = store.put("synthetic", "s", {"x": torch.ones(2)}, {"ddtool.method": "dm"})
    assert (a.version, b.version) == (1, 2)
    assert store.resolve("synthetic/s").digest == b.digest
    assert store.resolve("synthetic/s:v1").digest == a.digest
    _, tensors, meta = store.load("synthetic/s:v1")
    assert torch.equal(tensors["x"], torch.zeros(2))  # exact: safetensors round trip
    assert meta["ddtool.kind"] == "synthetic" and meta["ddtool.method"] == "dm"


def test_digest_prefix_resolves_and_ambiguity_is_an_error(store: Store) -> None:
    a = store.put("pool", "p0", {"x": torch.zeros(3)}, {})
    assert store.resolve(a.digest[:12]).name == "p0"
    refs = json.loads(store.refs_path.read_text())
    refs["pool/fake"] = {"1": "abcdef" + "0" * 58, "2": "abcdef" + "1" * 58}
    store.refs_path.write_text(json.dumps(refs))
    with pytest.raises(UsageError, match="ambiguous"):
        store.resolve("abcdef")
    with pytest.raises(UsageError, match="no artifact"):
        store.resolve("fedcba" if not a.digest.startswith("fedcba") else "012345")


def test_identical_content_dedupes_across_processes(store: Store) -> None:
    code = (
        "import sys, torch; from ddtool.store import Store; "
        "print(Store(sys.argv[1]).put_blob({'a': torch.arange(4.), 'b': torch.ones(2)}, "
        "{'z': '1', 'a': '2', 'm': '3', 'k': '4'}))"
    )
    digests = {subprocess.run([sys.executable, "-c", code, str(store.root)], capture_output=True, text=True,
                              check=True).stdout.strip() for _ in range(3)}
    assert len(digests) == 1
    assert len(list(store.iter_blob_digests())) == 1


def test_blobs_are_read_only_and_no_temp_files_remain(store: Store) -> None:
    art = store.put("pool", "p", {"x": torch.zeros(1)}, {})
    assert not (art.path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    assert list(store.tmp.iterdir()) == []


def test_corrupted_blob_is_detected(store: Store) -> None:
    art = store.put("pool", "p", {"x": torch.zeros(8)}, {})
    os.chmod(art.path, 0o644)
    data = bytearray(art.path.read_bytes())
    data[-1] ^= 0xFF
    art.path.write_bytes(bytes(data))
    with pytest.raises(DDToolError, match="does not match its digest"):
        store.load("pool/p")


def test_wrong_kind_is_refused(store: Store) -> None:
    store.put("pool", "p", {"x": torch.zeros(1)}, {})
    with pytest.raises(UsageError, match="is a pool artifact, but a synthetic"):
        store.resolve("pool/p", kind="synthetic")


def test_remove_one_version_keeps_the_other_and_frees_its_blob(store: Store) -> None:
    a = store.put("synthetic", "s", {"x": torch.zeros(2)}, {})
    b = store.put("synthetic", "s", {"x": torch.ones(2)}, {})
    store.remove("synthetic/s:v1")
    assert not a.path.exists() and b.path.exists()
    assert store.resolve("synthetic/s").version == 2
    with pytest.raises(UsageError, match="no version v1"):
        store.resolve("synthetic/s:v1")
    store.remove("synthetic/s")
    assert store.list() == []


def test_run_records_round_trip_lineage(store: Store) -> None:
    pool = store.put("pool", "p", {"x": torch.zeros(1)}, {})
    syn = store.put("synthetic", "s", {"x": torch.ones(1)}, {})
    store.write_run({"id": "r1", "command": "distill", "inputs": [{"digest": pool.digest, "ref": pool.ref}],
                     "outputs": [{"digest": syn.digest, "ref": syn.ref}]})
    made, used = store.lineage(syn.digest)
    assert [r["id"] for r in made] == ["r1"] and used == []
    made, used = store.lineage(pool.digest)
    assert made == [] and [r["id"] for r in used] == ["r1"]
    on_disk = json.loads((store.runs_dir / "r1.json").read_text())
    assert on_disk["inputs"][0]["digest"] == pool.digest and on_disk["outputs"][0]["digest"] == syn.digest


@pytest.mark.parametrize("bad", ["../x", "pool/../etc", "pool/a b", "pool/.hidden", "/abs/path", "pool/x:v0",
                                 "model/x", "abc"])
def test_bad_refs_and_names_are_rejected(bad: str) -> None:
    with pytest.raises(UsageError):
        parse_ref(bad)


def test_put_rejects_escaping_names(store: Store) -> None:
    with pytest.raises(UsageError, match="invalid artifact name"):
        store.put("pool", "../../evil", {"x": torch.zeros(1)}, {})
    assert not (store.root.parent / "evil").exists()


def test_lineage_follows_pools_and_evals_as_plain_dicts(store: Store) -> None:
    pool = store.put("pool", "p", {"x": torch.zeros(1)}, {"ddtool.dataset": "digits", "ddtool.classes": "a,b"})
    syn = store.put("synthetic", "s", {"x": torch.ones(1)}, {"ddtool.dataset": "digits", "ddtool.shape": "1x8x8",
                                                               "ddtool.parents": json.dumps([pool.digest])})
    store.write_run({"id": "r2", "command": "eval", "inputs": [{"digest": syn.digest, "ref": syn.ref}],
                     "outputs": [], "metrics": {"mean": 0.5, "std": 0.0, "net": "convnet", "accuracies": [0.5]}})
    info = store.lineage(syn.digest, depth=2)
    assert info["ref"] == "synthetic/s:v1" and info["kind"] == "synthetic"
    assert info["made_from"]["dataset"] == {"name": "digits", "shape": "1x8x8", "classes": None}
    # no run record made the set: its metadata's parent, named by its ref
    assert info["made_from"]["pool"] == [{"ref": "pool/p:v1", "digest": pool.digest, "made_from": {
        "dataset": {"name": "digits", "shape": None, "classes": 2}, "pool": []}}]
    assert info["made_into"] == [{"run": "r2", "command": "eval", "status": None,
                                  "metrics": {"mean": 0.5, "std": 0.0, "net": "convnet"}}]
    json.dumps(info)  # plain data: what 'store show --tree --json' prints
    store.remove("pool/p")  # a parent no ref names any more: its digest stands in
    assert store.lineage(syn.digest, depth=2)["made_from"]["pool"] == [{"ref": pool.digest[:12], "digest": pool.digest}]
