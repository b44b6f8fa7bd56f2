"""Tables fitted to the terminal's width (ddtool.cli.render): whole columns are never cut."""

from __future__ import annotations

import io

from rich.console import Console

from ddtool.cli.render import GAP, Col, column_widths, fitted_table


def _render(table, width: int) -> list[str]:  # type: ignore[no-untyped-def]
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None).print(table)
    return buf.getvalue().splitlines()


def test_room_comes_from_the_redundant_then_the_cut_then_the_spare_columns() -> None:
    cols = [Col("ref"), Col("kind", drop=1), Col("note", whole=False, min_width=6), Col("size", drop=2)]
    rows = [["synthetic/a-long-name:v1", "synthetic", "x" * 30, "12 KiB"]]
    ref, kind, note, size = 24, 9, 30, 6
    assert column_widths(cols, rows, 200) == [ref, kind, note, size]  # everything fits
    full = ref + kind + note + size + 3 * GAP
    assert column_widths(cols, rows, full - 1) == [ref, None, note, size]  # the kind goes first
    no_kind = ref + note + size + 2 * GAP
    assert column_widths(cols, rows, no_kind - 10) == [ref, None, note - 10, size]  # then the note is cut
    assert column_widths(cols, rows, ref + size + 2 * GAP + 5) == [ref, None, None, size]  # under 6: left out
    assert column_widths(cols, rows, ref + 1) == [ref, None, None, None]  # the ref alone, whole


def test_wrap_columns_give_a_line_only_once_cut_columns_are_down_to_comfort() -> None:
    cols = [Col("name"), Col("aliases", wrap=True), Col("description", whole=False)]
    rows = [["dream", "dream+, dreamplus", "d" * 100]]
    wide = column_widths(cols, rows, 5 + 17 + 60 + 2 * GAP)
    assert wide == [5, 17, 60]  # the description is cut, the aliases stay on one line
    narrow = column_widths(cols, rows, 5 + 17 + 30 + 2 * GAP)
    assert narrow[1] == len("dreamplus") and narrow[2] == 30 + 17 - len("dreamplus")


def test_a_fitted_table_cuts_with_an_ellipsis_and_keeps_refs_whole() -> None:
    cols = [Col("ref"), Col("dataset", whole=False)]
    rows = [["synthetic/" + "r" * 40 + ":v12", "imagefolder:/data/[weird]/" + "p" * 60]]
    table, lost = fitted_table("t", cols, rows, 80)
    lines = _render(table, 80)
    assert lost == ["dataset"] and max(len(ln) for ln in lines) <= 80
    assert rows[0][0] in lines[-1] and lines[-1].rstrip().endswith("…")
    assert "imagefolder:/data/[wei…" in lines[-1]  # plain text: a '[' is no markup
    # a terminal too narrow even for the ref folds it: every character is still there
    narrow = _render(fitted_table("t", cols, rows, 30)[0], 30)
    assert "".join(ln.strip() for ln in narrow[3:]) == rows[0][0]
