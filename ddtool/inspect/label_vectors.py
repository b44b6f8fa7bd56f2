"""A set's own label vectors as a reader checks them: each image's top class and its confidence."""

from __future__ import annotations

from dataclasses import dataclass

from ddtool.synthetic import SyntheticSet


@dataclass(frozen=True)
class TopLabel:
    """Stored image ``index`` of class ``label``: its label vector's most likely class and probability."""

    index: int
    label: int
    top: int
    confidence: float


def top_labels(syn: SyntheticSet) -> list[TopLabel]:
    """One entry per stored image (tiles of a factor > 1 image share its vector); [] for hard labels."""
    probs = syn.label_probabilities()
    if probs is None:
        return []
    conf, top = probs.max(dim=1)
    return [TopLabel(i, int(y), int(t), float(c))
            for i, (y, t, c) in enumerate(zip(syn.labels.tolist(), top.tolist(), conf.tolist()))]


def label_lines(entries: list[TopLabel], classes: list[str], per_class: int | None = None) -> list[str]:
    """One line per class: each image's top class (its own class as '=') and confidence, then how
    many images' top class is another class than the one they were made for."""
    name = lambda c: classes[c] if c < len(classes) else str(c)  # noqa: E731
    lines = []
    for c in sorted({e.label for e in entries}):
        mine = [e for e in entries if e.label == c]
        shown = mine[:per_class] if per_class else mine
        cells = [f"{'=' if e.top == c else name(e.top)} {e.confidence:.2f}" for e in shown]
        more = f" … (+{len(mine) - len(shown)})" if len(shown) < len(mine) else ""
        lines.append(f"{name(c)}: {', '.join(cells)}{more}")
    other = sum(e.top != e.label for e in entries)
    lines.append(f"{other} of {len(entries)} images have another top class than the one they were made for")
    return lines
