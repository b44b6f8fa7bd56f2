"""``ddtool store push`` / ``store pull``: the share workflow through the CLI, and its one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ddtool.store import Store

pytest.importorskip("fsspec")


def test_push_on_one_store_then_pull_on_another(put_set, cli, store: Store, digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    put_set(store, digits, "s")
    remote = (tmp_path / "shared").as_uri()
    res = cli("store", "push", "synthetic/s", remote)
    assert res.exit_code == 0, res.stderr
    assert "pushed synthetic/s:v1" in res.stdout and "1 blob sent" in res.stdout
    again = json.loads(cli("store", "push", "synthetic/s", remote, "--json").stdout)
    assert again["blobs_sent"] == 0 and again["refs_already"] == ["synthetic/s:v1"]

    other = tmp_path / "other"
    res = cli("--store", other, "store", "pull", "synthetic/s", remote)
    assert res.exit_code == 0, res.stderr
    assert "pulled synthetic/s:v1" in res.stdout
    assert Store(other).resolve("synthetic/s").digest == store.resolve("synthetic/s").digest
    assert cli("--store", other, "store", "verify").exit_code == 0


def test_a_conflicting_ref_is_one_line_naming_the_ref_and_force(put_set, cli, store: Store, digits,  # type: ignore[no-untyped-def]
                                                                tmp_path: Path) -> None:
    put_set(store, digits, "s")
    remote = str(tmp_path / "shared")
    other = Store(tmp_path / "other")
    put_set(other, digits, "s", ipc=1)  # another set under the same name
    assert cli("--store", other.root, "store", "push", "synthetic/s", remote).exit_code == 0
    res = cli("store", "push", "synthetic/s", remote)
    assert res.exit_code == 1
    line = res.stderr.strip()
    assert "\n" not in line and "synthetic/s:v1" in line and "--force" in line and "Traceback" not in res.output
    assert cli("store", "push", "synthetic/s", remote, "--force").exit_code == 0
    assert Store(remote).resolve("synthetic/s").digest == store.resolve("synthetic/s").digest


@pytest.mark.parametrize("args, code, words", [
    (["store", "push"], 2, "missing REMOTE"),
    (["store", "push", "synthetic/nope", "REMOTE"], 2, "has no 'synthetic/nope'"),
    (["store", "push", "nokind/x", "REMOTE"], 2, "unknown artifact kind"),
    (["store", "pull", "synthetic/s", "nosuchproto://x"], 2, "cannot open remote"),
    (["store", "pull", "synthetic/s", "REMOTE"], 2, "has no 'synthetic/s'"),
])
def test_bad_input_is_one_line(cli, tmp_path: Path, args: list[str], code: int, words: str) -> None:  # type: ignore[no-untyped-def]
    res = cli(*[str(tmp_path / "r") if a == "REMOTE" else a for a in args])
    assert res.exit_code == code, (res.stdout, res.stderr)
    assert words in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_export_hf_then_import_the_folder_into_another_store(put_set, cli, store: Store, digits,  # type: ignore[no-untyped-def]
                                                             tmp_path: Path) -> None:
    put_set(store, digits, "s")
    out = tmp_path / "share"
    res = cli("store", "export", "synthetic/s", out, "--format", "hf")
    assert res.exit_code == 0, res.stderr
    assert "as a datasets folder" in res.stdout and "20 PNGs" in res.stdout
    assert (out / "README.md").is_file() and (out / "train" / "metadata.jsonl").is_file()
    other = tmp_path / "other"
    res = cli("--store", other, "store", "import", out, "--json")
    assert res.exit_code == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["same_digest"] and got["digest"] == store.resolve("synthetic/s").digest
    assert Store(other).resolve("synthetic/s").digest == got["digest"]


@pytest.mark.parametrize("args, words", [
    (["store", "export", "synthetic/s", "OUT", "--format", "npz", "--report", "r.json"], "go with --format hf"),
    (["store", "export", "synthetic/s", "OUT", "--format", "hf", "--report", "MISSING"], "--report"),
    (["store", "import", "EMPTY"], "is a folder without README.md"),
    (["store", "import", "x.npz"], "--dataset is needed"),
])
def test_export_hf_and_import_refusals_are_one_line(put_set, cli, store: Store, digits, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                    args: list[str], words: str) -> None:
    put_set(store, digits, "s")
    (tmp_path / "empty").mkdir()
    subst = {"OUT": tmp_path / "out", "MISSING": tmp_path / "missing.json", "EMPTY": tmp_path / "empty"}
    res = cli(*[subst.get(a, a) for a in args])
    assert res.exit_code == 2, (res.stdout, res.stderr)
    assert words in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "out").exists()
