"""bench.idc_reference_step: its patches rewrite what a CPU run needs and nothing else, the shared
extraction helper refuses a reference that changed, and the table's ratios are the reference's
step over each side's. No reference code is needed: the files are made up here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.idc_reference_step import PATCHES, table
from bench.reference_code import extract_patched


def _patched(text: str) -> str:
    for _, pattern, repl, _, _ in PATCHES:
        text = re.sub(pattern, repl if callable(repl) else (lambda _m, r=repl: r), text)
    return text


def test_the_patches_move_cuda_to_cpu_and_leave_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    src = ("x = x.cuda()\nm = Net().cuda()\nt = torch.tensor(v, device='cuda')\ndef f(device=\"cuda\"): pass\n"
           "w = np.int(W * r)\nk = np.int64(3)\nname = 'cudann'\n")
    out = _patched(src)
    assert "cuda()" not in out and "'cuda'" not in out and '"cuda"' not in out
    assert "x = x.cpu()" in out and "device='cpu'" in out and "def f(device='cpu')" in out
    assert "w = int(W * r)" in out and "np.int64(3)" in out  # only the removed alias
    assert "'cudann'" in out  # a longer string is not a device
    monkeypatch.setitem(sys.modules, "efficientnet_pytorch", None)  # absent, as in the environment
    ns: dict = {}
    exec(_patched("from efficientnet_pytorch import EfficientNet\n"), ns)  # runs without the package
    assert ns["EfficientNet"] is None


def _repo(tmp_path: Path, text: str) -> str:
    repo = tmp_path / "mirror"
    repo.mkdir()
    (repo / "a.py").write_text(text)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "a.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True)
    return str(repo)


def test_extraction_refuses_a_count_that_changed_and_is_idempotent(tmp_path: Path) -> None:
    mirror = _repo(tmp_path, "a.cuda()\nb.cuda()\n")
    patch = [("*.py", r"\.cuda\(\)", ".cpu()", 2, "cpu")]
    log = extract_patched(tmp_path / "ok", mirror, "HEAD", ["a.py"], patch, "owner")
    assert (tmp_path / "ok" / "a.py").read_text() == "a.cpu()\nb.cpu()\n"
    assert extract_patched(tmp_path / "ok", mirror, "HEAD", ["a.py"], patch, "owner") == log  # the marker
    with pytest.raises(SystemExit, match="matched 2 times .* expected 3"):
        extract_patched(tmp_path / "bad", mirror, "HEAD", ["a.py"], [(*patch[0][:3], 3, "cpu")], "owner")


def test_the_table_sums_the_parts_and_divides_the_reference_step() -> None:
    # two rounds; the medians of two are their means
    times = {"ref_match": [20.0, 20.0], "ref_network": [18.0, 22.0], "loop": [15.0, 15.0], "network": [16.0, 18.0],
             "compiled": [10.0, 10.0], "network_compiled": [9.0, 11.0]}
    rows = table(times).splitlines()
    assert len(rows) == 5 and rows[1] == "|---|---|---|---|---|---|"
    assert rows[2].endswith("| 20.000 | 20.000 | 40.000 | **1.00x** | 1.00x (1.00–1.00) |")
    # round by round: 38 / 31 = 1.23 and 42 / 33 = 1.27, not the ratio of the medians (40 / 32 = 1.25)
    assert rows[3].endswith("| 15.000 | 17.000 | 32.000 | **1.25x** | 1.25x (1.23–1.27) |")
    assert rows[4].endswith("| 10.000 | 10.000 | 20.000 | **2.00x** | 2.00x (2.00–2.00) |")
