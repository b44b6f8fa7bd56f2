"""Fixtures shared by every test: an isolated store, the CLI, the digits data, tiny recipes, helpers."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

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


@pytest.fixture(scope="session")
def numerics():  # type: ignore[no-untyped-def]
    """tests/numerics.py: tolerances for two reduction orders of one computation (ISA-dependent kernels)."""
    import numerics as module  # tests/ is on sys.path: pytest puts a rootdir conftest's folder there

    return module


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own store; nothing touches the user's real one."""
    root = tmp_path / "store"
    monkeypatch.setenv("DDTOOL_HOME", str(root))
    monkeypatch.setenv("DDTOOL_DATA", str(tmp_path / "data"))  # dataset caches stay in the test's folder
    monkeypatch.setenv("DDTOOL_CACHE", str(tmp_path / "cache"))  # so do measured rates and dry-run estimates
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
    from ddtool.lookup import load_dataset

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


def _snapshot(root: Path) -> dict[str, bytes]:
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.fixture
def store_snapshot() -> Callable[[Path], dict[str, bytes]]:
    """``store_snapshot(root)``: every file of a store with its bytes, for 'nothing was touched' assertions."""
    return _snapshot


@pytest.fixture
def fresh_registries():  # type: ignore[no-untyped-def]
    """Registries built anew for the test (and again after it): plugins it loads do not leak."""
    import ddtool.plugins as plugins

    plugins._registries = None
    yield
    plugins._registries = None


@pytest.fixture
def put_set() -> Callable[..., torch.Tensor]:
    """``put_set(store, digits, name="s", ipc=2, factor=1)``: store a synthetic set of real digits
    (normalised, as distill stores them) and return the stored images."""
    import json

    from ddtool.nets import NetSpec
    from ddtool.synthetic import encode_real

    def put(store: Store, digits, name: str = "s", ipc: int = 2, factor: int = 1) -> torch.Tensor:  # type: ignore[no-untyped-def]
        g = torch.Generator().manual_seed(0)
        xs, ys = [], []
        for c in range(10):
            idx = digits.sample_class(c, ipc * factor * factor, generator=g)
            xs.append(encode_real(digits.normalize(digits.train_images[idx]), factor))
            ys.append(torch.full((ipc,), c, dtype=torch.long))
        images = torch.cat(xs)
        meta = {**digits.signature(), "ddtool.ipc": str(ipc), "ddtool.method": "dm", "ddtool.factor": str(factor),
                "ddtool.mean": json.dumps(list(digits.mean)), "ddtool.std": json.dumps(list(digits.std)),
                "ddtool.net": NetSpec("convnet", {"width": 16}).to_json(), "ddtool.parents": "[]"}
        store.put("synthetic", name, {"images": images, "labels": torch.cat(ys)}, meta)
        return images

    return put


@pytest.fixture
def make_ctx():  # type: ignore[no-untyped-def]
    """``make_ctx(data, method, overrides=(), impl="loop")``: the context ``method`` sees on CPU under
    the default recipe with ConvNet width 16, ipc 2 and ``overrides`` (``--set`` strings), one outer
    iteration, the recipe's selection strategy (scratch), schedule (none) and augmentation."""
    from ddtool.recipe import load_recipe
    from ddtool.runtime.distill.planning import build_context

    def make(data, method, overrides=(), impl="loop"):  # type: ignore[no-untyped-def]
        recipe = load_recipe(None, [f"distill.method={method.name}", "net.width=16", "distill.ipc=2", *overrides])
        return build_context(recipe, data, "cpu", method=method, impl=impl, iterations=1)

    return make


@pytest.fixture
def rel_err() -> Callable[[torch.Tensor, torch.Tensor], float]:
    """``rel_err(a, b)``: |a - b| / |b|. Float32 batched (grouped) convolutions round differently
    from per-class ones: vectorised and looped results are compared in norm."""

    def err(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).norm() / b.norm())

    return err


@pytest.fixture
def denorm_uint8() -> Callable[..., torch.Tensor]:
    """``denorm_uint8(images, digits)``: normalised images back to uint8 pixels, rounded as
    torchvision's ``save_image`` rounds."""

    def to_uint8(images: torch.Tensor, digits) -> torch.Tensor:  # type: ignore[no-untyped-def]
        x = (images * torch.tensor(digits.std).view(1, -1, 1, 1) + torch.tensor(digits.mean).view(1, -1, 1, 1)).clamp(0, 1)
        return x.mul(255).add(0.5).clamp(0, 255).to(torch.uint8)

    return to_uint8


class StopAt:
    """A reporter whose n-th progress advance raises KeyboardInterrupt (Ctrl-C between two steps)."""

    def __init__(self, n: int) -> None:
        self.n, self.seen = n, 0

    def note(self, text: str) -> None:
        pass

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Any]:
        outer = self

        class Task:
            def advance(self, n: int = 1, **fields: Any) -> None:
                outer.seen += n
                if outer.seen == outer.n:
                    raise KeyboardInterrupt

        yield Task()


@pytest.fixture
def stop_at() -> type[StopAt]:
    """:class:`StopAt`, the reporter that interrupts a run at its n-th progress step."""
    return StopAt
