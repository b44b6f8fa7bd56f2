"""Artifact metadata: every ``ddtool.*`` key of a blob's safetensors header is spelled here.

safetensors metadata is a flat ``str -> str`` map. Each artifact kind has one typed record that
is the only reader and writer of its keys; the objects of the layers above
(:class:`ddtool.synthetic.SyntheticSet`, :class:`ddtool.pool.Pool`) build on these records in
their ``to_artifact``/``from_artifact``:

* every blob: ``ddtool.schema`` (the format version) and ``ddtool.kind`` (``synthetic``,
  ``pool``, ``checkpoint``): :func:`with_schema`, :func:`with_kind`, :func:`schema_of`, :func:`kind_of`
* :class:`DatasetSignature`: ``ddtool.dataset``, ``ddtool.classes``, ``ddtool.shape``, what the
  pixels of a synthetic set or the inputs of a pool belong to
* :class:`SyntheticMeta`: a synthetic set (how to read its images, and what made it)
* :class:`PoolMeta`: a pool of early-stage models
* :class:`TrajectoryMeta`: the index of a set of expert trajectories (MTT), and
  :class:`ExpertMeta`: one expert's blob, which the index names by digest (:func:`held_blobs`)
* :func:`checkpoint_metadata`: a distill checkpoint

Values are written as ddtool 0.1 wrote them (``str()`` of numbers, ``json.dumps`` of lists), so
the same inputs keep the same bytes and digest. Reading ignores keys it does not know, and every
field a hand-made artifact may lack is ``None``.

Older artifacts: synthetic sets written by ddtool 0.1 also carry ``ddtool.arch``, the name that
``ddtool.net`` holds too; it is read past and no longer written (pools keep writing it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Mapping, NamedTuple

from ddtool.errors import DDToolError

SCHEMA = "1"
SCHEMA_KEY = "ddtool.schema"
KIND_KEY = "ddtool.kind"

Metadata = Mapping[str, str]


# -- every blob ---------------------------------------------------------------------------------
def with_schema(metadata: Metadata) -> dict[str, str]:
    """``metadata`` with the schema version (a caller's own ``ddtool.schema`` wins: tests fake newer ones)."""
    return {SCHEMA_KEY: SCHEMA, **metadata}


def with_kind(kind: str, metadata: Metadata) -> dict[str, str]:
    return {KIND_KEY: kind, **metadata}


def schema_of(meta: Metadata) -> str:
    """The schema a blob was written with (blobs without one predate the key: the current one)."""
    return meta.get(SCHEMA_KEY, SCHEMA)


def kind_of(meta: Metadata, default: str | None = None) -> str | None:
    return meta.get(KIND_KEY, default)


# -- the dataset signature ----------------------------------------------------------------------
_SIGNATURE_KEYS = {"dataset": "ddtool.dataset", "classes": "ddtool.classes", "shape": "ddtool.shape",
                   "zca": "ddtool.zca"}


@dataclass(frozen=True)
class DatasetSignature:
    """What a pool or synthetic set must agree with to be used on a dataset."""

    dataset: str | None = None
    classes: tuple[str, ...] | None = None
    shape: str | None = None  # "CxHxW"
    zca: str | None = None  # sha256 of the ZCA whitening's parameters (ddtool.data.zca); None: not whitened

    @classmethod
    def of(cls, data: Any) -> "DatasetSignature":
        """The signature of an ``ImageData`` (anything with name, classes, channels, resolution)."""
        zca = getattr(data, "zca", None)
        return cls(data.name, tuple(data.classes), f"{data.channels}x{data.resolution}x{data.resolution}",
                   zca.digest() if zca is not None else None)

    @classmethod
    def from_metadata(cls, meta: Metadata) -> "DatasetSignature":
        classes = meta.get(_SIGNATURE_KEYS["classes"])
        return cls(meta.get(_SIGNATURE_KEYS["dataset"]), None if classes is None else tuple(classes.split(",")),
                   meta.get(_SIGNATURE_KEYS["shape"]), meta.get(_SIGNATURE_KEYS["zca"]))

    def texts(self) -> dict[str, str | None]:
        """The stored text of each field by its label (dataset, classes, shape, zca), None when absent."""
        return {"dataset": self.dataset, "classes": None if self.classes is None else ",".join(self.classes),
                "shape": self.shape, "zca": self.zca}

    def to_metadata(self) -> dict[str, str]:
        texts = self.texts()
        return {key: text for label, key in _SIGNATURE_KEYS.items() if (text := texts[label]) is not None}

    def class_names(self) -> list[str] | None:
        """The class names, or None when the artifact does not record them."""
        return list(self.classes) if self.classes and self.classes != ("",) else None

    def difference(self, want: "DatasetSignature", recorded_only: bool = False
                   ) -> tuple[str, str | None, str | None] | None:
        """The first field that differs from ``want`` as (label, this text, wanted text), or None.

        ``recorded_only`` skips the fields this signature does not record (a foreign file).
        """
        have, wanted = self.texts(), want.texts()
        for label in _SIGNATURE_KEYS:
            if recorded_only and have[label] is None:
                continue
            if have[label] != wanted[label]:
                return label, have[label], wanted[label]
        return None


# -- field codecs -------------------------------------------------------------------------------
class _Codec(NamedTuple):
    read: Callable[[str], Any]
    write: Callable[[Any], str]


_TEXT = _Codec(str, str)
_INT = _Codec(int, str)
_FLOAT = _Codec(float, repr)  # repr: the shortest text that reads back as the same float
_LIST = _Codec(lambda text: tuple(json.loads(text)) if text else None, lambda values: json.dumps(list(values)))
_SORTED_JSON = _Codec(json.loads, lambda value: json.dumps(value, sort_keys=True))

_RECIPE_SHA256 = "ddtool.recipe_sha256"
_PARENTS = "ddtool.parents"
_NET = "ddtool.net"
_SEED = "ddtool.seed"


def _read_fields(fields: dict[str, tuple[str, _Codec]], meta: Metadata) -> dict[str, Any]:
    return {name: codec.read(meta[key]) for name, (key, codec) in fields.items() if key in meta}


def _write_fields(fields: dict[str, tuple[str, _Codec]], record: Any) -> dict[str, str]:
    out = record.signature.to_metadata()
    for name, (key, codec) in fields.items():
        value = getattr(record, name)
        if value is not None:
            out[key] = codec.write(value)
    return out


def recipe_sha256_of(meta: Metadata) -> str | None:
    return meta.get(_RECIPE_SHA256)


def parents_of(meta: Metadata) -> list[str]:
    """Digests of the artifacts this one was made from (a synthetic set's pool)."""
    return list(json.loads(meta.get(_PARENTS, "[]")))


# -- synthetic sets -----------------------------------------------------------------------------
_SYNTHETIC_FIELDS = {
    "ipc": ("ddtool.ipc", _INT),
    "factor": ("ddtool.factor", _INT),
    "mean": ("ddtool.mean", _LIST),
    "std": ("ddtool.std", _LIST),
    "method": ("ddtool.method", _TEXT),
    "selection": ("ddtool.selection", _TEXT),
    "schedule": ("ddtool.schedule", _TEXT),
    "net": (_NET, _TEXT),
    "parents": (_PARENTS, _LIST),
    "recipe_sha256": (_RECIPE_SHA256, _TEXT),
    "seed": (_SEED, _INT),
    "iterations": ("ddtool.iterations", _INT),
    "version": ("ddtool.version", _TEXT),
    "source": ("ddtool.source", _TEXT),
    "source_sha256": ("ddtool.source_sha256", _TEXT),
    "source_method": ("ddtool.source_method", _TEXT),
    "learned_lr": ("ddtool.learned_lr", _FLOAT),
    "label_kind": ("ddtool.label_kind", _TEXT),
}  # ddtool 0.1 also wrote "ddtool.arch", the name inside "ddtool.net": read past, not written


#: What a set's own label vectors hold: raw ``logits`` (trained on as ``softmax(logits)``) or
#: ``probabilities`` (rows of non-negative numbers summing to 1).
LABEL_KINDS = ("logits", "probabilities")


@dataclass(frozen=True)
class SyntheticMeta:
    """Everything a stored synthetic set says about itself; None: not recorded.

    Distilled sets record the dataset, the normalisation, the method, selection strategy,
    schedule, network, pool (``parents``), recipe hash, seed and iteration count; imported sets
    record ``method = "imported"`` and where they came from (``source``, its sha256 and the
    ``source_method`` its file named).
    """

    signature: DatasetSignature = DatasetSignature()
    ipc: int | None = None
    factor: int | None = None  # IDC's multi-formation factor; None reads as 1
    mean: tuple[float, ...] | None = None  # normalisation of the stored images
    std: tuple[float, ...] | None = None
    method: str | None = None
    selection: str | None = None
    schedule: str | None = None
    net: str | None = None  # the network as NetSpec JSON
    parents: tuple[str, ...] | None = None  # digests of the pool it was distilled with
    recipe_sha256: str | None = None
    seed: int | None = None
    iterations: int | None = None
    version: str | None = None  # of ddtool
    source: str | None = None  # an imported file's name
    source_sha256: str | None = None
    source_method: str | None = None
    # the training step size a method learned with the set (MTT's synthetic lr): eval.lr = "learned"
    learned_lr: float | None = None
    # what the set's own per-image label vectors are (``soft_labels`` beside ``labels``): one of
    # LABEL_KINDS; None: the set has none, its labels are the class indices alone
    label_kind: str | None = None

    @classmethod
    def from_metadata(cls, meta: Metadata) -> "SyntheticMeta":
        return cls(signature=DatasetSignature.from_metadata(meta), **_read_fields(_SYNTHETIC_FIELDS, meta))

    @property
    def method_label(self) -> str:
        """The method and what set the run apart from it alone (see :func:`method_label`)."""
        return method_label(self.method, self.selection, self.schedule)

    def to_metadata(self) -> dict[str, str]:
        return _write_fields(_SYNTHETIC_FIELDS, self)


def exported_metadata(meta: Metadata, ref: str, digest: str) -> dict[str, str]:
    """A stored set's metadata as an exported file carries it: as stored, plus which artifact it was."""
    return {**meta, "ddtool.exported_from": ref, "ddtool.exported_digest": digest}


# -- pools --------------------------------------------------------------------------------------
_POOL_FIELDS = {
    "net": (_NET, _TEXT),
    "n": ("ddtool.n", _INT),
    "models": ("ddtool.models", _SORTED_JSON),
    "recipe_sha256": (_RECIPE_SHA256, _TEXT),
    "seed": (_SEED, _INT),
    "arch": ("ddtool.arch", _TEXT),
    "epochs": ("ddtool.epochs", _INT),
}


@dataclass(frozen=True)
class PoolMeta:
    """Everything a stored pool says about itself; None: not recorded."""

    signature: DatasetSignature = DatasetSignature()
    net: str | None = None  # the architecture as NetSpec JSON
    n: int | None = None  # models in the pool
    models: list[dict[str, Any]] | None = None  # per-model hyper-parameters and accuracy
    recipe_sha256: str | None = None
    seed: int | None = None
    arch: str | None = None  # the name inside ``net``, as ddtool 0.1 wrote it
    epochs: int | None = None

    @classmethod
    def from_metadata(cls, meta: Metadata) -> "PoolMeta":
        return cls(signature=DatasetSignature.from_metadata(meta), **_read_fields(_POOL_FIELDS, meta))

    def to_metadata(self) -> dict[str, str]:
        return _write_fields(_POOL_FIELDS, self)


# -- expert trajectories ------------------------------------------------------------------------
TRAJECTORIES_KIND = "trajectories"  # the index artifact (a ref kind: trajectories/NAME)
EXPERT_KIND = "expert"  # one expert's snapshots: a blob without a ref, kept alive by the index naming it

_TRAJECTORY_FIELDS = {
    "net": (_NET, _TEXT),
    "n": (_POOL_FIELDS["n"][0], _INT),  # the key pools use: 'store ls' shows it as the size
    "epochs": ("ddtool.epochs", _INT),
    "experts": ("ddtool.experts", _LIST),
    "layout": ("ddtool.layout", _SORTED_JSON),
    "training": ("ddtool.training", _SORTED_JSON),
    "recipe_sha256": (_RECIPE_SHA256, _TEXT),
    "seed": (_SEED, _INT),
}


@dataclass(frozen=True)
class TrajectoryMeta:
    """Everything a stored set of expert trajectories says about itself; None: not recorded.

    The index artifact holds no parameters: ``experts`` are the digests of the expert blobs in
    order (one per expert, so a run reads only the experts it samples), ``layout`` the flat
    parameter vector every snapshot is ([[name, [shape...]], ...] in ``named_parameters`` order),
    ``training`` how the experts were trained (lr, momentum, weight_decay, batch, epochs, augment,
    cutmix, zca).
    """

    signature: DatasetSignature = DatasetSignature()
    net: str | None = None  # the architecture as NetSpec JSON
    n: int | None = None  # experts
    epochs: int | None = None  # snapshots per expert: epochs + 1 (epoch 0 = the initialisation)
    experts: tuple[str, ...] | None = None
    layout: list[list[Any]] | None = None
    training: dict[str, Any] | None = None
    recipe_sha256: str | None = None
    seed: int | None = None

    @classmethod
    def from_metadata(cls, meta: Metadata) -> "TrajectoryMeta":
        return cls(signature=DatasetSignature.from_metadata(meta), **_read_fields(_TRAJECTORY_FIELDS, meta))

    def to_metadata(self) -> dict[str, str]:
        return _write_fields(_TRAJECTORY_FIELDS, self)


_EXPERT_FIELDS = {
    "epochs": ("ddtool.epochs", _INT),
    "seed": (_SEED, _INT),
    "net": (_NET, _TEXT),
}


@dataclass(frozen=True)
class ExpertMeta:
    """One expert's blob: the network, seed and epochs of its snapshots (self-describing, for verify)."""

    signature: DatasetSignature = DatasetSignature()
    epochs: int | None = None
    seed: int | None = None
    net: str | None = None

    @classmethod
    def from_metadata(cls, meta: Metadata) -> "ExpertMeta":
        return cls(signature=DatasetSignature.from_metadata(meta), **_read_fields(_EXPERT_FIELDS, meta))

    def to_metadata(self) -> dict[str, str]:
        return {KIND_KEY: EXPERT_KIND, **_write_fields(_EXPERT_FIELDS, self)}


def held_blobs(meta: Metadata) -> list[str]:
    """Digests of the blobs this blob keeps alive without a ref of their own: a trajectories
    index's experts (``store verify`` checks them, ``store gc`` keeps them); none for other kinds."""
    if kind_of(meta) != TRAJECTORIES_KIND:
        return []
    try:
        experts = TrajectoryMeta.from_metadata(meta).experts or ()
    except ValueError:  # hand-edited or damaged JSON
        experts = None
    if experts is None or not all(isinstance(d, str) for d in experts):
        raise DDToolError(f"the trajectories index's {_TRAJECTORY_FIELDS['experts'][0]} is not a list of digests")
    return list(experts)


# -- checkpoints --------------------------------------------------------------------------------
def checkpoint_metadata(iteration: int) -> dict[str, str]:
    """A distill checkpoint blob's metadata: its kind and the outer iteration it was taken after."""
    return {KIND_KEY: "checkpoint", "ddtool.iteration": str(iteration)}


# -- listings -----------------------------------------------------------------------------------
def method_label(method: str | None, selection: str | None, schedule: str | None) -> str:
    """'idc' for IDC on fresh networks; 'idc + random + gaussian' for Acc-DD's Ours (IDC on a pool,
    each network perturbed); 'mtt + dynadistill': the selection strategy unless ``scratch`` and the
    perturbation schedule unless ``none``, so sets made by one method in different ways read apart."""
    parts = [method or "?"]
    parts += [selection] if selection and selection != "scratch" else []
    parts += [schedule] if schedule and schedule != "none" else []
    return " + ".join(parts)


def listing_fields(meta: Metadata) -> dict[str, str]:
    """The stored text of the fields ``store ls`` shows for any kind: dataset, method, ipc, n, and a
    set's :func:`method_label` (``label``)."""
    method = meta.get(_SYNTHETIC_FIELDS["method"][0], "")
    label = method_label(method, meta.get(_SYNTHETIC_FIELDS["selection"][0]),
                         meta.get(_SYNTHETIC_FIELDS["schedule"][0])) if method else ""
    return {"dataset": meta.get(_SIGNATURE_KEYS["dataset"], "?"), "method": method, "label": label,
            "ipc": meta.get(_SYNTHETIC_FIELDS["ipc"][0], ""), "n": meta.get(_POOL_FIELDS["n"][0], "")}
