"""Tables and cells several commands print: one spelling of each, so their outputs agree."""

from __future__ import annotations

from typing import Any

from rich.table import Table

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
    table = Table(title=f"store {store.root}")
    for col in ("ref", "kind", "digest", "dataset", "method/ipc", "size"):
        table.add_column(col)
    for r in rows:
        what = f"{r['method']} ipc={r['ipc']}" if r["kind"] == "synthetic" else f"{r['n']} models"
        table.add_row(r["ref"], r["kind"], r["digest"][:12], r["dataset"][:40], what, f"{int(r['bytes']) / 1024:.0f} KiB")
    console.print(table)
