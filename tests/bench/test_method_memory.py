"""bench.method_memory: each row is its shipped recipe at the paper's settings less only what one
iteration's memory does not follow; the table says why a row has no figure; the watchdog stops a
row's process and does not lend it the parent's resident high-water mark."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/ lives beside ddtool/, not in it
from bench import method_memory as mm  # noqa: E402
from ddtool.recipe import load_recipe  # noqa: E402


def recipe_of(row: str, shape: str = "c10"):
    return load_recipe(mm.REPO / "recipes" / mm.ROWS[row].recipe, mm.recipe_sets(row, shape, 1))


@pytest.mark.parametrize(("row", "method", "unroll", "syn_steps"), [
    ("mtt", "mtt", "plain", 30), ("mtt-ckpt", "mtt", "checkpointed", 30),
    ("datm", "datm", "plain", 80), ("datm-ckpt", "datm", "checkpointed", 80),
])
def test_trajectory_rows_keep_the_papers_unroll_and_name_their_experts(row, method, unroll, syn_steps):
    r = recipe_of(row)
    o = r.distill.options
    # the recipe's top level, not its [scale.digits] table (10 steps at width 32)
    assert (r.distill.method, o["unroll"], o["syn_steps"], o["batch_syn"]) == (method, unroll, syn_steps, 0)
    assert r.net.width == 128 and r.distill.iterations == 1 and r.distill.ipc == 10
    assert o["trajectories"] == f"trajectories/bench-{row}-c10" and r.pretrain.n == 1
    assert mm.expert_epochs(r) == o["max_start_epoch"] + o["expert_epochs"] == 22


def test_ncfm_and_idc_rows_keep_the_papers_batches():
    ncfm = recipe_of("ncfm", "c100")
    assert (ncfm.distill.batch_real, ncfm.distill.options["factor"], ncfm.distill.options["sampling_net"]) == (1024, 2, True)
    assert ncfm.distill.pool == "pool/bench-ncfm-c100" and (ncfm.pretrain.n, ncfm.pretrain.epochs) == (1, 1)
    idc = recipe_of("idc")
    o = idc.distill.options
    assert (idc.distill.batch_real, o["factor"], o["net_steps"], o["net_batch"], o["inner_loops"]) == (64, 2, 32, 64, 2)
    assert "2 of 100 inner loops" in mm.ROWS["idc"].shortened


def test_only_the_tiny_shape_shrinks_the_step():
    assert recipe_of("mtt", "tiny").distill.options["syn_steps"] == 3
    assert recipe_of("mtt", "c100").distill.options["syn_steps"] == 30


def test_a_cpu_row_shows_the_record_the_baseline_and_their_difference():
    r = mm.Result("ncfm", "c10", peak_bytes=2410 * 2**20, before_bytes=754 * 2**20, seconds=95.4, settings="s")
    assert mm.cells(r) == ["CIFAR-10 ipc 10", "NCFM", "s", "pool: 1 model x 1 epoch", "2,410", "754", "1,656", "95"]


def test_a_cuda_row_has_no_baseline_and_a_stopped_row_says_why():
    cuda = mm.cells(mm.Result("datm-ckpt", "c100", peak_bytes=3 * 2**30, seconds=2.0))
    assert cuda[4:] == ["3,072", "-", "-", "2"]
    stopped = mm.cells(mm.Result("mtt", "c100", stopped="> 9.8 GiB"))
    assert stopped[1] == "MTT, plain unroll" and stopped[4:] == ["> 9.8 GiB", "-", "-", "-"]
    lines = mm.table_lines([mm.Result("idc", "c10", stopped="failed: a | b")])
    assert len(lines) == 3 and lines[0].count("|") == len(mm.COLUMNS) + 1
    assert lines[2].count("|") == len(mm.COLUMNS) + 1  # a '|' in a reason does not split its cell


PY = [sys.executable, "-c"]


def test_the_watchdog_stops_a_row_past_its_memory_and_kills_the_row_not_only_the_shell(tmp_path):
    pid_file = tmp_path / "pid"
    code, _, why = mm.watched(PY + [f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
                                    "x = b'x' * (64 * 2**20); time.sleep(60)"], 32 * 2**20, timeout_s=50)
    assert code is None and why == "> 0.0 GiB"
    pid = int(pid_file.read_text())
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        state = "gone"
    assert state in ("gone", "Z", "X")


def test_the_watchdog_stops_a_row_past_its_time_and_reports_a_failure():
    code, _, why = mm.watched(PY + ["import time; time.sleep(60)"], None, timeout_s=0.5)
    assert code is None and why == "over 0 s"
    code, _, why = mm.watched(PY + ["raise SystemExit('no pool')"], None, timeout_s=50)
    assert code is None and why == "failed: no pool"
    code, out, why = mm.watched(PY + ["print('ok')"], None, timeout_s=50)
    assert (code, out.strip(), why) == (0, "ok", "")


def test_a_row_does_not_inherit_the_parents_resident_high_water_mark():
    held = b"x" * (256 * 2**20)  # this process now holds 256 MiB more
    code, out, _ = mm.watched(PY + ["import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"],
                              None, timeout_s=50)
    assert code == 0 and int(out) * 1024 < 128 * 2**20 and len(held) == 256 * 2**20
