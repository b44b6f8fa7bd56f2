"""Reliability and safety through the CLI: bad input, store verify and gc.

Bad input (one table): every case exits 2 (usage) or 1 (runtime), names the problem on stderr
without a traceback, and leaves the store byte-for-byte as it was (no run record either: bad input
is rejected before a run starts). Cases already in tests/cli/test_cli.py are not repeated here.
Crashes and concurrent writers: tests/store/test_crash_safety.py.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Callable

import pytest
import torch
from PIL import Image

from ddtool.store import Store


DIGITS_SIG = {"ddtool.dataset": "digits", "ddtool.classes": ",".join(str(c) for c in range(10)),
              "ddtool.shape": "1x8x8"}
TINY_NET = json.dumps({"name": "convnet", "options": {"norm": "instance", "width": 16}}, sort_keys=True)


def _writable(path: Path) -> None:
    os.chmod(path, 0o644)


def truncate_blob(store: Store, ref: str) -> None:
    path = store.resolve(ref).path
    _writable(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_byte(store: Store, ref: str) -> None:
    path = store.resolve(ref).path
    _writable(path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def delete_blob(store: Store, ref: str) -> None:
    store.resolve(ref).path.unlink()


def fake_pool(store: Store, name: str, signature: dict[str, str], net: str = TINY_NET,
              extra: dict[str, str] | None = None) -> None:
    meta = {**signature, "ddtool.n": "1", "ddtool.net": net, "ddtool.models": "[]", **(extra or {})}
    store.put("pool", name, {"m0.w": torch.zeros(1)}, meta)


def ambiguous_refs(store: Store, tmp: Path) -> None:
    refs = json.loads(store.refs_path.read_text())
    refs["pool/fake"] = {"1": "abcdef" + "0" * 58, "2": "abcdef" + "1" * 58}
    store.refs_path.write_text(json.dumps(refs))


def image_folder(root: Path, layout: dict[str, list[tuple[int, int]]], splits: tuple[str, ...] = ("train", "test"),
                 garbage: bool = False) -> Path:
    """root/<split>/<class>/<i>.png grey images of the given (width, height)."""
    for split in splits:
        for cls, sizes in layout.items():
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i, (w, h) in enumerate(sizes):
                if garbage:
                    (folder / f"{i}.png").write_bytes(b"not a png at all")
                else:
                    Image.new("L", (w, h), color=40 * i).save(folder / f"{i}.png")
    return root


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


Setup = Callable[[Store, Path], object]
CASES: list[tuple[str, Setup | None, list[str], int, str, bool]] = [
    # recipe files
    ("toml-syntax", lambda s, t: write(t / "bad.toml", '[distill]\nipc = 1\nmethod = "dm\n'),
     ["distill", "-r", "{x}"], 2, r"not valid TOML.*line 3", True),
    ("unknown-section", lambda s, t: write(t / "r.toml", "[distil]\nipc = 2\n"),
     ["distill", "-r", "{x}"], 2, r"unknown section or key 'distil' \(did you mean 'distill'\?\)", True),
    ("unknown-key-closest", lambda s, t: write(t / "r.toml", "[distill]\nipcc = 2\n"),
     ["distill", "-r", "{x}"], 2, r"unknown key 'ipcc' in \[distill\] \(did you mean 'ipc'\?\)", True),
    ("unknown-top-key", lambda s, t: write(t / "r.toml", 'nmae = "x"\n'),
     ["distill", "-r", "{x}"], 2, r"unknown section or key 'nmae' \(did you mean 'name'\?\)", True),
    ("section-not-table", lambda s, t: write(t / "r.toml", "distill = 3\n"),
     ["distill", "-r", "{x}"], 2, r"\[distill\] must be a table", True),
    # wrong types
    ("type-int-string", lambda s, t: write(t / "r.toml", '[distill]\nipc = "ten"\n'),
     ["distill", "-r", "{x}"], 2, r"distill.ipc must be an integer, got 'ten'", True),
    ("type-int-float", None, ["distill", "--set", "net.width=1.5"], 2, r"net.width must be an integer, got 1.5", True),
    ("type-bool", None, ["distill", "--set", 'data.download="yes"'], 2, r"data.download must be true or false", True),
    ("type-float-string", None, ["eval", "synthetic/s", "--set", 'eval.momentum="fast"'], 2, r"eval.momentum must be a number", True),
    ("type-cli-option", None, ["distill", "--ipc", "ten"], 2, r"Invalid value for '--ipc'", False),
    ("set-syntax", None, ["distill", "--set", "distill.ipc"], 2, r"cannot read --set 'distill.ipc'", True),
    ("set-into-value", None, ["distill", "--set", "distill.ipc.x=1"], 2, r"'ipc' is not a section", True),
    # out-of-range values
    ("ipc-zero", None, ["distill", "--ipc", "0"], 2, r"distill.ipc must be >= 1, got 0", True),
    ("ipc-negative", None, ["distill", "--set", "distill.ipc=-3"], 2, r"distill.ipc must be >= 1, got -3", True),
    ("lr-negative", None, ["distill", "--set", "distill.lr_img=-0.1"], 2, r"distill.lr_img must be > 0", True),
    ("momentum-one", None, ["distill", "--set", "distill.momentum_img=1.0"], 2, r"momentum_img must be in \[0, 1\)", True),
    ("iterations-negative", None, ["distill", "--iterations", "-1"], 2, r"distill.iterations must be >= 0", True),
    ("eval-epochs-zero", None, ["eval", "synthetic/s", "--epochs", "0"], 2, r"eval.epochs must be >= 1, got 0", True),
    ("eval-lr-negative", None, ["eval", "synthetic/s", "--lr", "-1"], 2, r"eval.lr must be > 0", True),
    ("pretrain-epochs-zero", None, ["pretrain", "--epochs", "0"], 2, r"pretrain.epochs must be >= 1, got 0", True),
    ("pretrain-n-zero", None, ["pretrain", "--n", "0"], 2, r"pretrain.n must be >= 1", True),
    # refs
    ("unknown-ref-show", None, ["store", "show", "synthetic/nope"], 2, r"unknown ref 'synthetic/nope'", True),
    ("unknown-version", None, ["inspect", "synthetic/s:v7"], 2, r"'synthetic/s' has no version v7; it has v1", True),
    ("unknown-digest", None, ["inspect", "0000000"], 2, r"no artifact has a digest starting with '0000000'", True),
    ("ambiguous-digest", ambiguous_refs, ["inspect", "abcdef"], 2, r"digest prefix 'abcdef' is ambiguous", True),
    ("wrong-kind-pool-arg", None, ["distill", "--pool", "synthetic/s"], 2,
     r"'synthetic/s' is a synthetic artifact, but a pool artifact is needed", True),
    ("rm-by-digest", None, ["store", "rm", "{digest}"], 2, r"remove by name", True),
    # damaged blobs
    ("truncated-inspect", lambda s, t: truncate_blob(s, "synthetic/s"), ["inspect", "synthetic/s"], 1,
     r"does not match its digest", True),
    ("truncated-show", lambda s, t: truncate_blob(s, "synthetic/s"), ["store", "show", "synthetic/s"], 1,
     r"blob [0-9a-f]{12} is unreadable", True),
    ("truncated-eval", lambda s, t: truncate_blob(s, "synthetic/s"), ["eval", "synthetic/s"], 1,
     r"blob [0-9a-f]{12} is unreadable", True),
    ("truncated-pool", lambda s, t: truncate_blob(s, "pool/tiny"), ["distill", "--pool", "pool/tiny"], 1,
     r"does not match its digest", True),
    ("digest-mismatch-inspect", lambda s, t: flip_byte(s, "synthetic/s"), ["inspect", "synthetic/s"], 1,
     r"blob [0-9a-f]{12} does not match its digest", True),
    ("digest-mismatch-eval", lambda s, t: flip_byte(s, "synthetic/s"), ["eval", "synthetic/s"], 1,
     r"does not match its digest", True),
    ("missing-blob", lambda s, t: delete_blob(s, "synthetic/s"), ["inspect", "synthetic/s"], 1,
     r"blob [0-9a-f]{12} is missing", True),
    ("corrupt-refs-json", lambda s, t: s.refs_path.write_text("{not json"), ["store", "ls"], 1,
     r"store index .*refs.json is corrupt", True),
    ("newer-schema", lambda s, t: s.put("synthetic", "future", {"images": torch.zeros(1)}, {"ddtool.schema": "2"}),
     ["inspect", "synthetic/future"], 1, r"uses schema 2, newer than this ddtool understands \(1\); upgrade", True),
    ("newer-schema-pool", lambda s, t: fake_pool(s, "future", DIGITS_SIG, extra={"ddtool.schema": "9"}),
     ["distill", "--pool", "pool/future"], 1, r"uses schema 9, newer than this ddtool", True),
    # pool vs recipe
    ("pool-other-dataset", lambda s, t: fake_pool(s, "cifar", {**DIGITS_SIG, "ddtool.dataset": "cifar10",
                                                               "ddtool.shape": "3x32x32"}),
     ["distill", "--pool", "pool/cifar"], 2, r"pool 'pool/cifar' was trained on dataset 'cifar10'", True),
    ("pool-other-net", lambda s, t: fake_pool(s, "wide", DIGITS_SIG, net=TINY_NET.replace("16", "128")),
     ["distill", "--pool", "pool/wide"], 2, r"pool 'pool/wide' holds .* networks, but the recipe's \[net\]", True),
    # image folders
    ("imagefolder-not-a-dir", None, ["distill", "--dataset", "imagefolder:/nonexistent/ddtool-data"], 2,
     r"imagefolder path '/nonexistent/ddtool-data' is not a directory", True),
    ("imagefolder-missing-test", lambda s, t: image_folder(t / "f", {"a": [(8, 8)] * 2}, splits=("train",)),
     ["distill", "--dataset", "imagefolder:{x}"], 1, r"image folder '.*test' is missing", True),
    ("imagefolder-no-classes", lambda s, t: (t / "f" / "train").mkdir(parents=True) or t / "f",
     ["distill", "--dataset", "imagefolder:{x}"], 1, r"has no class sub-folders", True),
    ("imagefolder-empty-class", lambda s, t: (image_folder(t / "f", {"a": [(8, 8)] * 2}),
                                              (t / "f" / "train" / "b").mkdir())[0],
     ["distill", "--dataset", "imagefolder:{x}"], 1, r"class folder '.*train/b' holds no images", True),
    ("imagefolder-sizes", lambda s, t: image_folder(t / "f", {"a": [(8, 8), (8, 8)], "b": [(8, 8), (16, 16)]}),
     ["distill", "--dataset", "imagefolder:{x}"], 1, r"image '.*1.png' is \(1, 16, 16\) but earlier ones are \(1, 8, 8\)",
     True),
    ("imagefolder-not-square", lambda s, t: image_folder(t / "f", {"a": [(8, 4)]}),
     ["distill", "--dataset", "imagefolder:{x}"], 1, r"images must be square", True),
    ("imagefolder-undecodable", lambda s, t: image_folder(t / "f", {"a": [(8, 8)]}, garbage=True),
     ["distill", "--dataset", "imagefolder:{x}"], 1, r"cannot decode image", True),
    # path escapes and odd characters
    ("name-escape-distill", None, ["distill", "--name", "../evil"], 2, r"invalid artifact name '../evil'", True),
    ("name-absolute-pretrain", None, ["pretrain", "--name", "/tmp/evil"], 2, r"invalid artifact name '/tmp/evil'", True),
    ("name-odd-chars", None, ["distill", "--name", "a;rm -rf"], 2, r"invalid artifact name 'a;rm -rf'", True),
    ("ref-escape-show", None, ["store", "show", "pool/../../etc"], 2, r"invalid artifact name", True),
    ("ref-absolute", None, ["store", "rm", "/etc/passwd"], 2, r"unknown artifact kind ''", True),
    ("resume-escape", None, ["distill", "--resume", "../x"], 2, r"invalid run id '../x'", True),
    ("resume-absolute", None, ["distill", "--resume", "/etc/passwd"], 2, r"invalid run id '/etc/passwd'", True),
    ("resume-dotdot", None, ["distill", "--resume", ".."], 2, r"invalid run id '..'", True),
    ("resume-glob", None, ["distill", "--resume", "*"], 2, r"invalid run id '\*'", True),
    ("resume-unknown", None, ["distill", "--resume", "20990101-000000-distill-abcdef"], 2,
     r"unknown run '20990101-000000-distill-abcdef'", True),
    ("resume-with-set", None, ["distill", "--resume", "r1", "--set", "distill.ipc=2"], 2,
     r"--resume continues a run with its recorded recipe; drop --set", True),
    # files that are not what they claim to be
    ("recipe-not-utf8", lambda s, t: (t / "latin1.toml").write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
     and t / "latin1.toml", ["distill", "-r", "{x}"], 2, r"recipe '.*latin1.toml' is not UTF-8 text", True),
    ("corrupt-run-record-curve", lambda s, t: (s.runs_dir / "20260101-000000-distill-abcdef.json").write_text("{oops"),
     ["inspect", "20260101-000000-distill-abcdef", "--curve"], 1,
     r"run record .*20260101-000000-distill-abcdef.json is corrupt .*'ddtool store verify'", True),
    ("corrupt-run-record-checkpoints", lambda s, t: (s.runs_dir / "20260101-000000-distill-abcdef.json").write_text("[1]"),
     ["eval", "20260101-000000-distill-abcdef", "--checkpoints"], 1, r"is not a JSON object; see 'ddtool store verify'",
     True),
    # --png paths PIL cannot pick a format for
    ("png-no-extension", lambda s, t: t / "grid", ["inspect", "synthetic/s", "--png", "{x}"], 2,
     r"--png writes a PNG file: give a path ending in .png \(got no extension", True),
    ("png-unknown-extension", lambda s, t: t / "grid.xyz", ["inspect", "synthetic/s", "--png", "{x}"], 2,
     r"give a path ending in .png \(got '.xyz'", True),
    ("png-curve-extension", lambda s, t: t / "chart.pgn", ["inspect", "r1", "--curve", "--png", "{x}"], 2,
     r"give a path ending in .png \(got '.pgn'", True),
    # devices
    ("device-cuda-index", None, ["distill", "--device", "cuda:99"], 2,
     r"--device cuda:99(: there (is|are) only \d+ CUDA device| asked for, but no CUDA device is available)", True),
    ("device-cuda-garbage", None, ["distill", "--device", "cuda:x"], 2, r"unknown device 'cuda:x'.*cuda:N", True),
]


@pytest.fixture
def seeded(store: Store) -> Store:
    """A store with a pool, a synthetic set and one run record (what the cases act on)."""
    fake_pool(store, "tiny", DIGITS_SIG)
    syn = store.put("synthetic", "s", {"images": torch.zeros(10, 1, 8, 8), "labels": torch.arange(10)},
                    {"ddtool.dataset": "digits"})
    store.write_run({"id": "r1", "command": "eval", "inputs": [{"digest": syn.digest, "ref": syn.ref}],
                     "outputs": [], "status": "complete"})
    return store


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_cleanly_and_leaves_the_store_alone(store_snapshot, cli, seeded: Store, tiny_recipe: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch, case) -> None:  # type: ignore[no-untyped-def]
    _, setup, args, code, message, one_line = case
    monkeypatch.setenv("DDTOOL_DATA", str(tmp_path / "data"))  # decoded-image caches stay in the test's folder
    digest = seeded.resolve("synthetic/s").digest
    x = setup(seeded, tmp_path) if setup else None
    argv = [a.replace("{x}", str(x)).replace("{digest}", digest[:10]) for a in args]
    if argv[0] in ("distill", "pretrain") and "-r" not in argv and "--resume" not in argv:
        argv += ["-r", str(tiny_recipe)]  # the tiny settings, so nothing slow could start
    before = store_snapshot(seeded.root)
    res = cli(*argv)
    assert res.exit_code == code, (argv, res.stdout, res.stderr)
    assert re.search(message, res.stderr), res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    if one_line:  # (a first-use "ddtool: decoding ..." progress note may precede the error)
        lines = [line for line in res.stderr.strip().splitlines() if not line.startswith("ddtool: decoding")]
        assert len(lines) == 1, res.stderr
    assert store_snapshot(seeded.root) == before  # nothing written, not even a run record


def test_cuda_index_is_checked_against_the_device_count(monkeypatch: pytest.MonkeyPatch) -> None:
    from ddtool.errors import UsageError
    from ddtool.runtime.supervised import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(UsageError, match=r"only 2 CUDA devices \(cuda:0..cuda:1\)"):
        resolve_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UsageError, match="no CUDA device is available"):
        resolve_device("cuda:0")
    assert resolve_device("cpu") == torch.device("cpu")


def test_bad_input_table_covers_the_issue() -> None:
    assert len(CASES) >= 50


def test_verify_passes_on_a_healthy_store_and_reports_counts(cli, seeded: Store) -> None:  # type: ignore[no-untyped-def]
    res = cli("store", "verify")
    assert res.exit_code == 0, res.stderr
    assert res.stdout.strip() == "2 blobs, 2 refs, 1 runs: ok"
    out = json.loads(cli("store", "verify", "--json").stdout)
    assert out["ok"] and (out["blobs"], out["refs"], out["runs"]) == (2, 2, 1) and out["problems"] == []


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda s: flip_byte(s, "synthetic/s"), r"blob [0-9a-f]{12} does not match its digest"),
        (lambda s: truncate_blob(s, "pool/tiny"), r"blob [0-9a-f]{12} does not match its digest"),
        (lambda s: delete_blob(s, "pool/tiny"), r"ref pool/tiny:v1 points to blob [0-9a-f]{12}, which is missing"),
        (lambda s: delete_blob(s, "synthetic/s"), r"run r1: input synthetic/s:v1: blob [0-9a-f]{12} is missing"),
        (lambda s: s.refs_path.write_text("[1, 2"), r"refs.json is not readable JSON"),
        (lambda s: (s.runs_dir / "r2.json").write_text("{"), r"run record runs/r2.json is not readable JSON"),
        (lambda s: (s.runs_dir / "r3.json").write_text('{"id": "other"}'), r"runs/r3.json has id 'other'"),
        (lambda s: s.write_run({"id": "r4", "checkpoints": [{"iteration": 2, "digest": "ab" * 32}]}),
         r"run r4: checkpoint [0-9a-f]{12}: blob abababababab is missing"),
        (lambda s: s.put("synthetic", "future", {"x": torch.zeros(1)}, {"ddtool.schema": "3"}),
         r"uses schema 3, newer than this ddtool"),
        (lambda s: (s.blobs / "zz").mkdir() or (s.blobs / "zz" / "junk").write_text("x"),
         r"stray file blobs/zz/junk is not a blob"),
    ],
    ids=["flipped-byte", "truncated", "ref-missing-blob", "run-input-missing", "refs-json", "run-json", "run-id",
         "checkpoint-missing", "newer-schema", "stray-file"],
)
def test_verify_reports_each_problem_on_its_own_line(cli, seeded: Store, damage, problem: str) -> None:  # type: ignore[no-untyped-def]
    damage(seeded)
    res = cli("store", "verify")
    assert res.exit_code == 1
    assert re.search(problem, res.stderr), res.stderr
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines and all(line.startswith("problem: ") for line in lines), lines
    assert re.search(r"\d+ problems?$", res.stdout.strip())
    out = json.loads(cli("store", "verify", "--json").stdout)
    assert not out["ok"] and any(re.search(problem, p) for p in out["problems"])


def test_verify_accepts_runs_whose_outputs_were_removed_with_rm(cli, seeded: Store) -> None:  # type: ignore[no-untyped-def]
    syn = seeded.put("synthetic", "gone", {"x": torch.ones(3)}, {})
    seeded.write_run({"id": "r5", "command": "distill", "inputs": [], "outputs": [{"digest": syn.digest, "ref": syn.ref}]})
    assert cli("store", "rm", "synthetic/gone").exit_code == 0
    res = cli("store", "verify")
    assert res.exit_code == 0, res.stderr
    assert json.loads(cli("store", "verify", "--json").stdout)["removed_outputs"] == 1


def test_gc_removes_orphans_and_temp_files_but_keeps_everything_live(cli, seeded: Store) -> None:  # type: ignore[no-untyped-def]
    orphan = seeded.put_blob({"x": torch.arange(1000.0)}, {"ddtool.kind": "synthetic"})
    ckpt = seeded.put_blob({"images": torch.ones(2)}, {"ddtool.kind": "checkpoint"})
    out = seeded.put_blob({"y": torch.ones(3)}, {"ddtool.kind": "synthetic"})
    seeded.write_run({"id": "r6", "command": "distill", "inputs": [], "outputs": [{"digest": out, "ref": "x"}],
                      "checkpoints": [{"iteration": 2, "digest": ckpt}]})
    leftovers = [seeded.tmp / ("ab" * 32 + ".1234abcd.incomplete"), seeded.root / ".refs.json.deadbeef.incomplete",
                 seeded.runs_dir / ".r9.json.cafe0000.incomplete", seeded.blobs / "ab" / ("cd" * 31 + ".incomplete")]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    live = {seeded.resolve("pool/tiny").digest, seeded.resolve("synthetic/s").digest, ckpt, out}

    dry = cli("store", "gc", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert f"would remove blob {orphan[:12]}" in dry.stdout and "would free" in dry.stdout
    assert all(p.exists() for p in leftovers) and seeded.blob_path(orphan).exists()

    res = cli("store", "gc", "--json")
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    assert [b["digest"] for b in report["blobs"]] == [orphan]
    assert len(report["temp_files"]) == 4 and report["bytes"] > 4 * len(b"partial")
    assert not any(p.exists() for p in leftovers) and not seeded.blob_path(orphan).exists()
    assert set(seeded.iter_blob_digests()) == live
    assert cli("store", "verify").exit_code == 0
    again = cli("store", "gc")
    assert again.exit_code == 0 and "freed 0 bytes (0 files)" in again.stdout


def test_gc_refuses_when_it_cannot_tell_what_is_live(store_snapshot, cli, seeded: Store) -> None:  # type: ignore[no-untyped-def]
    orphan = seeded.put_blob({"x": torch.zeros(5)}, {})
    (seeded.runs_dir / "broken.json").write_text("{")
    before = store_snapshot(seeded.root)
    res = cli("store", "gc")
    assert res.exit_code == 1 and "gc cannot tell which checkpoints it keeps" in res.stderr
    assert store_snapshot(seeded.root) == before and seeded.blob_path(orphan).exists()
