"""bench.gpu, the one-call GPU benchmark, in its tiny mode on the CPU: one table with the rows and
columns a GPU run reports, numbers that parse, and a budget that skips instead of overrunning."""

from __future__ import annotations

import io
import shutil
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/ lives beside ddtool/, not in it
from bench import gpu  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

ROW_PARTS = ("DM iteration", "IDC inner step: matching", "IDC inner step: network (1 x 64 real)", "eval, 5 repeats",
             "Ours10: pool", "Ours10: distill", "Ours10: full run (extrapolated)",
             "NCFM: pool", "NCFM: distill", "NCFM: full run (extrapolated)",
             "DATM: experts", "DATM: distill", "DATM: full run (extrapolated)", "memory: one iteration")
CASES = 9  # c10: dm, idc, eval; ours, ncfm, datm; one memory row; c100: dm, idc


def numbers(row: dict[str, str]) -> dict[str, float | None]:
    """The numeric cells of a row, '-' as None; a cell that is neither fails the test."""
    return {k: None if row[k] == gpu.NA else float(row[k]) for k in gpu.NUMERIC}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> tuple[str, str]:
    out = tmp_path_factory.mktemp("gpu-bench") / "table.md"
    printed = io.StringIO()
    from contextlib import redirect_stdout

    with redirect_stdout(printed):
        # compiling the tiny nets costs ~25 s on a 2-core CPU; test_compiled.py covers torch.compile
        assert gpu.main(["--tiny", "--device", "cpu", "--compile", "off", "--out", str(out)]) == 0
    return out.read_text(), printed.getvalue()


def test_tiny_mode_prints_one_table_with_every_part_and_parseable_numbers(tiny):
    text, printed = tiny
    first = text.splitlines()[0]
    assert first.startswith("bench.gpu ") and f"torch {torch.__version__}" in first and "commit" in first
    assert sum(1 for ln in text.splitlines() if ln.startswith("|---")) == 1  # one table
    header = [c.strip() for c in text.splitlines()[2].strip("|").split("|")]
    assert tuple(header) == gpu.COLUMNS
    rows = gpu.parse_table(text)
    assert all(len(r) == len(gpu.COLUMNS) for r in rows)
    assert {r["part"] for r in rows} == set(ROW_PARTS)
    # the table that was printed is the one written to --out
    assert gpu.parse_table(printed) == rows
    assert not [r for r in rows if r["note"].startswith(("failed", "skipped: budget", "skipped: over"))]

    for part in ("DM iteration", "IDC inner step: matching"):
        for shape in ("CIFAR-10 shape (tiny)", "CIFAR-100 shape (tiny)"):
            got = {r["variant"]: r for r in rows if r["part"] == part and r["shape"].startswith(shape)}
            assert set(got) == {"loop", "vectorised", "compiled (loop + torch.compile)"}
            loop, vec = numbers(got["loop"]), numbers(got["vectorised"])
            assert loop["s"] > 0 and vec["s"] > 0 and loop["speed-up"] == 1.0
            assert vec["speed-up"] == pytest.approx(loop["s"] / vec["s"], rel=0.01)
            assert loop["GFLOP"] > 0 and loop["GFLOP"] == vec["GFLOP"]  # the same arithmetic, two ways
            assert loop["GFLOP/s"] == pytest.approx(loop["GFLOP"] / loop["s"], rel=0.01)
            assert loop["peak MiB"] > 0
            assert got["compiled (loop + torch.compile)"]["note"] == "skipped: --compile off"
    evals = {r["variant"]: numbers(r) for r in rows if r["part"] == "eval, 5 repeats"}
    assert set(evals) == {"loop", "stacked ensemble"} and all(v["s"] > 0 and v["GFLOP"] > 0 for v in evals.values())

    distill = next(r for r in rows if r["part"] == "Ours10: distill")
    assert distill["variant"].startswith("2 full outer loops (2 inner x")
    d = numbers(distill)
    assert d["s"] > 0 and d["GFLOP"] > 0 and d["GFLOP/s"] > 0 and "s per outer loop" in distill["note"]
    full = next(r for r in rows if r["part"] == "Ours10: full run (extrapolated)")
    assert full["variant"].startswith("10 outer loops")  # ours10's [scale.digits] iterations, not the 2 run
    assert numbers(full)["s"] > 0 and "not comparable" in full["note"]

    for method, made, steps in (("NCFM", "pool", "batch_real 32, factor 1"), ("DATM", "experts", "5 student steps")):
        d = next(r for r in rows if r["part"] == f"{method}: distill")
        assert d["variant"] == f"2 iterations ({steps}" + (")" if method == "NCFM" else ", unroll plain)")
        assert numbers(d)["s"] > 0 and numbers(d)["GFLOP"] > 0 and numbers(d)["peak MiB"] > 0
        per_it = float(d["note"].split(" s per iteration")[0])
        full = next(r for r in rows if r["part"] == f"{method}: full run (extrapolated)")
        planned = {"NCFM": 100, "DATM": 200}[method]  # the recipes' [scale.digits] iterations, not the 2 run
        assert full["variant"].startswith(f"{planned} iterations + {made} ")
        assert numbers(full)["s"] > planned * per_it  # the iterations plus the pool's / experts' share
    memory = next(r for r in rows if r["part"] == "memory: one iteration")
    assert memory["variant"] == "MTT, checkpointed unroll" and memory["shape"].startswith("tiny")
    assert numbers(memory)["peak MiB"] > 0 and "syn_steps 3" in memory["note"] and "before distill" in memory["note"]
    assert f"{CASES} of {CASES} cases ran" in text.splitlines()[-1]


def test_an_unknown_part_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        gpu.main(["--tiny", "--only", "dm,mtt"])
    assert exc.value.code == 2 and "--only: unknown mtt" in capsys.readouterr().err


def test_no_budget_gives_skipped_rows_not_a_crash(tmp_path, capsys):
    out = tmp_path / "t.md"
    start = time.monotonic()
    gpu.main(["--tiny", "--device", "cpu", "--budget-s", "0", "--out", str(out)])
    assert time.monotonic() - start < 10
    rows = gpu.parse_table(out.read_text())
    assert len(rows) == CASES and all(r["note"].startswith("skipped: budget ran out") for r in rows)
    assert all(all(r[k] == gpu.NA for k in gpu.NUMERIC) for r in rows)
    assert f"0 of {CASES} cases ran" in out.read_text() and "skipped: budget ran out" in capsys.readouterr().out


def test_a_case_over_its_share_is_cut_by_the_alarm_and_the_next_case_still_runs(tmp_path, monkeypatch):
    def stuck(env, key):  # a case that would never end
        time.sleep(60)

    monkeypatch.setattr(gpu, "dm_rows", stuck)
    monkeypatch.setattr(gpu, "idc_rows", lambda env, key: [gpu.Row("IDC inner step: matching", key, "loop", 1.0)])
    out = tmp_path / "t.md"
    start = time.monotonic()
    gpu.main(["--tiny", "--device", "cpu", "--budget-s", "10", "--only", "dm,idc", "--shapes", "c10",
              "--out", str(out)])
    # the stuck case sleeps 60 s: ending well before proves the alarm cut it (dm's share is a fifth
    # of the budget, 2 s); the margin is for a loaded machine's start-up, not a speed target
    assert time.monotonic() - start < 40
    rows = gpu.parse_table(out.read_text())
    assert rows[0]["part"] == "DM iteration" and rows[0]["note"] == "skipped: over its 2 s share of the budget"
    assert rows[1]["variant"] == "loop" and rows[1]["s"] == "1"


def test_ours10_is_left_its_reserve_by_the_cases_before_it(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(gpu, "dm_rows", lambda env, key: ran.append("dm") or [])
    monkeypatch.setattr(gpu, "ours_rows", lambda env: ran.append("ours") or [])
    # 20 s budget: Ours10 keeps 5 s, so with 5 s left the DM case is skipped and Ours10 runs
    calls = []
    monkeypatch.setattr(gpu, "_now", lambda: 15.0 if calls.append(1) or len(calls) > 1 else 0.0)
    gpu.main(["--tiny", "--device", "cpu", "--budget-s", "20", "--only", "dm,ours", "--shapes", "c10",
              "--out", str(tmp_path / "t.md")])
    rows = gpu.parse_table((tmp_path / "t.md").read_text())
    assert ran == ["ours"]
    assert rows[0]["note"] == "skipped: budget ran out (5 s left, 5 s kept for Ours10)"


def test_cifar10_archives_are_extracted_and_load_as_an_image_folder(tmp_path):
    from PIL import Image

    from ddtool.lookup import load_dataset

    src = tmp_path / "archives"
    src.mkdir()
    for split, n in (("train", 3), ("test", 2)):
        folder = tmp_path / "build" / split
        for cls in ("cat", "dog"):
            (folder / cls).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (8, 8), (40 * i, 80, 120)).save(folder / cls / f"{i:04d}.jpg")
        with tarfile.open(src / f"{split}.tar.gz", "w:gz") as tar:
            tar.add(folder, arcname=split)
    dest = gpu.prepare_cifar10(src, tmp_path / "tmp")
    assert dest.name == "cifar10"
    data = load_dataset(f"imagefolder:{dest}", root=tmp_path / "root")
    assert data.classes == ["cat", "dog"] and tuple(data.train_images.shape) == (6, 3, 8, 8)
    assert data.test_images.shape[0] == 4
    assert gpu.prepare_cifar10(dest, tmp_path / "other") == dest  # already extracted: used as is
    shutil.rmtree(src)
    src.mkdir()
    with pytest.raises(FileNotFoundError, match="train.tar.gz"):
        gpu.prepare_cifar10(src, tmp_path / "tmp2")


def test_peaks_name_their_source():
    assert gpu.gpu_peak("NVIDIA H200").fp32 == pytest.approx(
        (494.5 if torch.backends.cudnn.allow_tf32 else 67.0) * 1e12)
    assert gpu.gpu_peak("NVIDIA H200 NVL").bf16 == pytest.approx(835e12)
    assert gpu.gpu_peak("Some Future GPU").fp32 is None
    cpu = gpu.cpu_peak(2)
    assert cpu.fp32 is None and cpu.label.startswith("unknown") or cpu.fp32 > 1e9 and "cores" in cpu.label


def test_ours10_cut_by_the_budget_after_a_loop_still_extrapolates_from_it(tmp_path, monkeypatch):
    advance = gpu.IterationClock.advance

    def ring_after_first_loop(self, n=1, **fields):  # the alarm, as it would ring inside loop 2
        advance(self, n, **fields)
        if self.ends:
            raise gpu.CaseTimeout()

    monkeypatch.setattr(gpu.IterationClock, "advance", ring_after_first_loop)
    gpu.main(["--tiny", "--device", "cpu", "--only", "ours", "--out", str(tmp_path / "t.md")])
    rows = {r["part"]: r for r in gpu.parse_table((tmp_path / "t.md").read_text())}
    distill = rows["Ours10: distill"]
    assert distill["note"].endswith("cut by the budget after 1 of 2 loops")
    assert "loop 1 alone" in distill["note"] and float(distill["GFLOP"]) > 0
    assert float(rows["Ours10: full run (extrapolated)"]["s"]) > 0


def test_the_budget_keeps_time_for_ncfm_datm_and_the_memory_rows_and_says_so(tmp_path, monkeypatch):
    ran = []
    for name in ("dm_rows", "recipe_rows", "memory_row"):
        monkeypatch.setattr(gpu, name, lambda *a, name=name: ran.append(name) or [])
    # 100 s budget, 16 s left at the DM case: NCFM and DATM keep 7 s each and the memory row 2.5 s
    calls = []
    monkeypatch.setattr(gpu, "_now", lambda: 84.0 if calls.append(1) or len(calls) > 1 else 0.0)
    gpu.main(["--tiny", "--device", "cpu", "--budget-s", "100", "--only", "dm,ncfm,datm,memory", "--shapes", "c10",
              "--out", str(tmp_path / "t.md")])
    rows = gpu.parse_table((tmp_path / "t.md").read_text())
    assert rows[0]["note"] == "skipped: budget ran out (16 s left, 16 s kept for NCFM, DATM, memory: one iteration)"
    assert ran == ["recipe_rows", "recipe_rows", "memory_row"]
