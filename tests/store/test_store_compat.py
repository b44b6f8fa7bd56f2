"""Stores written by ddtool 0.1 keep working: listing, lineage, inspecting, evaluating, verifying.

The fixture (tests/fixtures/store_v0_1, see tests/fixtures/README.md) was made by the code
before the metadata owners existed: its synthetic sets carry ``ddtool.arch``, a key newer
versions no longer write. Rewriting what the owners read back must give the same bytes, so a
set made from the same inputs keeps its digest (less the dropped key) and a pool keeps it exactly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ddtool.nets import NetSpec
from ddtool.pool import Pool
from ddtool.store import Store
from ddtool.store.meta import with_kind
from ddtool.synthetic import SyntheticSet

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store_v0_1"
DIGITS_CLASSES = [str(c) for c in range(10)]
NET = NetSpec("convnet", {"norm": "instance", "width": 8})


@pytest.fixture
def old(store: Store) -> Store:
    """A copy of the ddtool 0.1 store as this test's store (the CLI's too)."""
    shutil.copytree(FIXTURE, store.root)
    return store


def _ok(result):  # type: ignore[no-untyped-def]
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def _run(store: Store, command: str, made: str | None = None) -> dict:  # type: ignore[type-arg]
    return next(r for r in store.runs() if r["command"] == command
                and (made is None or any(o["ref"] == made for o in r.get("outputs", []))))


def test_from_artifact_reads_what_ddtool_0_1_wrote(old: Store) -> None:
    art, tensors, meta = old.load("synthetic/tinyidc")
    assert meta["ddtool.arch"] == "convnet"  # the old, duplicated key is there ...
    syn = SyntheticSet.from_artifact(tensors, meta, art.digest)
    assert (syn.factor, syn.ipc, syn.info.method, syn.info.selection, syn.digest) == (2, 1, "idc", "scratch", art.digest)
    assert syn.net == NET and syn.signature.class_names() == DIGITS_CLASSES and syn.signature.shape == "1x8x8"
    assert syn.info.iterations == 2 and syn.info.seed == 0 and syn.info.parents == ()
    assert len(syn.info.mean or ()) == 1 and len(syn.info.std or ()) == 1
    assert syn.decoded()[0].shape == (40, 1, 8, 8)

    pool_art, pool_tensors, pool_meta = old.load("pool/tinypool")
    pool = Pool.from_artifact(pool_tensors, pool_meta, pool_art.digest)
    assert (len(pool), pool.net, pool.epochs, pool.seed) == (1, NET, 1, 0)
    assert pool.signature.dataset == "digits" and pool.models[0]["epochs"] == 1

    dm = SyntheticSet.from_artifact(*old.load("synthetic/tiny")[1:])
    assert (dm.factor, dm.ipc, dm.info.method, dm.info.selection) == (1, 1, "dm", "random")
    assert dm.info.parents == (pool_art.digest,)


@pytest.mark.parametrize("ref", ["synthetic/tiny", "synthetic/tinyidc"])
def test_rewriting_a_set_gives_its_bytes_less_the_dropped_key(old: Store, ref: str) -> None:
    art, tensors, meta = old.load(ref)
    out_tensors, out_meta = SyntheticSet.from_artifact(tensors, meta, art.digest).to_artifact()
    assert "ddtool.arch" not in out_meta  # ... and is written no more
    assert with_kind("synthetic", out_meta) == {k: v for k, v in meta.items() if k not in ("ddtool.arch", "ddtool.schema")}
    # with the old key put back, the very same blob: every other key and value is byte-identical
    assert old.put_blob(out_tensors, {**with_kind("synthetic", out_meta), "ddtool.arch": "convnet"}) == art.digest


def test_rewriting_a_pool_gives_its_bytes(old: Store) -> None:
    art, tensors, meta = old.load("pool/tinypool")
    out_tensors, out_meta = Pool.from_artifact(tensors, meta, art.digest).to_artifact()
    assert old.put_blob(out_tensors, with_kind("pool", out_meta)) == art.digest


def test_cli_lists_shows_and_inspects_an_old_store(cli, old: Store) -> None:  # type: ignore[no-untyped-def]
    rows = {r["ref"]: r for r in _ok(cli("store", "ls", "--json"))}
    assert set(rows) == {"pool/tinypool:v1", "synthetic/tiny:v1", "synthetic/tinyidc:v1"}
    assert (rows["synthetic/tiny:v1"]["method"], rows["synthetic/tiny:v1"]["ipc"]) == ("dm", "1")
    assert (rows["pool/tinypool:v1"]["n"], rows["pool/tinypool:v1"]["dataset"]) == ("1", "digits")
    listing = cli("store", "ls")
    assert listing.exit_code == 0 and "idc ipc=1" in listing.stdout and "1 model " in listing.stdout

    pool_digest = old.resolve("pool/tinypool").digest
    shown = _ok(cli("store", "show", "synthetic/tiny", "--json"))
    assert shown["parents"] == [pool_digest] and shown["metadata"]["ddtool.factor"] == "1"
    assert [r["command"] for r in shown["made_by"]] == ["distill"] and shown["used_by"][0]["command"] == "eval"
    tree = _ok(cli("store", "show", "synthetic/tiny", "--tree", "--json"))
    assert tree["made_from"]["pool"][0]["digest"] == pool_digest
    assert tree["made_from"]["dataset"] == {"name": "digits", "shape": "1x8x8", "classes": 10}
    assert tree["made_into"][0]["metrics"]["net"] == "convnet"
    drawn = cli("store", "show", "synthetic/tiny", "--tree")
    assert drawn.exit_code == 0 and "pool pool/tinypool:v1" in drawn.stdout
    assert "(method dm, ipc 1, iterations 2)" in drawn.stdout and "% on convnet" in drawn.stdout

    grid = _ok(cli("inspect", "synthetic/tinyidc", "--decoded", "--json"))
    assert grid["classes"] == DIGITS_CLASSES and grid["shape"] == [40, 1, 8, 8]
    header = cli("inspect", "synthetic/tinyidc", "--color", "none")
    assert header.exit_code == 0 and "idc ipc=1 factor=2 on digits" in header.stdout
    pool = _ok(cli("inspect", "pool/tinypool", "--json"))
    assert pool["net"] == {"name": "convnet", "options": {"norm": "instance", "width": 8}} and len(pool["models"]) == 1


def test_cli_evaluates_and_verifies_an_old_store(cli, old: Store) -> None:  # type: ignore[no-untyped-def]
    ev = _ok(cli("-q", "eval", "synthetic/tinyidc", "--epochs", "1", "--repeats", "1", "--json"))
    assert ev[0]["net"] == "convnet" and 0 <= ev[0]["mean"] <= 1  # the net the set records
    run = _run(old, "distill", made="synthetic/tiny:v1")["id"]
    curve = _ok(cli("-q", "eval", run, "--checkpoints", "--epochs", "1", "--repeats", "1", "--no-flops", "--json"))
    assert [p["iteration"] for p in curve[0]["curve"]] == [1, 2] and curve[0]["source_run"] == run
    series = _ok(cli("inspect", run, "--curve", "--json"))
    assert series[0]["xs"] == [1.0, 2.0] and series[0]["name"] == "synthetic/tiny:v1 · dm+random"
    report = _ok(cli("store", "verify", "--json"))
    assert report["ok"] and report["problems"] == [] and report["unreferenced"] == [], report
