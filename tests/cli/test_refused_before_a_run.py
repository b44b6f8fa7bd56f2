"""Every input is checked before a run record is created (issue 22): a refused pretrain, distill,
eval, report or import exits 2 with one line and leaves the store byte-for-byte as it was, not
even a ``failed`` run record behind. The inputs here are the ones that used to be found only
inside the run: names looked up in a registry (``--net``, an uninstalled plugin's network that a
set records), augmentation strategies, artifact names.

The store is compared by the SHA-256 of every file under its root, the lock file included.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from ddtool.store import Store

RUN = "20260101-000000-distill-abcdef"  # a distill run whose final set records an uninstalled plugin's net


def hashes(root: Path) -> dict[str, str]:
    """Every file under ``root`` (and every folder, as an entry of its own) with its SHA-256."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def seeded(store: Store, digits, put_set) -> Store:  # type: ignore[no-untyped-def]
    """A store with a real set (synthetic/s), a set whose network comes from a plugin that is not
    installed (synthetic/plugged, made by the distill run RUN) and a complete eval run record."""
    put_set(store, digits, "s")
    tensors, meta = store.read_blob(store.resolve("synthetic/s").digest)
    plugged = store.put("synthetic", "plugged", tensors,
                        {**meta, "ddtool.net": json.dumps({"name": "gonenet", "options": {}})})
    store.write_run({"id": RUN, "command": "distill", "status": "complete", "checkpoints": [],
                     "recipe": {"data": {"dataset": "digits"}}, "metrics": {"iterations": 1},
                     "outputs": [{"ref": plugged.ref, "digest": plugged.digest, "kind": "synthetic"}]})
    store.write_run({"id": "r1", "command": "eval", "status": "complete", "outputs": [],
                     "inputs": [{"digest": store.resolve("synthetic/s").digest, "ref": "synthetic/s"}]})
    return store


def npz(tmp: Path) -> Path:
    path = tmp / "other-tool.npz"
    np.savez(path, images=np.zeros((10, 1, 8, 8), dtype=np.float32), labels=np.arange(10))
    return path


def narrow_buffer(tmp: Path) -> Path:
    """An expert buffer as MTT's buffer.py saves it, of a ConvNet of width 8 on digits."""
    import torch

    from ddtool.lookup import build_net, load_dataset
    from ddtool.nets import NetSpec

    d = load_dataset("digits")
    net = build_net(NetSpec("convnet", {"width": 8, "norm": "instance"}), d.channels, d.num_classes, d.resolution)
    torch.save([[[p.detach() for p in net.parameters()]] * 3], tmp / "replay_buffer_0.pt")
    return tmp


FAST = ["--set", "net.width=8", "--set", "pretrain.n=1", "--set", "pretrain.epochs=1"]  # were anything to start
EVAL_FAST = ["--epochs", "1", "--repeats", "1"]
Case = tuple[str, list[str], str, "Callable[[Path], Path] | None"]
CASES: list[Case] = [
    # the issue: the net was refused only after the run record was written
    ("pretrain-net", ["pretrain", "--dataset", "digits", "--net", "nosuchnet", *FAST],
     r"unknown architecture 'nosuchnet'", None),
    ("pretrain-trajectories-net", ["pretrain", "--trajectories", "--dataset", "digits", "--set", "net.name=nosuchnet",
                                   *FAST], r"unknown architecture 'nosuchnet'", None),
    ("pretrain-augment", ["pretrain", "--dataset", "digits", "--set", 'pretrain.augment="color_bogus"', *FAST],
     r"unknown augmentation 'bogus'", None),
    ("pretrain-trajectories-augment", ["pretrain", "--trajectories", "--dataset", "digits", "--set",
                                       'pretrain.augment="bogus"', *FAST], r"unknown augmentation 'bogus'", None),
    # registries at distillation: method, selection, schedule, net; and the augmentation
    ("distill-method", ["distill", "--dataset", "digits", "--method", "nosuchmethod"], r"unknown method 'nosuchmethod'",
     None),
    ("distill-selection", ["distill", "--dataset", "digits", "--set", 'distill.selection="nosuch"'],
     r"unknown selection( strategy)? 'nosuch'", None),
    ("distill-schedule", ["distill", "--dataset", "digits", "--set", 'distill.schedule="nosuch"'],
     r"unknown (perturbation )?schedule 'nosuch'", None),
    ("distill-net", ["distill", "--dataset", "digits", "--set", "net.name=nosuchnet"], r"unknown architecture 'nosuchnet'",
     None),
    ("distill-augment", ["distill", "--dataset", "digits", "--set", 'distill.augment="bogus"'],
     r"unknown augmentation 'bogus'", None),
    # evaluation: the augmentation, the recipe's [net] for the full-data bound, a set's uninstalled plugin net
    ("eval-augment", ["eval", "synthetic/s", "--set", 'eval.augment="bogus"', *EVAL_FAST],
     r"unknown augmentation 'bogus'", None),
    ("eval-full-data-net", ["eval", "--full-data", "--dataset", "digits", "--set", "net.name=nosuchnet", *EVAL_FAST],
     r"unknown architecture 'nosuchnet'", None),
    ("eval-plugin-net", ["eval", "synthetic/plugged", *EVAL_FAST], r"unknown architecture 'gonenet'", None),
    ("eval-checkpoints-plugin-net", ["eval", RUN, "--checkpoints", "--no-flops", *EVAL_FAST],
     r"unknown architecture 'gonenet'", None),
    # report: every set is checked before the first is evaluated
    ("report-augment", ["report", "synthetic/s", "--set", 'eval.augment="bogus"', *EVAL_FAST],
     r"unknown augmentation 'bogus'", None),
    ("report-second-set-plugin-net", ["report", "synthetic/s", "synthetic/plugged", *EVAL_FAST, "--full-epochs", "1",
                                      "--baseline-subsets", "1"], r"unknown architecture 'gonenet'", None),
    ("report-teacher", ["report", "synthetic/s", "--teacher", "pool/none", *EVAL_FAST, "--full-epochs", "1",
                        "--baseline-subsets", "1"], r"--teacher 'pool/none': unknown ref", None),
    # dataset names (looked up before the data is loaded)
    ("pretrain-dataset", ["pretrain", "--dataset", "nosuchdata", *FAST], r"unknown dataset 'nosuchdata'", None),
    ("eval-full-data-dataset", ["eval", "--full-data", "--dataset", "nosuchdata", *EVAL_FAST],
     r"unknown dataset 'nosuchdata'", None),
    # import: the artifact name
    ("import-name", ["store", "import", "{x}", "--dataset", "digits", "--name", "../escape"],
     r"invalid artifact name '../escape'", npz),
    # import of expert buffers: the network they are declared to be, its shapes
    ("import-trajectories-net", ["store", "import", "{x}", "--kind", "trajectories", "--dataset", "digits",
                                "--net", "nosuchnet"], r"unknown architecture 'nosuchnet'", narrow_buffer),
    ("import-trajectories-shapes", ["store", "import", "{x}", "--kind", "trajectories", "--dataset", "digits",
                                   "--set", "net.width=16"], r"parameter shapes do not match", narrow_buffer),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_refused_command_leaves_the_store_byte_for_byte(cli, seeded: Store, tmp_path: Path, case: Case,  # type: ignore[no-untyped-def]
                                                          one_thread) -> None:
    _, args, message, setup = case
    x = setup(tmp_path) if setup else None
    argv = ["--store", str(seeded.root), *[a.replace("{x}", str(x)) for a in args]]
    runs, before = len(seeded.runs()), hashes(seeded.root)
    assert (seeded.root / ".lock").exists() and runs == 2  # the lock file is hashed too
    res = cli(*argv)
    assert res.exit_code == 2, (argv, res.stdout, res.stderr)
    lines = [line for line in res.stderr.strip().splitlines() if not line.startswith("ddtool: decoding")]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert re.search(message, lines[0]), lines[0]
    assert "Traceback" not in res.stdout + res.stderr
    assert hashes(seeded.root) == before, [r["status"] for r in seeded.runs()]  # not even a failed run record


def test_the_probe_build_leaves_the_rng_where_it_was(digits) -> None:  # type: ignore[no-untyped-def]
    """Checking the net before the run must not move the run's random draws."""
    import torch

    from ddtool.nets import NetSpec
    from ddtool.lookup import check_net

    torch.manual_seed(0)
    check_net(NetSpec("convnet", {"width": 8}), digits.channels, digits.num_classes, digits.resolution)
    after = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(3))
