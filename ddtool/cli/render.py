"""Tables and cells several commands print: one spelling of each, so their outputs agree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from rich import box
from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

from ddtool.cli.common import console, print_json
from ddtool.store import Store
from ddtool.store.meta import listing_fields


def accuracy_cell(mean: float, std: float, unit: bool = True) -> str:
    """``97.12 ± 0.34 %``: a test accuracy over repeats (fractions in, percent out)."""
    text = f"{100 * mean:.2f} ± {100 * std:.2f}"
    return f"{text} %" if unit else text


def pool_table(title: str, models: list[dict[str, Any]]) -> Table:
    """One row per model of a pool: its seed, learning rate, augmentation, epochs and accuracies."""
    table = Table(title=title)
    for col in ("model", "seed", "lr", "augment", "epochs", "train acc", "test acc"):
        table.add_column(col, justify="right")
    for m in models:
        table.add_row(str(m["index"]), str(m["seed"]), f"{m['lr']:.4g}", m["augment"], str(m["epochs"]),
                      f"{100 * m['train_acc']:.1f}%", f"{100 * m['test_acc']:.1f}%")
    return table


@dataclass(frozen=True)
class Col:
    """A column of a table fitted to the terminal's width (:func:`fitted_table`)."""

    header: str
    whole: bool = True  # never cut (refs, names): its widest cell sets its width
    wrap: bool = False  # of whole words, wrapped at spaces when short of room (lists of aliases)
    min_width: int = 8  # a cut column (whole=False) narrower than this is left out instead
    # 0: always shown; 1: left out before any column is cut (what another column already says);
    # 2, 3...: left out in that order once the cut columns are gone, should the rest still not fit
    drop: int = 0
    justify: Literal["left", "right"] = "left"


GAP = 3  # between two columns: a space either side of box.SIMPLE_HEAD's blank divider
COMFORT = 40  # cells a cut column keeps before a wrap column gives up a line for it


def column_widths(cols: list[Col], rows: list[list[str]], width: int) -> list[int | None]:
    """Each column's width in a table of at most ``width`` cells, None for one left out.

    Room is found, in this order, by leaving out the ``drop=1`` columns, cutting the cut columns
    down to ``COMFORT`` cells, wrapping the wrap columns down to their longest word, cutting the cut
    columns further (the widest gives first) and leaving out those that would fall under their
    ``min_width``, then leaving out ``drop=2, 3...``. Whole columns keep their widest cell, so a
    ref or a name stays whole; when even the columns that are never left out do not fit, the
    table is wider than ``width`` (and whole cells fold).
    """
    natural = [max([cell_len(c.header), *(cell_len(r[i]) for r in rows)]) for i, c in enumerate(cols)]
    widths: list[int | None] = list(natural)
    cut = [i for i, c in enumerate(cols) if not c.whole]

    def excess() -> int:
        kept = [w for w in widths if w is not None]
        return sum(kept) + GAP * (len(kept) - 1) - width

    def cut_down(floor: int) -> None:
        """Water-fill the cut columns' room: the narrow keep what they need, the rest share, none
        below ``floor`` (nor its own width)."""
        live = sorted((i for i in cut if widths[i] is not None), key=lambda i: natural[i])
        room = sum(widths[i] or 0 for i in live) - max(excess(), 0)
        for n, i in enumerate(live):
            widths[i] = min(natural[i], max(min(natural[i], floor), room // (len(live) - n)))
            room -= widths[i] or 0

    for i, c in enumerate(cols):
        if c.drop == 1 and excess() > 0:
            widths[i] = None
    if excess() > 0:
        cut_down(COMFORT)
    for i, c in enumerate(cols):
        if c.wrap and excess() > 0:
            words = max((cell_len(w) for text in [c.header, *(r[i] for r in rows)] for w in text.split()), default=1)
            widths[i] = max(words, natural[i] - excess())
    while excess() > 0 and any(widths[i] is not None for i in cut):
        cut_down(0)
        live = [i for i in cut if widths[i] is not None]
        least = [min(cols[i].min_width, natural[i]) for i in range(len(cols))]
        narrowest = min(live, key=lambda i: (widths[i] or 0) - least[i])
        if (widths[narrowest] or 0) >= least[narrowest]:
            break
        widths[narrowest] = None  # its room goes to the others on the next pass
    for i in sorted((i for i, c in enumerate(cols) if c.drop > 1), key=lambda i: cols[i].drop):
        if excess() > 0:
            widths[i] = None
    return widths


def fitted_table(title: str | None, cols: list[Col], rows: list[list[str]], width: int,
                 row_styles: list[str | None] | None = None) -> tuple[Table, list[str]]:
    """(a table of ``rows`` that fits ``width`` terminal cells, the headers of the columns cut or left
    out). Cut cells end in '…'; whole cells are never cut (:func:`column_widths`). Cells are plain
    text (a '[' in a path is no markup); ``row_styles`` styles whole rows."""
    widths = column_widths(cols, rows, width)
    natural = column_widths(cols, rows, 10**6)
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    kept = [i for i, w in enumerate(widths) if w is not None]
    for i in kept:
        c = cols[i]
        # a whole column folds (onto a second line, every character kept) should a terminal be
        # too narrow even for the whole columns; a cut one stays on its line, ending in '…'
        table.add_column(c.header, width=widths[i], no_wrap=not c.whole, justify=c.justify,
                         overflow="fold" if c.whole else "ellipsis")
    for n, r in enumerate(rows):
        table.add_row(*(Text(r[i]) for i in kept), style=row_styles[n] if row_styles else None)
    lost = [c.header for c, w, n in zip(cols, widths, natural) if w is None or (n is not None and w < n)]
    return table, lost


def listing_rows(store: Store) -> list[dict[str, str]]:
    """Every artifact version: ref, kind, digest, size in bytes, dataset, method, ipc, models."""
    rows = []
    for art in store.list():
        try:
            meta = store.blob_metadata(art.digest)
        except Exception:
            meta = {}
        size = art.path.stat().st_size if art.path.exists() else 0
        rows.append({"ref": art.ref, "kind": art.kind, "digest": art.digest, "bytes": str(size),
                     **listing_fields(meta)})
    return rows


def _what(row: dict[str, str]) -> str:
    """'dm ipc=10' (or 'idc + random + gaussian ipc=10') for a set, '5 models' for a pool, '2 experts'
    for trajectories."""
    if row["kind"] == "synthetic":
        return f"{row['label'] or row['method']} ipc={row['ipc']}"
    noun = "expert" if row["kind"] == "trajectories" else "model"
    return f"{row['n']} {noun}{'' if row['n'] == '1' else 's'}"


def print_listing(store: Store, as_json: bool) -> None:
    """The store's artifacts as a table (``store ls``, and ``inspect`` without refs)."""
    rows = listing_rows(store)
    if as_json:
        print_json(rows)
        return
    if not rows:
        # one line, never wrapped: the path is to be copied, and a narrow terminal must not break it
        console.print(f"the store at {store.root} is empty; start with 'ddtool pretrain' or 'ddtool distill'",
                      soft_wrap=True, highlight=False)
        return
    # the ref is the one column a user must copy: it is never cut; the kind is its first word
    cols = [Col("ref"), Col("kind", drop=1), Col("digest", drop=4), Col("dataset", whole=False),
            Col("method/ipc", drop=3), Col("size", justify="right", drop=2)]
    cells = [[r["ref"], r["kind"], r["digest"][:12], r["dataset"], _what(r), f"{int(r['bytes']) / 1024:.0f} KiB"]
             for r in rows]
    table, _ = fitted_table(f"store {store.root}", cols, cells, console.width)
    console.print(table)
