"""ddtool from Python (notebooks, scripts): the verbs as functions over the same recipes and store.

``import ddtool`` exposes these lazily: ``ddtool.pretrain``, ``ddtool.distill``, ``ddtool.evaluate``,
``ddtool.report`` and ``ddtool.load``. Each takes a recipe (a TOML path, a shipped recipe's name such
as ``"ours10"``, or a :class:`Recipe`, with ``overrides`` as ``--set`` strings) and a store (a folder
or a :class:`Store`; default: the CLI's, ``$DDTOOL_HOME`` or the user data folder), and returns what
the runtime returns. Nothing prints (a local file taken over a shipped recipe of the same name is a
``UserWarning``); errors are :class:`ddtool.UsageError` / :class:`ddtool.DDToolError` with the CLI's one-line messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import TensorDataset

from ddtool.data import ImageData
from ddtool.lookup import load_dataset
from ddtool.progress import Reporter
from ddtool.recipe import Recipe, apply_overrides, load_recipe, recipe_from_dict
from ddtool.runtime.distill.loop import DistillResult
from ddtool.runtime.evaluate.train_eval import EvalResult, load_synthetic
from ddtool.runtime.pretrain.pool_training import PretrainResult
from ddtool.runtime.report.rows import ReportRow, ReportSettings, build_report
from ddtool.runtime.supervised import resolve_device
from ddtool.store import Store, open_store
from ddtool.store.meta import SyntheticMeta
from ddtool.synthetic import SyntheticSet

RecipeLike = str | Path | Recipe | None
StoreLike = str | Path | Store | None


def open_(store: StoreLike, write: bool = False) -> Store:
    """``store`` as a :class:`Store` (None: the CLI's default), refused like the CLI refuses a bad path."""
    s = store if isinstance(store, Store) else open_store(store)
    s.check_usable(write)
    return s


def recipe_of(recipe: RecipeLike, overrides: Sequence[str] = (), **shortcuts: Any) -> Recipe:
    """A recipe from a path, a :class:`Recipe` or the defaults, with ``overrides`` (``SECTION.KEY=VALUE``)
    and keyword shortcuts (``{"eval.epochs": 10}``; None skips one) applied over it."""
    import json

    extra = [*overrides, *(f"{k}={json.dumps(v)}" for k, v in shortcuts.items() if v is not None)]
    if isinstance(recipe, Recipe):
        return recipe_from_dict(apply_overrides(recipe.to_dict(), extra)) if extra else recipe
    return load_recipe(recipe, extra)


def _data(recipe: Recipe, data_root: str | Path | None, dataset: str | None = None) -> ImageData:
    return load_dataset(dataset or recipe.data.dataset, data_root or recipe.data.root or None, recipe.data.download)


def pretrain(recipe: RecipeLike = None, store: StoreLike = None, *, overrides: Sequence[str] = (),
             name: str | None = None, device: str = "auto", data_root: str | Path | None = None,
             reporter: Reporter | None = None) -> PretrainResult:
    """``ddtool pretrain``: train the recipe's ``[pretrain]`` pool of ``[net]`` models and store it."""
    from ddtool.runtime.pretrain.pool_training import pretrain as run

    r = recipe_of(recipe, overrides)
    s = open_(store, write=True)
    return run(s, r, _data(r, data_root), resolve_device(device), reporter, name=name)


def distill(recipe: RecipeLike = None, store: StoreLike = None, *, overrides: Sequence[str] = (),
            pool: str | None = None, name: str | None = None, device: str = "auto",
            data_root: str | Path | None = None, reporter: Reporter | None = None) -> DistillResult:
    """``ddtool distill``: distil the recipe's synthetic set and store it as ``synthetic/NAME``
    (``.artifact.ref``); ``pool`` as ``--pool``."""
    from ddtool.runtime.distill.loop import distill as run

    r = recipe_of(recipe, overrides, **{"distill.name": name})
    s = open_(store, write=True)
    return run(s, r, _data(r, data_root), resolve_device(device), reporter, pool_ref=pool)


def evaluate(ref: str, store: StoreLike = None, *, recipe: RecipeLike = None, overrides: Sequence[str] = (),
             net: str | None = None, epochs: int | None = None, repeats: int | None = None,
             device: str = "auto", data_root: str | Path | None = None,
             reporter: Reporter | None = None) -> EvalResult:
    """``ddtool eval REF``: train ``[eval] repeats`` fresh networks on the set, test them on its
    dataset's real test split, record an eval run; ``.mean``, ``.std``, ``.accuracies`` (fractions)."""
    from ddtool.nets import NetSpec
    from ddtool.runtime.evaluate.train_eval import evaluate as run

    r = recipe_of(recipe, overrides, **{"eval.net": net, "eval.epochs": epochs, "eval.repeats": repeats})
    s = open_(store, write=True)
    info = SyntheticMeta.from_metadata(s.blob_metadata(s.resolve(ref, kind="synthetic").digest))
    data = _data(r, data_root, info.signature.dataset)
    return run(s, ref, data, r.eval, resolve_device(device), NetSpec(r.eval.net) if r.eval.net else None, reporter)


def report(sets: Sequence[str] = (), store: StoreLike = None, *, dataset: str | None = None,
           recipe: RecipeLike = None, overrides: Sequence[str] = (), epochs: int | None = None,
           repeats: int | None = None, protocol: str | None = None, net: str | None = None,
           baseline_subsets: int = 3, full_epochs: int | None = None, full_repeats: int = 1, w: float = 0.5,
           ars: bool = False, gamma: float = 0.5, device: str = "auto", data_root: str | Path | None = None,
           reporter: Reporter | None = None) -> list[ReportRow]:
    """``ddtool report``: one :class:`ReportRow` per set (refs, run ids, and every set of ``dataset``)
    with its accuracy, the random-real baseline, the full-data bound, HLR / IOR / LRS (ARS with
    ``ars``), cost and storage; a set with learned labels also its accuracy on them and, with a
    teacher (``overrides=['eval.labels="soft"', 'eval.teacher="pool/NAME"']``, as ``--teacher``),
    DD-Ranking's soft-label IOR / LRS. The evaluation settings are the recipe's ``[eval]`` (default:
    the DSA protocol, 300 epochs, 5 repeats) with the keyword arguments over it."""
    from ddtool.runtime.evaluate.train_eval import FULL_DATA_EPOCHS

    r = recipe_of(recipe, overrides, **{"eval.epochs": epochs, "eval.repeats": repeats, "eval.protocol": protocol})
    settings = ReportSettings(eval=r.eval, net=net or r.eval.net, baseline_subsets=baseline_subsets,
                              full_epochs=full_epochs or FULL_DATA_EPOCHS, full_repeats=full_repeats, w=w, ars=ars,
                              gamma=gamma)
    s = open_(store, write=True)
    return build_report(s, list(sets), settings, resolve_device(device), reporter, dataset=dataset,
                        data_root=data_root or r.data.root or None, download=r.data.download)


@dataclass
class LoadedSet:
    """A stored synthetic set as the tensors a network trains on.

    ``images``: the training images (an IDC set decoded to its factor² images per stored one),
    normalised with the dataset's ``mean``/``std`` as stored; ``labels``: int64 class indices;
    ``stored``: the set as stored (not decoded); ``info``: what it records about itself.
    """

    ref: str
    digest: str
    images: torch.Tensor
    labels: torch.Tensor
    info: SyntheticMeta
    stored: SyntheticSet

    @property
    def classes(self) -> list[str] | None:
        return self.info.signature.class_names()

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def dataset(self) -> TensorDataset:
        """A ``torch.utils.data.Dataset`` of (image, label) pairs, for a standard ``DataLoader``."""
        return TensorDataset(self.images, self.labels)


def load(ref: str, store: StoreLike = None) -> LoadedSet:
    """A synthetic set from the store (ref, ``KIND/NAME:vN`` or digest prefix), decoded, on the CPU."""
    art, syn = load_synthetic(open_(store), ref)
    images, labels = syn.decoded()
    return LoadedSet(art.ref, art.digest, images.detach(), labels, syn.info, syn)


__all__ = ["LoadedSet", "distill", "evaluate", "load", "pretrain", "report", "recipe_of"]
