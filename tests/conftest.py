from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ddtool.store import Store

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# Small enough for a 2-core CPU, large enough that DM beats random in the demo-size tests.
TINY = ["net.width=16", "distill.iterations=6", "eval.epochs=8", "eval.repeats=2", "pretrain.n=2",
        "pretrain.epochs=1"]


@pytest.fixture(scope="module")
def one_thread():
    """Tiny kernels: two OpenMP threads on a shared 2-core box are many times slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own store; nothing touches the user's real one."""
    root = tmp_path / "store"
    monkeypatch.setenv("DDTOOL_HOME", str(root))
    monkeypatch.setenv("DDTOOL_DATA", str(tmp_path / "data"))  # dataset caches stay in the test's folder
    monkeypatch.delenv("DDTOOL_PLUGINS", raising=False)
    return root


@pytest.fixture
def store(_isolated_store: Path) -> Store:
    return Store(_isolated_store)


@pytest.fixture
def cli():
    """Run the ddtool CLI in-process; returns click's Result (stdout and stderr apart)."""
    from ddtool.cli import app

    runner = CliRunner()

    def run(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        return runner.invoke(app, [str(a) for a in args], env=env)

    return run


@pytest.fixture(scope="session")
def digits():
    from ddtool.data import load_dataset

    return load_dataset("digits")


@pytest.fixture
def tiny_recipe(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(
        """
name = "tiny"
[data]
dataset = "digits"
[net]
width = 16
[pretrain]
n = 2
epochs = 1
name = "tinypool"
[distill]
method = "dm"
ipc = 1
iterations = 6
[eval]
epochs = 8
repeats = 2
"""
    )
    return path


def store_snapshot(root: Path) -> dict[str, bytes]:
    """Every file of a store with its bytes: for 'nothing was touched' assertions."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock"}
