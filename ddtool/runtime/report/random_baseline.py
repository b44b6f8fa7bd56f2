"""The random-real baseline of a report: random real subsets of a dataset at an ipc, one per seed,
made with the ``random`` method once and found again in the store by what they record."""

from __future__ import annotations

import json
import re

import torch

from ddtool.data import ImageData
from ddtool.progress import Reporter, Silent
from ddtool.recipe import load_recipe
from ddtool.store import Artifact, Store
from ddtool.store.meta import DatasetSignature, SyntheticMeta

# the report names the subsets it makes so; ``report --dataset`` leaves them out of its rows
PREFIX = "report-random-"


def baseline_name(dataset: str, ipc: int, seed: int) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", dataset).strip("-.")[:60] or "data"
    return f"{PREFIX}{slug}-ipc{ipc}-seed{seed}"


def find_random(store: Store, data: ImageData, ipc: int, seed: int) -> Artifact | None:
    """A stored random subset of ``data`` at ``ipc`` drawn with ``seed`` (any name: a user's own
    ``distill --method random`` counts), the report's own name first, else the first by ref."""
    want = DatasetSignature.of(data)
    hits = []
    for art in store.list():
        if art.kind != "synthetic":
            continue
        try:
            info = SyntheticMeta.from_metadata(store.blob_metadata(art.digest))
        except Exception:  # an unreadable blob is verify's business, not the report's
            continue
        if (info.method == "random" and info.ipc == ipc and info.seed == seed and (info.factor or 1) == 1
                and info.signature.difference(want) is None):
            hits.append(art)
    if not hits:
        return None
    own = baseline_name(data.name, ipc, seed)
    latest = {}
    for art in hits:  # the newest version of each name
        latest[art.name] = art
    return latest.get(own) or latest[sorted(latest)[0]]


def make_random(store: Store, data: ImageData, ipc: int, seed: int, device: torch.device,
                reporter: Reporter | None = None) -> Artifact:
    """Distil (draw) the random subset with the ``random`` method, recorded like any distill run."""
    from ddtool.runtime.distill.loop import distill

    recipe = load_recipe(None, [f"data.dataset={json.dumps(data.name)}", 'distill.method="random"',
                                f"distill.ipc={ipc}", f"distill.seed={seed}"])
    return distill(store, recipe, data, device, reporter or Silent(), name=baseline_name(data.name, ipc, seed)).artifact


def random_subsets(store: Store, data: ImageData, ipc: int, seeds: list[int], device: torch.device,
                   reporter: Reporter | None = None) -> list[tuple[int, Artifact]]:
    """(seed, artifact) of each random subset, made only where the store holds none."""
    reporter = reporter or Silent()
    out = []
    for seed in seeds:
        art = find_random(store, data, ipc, seed)
        if art is None:
            art = make_random(store, data, ipc, seed, device, reporter)
            reporter.note(f"random baseline: made {art.ref} (ipc {ipc}, seed {seed})")
        out.append((seed, art))
    return out
