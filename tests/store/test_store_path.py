"""A store path that cannot be a store folder is refused in one line, exit 2, before any work: an
existing file (``DDTOOL_HOME`` or ``--store`` naming one), a path under a file, and (for commands
that write) a folder that cannot be created or written to. A missing folder is still a store:
empty to ``store ls``, created by the first command that writes."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest

from ddtool.errors import UsageError
from ddtool.store import Store

FIX = "point --store or DDTOOL_HOME at a folder"


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "not-a-store.txt"
    path.write_text("keep me\n")
    return path


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the work a refused command must not reach (loading data, training) as it is reached."""
    import importlib

    import ddtool.runtime.pretrain as pretrain

    pretrain_cmd = importlib.import_module("ddtool.cli.pretrain_cmd")  # the package's attribute is the command

    reached: list[str] = []
    monkeypatch.setattr(pretrain_cmd, "recipe_data", lambda *a, **k: reached.append("data"))
    monkeypatch.setattr(pretrain, "pretrain", lambda *a, **k: reached.append("pretrain"))
    return reached


@pytest.mark.parametrize("how", ["env", "option"])
def test_store_ls_on_a_file_is_refused_not_called_empty(cli, a_file: Path, how: str) -> None:  # type: ignore[no-untyped-def]
    args = ["--store", str(a_file), "store", "ls"] if how == "option" else ["store", "ls"]
    res = cli(*args, env={"DDTOOL_HOME": str(a_file)} if how == "env" else None)
    assert res.exit_code == 2
    assert res.stderr.strip() == f"error: store path {a_file} is a file, not a folder: {FIX}"
    assert res.stdout == "" and "empty" not in res.stderr
    assert a_file.read_text() == "keep me\n"


def test_pretrain_on_a_file_is_refused_before_loading_data_or_training(
    cli, a_file: Path, no_work: list[str]  # type: ignore[no-untyped-def]
) -> None:
    res = cli("pretrain", "--dataset", "digits", env={"DDTOOL_HOME": str(a_file)})
    assert res.exit_code == 2
    assert res.stderr.strip() == f"error: store path {a_file} is a file, not a folder: {FIX}"
    assert no_work == [] and a_file.read_text() == "keep me\n"


@pytest.mark.parametrize("args", [["store", "ls"], ["store", "runs"], ["pretrain", "--dataset", "digits"],
                                  ["distill", "--dataset", "digits"], ["eval", "--full-data", "--dataset", "digits"]])
def test_a_store_under_a_file_is_refused_naming_the_file(cli, a_file: Path, args: list[str]) -> None:  # type: ignore[no-untyped-def]
    root = a_file / "store"
    res = cli("--store", root, *args)
    assert res.exit_code == 2, res.output
    assert res.stderr.strip() == f"error: store path {root} cannot be a folder: {a_file} is a file, not a folder; {FIX}"


def test_a_store_that_cannot_be_written_is_refused_before_work_but_still_read(
    cli, store: Store, put_set, digits, no_work: list[str], monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    put_set(store, digits)  # a store with something in it, then made unwritable (as root, chmod would not stop us)

    def denied(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(store.tmp))

    monkeypatch.setattr(tempfile, "TemporaryFile", denied)
    res = cli("pretrain", "--dataset", "digits")
    assert res.exit_code == 2
    assert res.stderr.strip() == (f"error: store folder {store.root} cannot be written to (Permission denied): "
                                  f"{FIX} you can write to, or fix its permissions")
    assert no_work == []
    listing = cli("store", "ls", "--json")  # a reading command does not need to write
    assert listing.exit_code == 0, listing.stderr
    assert "synthetic/s:v1" in listing.stdout


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes through permissions")
def test_a_folder_without_write_permission_is_refused(cli, tmp_path: Path, no_work: list[str]) -> None:  # type: ignore[no-untyped-def]
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        res = cli("--store", locked / "store", "pretrain", "--dataset", "digits")
        assert res.exit_code == 2
        assert res.stderr.strip().startswith(f"error: store folder {locked / 'store'} cannot be written to (")
        assert no_work == []
    finally:
        locked.chmod(0o755)


def test_a_missing_store_is_empty_to_ls_and_created_by_a_writing_command(
    cli, tmp_path: Path, one_thread  # type: ignore[no-untyped-def]
) -> None:
    root = tmp_path / "new" / "nested" / "store"
    res = cli("--store", root, "store", "ls")
    assert res.exit_code == 0 and "is empty" in res.stdout
    assert not root.exists()  # reading does not create it
    res = cli("--store", root, "--quiet", "pretrain", "--dataset", "digits", "--n", "1", "--epochs", "1",
              "--set", "net.width=8", "--json")
    assert res.exit_code == 0, res.stderr
    assert [a.ref for a in Store(root).list()] == ["pool/digits-convnet:v1"]
    assert [r["status"] for r in Store(root).runs()] == ["complete"]


def test_check_usable_is_a_store_method_library_callers_can_use(a_file: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is a file, not a folder"):
        Store(a_file).check_usable()
    Store(tmp_path / "missing").check_usable()  # reading a missing store: fine, and nothing created
    assert not (tmp_path / "missing").exists()
    Store(tmp_path / "made").check_usable(write=True)
    assert (tmp_path / "made").is_dir() and list((tmp_path / "made" / "tmp").iterdir()) == []
