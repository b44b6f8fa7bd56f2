"""Crashes and concurrent writers: SIGKILL a writer at chosen moments, four processes writing at once.

The store stays verifiable (ddtool.store.integrity.verify) and gc cleans up what a crash leaves.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ddtool.store import Store
from ddtool.store.integrity import gc, temp_files, verify

REPO = Path(__file__).resolve().parents[2]


WRITER = r"""
import os, sys, time, torch
from ddtool.store import Store
root = sys.argv[1]
for line in sys.stdin:
    k, = map(int, line.split())
    pid = os.fork()
    if pid == 0:
        count = [0]
        def hooked(name, real):
            def call(*args):
                count[0] += 1
                if count[0] == k:
                    print(f"stopped {k} {name}", flush=True)
                    time.sleep(600)
                return real(*args)
            return call
        os.fsync = hooked("fsync", os.fsync)
        os.replace = hooked("replace", os.replace)
        store = Store(root)
        i = 0
        while True:
            store.put("pool", "big", {"x": torch.full((1 << 19,), float(os.getpid() * 1000 + i))}, {"i": str(i)})
            i += 1
            if i == 1 and k == 0:
                print("writing", flush=True)
    print(f"child {pid}", flush=True)
    os.waitpid(pid, 0)
    print("reaped", flush=True)
"""


def _expect(proc: subprocess.Popen, *prefixes: str) -> list[str]:  # type: ignore[type-arg]
    """The next len(prefixes) lines, in any order (parent and child print concurrently)."""
    lines = [proc.stdout.readline().strip() for _ in prefixes]  # type: ignore[union-attr]
    out = []
    for prefix in prefixes:
        hit = [line for line in lines if line.startswith(prefix)]
        assert hit, (prefixes, lines, proc.stderr.read() if proc.poll() is not None else "")  # type: ignore[union-attr]
        out.append(hit[0])
    return out


def test_sigkill_mid_write_leaves_a_verifiable_store_and_gc_cleans_up(store: Store) -> None:
    # 8 deterministic crash points (each write step of two puts) + 3 timed kills mid-loop = 11
    crash_points = [1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0]
    delays = iter([0.0, 0.05, 0.2])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(store.root)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    tried, left_temp, seen = 0, 0, set()
    try:
        for k in crash_points:
            proc.stdin.write(f"{k}\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
            child_line, _ = _expect(proc, "child ", f"stopped {k}" if k else "writing")
            if not k:
                time.sleep(next(delays))
            os.kill(int(child_line.split()[1]), signal.SIGKILL)
            _expect(proc, "reaped")
            tried += 1
            leftovers = set(temp_files(store)) - seen
            seen |= leftovers
            left_temp += bool(leftovers)
            if k in (1, 2, 5, 6):  # stopped while the blob's temp file was being synced / renamed
                assert [p.parent for p in leftovers] == [store.tmp]
            if k in (3, 4, 7, 8):  # stopped while refs.json was being replaced
                assert [p.parent for p in leftovers] == [store.root]
            report = verify(store)
            assert report.ok, report.problems  # every ref resolves to a complete, intact blob
            for art in store.list():
                store.load(art.ref)
            if k in (3, 4, 7, 8):
                assert report.unreferenced  # the blob of the put that never got its ref
    finally:
        proc.kill()
        proc.wait()
    assert tried == len(crash_points) == 11
    assert left_temp >= 8
    versions = [a.version for a in store.list()]
    assert versions == list(range(1, len(versions) + 1)) and len(versions) >= 4

    removed = gc(store)
    assert removed.temp_files and removed.bytes_freed > 0
    assert temp_files(store) == [] and list(store.tmp.iterdir()) == []
    report = verify(store)
    assert report.ok and report.unreferenced == [] and report.temp_files == []
    assert {a.digest for a in store.list()} == set(store.iter_blob_digests())


CONCURRENT = r"""
import os, sys, torch
from ddtool.store import Store
root, writers, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
pids = []
for w in range(writers):
    pid = os.fork()
    if pid == 0:
        store = Store(root)
        for i in range(n):
            art = store.put("synthetic", "shared", {"x": torch.full((50_000,), float(w * 1000 + i))},
                            {"writer": str(w), "i": str(i)})
            store.write_run({"id": f"w{w}-{i}", "command": "distill", "inputs": [],
                             "outputs": [{"digest": art.digest, "ref": art.ref}], "status": "complete"})
        os._exit(0)
    pids.append(pid)
codes = [os.waitpid(pid, 0)[1] for pid in pids]
print(codes, flush=True)
sys.exit(any(codes))
"""


def test_four_concurrent_writers_lose_nothing(store: Store) -> None:
    writers, n = 4, 6
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-c", CONCURRENT, str(store.root), str(writers), str(n)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    arts = store.list()
    assert [a.version for a in arts] == list(range(1, writers * n + 1))  # no version lost or doubled
    assert len({a.digest for a in arts}) == writers * n
    seen = set()
    for art in arts:
        _, _, meta = store.load(art.ref)
        seen.add((meta["writer"], meta["i"]))
    assert seen == {(str(w), str(i)) for w in range(writers) for i in range(n)}
    runs = store.runs()
    assert len(runs) == writers * n
    assert {r["outputs"][0]["digest"] for r in runs} == {a.digest for a in arts}
    report = verify(store)
    assert report.ok and (report.blobs, report.refs, report.runs) == (writers * n, writers * n, writers * n)
    assert report.temp_files == [] and report.unreferenced == []
