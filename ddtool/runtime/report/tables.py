"""The report's rows as text: CSV (every scalar field, then the other networks' accuracies) and a
Markdown table, with the number formats the CLI's table shares. Computing the rows is
:mod:`ddtool.runtime.report.rows`; nothing here measures or reads the store."""

from __future__ import annotations

import csv
import dataclasses
import io

from ddtool.runtime.report.rows import ReportRow


# the CSV's columns: every scalar field (the lists are in the JSON)
CSV_FIELDS = [f.name for f in dataclasses.fields(ReportRow)
              if f.name not in ("accuracies", "seeds", "eval_runs", "baselines", "full_runs", "soft_accuracies",
                                "soft_seeds", "soft_eval_runs", "learned_accuracies", "learned_seeds",
                                "learned_eval_runs", "cross_arch")]


def cross_nets(rows: list[ReportRow]) -> list[str]:
    """The other networks any row was evaluated on, sorted (records of one second list in no fixed order)."""
    return sorted({label for r in rows for label in r.cross_arch})


def to_csv(rows: list[ReportRow]) -> str:
    """Every scalar field, then ``<net>_mean`` and ``<net>_std`` per other network evaluated."""
    nets = cross_nets(rows)
    extra = [f"{n}_{k}" for n in nets for k in ("mean", "std")]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS + extra, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        d = row.to_dict()
        cells = {k: "" if d[k] is None else d[k] for k in CSV_FIELDS}
        cells.update({f"{n}_{k}": row.cross_arch[n][k] if n in row.cross_arch else "" for n in nets
                      for k in ("mean", "std")})
        writer.writerow(cells)
    return out.getvalue()


def to_markdown(rows: list[ReportRow]) -> str:
    """A GitHub table: accuracy in percent (mean ± std, repeats), scores, cost and storage; with soft
    labels their accuracy beside the hard one and their storage beside the images'; with a set's own
    learned labels their accuracy and DD-Ranking's soft-label scores ('-' without a teacher)."""
    soft = any(r.soft_mean is not None for r in rows)
    learned = any(r.learned_mean is not None for r in rows)
    nets = cross_nets(rows)
    head = ["set", "method", "ipc", "recipe", "accuracy %", *(["soft-label %"] if soft else []),
            *(f"{n} %" for n in nets), "random %", "full %", "HLR", "IOR", "LRS", "ARS",
            *(["soft random %", "soft IOR", "soft LRS"] if soft else []),
            *(["learned-label %", "learned random %", "learned IOR", "learned LRS"] if learned else []),
            "distill s", "storage",
            *(["soft labels"] if soft else [])]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        soft_acc = "-" if r.soft_mean is None else (
            f"{pct(r.soft_mean)} ± {pct(r.soft_std or 0.0)} ({r.soft_repeats}; {r.teacher}#{r.teacher_model}, "
            f"T {r.temperature:g})")
        cells = [r.ref, r.method, str(r.ipc), (r.recipe_sha256 or "-")[:12],
                 f"{pct(r.accuracy_mean)} ± {pct(r.accuracy_std)} ({r.repeats})", *([soft_acc] if soft else []),
                 *(f"{pct(r.cross_arch[n]['mean'])} ± {pct(r.cross_arch[n]['std'])} ({r.cross_arch[n]['repeats']})"
                   if n in r.cross_arch else "-" for n in nets),
                 f"{pct(r.random_mean)} ± {pct(r.random_std)} ({r.random_subsets} subsets)",
                 f"{pct(r.full_mean)}", f"{pct(r.hlr)}", f"{pct(r.ior)}", f"{r.lrs:.2f}",
                 "-" if r.ars is None else f"{r.ars:.2f}",
                 *(["-" if r.soft_random_mean is None else f"{pct(r.soft_random_mean)} ± {pct(r.soft_random_std or 0.0)}",
                    "-" if r.soft_ior is None else pct(r.soft_ior),
                    "-" if r.soft_lrs is None else f"{r.soft_lrs:.2f}"] if soft else []),
                 *([_pm(r.learned_mean, r.learned_std, r.learned_repeats),
                    _pm(r.learned_random_mean, r.learned_random_std),
                    "-" if r.learned_ior is None else pct(r.learned_ior),
                    "-" if r.learned_lrs is None else f"{r.learned_lrs:.2f}"] if learned else []),
                 "-" if r.distill_seconds is None else f"{r.distill_seconds:.1f}", human_bytes(r.storage_bytes),
                 *([("-" if r.soft_label_bytes is None else human_bytes(r.soft_label_bytes))] if soft else [])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _pm(mean: float | None, std: float | None, n: int | None = None) -> str:
    """mean ± std in percent (with the repeats), '-' when not computed."""
    if mean is None:
        return "-"
    return f"{pct(mean)} ± {pct(std or 0.0)}" + (f" ({n})" if n is not None else "")


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
