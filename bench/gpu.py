"""One-call GPU benchmark: one Markdown table, inside a time budget the module enforces itself.

    python -m bench.gpu [--tiny] [--device auto|cuda|cpu] [--data DIR] [--budget-s 540] [--out FILE.md]
                        [--only dm,idc,eval,ours,ncfm,datm,memory] [--shapes c10,c100] [--rounds N] [--compile auto|on|off]

Rows, in the order they run: the DM iteration and the IDC inner step (loop, class-vectorised,
compiled) at the CIFAR-10 shape; 5-repeat evaluation, stacked vs loop; a time-boxed Ours10 run
(``recipes/ours10.toml``) on the CIFAR-10 copy in ``--data`` (``train.tar.gz`` / ``test.tar.gz``
or extracted ``train/`` / ``test/`` folders), a few full outer loops through ``ddtool``'s
``pretrain`` and ``distill``, extrapolated to the recipe's 200 and set against the paper's
2.23 GPU-hours (IDC: 22.2); NCFM and DATM (``recipes/ncfm.toml``, ``recipes/datm.toml``) at their
papers' CIFAR-10 ipc 10 settings the same way (a pool of 1 model x 1 epoch, or one expert of 3
epochs, and 20 / 10 iterations, extrapolated to the recipe's pool or 100 x 50 experts and 20000 /
10000 iterations; DATM's start-epoch window held at epoch 0 and pix_init "real", which the cost of
an iteration does not follow); one iteration's peak memory per method at the CIFAR-10 shape
(``bench.method_memory``: NCFM, MTT and DATM plain and checkpointed, IDC, from the run records, a
fresh process per row); then the two steps and the memory rows at the CIFAR-100 shape. Each row has its
seconds (the median of ``--rounds`` timed runs after one warm-up), the speed-up over the first
variant of its case, FLOPs (``torch.utils.flop_counter``), achieved FLOP/s against the device's
peak, and peak memory (CUDA's max allocated; on CPU the process's peak RSS).

The budget: each case runs under an alarm at most its share of ``--budget-s`` (time is kept back
for the Ours10, NCFM, DATM and first memory runs); a case the budget cannot fit, or one cut off by its alarm, is one
``skipped`` row, and the table is written to ``--out`` after every case, so a run killed from
outside still leaves what it measured. ``--tiny`` shrinks every case (3-5 classes, ipc 1, width
16, one round; Ours10, NCFM and DATM on the embedded ``digits`` with 2 iterations; one memory row)
so that it runs on a CPU in about two minutes: ``tests/bench/test_gpu_bench.py`` runs it, so this file cannot rot unnoticed.
``bench/gpu.sh`` is the wrapper a GPU machine runs.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from bench import cpu_peak as cp
from bench.common import peak_memory, probing, reset_peak_memory
from ddtool.compiled import compiler_usable

REPO = Path(__file__).resolve().parent.parent
OURS10 = REPO / "recipes" / "ours10.toml"
PAPER_OURS10_GPU_H = 2.23  # seed 000: Ours10, CIFAR-10 ipc 10, one RTX-2080
PAPER_IDC_GPU_H = 22.2  # the same table's IDC

PARTS = ("dm", "idc", "eval", "ours", "ncfm", "datm", "memory")
COLUMNS = ("part", "shape", "variant", "s", "speed-up", "GFLOP", "GFLOP/s", "% peak", "peak MiB", "note")
NUMERIC = ("s", "speed-up", "GFLOP", "GFLOP/s", "% peak", "peak MiB")
NA = "-"

# NVIDIA's datasheet figures in TFLOP/s: (name substring, fp32 non-tensor, tf32 tensor, bf16 tensor).
# The datasheets print tensor-core rates with 2:4 sparsity; these are the dense halves. First match
# wins, so the longer names come first.
GPU_PEAKS_TFLOPS: tuple[tuple[str, float, float, float], ...] = (
    ("H200 NVL", 60.0, 417.5, 835.0),
    ("H200", 67.0, 494.5, 989.5),
    ("H100 NVL", 60.0, 417.5, 835.0),
    ("H100 PCIe", 51.0, 378.0, 756.0),
    ("H100", 67.0, 494.5, 989.5),
    ("A100", 19.5, 156.0, 312.0),
)


# ---------------------------------------------------------------------------------------------
# the device: its name, its peak, whether it can compile


@dataclass
class Peak:
    """FLOP/s ceilings: ``fp32`` is the one fp32 work is set against, ``bf16`` the one for bf16 rows."""

    fp32: float | None
    bf16: float | None
    label: str  # how the figures were found, for the header line


def gpu_peak(name: str) -> Peak:
    for key, fp32, tf32, bf16 in GPU_PEAKS_TFLOPS:
        if key.lower() in name.lower():
            # cuDNN runs fp32 convolutions on the tensor cores in TF32 unless told not to: the
            # ConvNets' FLOPs are nearly all convolutions, so TF32 is their ceiling
            tf32_on = torch.backends.cudnn.allow_tf32
            main = tf32 if tf32_on else fp32
            return Peak(main * 1e12, bf16 * 1e12,
                        f"{'tf32' if tf32_on else 'fp32'} {main:g} TFLOP/s dense (datasheet {key}: fp32 {fp32:g}, "
                        f"tf32 {tf32:g}, bf16 {bf16:g}; cudnn.allow_tf32={tf32_on})")
    return Peak(None, None, f"unknown ({name} is not in bench.gpu.GPU_PEAKS_TFLOPS)")


def cpu_peak(threads: int) -> Peak:
    """``threads`` cores x clock x fp32 FLOP per cycle as :mod:`bench.cpu_peak` detects them (the
    vector unit /proc/cpuinfo declares, 2 FMA pipes assumed); 'unknown' where /proc/cpuinfo does not
    tell the clock or the vector unit."""
    info = cp.read_cpuinfo()
    if not info:
        return Peak(None, None, "unknown (no /proc/cpuinfo)")
    found, ghz = cp.this_machine(), cp.clock_ghz(info)
    if found.flop_per_cycle is None or not ghz:
        return Peak(None, None, "unknown (no FMA vector unit or clock in /proc/cpuinfo)")
    cores = max(1, min(threads, os.cpu_count() or threads))
    fp32 = cores * ghz * 1e9 * found.flop_per_cycle
    return Peak(fp32, None, f"fp32 {fp32 / 1e9:.0f} GFLOP/s = {cores} cores x {ghz:.2f} GHz x {found.line}")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()}"


def commit(given: str) -> str:
    """The checkout's commit: ``--commit`` / $BENCH_COMMIT (a GPU machine gets no .git), else git's."""
    if given:
        return given
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip() + ("+local changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ---------------------------------------------------------------------------------------------
# rows and the table


@dataclass
class Row:
    part: str
    shape: str
    variant: str = NA
    s: float | None = None
    speedup: float | None = None
    gflop: float | None = None
    flops_per_s: float | None = None
    peak: float | None = None  # the FLOP/s ceiling this row is set against
    mem_bytes: int | None = None
    note: str = ""

    def cells(self) -> list[str]:
        def num(x: float | None, fmt: str = ".4g") -> str:
            return NA if x is None else format(x, fmt)

        pct = 100 * self.flops_per_s / self.peak if self.flops_per_s and self.peak else None
        return [self.part, self.shape, self.variant, num(self.s), num(self.speedup, ".3g"), num(self.gflop),
                num(None if self.flops_per_s is None else self.flops_per_s / 1e9), num(pct, ".3g"),
                num(None if self.mem_bytes is None else self.mem_bytes / 2**20, ".1f"),
                self.note.replace("|", "/")]


def table_lines(rows: list[Row]) -> list[str]:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return lines + ["| " + " | ".join(r.cells()) + " |" for r in rows]


def parse_table(text: str) -> list[dict[str, str]]:
    """The rows of the Markdown table in ``text``, as column -> cell (for tests and for BENCHMARKS.md)."""
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    if len(lines) < 2:
        return []
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(head, (c.strip() for c in ln.strip("|").split("|")))) for ln in lines[2:]]


# ---------------------------------------------------------------------------------------------
# the budget


_now = time.monotonic  # the budget's clock (a test sets its own)


class CaseTimeout(Exception):
    """Raised by the alarm when a case outlives its share of the budget."""


@contextmanager
def alarm(seconds: float) -> Iterator[None]:
    """Raise :class:`CaseTimeout` in the main thread after ``seconds`` (elsewhere: no alarm; the
    budget is then only checked between cases)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def ring(signum: int, frame: Any) -> None:
        raise CaseTimeout()

    before = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)


@dataclass
class Case:
    part: str
    shape: str
    run: Callable[[], list[Row]]
    share: float  # at most this fraction of the budget
    reserve: float = 0.0  # fraction of the budget the cases before this one leave for it


# ---------------------------------------------------------------------------------------------
# sizes


@dataclass
class Scale:
    tiny: bool
    width: int
    ipc: int
    batch_real: int  # DM: real images per class per step
    idc_net_steps: int
    eval_epochs: int
    rounds: int
    shapes: dict[str, tuple[str, int]]  # key -> (label, classes)
    ours_outer: int
    ours_set: list[str] = field(default_factory=list)
    min_case_s: float = 5.0  # a case with less time than this left is skipped, not started

    @staticmethod
    def of(tiny: bool, rounds: int | None) -> Scale:
        if tiny:
            return Scale(True, width=16, ipc=1, batch_real=16, idc_net_steps=1, eval_epochs=2, rounds=rounds or 1,
                         shapes={"c10": ("CIFAR-10 shape (tiny)", 3),
                                 "c100": ("CIFAR-100 shape (tiny)", 5)},
                         ours_outer=2, ours_set=["net.width=16", "pretrain.n=2", "pretrain.epochs=1",
                                                 "distill.options.inner_loops=2", "distill.options.net_steps=1"],
                         min_case_s=0.5)
        # full outer loops at the paper's settings; only the pool is smaller (2 models x 1 epoch,
        # as on the CIFAR-10 fidelity page of docs/benchmarks): its full-size cost is extrapolated from it
        return Scale(False, width=128, ipc=10, batch_real=256, idc_net_steps=32, eval_epochs=100, rounds=rounds or 3,
                     shapes={"c10": ("CIFAR-10 shape", 10), "c100": ("CIFAR-100 shape", 100)},
                     ours_outer=2, ours_set=["pretrain.n=2", "pretrain.epochs=1"])


# ---------------------------------------------------------------------------------------------
# the cases


@dataclass
class Env:
    device: torch.device
    scale: Scale
    peak: Peak
    compile: bool
    compile_why: str
    data: Path | None
    tmp: Path
    loaded: dict[str, Any] = field(default_factory=dict)  # dataset -> ImageData, loaded once for all the runs


def _rate(gflop: float | None, s: float | None) -> float | None:
    return gflop * 1e9 / s if gflop is not None and s else None


def _variant_rows(env: Env, part: str, shape: str, variants: list[tuple[str, str]], r: dict[str, float],
                  probe: Any, gflop: float | None, notes: dict[str, str] | None = None,
                  bf16: tuple[str, ...] = ()) -> list[Row]:
    """One row per (label, key) in ``variants``: ``r[key + '_s']`` timed, the first is the baseline."""
    rows = []
    base = r.get(variants[0][1] + "_s")
    for label, key in variants:
        s = r.get(key + "_s")
        if s is None:
            rows.append(Row(part, shape, label, note=f"skipped: {env.compile_why}"))
            continue
        note = (notes or {}).get(key, "")
        first = probe.warmup_s.get(key, 0.0)
        if "compile" in label and first > 2 * s + 0.5:  # else its graphs were compiled by an earlier variant
            note = (note + "; " if note else "") + f"first call {first:.1f} s (compiling)"
        rows.append(Row(part, shape, label, s, base / s if base else None, gflop, _rate(gflop, s),
                        env.peak.bf16 if key in bf16 else env.peak.fp32, probe.peak_bytes.get(key), note))
    return rows


STEP_VARIANTS = [("loop", "loop"), ("vectorised", "vectorized"), ("compiled (loop + torch.compile)", "compiled")]


def dm_rows(env: Env, key: str) -> list[Row]:
    from bench.step import dm_case

    sc = env.scale
    label, classes = sc.shapes[key]
    shape = f"{label}: {classes} classes, ipc {sc.ipc}, {sc.batch_real} real/class, ConvNet w{sc.width}"
    with probing(env.device) as probe:
        r = dm_case(classes, sc.ipc, sc.batch_real, env.device, sc.rounds, width=sc.width, compiled=env.compile)
    return _variant_rows(env, "DM iteration", shape,
                         STEP_VARIANTS,
                         r, probe, r["gflops"])


def idc_rows(env: Env, key: str) -> list[Row]:
    from bench.step import IDC_VARIANTS, idc_case

    sc = env.scale
    label, classes = sc.shapes[key]
    shape = f"{label}: {classes} classes, ipc {sc.ipc}, factor 2, 64 real/class, ConvNet w{sc.width}"
    with probing(env.device) as probe:
        r = idc_case(classes, sc.ipc, env.device, sc.rounds, net_steps=sc.idc_net_steps, width=sc.width,
                     compiled=env.compile, variants=[v for v in IDC_VARIANTS if v != "compiled_real"])
    rows = _variant_rows(env, "IDC inner step: matching", shape,
                         STEP_VARIANTS,
                         r, probe, r["match_gflops"])
    rows += _variant_rows(env, f"IDC inner step: network ({sc.idc_net_steps} x 64 real)", shape,
                          [("fp32", "network"), ("compiled (fp32 + torch.compile)", "network_compiled"),
                           ("bf16 autocast", "network_bf16")],
                          r, probe, r["network_gflops"], bf16=("network_bf16",))
    return rows


def eval_rows(env: Env, key: str) -> list[Row]:
    from bench.step import eval_case

    sc = env.scale
    label, classes = sc.shapes[key]
    n, epochs, repeats = classes * sc.ipc, sc.eval_epochs, 5
    shape = f"{label}: {n} images (ipc {sc.ipc}), ConvNet w{sc.width}, {epochs} epochs, batch 256, DSA"
    with probing(env.device) as probe:
        r = eval_case(classes, sc.ipc, repeats, epochs, 32, 3, env.device, sc.rounds, width=sc.width)
    scale_up = 1000 / epochs
    notes = {k: f"x{scale_up:g} for the papers' 1000 epochs: {r[k + '_s'] * scale_up:.0f} s"
             for k in ("loop", "stacked")}
    return _variant_rows(env, f"eval, {repeats} repeats", shape, [("loop", "loop"), ("stacked ensemble", "stacked")],
                         r, probe, r["gflops"], notes)


class IterationClock:
    """A progress reporter that notes when each outer loop ends (the runtime advances its task with
    the loop's ``loss`` then)."""

    def __init__(self) -> None:
        self.start = 0.0
        self.ends: list[float] = []

    def note(self, text: str) -> None:
        return None

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[IterationClock]:
        self.start = time.perf_counter()
        yield self

    def advance(self, n: int = 1, **fields: Any) -> None:
        if "loss" in fields:
            self.ends.append(time.perf_counter())

    def loops(self) -> list[float]:
        marks = [self.start, *self.ends]
        return [b - a for a, b in zip(marks, marks[1:])]


def prepare_cifar10(source: Path, into: Path) -> Path:
    """An ImageFolder copy of CIFAR-10: ``source`` itself when it holds train/ and test/ folders,
    else its train.tar.gz and test.tar.gz extracted under ``into``."""
    if (source / "train").is_dir() and (source / "test").is_dir():
        return source
    archives = [source / f"{split}.tar.gz" for split in ("train", "test")]
    missing = [str(a) for a in archives if not a.is_file()]
    if missing:
        raise FileNotFoundError(f"--data {source} has neither train/ + test/ folders nor {', '.join(missing)}")
    dest = into / "cifar10"  # the folder's name picks the recipe's [scale.*] table: none for cifar10
    done = into / "cifar10.extracted"  # written last: an extraction cut by the budget is redone
    if done.is_file():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    for archive in archives:
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, filter="data")  # no absolute paths or links out of dest
            else:
                tar.extractall(dest)
    done.touch()
    return dest


def run_data(env: Env) -> tuple[str, str, Any, float]:
    """(dataset spec, its label, the loaded ImageData, seconds it took) for the recipe runs: the
    embedded digits in tiny mode, else the CIFAR-10 copy of ``--data``, extracted and decoded once."""
    from ddtool.plugins import registries

    t = time.perf_counter()
    if env.scale.tiny:
        dataset, what = "digits", "digits 8x8x1 (tiny)"
    else:
        dataset, what = f"imagefolder:{prepare_cifar10(env.data, env.tmp)}", "CIFAR-10 (JPEG copy) ipc 10"
    if dataset not in env.loaded:
        # the dataset contract itself rather than load_dataset, which imports platformdirs (to find a
        # default data root) even when given one: the GPU image runs the checkout without installing it
        name, _, arg = dataset.partition(":")
        env.loaded[dataset] = registries().dataset.get(name).load(arg or None, env.tmp / "data-root", False)
    return dataset, what, env.loaded[dataset], time.perf_counter() - t


def ours_rows(env: Env) -> list[Row]:
    from ddtool.recipe import load_recipe
    from ddtool.runtime.distill import distill
    from ddtool.runtime.pretrain.pool_training import pretrain
    from ddtool.store import Store

    sc = env.scale
    if not sc.tiny and env.data is None:
        return [Row("Ours10", "CIFAR-10 ipc 10", note="skipped: no --data (the CIFAR-10 archives)")]
    dataset, what, data, prep_s = run_data(env)
    store = Store(env.tmp / "store")
    on_data = f"data.dataset={json.dumps(dataset)}"  # a TOML string: JSON's escapes are TOML's
    planned = load_recipe(OURS10, [on_data])
    recipe = load_recipe(OURS10, [on_data, *sc.ours_set,
                                  f"distill.iterations={sc.ours_outer}", 'pretrain.name="gpu-bench"',
                                  'distill.pool="pool/gpu-bench"'])
    o = recipe.distill.options
    shape = f"{what}, ConvNet w{recipe.net.width}"
    rows = []
    reset_peak_memory(env.device.type == "cuda")
    t = time.perf_counter()
    pretrain(store, recipe, data, env.device)
    pool_s = time.perf_counter() - t
    pool_mem = peak_memory(env.device.type == "cuda")
    p = recipe.pretrain
    rows.append(Row("Ours10: pool", shape, f"{p.n} models x {p.epochs} epoch(s), batch {p.batch}", pool_s,
                    mem_bytes=pool_mem, note=f"data ready in {prep_s:.1f} s (extract + decode)"))
    reset_peak_memory(env.device.type == "cuda")
    clock = IterationClock()
    t = time.perf_counter()
    cut = ""
    try:
        distill(store, recipe, data, env.device, reporter=clock, name="ours-gpu-bench")
    except CaseTimeout:
        if not clock.ends:  # not one outer loop: nothing to extrapolate from
            raise
        cut = f"; cut by the budget after {len(clock.ends)} of {sc.ours_outer} loops"
    seconds = time.perf_counter() - t
    mem = peak_memory(env.device.type == "cuda")
    loops = clock.loops()
    # loop 1 runs under the FLOP counter (the run record's flops_per_iteration): time the others
    per_loop = statistics.median(loops[1:]) if len(loops) > 1 else loops[0]
    timed = f"loops 2-{len(loops)}" if len(loops) > 1 else "loop 1 alone, slowed by the FLOP counter"
    record = next((r for r in store.runs() if r.get("command") == "distill"), {})  # the only distill run
    flops = record.get("flops_per_iteration")
    gflop = flops / 1e9 if flops else None
    rows.append(Row("Ours10: distill", shape,
                    f"{len(loops)} full outer loops ({o.get('inner_loops')} inner x (matching + "
                    f"{o.get('net_steps')} x {o.get('net_batch')} real))",
                    seconds, None, gflop, _rate(gflop, per_loop), env.peak.fp32, mem,
                    f"{per_loop:.2f} s per outer loop ({timed}; loop 1 counted FLOPs: {loops[0]:.2f} s); "
                    f"GFLOP per outer loop{cut}"))
    full_loops = planned.distill.iterations
    full_pool = pool_s * (planned.pretrain.n * planned.pretrain.epochs) / (p.n * p.epochs)
    full_s = full_loops * per_loop + full_pool
    hours = full_s / 3600
    versus = (f"paper's Ours10 {PAPER_OURS10_GPU_H} GPU-h (RTX 2080): {PAPER_OURS10_GPU_H / hours:.1f}x faster; "
              f"IDC {PAPER_IDC_GPU_H} GPU-h: {PAPER_IDC_GPU_H / hours:.1f}x")
    if sc.tiny:
        versus = "digits at a tiny budget: not comparable with the paper's CIFAR-10 hours"
    rows.append(Row("Ours10: full run (extrapolated)", shape,
                    f"{full_loops} outer loops + pool {planned.pretrain.n} x {planned.pretrain.epochs} epochs",
                    full_s, None if sc.tiny else PAPER_OURS10_GPU_H * 3600 / full_s, note=f"= {hours:.3f} h; {versus}"))
    return rows


@dataclass(frozen=True)
class RecipeRun:
    """A shipped recipe timed at its paper's CIFAR-10 ipc 10 settings: its stored input (a pool or
    expert trajectories) made small and its cost extrapolated, ``iterations`` outer iterations timed
    and extrapolated to the recipe's."""

    label: str
    recipe: str
    needs: str  # "pool" | "trajectories"
    iterations: int
    sets: tuple[str, ...] = ()  # what the timed run changes (a per-iteration cost does not depend on it)
    tiny: tuple[str, ...] = ()


RECIPE_RUNS = {
    "ncfm": RecipeRun("NCFM", "ncfm.toml", "pool", 20, ("pretrain.n=1", "pretrain.epochs=1"),
                      ("net.width=16", "distill.batch_real=32")),
    # one expert of 3 epochs: the start-epoch window is held at epoch 0 (an iteration's cost is its
    # 80 student steps wherever they start); pix_init "correct" would need trained experts
    "datm": RecipeRun("DATM", "datm.toml", "trajectories", 10,
                      ("pretrain.n=1", "pretrain.epochs=3", "distill.options.current_max_start_epoch=1",
                       "distill.options.max_start_epoch=1", 'distill.options.pix_init="real"'),
                      ("net.width=16", "distill.options.syn_steps=5")),
}


def recipe_rows(env: Env, key: str) -> list[Row]:
    """A time-boxed run of NCFM or DATM (issues 24, 25) through ``ddtool``'s pretrain and distill,
    as :func:`ours_rows`: the stored input's cost and the distill iterations extrapolated to the recipe's."""
    from ddtool.recipe import load_recipe
    from ddtool.runtime.distill import distill
    from ddtool.runtime.pretrain.expert_trajectories import pretrain_trajectories
    from ddtool.runtime.pretrain.pool_training import pretrain
    from ddtool.store import Store

    spec, sc = RECIPE_RUNS[key], env.scale
    if not sc.tiny and env.data is None:
        return [Row(spec.label, "CIFAR-10 ipc 10", note="skipped: no --data (the CIFAR-10 archives)")]
    dataset, what, data, prep_s = run_data(env)
    path = REPO / "recipes" / spec.recipe
    on_data = f"data.dataset={json.dumps(dataset)}"
    planned = load_recipe(path, [on_data])
    iterations = 2 if sc.tiny else spec.iterations
    stored = (f'distill.pool="pool/gpu-bench-{key}"' if spec.needs == "pool"
              else f'distill.options.trajectories="trajectories/gpu-bench-{key}"')
    recipe = load_recipe(path, [on_data, *spec.sets, *(spec.tiny if sc.tiny else ()), f"distill.iterations={iterations}",
                                f'pretrain.name="gpu-bench-{key}"', stored])
    store = Store(env.tmp / f"store-{key}")
    shape = f"{what}, ConvNet w{recipe.net.width}"
    cuda = env.device.type == "cuda"
    p, full = recipe.pretrain, planned.pretrain
    reset_peak_memory(cuda)
    t = time.perf_counter()
    if spec.needs == "pool":
        pretrain(store, recipe, data, env.device)
    else:
        pretrain_trajectories(store, recipe, data, env.device)
    made_s = time.perf_counter() - t
    made = "pool" if spec.needs == "pool" else "experts"
    rows = [Row(f"{spec.label}: {made}", shape, f"{p.n} x {p.epochs} epoch(s), batch {p.batch}", made_s,
                mem_bytes=peak_memory(cuda), note=f"data ready in {prep_s:.1f} s")]
    reset_peak_memory(cuda)
    clock = IterationClock()
    t = time.perf_counter()
    cut = ""
    try:
        distill(store, recipe, data, env.device, reporter=clock, name=f"gpu-bench-{key}")
    except CaseTimeout:
        if not clock.ends:
            raise
        cut = f"; cut by the budget after {len(clock.ends)} of {iterations} iterations"
    seconds = time.perf_counter() - t
    mem = peak_memory(cuda)
    loops = clock.loops()
    per_it = statistics.median(loops[1:]) if len(loops) > 1 else loops[0]  # iteration 1 runs under the FLOP counter
    record = next((r for r in store.runs() if r.get("command") == "distill"), {})
    flops = record.get("flops_per_iteration")
    gflop = flops / 1e9 if flops else None
    o = recipe.distill.options
    what_it = (f"batch_real {recipe.distill.batch_real}, factor {o.get('factor')}" if key == "ncfm"
               else f"{o.get('syn_steps')} student steps, unroll {o.get('unroll')}")
    rows.append(Row(f"{spec.label}: distill", shape, f"{len(loops)} iterations ({what_it})", seconds, None, gflop,
                    _rate(gflop, per_it), env.peak.fp32, mem,
                    f"{per_it:.3f} s per iteration (median of iterations 2-{len(loops)}); GFLOP per iteration{cut}"))
    full_made = made_s * (full.n * full.epochs) / (p.n * p.epochs)
    full_s = planned.distill.iterations * per_it + full_made
    note = f"= {full_s / 3600:.2f} h ({made} {full_made / 3600:.2f} h + distill {planned.distill.iterations * per_it / 3600:.2f} h)"
    if sc.tiny:
        note += "; digits at a tiny budget: not the paper's CIFAR-10 cost"
    rows.append(Row(f"{spec.label}: full run (extrapolated)", shape,
                    f"{planned.distill.iterations} iterations + {made} {full.n} x {full.epochs} epochs", full_s, note=note))
    return rows


def memory_row(env: Env, row: str, shape: str) -> list[Row]:
    """One row of :mod:`bench.method_memory`: one iteration's peak memory from the run record, in a
    fresh process (its CUDA peak is then the run's alone)."""
    from bench import method_memory as mm

    cpu = env.device.type == "cpu"
    r = mm.measure(row, shape, str(env.tmp / "memory-store"), env.device.type, 1,
                   mm.default_max_bytes() if cpu else None, timeout_s=600)
    s = mm.SHAPES[shape]
    label = f"{s.label}: {s.classes} classes, stand-in data, ConvNet w{s.width}"
    note = "; ".join(x for x in (r.settings, mm.ROWS[row].shortened, r.stopped) if x)
    if cpu and r.before_bytes is not None:
        note += f"; {r.before_bytes / 2**20:.0f} MiB resident before distill"
    return [Row("memory: one iteration", label, mm.ROWS[row].label, r.seconds, mem_bytes=r.peak_bytes,
                note=note or "-")]


MEMORY_ROWS = ("ncfm", "mtt", "mtt-ckpt", "idc", "datm", "datm-ckpt")
MEMORY_ROWS_TINY = ("mtt-ckpt",)  # one row: each is a fresh process, seconds of imports on a CPU


# ---------------------------------------------------------------------------------------------
# the run


def cases(env: Env, only: set[str], shapes: list[str]) -> list[Case]:
    sc = env.scale
    out: list[Case] = []

    def add(part: str, key: str | None, run: Callable[[], list[Row]], share: float, reserve: float = 0.0,
            what: str = "") -> None:
        if part in only:
            label = sc.shapes[key][0] if key else "CIFAR-10 ipc 10" if not sc.tiny else "digits (tiny)"
            label += f", {what}" if what else ""
            out.append(Case({"dm": "DM iteration", "idc": "IDC inner step", "eval": "eval, 5 repeats",
                             "ours": "Ours10", "ncfm": "NCFM", "datm": "DATM",
                             "memory": "memory: one iteration"}[part], label, run, share, reserve))

    from bench import method_memory as mm

    def memory(key: str, reserve: float) -> None:
        shape = "tiny" if sc.tiny else key
        for row in MEMORY_ROWS_TINY if sc.tiny else MEMORY_ROWS:
            add("memory", key, lambda row=row, shape=shape: memory_row(env, row, shape), 0.1, reserve,
                what=mm.ROWS[row].label)

    first, rest = shapes[:1], shapes[1:]
    for key in first:
        add("dm", key, lambda key=key: dm_rows(env, key), 0.2)
        add("idc", key, lambda key=key: idc_rows(env, key), 0.25)
        add("eval", key, lambda key=key: eval_rows(env, key), 0.15)
    add("ours", None, lambda: ours_rows(env), 0.5, reserve=0.25)
    # NCFM, DATM and the first shape's memory rows come before the second shape's steps: issues 24
    # and 25 need them from the first GPU run
    add("ncfm", None, lambda: recipe_rows(env, "ncfm"), 0.15, reserve=0.07)
    add("datm", None, lambda: recipe_rows(env, "datm"), 0.15, reserve=0.07)
    for key in first:
        memory(key, reserve=0.025)
    for key in rest:
        add("dm", key, lambda key=key: dm_rows(env, key), 0.2)
        add("idc", key, lambda key=key: idc_rows(env, key), 0.25)
        if not sc.tiny:
            memory(key, reserve=0.0)
    return out


def run(args: argparse.Namespace) -> str:
    """Run every case inside the budget; print the table as it grows, write it to ``--out`` after
    each case; return the whole text."""
    t0 = _now()
    deadline = t0 + args.budget_s
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench.gpu: --device cuda but torch sees no CUDA device; use --device cpu or auto")
    scale = Scale.of(args.tiny, args.rounds)
    name = device_name(device)
    peak = gpu_peak(name) if device.type == "cuda" else cpu_peak(torch.get_num_threads())
    present, how = compiler_usable(device)
    do_compile = args.compile == "on" or (args.compile == "auto" and present)
    why = ("--compile off" if args.compile == "off" else f"not compiled: {how}") if not do_compile else ""
    tmp = Path(tempfile.mkdtemp(prefix="ddtool-gpu-bench-"))
    env = Env(device, scale, peak, do_compile, why, Path(args.data) if args.data else None, tmp)
    only = {p for p in args.only.split(",") if p}
    shapes = [s for s in args.shapes.split(",") if s in scale.shapes]
    todo = cases(env, only, shapes)

    cuda = f", CUDA {torch.version.cuda}" if device.type == "cuda" else ""
    head = (f"bench.gpu {datetime.date.today()} · {name}{cuda} · torch {torch.__version__} · "
            f"ddtool commit {commit(args.commit)} · {torch.get_num_threads()} CPU threads · "
            f"{'tiny mode · ' if scale.tiny else ''}budget {args.budget_s:g} s · "
            f"torch.compile: {'on (' + how + ')' if do_compile else why} · % peak against {peak.label}")
    rows: list[Row] = []
    skipped = 0

    def text(done: bool) -> str:
        tail = (f"{len(todo) - skipped} of {len(todo)} cases ran in {_now() - t0:.0f} s; {skipped} skipped or failed"
                if done else f"running: {len(rows)} rows so far")
        return "\n".join([head, "", *table_lines(rows), "", tail]) + "\n"

    def save(done: bool) -> None:
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(text(done))

    print(head)
    print()
    print("\n".join(table_lines([])), flush=True)
    try:
        for i, case in enumerate(todo):
            later = [c for c in todo[i + 1:] if c.reserve]
            kept = sum(c.reserve for c in later) * args.budget_s
            left = deadline - _now()
            limit = min(case.share * args.budget_s, left - kept)
            if limit < scale.min_case_s:
                kept_for = (f", {kept:.0f} s kept for {', '.join(dict.fromkeys(c.part for c in later))}"
                            if kept else "")
                why_not = f"skipped: budget ran out ({max(left, 0):.0f} s left{kept_for})"
                new = [Row(case.part, case.shape, note=why_not)]
                skipped += 1
            else:
                try:
                    with alarm(limit):
                        new = case.run()
                except CaseTimeout:
                    new = [Row(case.part, case.shape, note=f"skipped: over its {limit:.0f} s share of the budget")]
                    skipped += 1
                except Exception as exc:  # one broken case must not cost the others' rows
                    first = (str(exc).strip().splitlines() or [""])[0][:200]
                    new = [Row(case.part, case.shape, note=f"failed: {type(exc).__name__}: {first}")]
                    skipped += 1
                finally:
                    gc.collect()
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
            rows += new
            for line in table_lines(new)[2:]:
                print(line, flush=True)
            save(False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = text(True)
    print()
    print(out.rstrip().splitlines()[-1], flush=True)
    save(True)
    return out


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="every case shrunk to run on a CPU in about a minute")
    ap.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    ap.add_argument("--data", default="", help="CIFAR-10: a folder with train.tar.gz + test.tar.gz, or train/ + test/")
    ap.add_argument("--budget-s", type=float, default=540.0, help="wall-clock budget for all cases (default 540)")
    ap.add_argument("--out", default="", help="also write the table to this Markdown file")
    ap.add_argument("--only", default=",".join(PARTS), help=f"comma list of parts: {','.join(PARTS)}")
    ap.add_argument("--shapes", default="c10,c100", help="comma list of step shapes: c10,c100")
    ap.add_argument("--rounds", type=int, default=0, help="timed runs per variant (default 3; tiny 1)")
    ap.add_argument("--compile", default="auto", choices=("auto", "on", "off"),
                    help="compiled variants: auto = when a compiler is present")
    ap.add_argument("--commit", default=os.environ.get("BENCH_COMMIT", ""),
                    help="commit to print (default $BENCH_COMMIT, else git's)")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    for opt, value, known in (("--only", args.only, PARTS), ("--shapes", args.shapes, ("c10", "c100"))):
        unknown = sorted(set(value.split(",")) - set(known) - {""})
        if unknown:
            ap.error(f"{opt}: unknown {', '.join(unknown)} (choose from {','.join(known)})")
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
