"""Peak memory of one distillation iteration per method, from ddtool's own run records (issues 24, 25).

    python -m bench.method_memory [--shapes c10 c100] [--rows ncfm mtt mtt-ckpt idc datm datm-ckpt]
                                  [--iterations 1] [--device cpu|cuda] [--max-gib G] [--timeout-s S] [--out FILE.md]

Each row is a shipped recipe (``recipes/ncfm.toml``, ``mtt.toml``, ``idc.toml``, ``datm.toml``) at
its top-level (the paper's CIFAR-10) settings, run by ``ddtool``'s own ``distill`` for
``--iterations`` outer iterations on a stand-in of CIFAR's shape: random uint8 images
(:func:`bench.common.fake_data`, benchmark-only; no CIFAR on disk), 5000 per class for CIFAR-10
and 500 for CIFAR-100, as the real training sets. What a row changes from its recipe is only what
a single iteration's memory does not depend on, and each row says it in its ``shortened`` cell:
NCFM's pool is one model of one epoch and MTT's / DATM's experts are one trajectory on 10 images
per class (trained weights, not their shapes, change), IDC runs 2 of its 100 inner loops (each
frees its graph before the next), DATM initialises from any real images rather than those an
expert classifies correctly (random images: few are).

Each row runs in a fresh process. The figure is the run record's: ``peak_rss_bytes`` on a CPU
(the process's resident high-water mark, Linux ``ru_maxrss``: torch, the stand-in data and the
run; the process is started through a shell so that it does not inherit this one's mark), ``peak_cuda_bytes`` on a GPU (``torch.cuda.max_memory_allocated``). On a CPU the process's
resident memory just before ``distill`` (torch and the data) is printed beside it, and their
difference is the run's own. A CPU row whose process passes ``--max-gib`` is stopped (its figure is
then "> G"): the watchdog keeps a shared machine's other jobs alive.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
STAND_IN = "random uint8 images of CIFAR's shape (bench.common.fake_data), not CIFAR"


@dataclass(frozen=True)
class Shape:
    label: str
    classes: int
    per_class: int  # training images per class, as the real set
    res: int = 32
    width: int = 128


SHAPES = {"c10": Shape("CIFAR-10 ipc 10", 10, 5000), "c100": Shape("CIFAR-100 ipc 10", 100, 500),
          # what the test runs: every row through the same code, in seconds
          "tiny": Shape("tiny (3 classes, 16x16)", 3, 40, res=16, width=16)}


@dataclass(frozen=True)
class Method:
    """One row: a shipped recipe, what it needs stored first, and what the row changes."""

    label: str
    recipe: str
    needs: str  # "pool" | "trajectories" | ""
    sets: tuple[str, ...] = ()
    shortened: str = ""
    tiny: tuple[str, ...] = ()  # further --set for the tiny shape


_EXPERT = ("pretrain.n=1",)
ROWS: dict[str, Method] = {
    "ncfm": Method("NCFM", "ncfm.toml", "pool", ("pretrain.n=1", "pretrain.epochs=1"),
                   "pool: 1 model x 1 epoch", ("distill.batch_real=16",)),
    "mtt": Method("MTT, plain unroll", "mtt.toml", "trajectories", (*_EXPERT, 'distill.options.unroll="plain"'),
                  "experts: 1 on 10 images/class", ("distill.options.syn_steps=3", "distill.options.max_start_epoch=1")),
    "mtt-ckpt": Method("MTT, checkpointed unroll", "mtt.toml", "trajectories",
                       (*_EXPERT, 'distill.options.unroll="checkpointed"'), "experts: 1 on 10 images/class",
                       ("distill.options.syn_steps=3", "distill.options.max_start_epoch=1",
                        "distill.options.segment=2")),
    "idc": Method("IDC", "idc.toml", "", ("distill.options.inner_loops=2",), "2 of 100 inner loops",
                  ("distill.options.net_steps=1", "distill.batch_real=16")),
    "datm": Method("DATM, plain unroll", "datm.toml", "trajectories",
                   (*_EXPERT, 'distill.options.unroll="plain"', 'distill.options.pix_init="real"'),
                   "experts: 1 on 10 images/class; any real images init",
                   ("distill.options.syn_steps=3", "distill.options.current_max_start_epoch=1",
                    "distill.options.max_start_epoch=1")),
    "datm-ckpt": Method("DATM, checkpointed unroll", "datm.toml", "trajectories",
                        (*_EXPERT, 'distill.options.unroll="checkpointed"', 'distill.options.pix_init="real"'),
                        "experts: 1 on 10 images/class; any real images init",
                        ("distill.options.syn_steps=3", "distill.options.current_max_start_epoch=1",
                         "distill.options.max_start_epoch=1", "distill.options.segment=2")),
}


def recipe_sets(row: str, shape: str, iterations: int) -> list[str]:
    """The ``--set`` list of a row: the stand-in data's name (no ``[scale.*]`` table applies, so the
    recipe's top level, the paper's settings, is what runs), the stored inputs' names, the row's own
    changes, the iterations."""
    m, s = ROWS[row], SHAPES[shape]
    name = f"bench-{row}-{shape}"
    sets = ['data.dataset="cifar-shaped-random"', f"net.width={s.width}", f'pretrain.name="{name}"', *m.sets]
    if m.needs == "pool":
        sets.append(f'distill.pool="pool/{name}"')
    if m.needs == "trajectories":
        sets.append(f'distill.options.trajectories="trajectories/{name}"')
    if shape == "tiny":
        sets += m.tiny
    return sets + [f"distill.iterations={iterations}"]


def expert_epochs(recipe: Any) -> int:
    """Epochs an expert needs for every start epoch the recipe may draw: max_start_epoch + expert_epochs."""
    o = recipe.distill.options
    return int(o.get("max_start_epoch", 0)) + int(o.get("expert_epochs", 0))


# ---------------------------------------------------------------------------------------------
# one row, in its own process


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def prepare(row: str, shape: str, store_dir: str, device: str) -> None:
    """Store what a row's recipe reads (a pool, expert trajectories), trained on a small set of
    the same classes and shape: a store's signature names the dataset, classes and shape, not the size."""
    import torch

    from bench.common import fake_data
    from ddtool.recipe import load_recipe
    from ddtool.runtime.pretrain.expert_trajectories import pretrain_trajectories
    from ddtool.runtime.pretrain.pool_training import pretrain
    from ddtool.store import Store

    m, s = ROWS[row], SHAPES[shape]
    if not m.needs:
        return
    recipe = load_recipe(REPO / "recipes" / m.recipe, recipe_sets(row, shape, 1))
    data = fake_data(s.classes, 10, 3, s.res)
    data.name = "cifar-shaped-random"
    if m.needs == "pool":
        pretrain(Store(store_dir), recipe, data, torch.device(device))
    else:
        recipe = load_recipe(REPO / "recipes" / m.recipe,
                             recipe_sets(row, shape, 1) + [f"pretrain.epochs={expert_epochs(recipe)}"])
        pretrain_trajectories(Store(store_dir), recipe, data, torch.device(device))


def one(row: str, shape: str, store_dir: str, device: str, iterations: int) -> dict[str, Any]:
    """Distil one row and read its run record: what the parent prints."""
    import torch

    from bench.common import fake_data
    from ddtool.recipe import load_recipe
    from ddtool.runtime.distill import distill
    from ddtool.store import Store

    s = SHAPES[shape]
    dev = torch.device(device)
    if dev.type == "cuda":  # its peak is reset below; on a CPU the parent prepares in a process of its own
        prepare(row, shape, store_dir, device)
    data = fake_data(s.classes, s.per_class, 3, s.res)
    data.name = "cifar-shaped-random"
    recipe = load_recipe(REPO / "recipes" / ROWS[row].recipe, recipe_sets(row, shape, iterations))
    store = Store(store_dir)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)  # the record's peak_cuda_bytes is then the run's alone
    before = _rss_bytes()
    t = time.perf_counter()
    result = distill(store, recipe, data, dev, name=f"bench-{row}-{shape}")
    seconds = time.perf_counter() - t
    rec = store.run(result.run_id)
    return {"row": row, "shape": shape, "device": dev.type, "iterations": iterations, "seconds": seconds,
            "rss_before": before, "peak_rss_bytes": rec.get("peak_rss_bytes"),
            "peak_cuda_bytes": rec.get("peak_cuda_bytes"), "torch": torch.__version__,
            "settings": settings_of(recipe)}


def settings_of(recipe: Any) -> str:
    """The settings one iteration's memory follows, for the table."""
    d, o = recipe.distill, recipe.distill.options
    if d.method in ("mtt", "datm"):
        seg = f", segment {o.get('segment', 10)}" if o.get("unroll") == "checkpointed" else ""
        return f"syn_steps {o.get('syn_steps')}, batch_syn {o.get('batch_syn') or 'all'}{seg}"
    if d.method == "idc":
        return (f"factor {o.get('factor')}, batch_real {d.batch_real}, {o.get('net_steps')} x "
                f"{o.get('net_batch')} net steps")
    return f"factor {o.get('factor')}, batch_real {d.batch_real}, sampling_net {o.get('sampling_net')}"


# ---------------------------------------------------------------------------------------------
# the parent: a fresh process per row, a watchdog on its memory


@dataclass
class Result:
    row: str
    shape: str
    peak_bytes: int | None = None  # the run record's figure
    before_bytes: int | None = None  # CPU: resident memory just before distill
    seconds: float | None = None
    settings: str = ""
    stopped: str = ""  # why no figure: "> 12 GiB", "timed out", "failed: ..."
    extra: dict[str, Any] = field(default_factory=dict)


def vm_rss(pid: int) -> int:
    """Resident bytes of process ``pid`` and its descendants (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            own = next((int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmRSS:")), 0)
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(k) for k in f.read().split()]
    except (OSError, ValueError):
        return 0
    return own + sum(vm_rss(k) for k in kids)


# Linux carries a process's resident high-water mark across exec, and a child forked from this
# process starts with this one's: run straight from here, a row's ru_maxrss could not read below
# the parent's resident memory (measured: 611 MiB in a child of a 600 MiB parent, 10 MiB through
# a shell). The shell forks the row's process from its own small one and waits for it.
DETACH = ["/bin/sh", "-c", '"$@" & wait $!', "sh"]


def _wait_group_gone(pgid: int, timeout_s: float = 10.0) -> None:
    """Until every process of the group has exited (SIGKILL is delivered at once but a process takes
    a moment to die; the row's process, a grandchild, is then reaped by init, not by ``wait``)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        alive = False
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                alive = True
                break
        if not alive:
            return
        time.sleep(0.02)


def watched(cmd: list[str], max_bytes: int | None, timeout_s: float,
            rss: Callable[[int], int] = vm_rss, poll_s: float = 0.05) -> tuple[int | None, str, str]:
    """Run ``cmd``; kill it when its resident memory passes ``max_bytes`` or it outlives ``timeout_s``.
    Returns (exit code or None when killed, stdout, why it was killed or '')."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(DETACH + cmd, stdout=out, stderr=err, text=True, cwd=REPO, start_new_session=True)
        why = ""
        start = time.monotonic()
        try:
            while proc.poll() is None:
                if max_bytes is not None and rss(proc.pid) > max_bytes:
                    why = f"> {max_bytes / 2**30:.1f} GiB"
                elif time.monotonic() - start > timeout_s:
                    why = f"over {timeout_s:.0f} s"
                if why:
                    break
                time.sleep(poll_s)
        finally:
            if proc.poll() is None:  # stopped here, or the caller's alarm rang: the shell and the row
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                _wait_group_gone(proc.pid)
                why = why or "interrupted"
        out.seek(0)
        err.seek(0)
        stdout = out.read()
        if proc.returncode != 0 and not why:
            lines = [ln for ln in err.read().strip().splitlines() if ln.strip()]
            why = "failed: " + (lines[-1][:200] if lines else f"exit {proc.returncode}")
        return (None if why else proc.returncode), stdout, why


def measure(row: str, shape: str, store_dir: str, device: str, iterations: int, max_bytes: int | None,
            timeout_s: float) -> Result:
    """One row: its inputs stored (once per store), then its distill run in a fresh process."""
    base = [sys.executable, "-m", "bench.method_memory", "--store", store_dir, "--device", device]
    if device.startswith("cpu"):  # the run's own process would keep the training's pages in its ru_maxrss
        code, _, why = watched(base + ["--prepare", row, shape], None, timeout_s)
        if why:
            return Result(row, shape, stopped=f"preparing: {why}")
    code, stdout, why = watched(base + ["--one", row, shape, "--iterations", str(iterations)], max_bytes, timeout_s)
    if why:
        return Result(row, shape, stopped=why)
    got = json.loads(stdout.strip().splitlines()[-1])
    cuda = got["device"] == "cuda"
    return Result(row, shape, got["peak_cuda_bytes"] if cuda else got["peak_rss_bytes"],
                  None if cuda else got["rss_before"], got["seconds"], got["settings"], extra=got)


COLUMNS = ("shape", "method", "settings (per iteration)", "shortened", "peak MiB (run record)",
           "before distill MiB", "distill's own MiB", "s")


def cells(r: Result) -> list[str]:
    """A row of the table: the record's peak, what the process held before distill, their
    difference; a stopped row says why in the peak's cell."""
    mib = lambda b: f"{b / 2**20:,.0f}"  # noqa: E731
    peak = mib(r.peak_bytes) if r.peak_bytes is not None else (r.stopped or "-")
    before = mib(r.before_bytes) if r.before_bytes is not None and r.peak_bytes is not None else "-"
    own = mib(r.peak_bytes - r.before_bytes) if r.before_bytes is not None and r.peak_bytes is not None else "-"
    secs = f"{r.seconds:.0f}" if r.seconds is not None else "-"
    return [SHAPES[r.shape].label, ROWS[r.row].label, r.settings or "-", ROWS[r.row].shortened or "-",
            peak, before, own, secs]


def table_lines(results: list[Result]) -> list[str]:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return lines + ["| " + " | ".join(c.replace("|", "/") for c in cells(r)) + " |" for r in results]


def default_max_bytes() -> int | None:
    """Half of the memory available now, at most 12 GiB: a stopped row costs a figure, an OOM kill
    could cost another job's run."""
    try:
        with open("/proc/meminfo") as f:
            avail = next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return 8 * 2**30
    return min(12 * 2**30, avail // 2)


def main(argv: list[str] | None = None) -> int:
    import torch

    ap = argparse.ArgumentParser(prog="python -m bench.method_memory", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="+", default=["c10", "c100"], choices=list(SHAPES))
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--iterations", type=int, default=1, help="outer iterations per run (default 1)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--max-gib", type=float, default=0.0,
                    help="CPU: stop a row past this resident memory (default: half the available, at most 12)")
    ap.add_argument("--timeout-s", type=float, default=900.0, help="stop a row after this many seconds")
    ap.add_argument("--store", default="", help=argparse.SUPPRESS)
    ap.add_argument("--out", default="", help="also write the table to this Markdown file")
    ap.add_argument("--prepare", nargs=2, metavar=("ROW", "SHAPE"), help=argparse.SUPPRESS)
    ap.add_argument("--one", nargs=2, metavar=("ROW", "SHAPE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.prepare:
        prepare(*args.prepare, args.store, args.device)
        return 0
    if args.one:
        print(json.dumps(one(*args.one, args.store, args.device, args.iterations)))
        return 0
    cpu = torch.device(args.device).type == "cpu"
    max_bytes = (int(args.max_gib * 2**30) if args.max_gib else default_max_bytes()) if cpu else None
    store = args.store or tempfile.mkdtemp(prefix="ddtool-method-memory-")
    head = (f"# bench.method_memory {datetime.date.today()} · {args.device} · torch {torch.__version__} · "
            f"{args.iterations} iteration(s) per run, a fresh process per row · data: {STAND_IN} · figure: "
            + ("the run record's peak_rss_bytes (ru_maxrss)" + (f"; rows stopped past {max_bytes / 2**30:.1f} GiB"
                                                                 if max_bytes else "")
               if cpu else "the run record's peak_cuda_bytes (max_memory_allocated)"))
    print(head)
    print("\n".join(table_lines([])), flush=True)
    results: list[Result] = []
    try:
        for shape in args.shapes:
            for row in args.rows:
                r = measure(row, shape, store, args.device, args.iterations, max_bytes, args.timeout_s)
                results.append(r)
                print(table_lines([r])[-1], flush=True)
                if args.out:
                    Path(args.out).write_text("\n".join([head, "", *table_lines(results)]) + "\n")
    finally:
        if not args.store:
            shutil.rmtree(store, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
