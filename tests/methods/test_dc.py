"""DC and DSA (ddtool.methods.dc): the reference's outer and inner loop counts."""

from __future__ import annotations

from ddtool.methods.dc import dc_loops


def test_dc_loops_reference_table():
    assert dc_loops(1) == (1, 1) and dc_loops(10) == (10, 50) and dc_loops(50) == (50, 10)
    assert dc_loops(12) == (10, 50) and dc_loops(200) == (50, 10)
