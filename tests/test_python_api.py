"""``import ddtool`` from a notebook: the verbs as functions on the CLI's recipes and store, a set as
tensors and a torch Dataset, called as a user would call them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# The example of docs/python-api.md, read from the page as a reader copies it (a tiny budget:
# seconds on a CPU); tests/test_docs.py leaves that page's example to this test.
PAGE = REPO / "docs" / "python-api.md"


def page_example() -> str:
    blocks = re.findall(r"^```python\n(.*?)^```", PAGE.read_text(encoding="utf-8"), re.S | re.M)
    assert len(blocks) == 1, "docs/python-api.md has one Python example"
    return blocks[0]


def test_the_docs_example_runs_and_a_dataloader_iterates_the_set(tmp_path: Path, one_thread) -> None:  # type: ignore[no-untyped-def]
    scope: dict[str, object] = {}
    cwd = os.getcwd()
    os.chdir(tmp_path)  # an empty folder: the example names a shipped recipe, and its store is relative
    try:
        exec(compile(page_example(), "docs/python-api.md", "exec", dont_inherit=True), scope)
    finally:
        os.chdir(cwd)
    from ddtool.store import Store

    store = Store(tmp_path / "nb-store")
    assert {a.ref for a in store.list()} >= {"pool/quickstart:v1", "synthetic/nb-ours:v1"}
    row, syn, images, labels = scope["row"], scope["syn"], scope["images"], scope["labels"]
    assert row.ref == "synthetic/nb-ours:v1" and row.random_subsets == 3 and row.repeats == 2  # type: ignore[attr-defined]
    assert syn.info.selection == "random" and syn.info.parents  # type: ignore[attr-defined]
    assert images.shape == (5, 1, 8, 8) and str(labels.dtype) == "torch.int64"  # type: ignore[attr-defined]
    # every image of the set comes through the loader once per epoch, with its own label
    seen = sorted(int(y) for _, ys in scope["loader"] for y in ys)  # type: ignore[attr-defined]
    assert seen == list(range(10))
    stored, _ = store.read_blob(row.digest)  # type: ignore[attr-defined]
    assert syn.images.equal(stored["images"]) and syn.labels.equal(stored["labels"])  # type: ignore[attr-defined]


def test_evaluate_and_report_share_the_records_and_the_default_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                                                     one_thread) -> None:
    import ddtool

    monkeypatch.setenv("DDTOOL_HOME", str(tmp_path / "home"))  # store=None: the CLI's store
    made = ddtool.distill(None, overrides=["net.width=8", "distill.iterations=2"], name="dm1")
    result = ddtool.evaluate("synthetic/dm1", epochs=2, repeats=2)
    assert len(result.accuracies) == 2 and 0 <= result.mean <= 1
    (row,) = ddtool.report(["synthetic/dm1"], ddtool.Store(tmp_path / "home"), epochs=2, repeats=2,
                           baseline_subsets=1, full_epochs=1)
    assert row.accuracies == result.accuracies and row.eval_runs == [result.run_id]  # read back, not retrained
    loaded = ddtool.load("synthetic/dm1")
    assert loaded.digest == made.artifact.digest and len(loaded) == 10 and len(loaded.dataset()) == 10
    assert loaded.classes == [str(c) for c in range(10)]


def test_errors_are_the_clis_and_import_ddtool_stays_light(tmp_path: Path) -> None:
    import ddtool

    with pytest.raises(ddtool.UsageError, match="unknown ref 'synthetic/nope'"):
        ddtool.load("synthetic/nope", tmp_path / "empty")
    with pytest.raises(ddtool.UsageError, match="is a file"):
        (tmp_path / "f").write_text("x")
        ddtool.report(["synthetic/x"], tmp_path / "f")
    # the verbs are attributes loaded on first use: ``import ddtool`` alone loads no runtime
    probe = "import sys, ddtool; print(any(m.startswith('ddtool.runtime') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert {"pretrain", "distill", "evaluate", "report", "load", "Store"} <= set(dir(ddtool))
