"""bench.cpu_peak: a CPU's fp32 FLOP per cycle from /proc/cpuinfo's flags, torch's capability and
ONEDNN_MAX_CPU_ISA, fed as text (no machine is assumed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/ lives beside ddtool/, not in it
from bench import cpu_peak  # noqa: E402


def cpuinfo(flags: str, vendor: str = "AuthenticAMD", family: int = 25, mhz: tuple[float, ...] = (2445.424,)) -> str:
    """/proc/cpuinfo's text for a machine of len(mhz) processors with these flags."""
    return "\n\n".join(
        f"processor\t: {i}\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel name\t: Some CPU\n"
        f"cpu MHz\t\t: {m}\nflags\t\t: fpu sse sse2 {flags}\n" for i, m in enumerate(mhz))


ZEN3 = "ssse3 fma sse4_1 sse4_2 avx avx2"
SKYLAKE_X = ZEN3 + " avx512f avx512dq avx512bw avx512vl"


@pytest.mark.parametrize(("flags", "capability", "expected", "isa"), [
    (ZEN3, "AVX2", 32, "AVX2 + FMA"),  # 8 lanes x 2 FLOP x 2 pipes: the machine
    (SKYLAKE_X, "AVX512", 64, "AVX-512 + FMA"),  # 16 lanes x 2 x 2: what the old table hard-coded
    (SKYLAKE_X, "AVX2", 64, "AVX-512 + FMA"),  # torch's AVX2 kernels: oneDNN still runs AVX-512
    ("ssse3 sse4_1 avx", "DEFAULT", 32, "AVX (no FMA)"),  # Sandy Bridge: no FMA, counted as an upper bound
    ("", "DEFAULT", 16, "SSE (no FMA)"),
])
def test_the_peak_follows_the_vector_unit_the_flags_declare(flags, capability, expected, isa):
    found = cpu_peak.detect(cpuinfo(flags), capability)
    assert found.flop_per_cycle == expected
    assert found.line.startswith(f"{isa}: ") and f"= {expected} FLOP/cycle (assumed 2 pipes" in found.line
    assert f"torch capability {capability}" in found.line


def test_the_line_spells_out_the_arithmetic():
    found = cpu_peak.detect(cpuinfo(ZEN3), "AVX2")
    assert found.line.startswith("AVX2 + FMA: 8 fp32 lanes x 2 FLOP x 2 FMA pipes = 32 FLOP/cycle (assumed 2 pipes")


def test_avx2_without_fma_is_not_counted_as_fma():
    assert cpu_peak.detect(cpuinfo("avx avx2"), "DEFAULT").line.startswith("AVX (no FMA)")


def test_the_pipes_assumption_scales_the_figure():
    assert cpu_peak.detect(cpuinfo(SKYLAKE_X), "AVX512", pipes=1).flop_per_cycle == 32


def test_a_lowered_aten_capability_is_reported_but_does_not_lower_the_convolutions_peak():
    # ATEN_CPU_CAPABILITY=default: ATen's element-wise kernels drop to the baseline, oneDNN's do not
    found = cpu_peak.detect(cpuinfo(ZEN3), "DEFAULT")
    assert found.flop_per_cycle == 32
    assert "torch capability DEFAULT" in found.line and "ATen's own kernels run SSE" in found.line
    assert "ATen's own kernels" not in cpu_peak.detect(cpuinfo(ZEN3), "AVX2").line


@pytest.mark.parametrize(("cap", "expected", "isa"), [
    ("AVX2", 32, "AVX2 + FMA"), ("avx2_vnni", 32, "AVX2 + FMA"), ("SSE41", 16, "SSE (no FMA)"),
    ("ALL", 64, "AVX-512 + FMA"), ("", 64, "AVX-512 + FMA"), ("AVX512_CORE_AMX", 64, "AVX-512 + FMA"),
])
def test_onednn_max_cpu_isa_caps_the_hardware(cap, expected, isa):
    found = cpu_peak.detect(cpuinfo(SKYLAKE_X, vendor="GenuineIntel", family=6), "AVX512", onednn_max_isa=cap)
    assert found.flop_per_cycle == expected and found.line.startswith(isa)
    assert ("capped by ONEDNN_MAX_CPU_ISA" in found.line) == (expected < 64)


def test_a_cap_above_the_hardware_does_not_raise_it():
    assert cpu_peak.detect(cpuinfo(ZEN3), "AVX2", onednn_max_isa="AVX512_CORE").flop_per_cycle == 32


def test_zen4_avx512_is_flagged_as_split_over_256_bit_pipes():
    assert "--flop-per-cycle 32" in cpu_peak.detect(cpuinfo(SKYLAKE_X, family=25), "AVX512").line
    assert "Zen 4" not in cpu_peak.detect(cpuinfo(SKYLAKE_X, vendor="GenuineIntel", family=6), "AVX512").line


def test_aarch64_neon():
    text = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes crc32\nCPU implementer\t: 0x41\n"
    found = cpu_peak.detect(text, "DEFAULT")
    assert found.flop_per_cycle == 16 and found.line.startswith("NEON + FMA")


def test_no_vector_unit_is_unknown_and_says_how_to_go_on():
    found = cpu_peak.detect("processor\t: 0\n", "VSX")
    assert found.flop_per_cycle is None and "--flop-per-cycle" in found.line


def test_the_clock_is_the_highest_listed():
    assert cpu_peak.clock_ghz(cpuinfo(ZEN3, mhz=(1800.0, 3100.5))) == pytest.approx(3.1005)
    assert cpu_peak.clock_ghz("processor\t: 0\n") == 0.0


def test_an_override_wins_and_says_what_it_replaced():
    found = cpu_peak.detect(cpuinfo(ZEN3), "AVX2")
    assert cpu_peak.flop_per_cycle_line(found, None) == (32, found.line)
    value, line = cpu_peak.flop_per_cycle_line(found, 48.0)
    assert value == 48 and line.startswith("48 FLOP/cycle from --flop-per-cycle, overriding the detected 32 (AVX2")


def test_physical_prints_what_it_detected_and_honours_the_override(monkeypatch, capsys):
    """bench.physical's header, with the steps stubbed out (the timing is minutes)."""
    from bench import physical

    monkeypatch.setattr(cpu_peak, "read_cpuinfo", lambda: cpuinfo(ZEN3, mhz=(2000.0,)))
    monkeypatch.setattr(cpu_peak, "this_machine", lambda: cpu_peak.detect(cpuinfo(ZEN3), "AVX2"))
    monkeypatch.setattr(physical, "steps", lambda device, compiled: {"DM iteration": lambda: None})
    monkeypatch.setattr(physical, "flops_of", lambda fn: 64e9)
    monkeypatch.setattr(physical, "interleaved", lambda fns, rounds: {"DM iteration": [1.0]})
    monkeypatch.setattr(physical.torch, "get_num_threads", lambda: 1)
    for argv, per_cycle, pct in ((["--no-compile"], 32, "100 %"), (["--no-compile", "--flop-per-cycle", "64"], 64, "50 %")):
        monkeypatch.setattr(sys, "argv", ["physical", *argv])
        physical.main()
        out = capsys.readouterr().out
        assert f"peak {2 * per_cycle} GFLOP/s (1 threads x 2.00 GHz x {per_cycle} FLOP/cycle)" in out
        assert "# FLOP/cycle: " + ("AVX2 + FMA: 8 fp32 lanes" if per_cycle == 32 else
                                   "64 FLOP/cycle from --flop-per-cycle, overriding the detected 32") in out
        assert f"| DM iteration | 64.0 | 1.000 | 64.0 | {pct} |" in out
