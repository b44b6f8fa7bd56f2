"""A store path that cannot be a store folder is refused in one line, exit 2, before any work: an
existing file (``DDTOOL_HOME`` or ``--store`` naming one), a path under a file, and (for commands
that write) a folder that cannot be created or written to. A missing folder is still a store:
empty to ``store ls``, created by the first command that writes."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

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

    import ddtool.runtime.pretrain.pool_training as pretrain

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


def as_unprivileged(work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``work()``'s result as a user the file permissions apply to. Not root: run in this process.
    Root (sessions, CI), whom permissions do not stop: in a forked child that drops to ``nobody``
    (os.setgroups / os.setgid / os.setuid) and sends the result back. A fork, not a new interpreter:
    Python may live where nobody cannot read it (/root/.pyenv here), and the child needs nothing new
    from disk but the store (a module it had to import would fail it loudly, not pass it)."""
    if os.geteuid() != 0:
        return work()
    try:
        import pwd

        who = pwd.getpwnam("nobody")
        uid, gid = who.pw_uid, who.pw_gid
    except (ImportError, KeyError):
        uid = gid = 65534  # nobody's usual ids; a uid needs no passwd entry to be dropped to
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            out = {"uid": os.geteuid(), **work()}
            code = 0
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the test
            out = {"child error": f"{type(exc).__name__}: {exc}"}
        with os.fdopen(write, "w") as fh:
            json.dump(out, fh)
        os._exit(code)
    os.close(write)
    with os.fdopen(read) as fh:
        text = fh.read()
    os.waitpid(pid, 0)
    result = json.loads(text)
    assert "child error" not in result, result
    assert result.pop("uid") == uid  # it really ran as nobody
    return result


@pytest.fixture
def read_only_folder() -> Iterator[Path]:
    """A folder the test's user (nobody, under root) can read and enter but not write: 0o555. In the
    system temp folder, not tmp_path (/tmp/pytest-of-root is root's alone: nobody could not reach it)."""
    base = Path(tempfile.mkdtemp(prefix="ddtool-readonly-"))
    base.chmod(0o755)
    folder = base / "locked"
    folder.mkdir()
    try:
        yield folder
    finally:
        for p in (folder, *folder.rglob("*")):
            if p.is_dir():
                p.chmod(0o755)
        shutil.rmtree(base)


def _lock(folder: Path) -> None:
    for p in (*folder.rglob("*"), folder):  # files readable, folders enterable, nothing writable
        p.chmod(0o555 if p.is_dir() else 0o444)


@pytest.mark.parametrize("existing", [False, True], ids=["new-store-in-locked-folder", "existing-store-read-only"])
def test_a_folder_without_write_permission_is_refused(
    cli, read_only_folder: Path, no_work: list[str], put_set, digits, existing: bool  # type: ignore[no-untyped-def]
) -> None:
    """Real permissions, no monkeypatching of the check: as an unprivileged user (root drops to nobody)."""
    root = read_only_folder / "store"
    if existing:
        put_set(Store(root), digits)
    if os.geteuid() == 0:  # the child cannot import what it lacks (see as_unprivileged): the commands' imports, now
        warm = read_only_folder.parent / "warm"
        cli("--store", warm, "pretrain", "--dataset", "digits")
        cli("--store", warm, "store", "ls", "--json")
        no_work.clear()
    _lock(read_only_folder)

    def work() -> dict[str, Any]:
        res = cli("--store", root, "pretrain", "--dataset", "digits")
        listing = cli("--store", root, "store", "ls", "--json")
        return {"code": res.exit_code, "stderr": res.stderr, "reached": list(no_work), "raised": repr(res.exception),
                "ls": [listing.exit_code, listing.stdout, listing.stderr + repr(listing.exception)]}

    out = as_unprivileged(work)
    assert out["code"] == 2, out
    assert out["stderr"].strip() == (f"error: store folder {root} cannot be written to (Permission denied): "
                                     f"{FIX} you can write to, or fix its permissions")
    assert out["reached"] == [] and no_work == []  # refused before the data and the training
    code, stdout, stderr = out["ls"]
    assert code == 0, stderr  # reading needs no write permission
    assert ("synthetic/s:v1" in stdout) == existing
    assert root.exists() == existing  # nothing was created


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
