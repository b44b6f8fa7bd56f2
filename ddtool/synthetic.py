"""The synthetic set: parameterisation, initialisation, IDC's multi-formation decode, and the
synthetic artifact (``to_artifact``/``from_artifact``, the only way sets enter and leave the store)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import torch
import torch.nn.functional as F

from ddtool.data import ImageData
from ddtool.errors import DDToolError
from ddtool.nets import NetSpec
from ddtool.store.meta import LABEL_KINDS, DatasetSignature, SyntheticMeta

# A method that learns the step size its set should be trained with (MTT's learnable synthetic lr)
# keeps that value, a 0-d tensor, in its optimizer's state under this key. The run then records
# it in the set (``SyntheticMeta.learned_lr``) and in every checkpoint, and ``eval.lr = "learned"``
# trains at it, as the reference evaluates.
LEARNED_LR_STATE = "synthetic_lr"


@dataclass
class SyntheticSet:
    """Stored images (normalised float, a leaf tensor when distilling) and their labels.

    ``factor`` > 1 means IDC's multi-formation: each stored image holds factor x factor
    tiles that decode to factor**2 training images of the full resolution. ``info`` is what
    the stored set says about itself (dataset, normalisation, method, provenance); ``digest``
    the artifact it was read from.

    ``soft_labels``: the set's own label vectors, [N, classes] float, one per stored image (its
    tiles share it), as a method that learns labels leaves them (DATM) or an imported set brings
    them; ``info.label_kind`` says whether they are logits or probabilities. ``labels`` stays the
    class of each image (what hard-label evaluation and per-class matching use). None: hard labels only.
    """

    images: torch.Tensor
    labels: torch.Tensor
    ipc: int
    factor: int = 1
    info: SyntheticMeta = field(default_factory=SyntheticMeta)
    digest: str = ""
    soft_labels: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.soft_labels is not None:
            check_soft_labels(self.soft_labels, len(self.labels), self.info.label_kind)

    def decoded(self) -> tuple[torch.Tensor, torch.Tensor]:
        return decode(self.images, self.labels, self.factor)

    def label_probabilities(self) -> torch.Tensor | None:
        """The set's own labels as probabilities [N, classes] in fp32, one row per stored image
        (``softmax`` of logits); None for a set with hard labels only."""
        if self.soft_labels is None:
            return None
        soft = self.soft_labels.detach().float()
        return torch.softmax(soft, dim=1) if self.info.label_kind == "logits" else soft

    def decoded_targets(self) -> torch.Tensor | None:
        """The set's own labels as training targets: :meth:`label_probabilities`, one row per
        decoded image (a stored image's tiles share its row); None for hard labels only."""
        probs = self.label_probabilities()
        return None if probs is None else probs.repeat_interleave(self.factor * self.factor, dim=0)

    @property
    def signature(self) -> DatasetSignature:
        return self.info.signature

    @property
    def net(self) -> NetSpec | None:
        """The network it was distilled (or imported) with, if recorded."""
        return NetSpec.from_json(self.info.net) if self.info.net else None

    def to_artifact(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """(tensors, metadata) to store: ``images`` and ``labels``, and ``info`` with this set's ipc and factor."""
        meta = replace(self.info, ipc=self.ipc, factor=self.factor).to_metadata()
        tensors = {"images": self.images.detach(), "labels": self.labels}
        if self.soft_labels is not None:
            tensors["soft_labels"] = self.soft_labels.detach().float().contiguous()
        return tensors, meta

    @classmethod
    def from_artifact(cls, tensors: dict[str, torch.Tensor], meta: dict[str, str], digest: str = "") -> "SyntheticSet":
        """A stored set (or checkpoint) back: ipc from the metadata, else the largest class. A set
        stored before sets carried label vectors reads back with ``soft_labels`` None."""
        info = SyntheticMeta.from_metadata(meta)
        labels = tensors["labels"]
        ipc = info.ipc or int(torch.bincount(labels).max())
        return cls(tensors["images"], labels, ipc, info.factor or 1, info, digest, tensors.get("soft_labels"))


def check_soft_labels(soft: torch.Tensor, n: int, kind: str | None) -> None:
    """Refuse label vectors that do not fit a set of ``n`` images or say what they are."""
    if kind not in LABEL_KINDS:
        raise DDToolError(f"a set's label vectors must say what they are (label_kind {' or '.join(LABEL_KINDS)}); "
                          f"got {kind!r}")
    if soft.dim() != 2 or soft.shape[0] != n or not soft.is_floating_point():
        raise DDToolError(f"a set's label vectors must be a float [{n}, classes] tensor, one per image; "
                          f"got {str(soft.dtype).removeprefix('torch.')} {list(soft.shape)}")


def decode(images: torch.Tensor, labels: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split each image into factor x factor tiles and upsample each tile to full size (IDC)."""
    if factor == 1:
        return images, labels
    n, c, h, w = images.shape
    th, tw = h // factor, w // factor
    tiles = images.view(n, c, factor, th, factor, tw).permute(0, 2, 4, 1, 3, 5).reshape(n * factor * factor, c, th, tw)
    out = F.interpolate(tiles, size=(h, w), mode="bilinear", align_corners=False)
    return out, labels.repeat_interleave(factor * factor)


def encode_real(real: torch.Tensor, factor: int) -> torch.Tensor:
    """factor**2 real images per stored image: downsize each and tile them (IDC's ``mix`` init).

    Downsized by nearest-neighbour sampling, as IDC's ``F.interpolate`` default does: the tiles
    keep the real images' high frequencies. On CIFAR-10 (ipc 10, factor 2, 300-epoch IDC-protocol
    evaluation of the initial set alone) that gives 46.7 % against 44.7 % for an antialiased
    bilinear downsizing (BENCHMARKS.md, issue 11).
    """
    if factor == 1:
        return real
    n, c, h, w = real.shape
    small = F.interpolate(real, size=(h // factor, w // factor), mode="nearest")
    k = n // (factor * factor)
    small = small[: k * factor * factor].view(k, factor, factor, c, h // factor, w // factor)
    return small.permute(0, 3, 1, 4, 2, 5).reshape(k, c, h, w)


def init_synthetic(data: ImageData, ipc: int, init: str, factor: int = 1,
                   device: torch.device | str = "cpu",
                   pick: Callable[[int, int], torch.Tensor] | None = None) -> SyntheticSet:
    """Real images of each class (drawn with the global RNG, or ``pick(c, n)``: the training-set
    indices of n images of class c, as DREAM's k-means init chooses them) or Gaussian noise."""
    need = ipc * factor * factor
    images, labels = [], []
    for c in range(data.num_classes):
        have = len(data.class_indices(c))
        if init == "real" and have < need:
            raise DDToolError(
                f"class '{data.classes[c]}' has {have} training images, fewer than the {need} that "
                f"ipc={ipc}" + (f" x factor {factor}^2" if factor > 1 else "") + " needs; lower distill.ipc"
            )
        if init == "real":
            idx = data.sample_class(c, need) if pick is None else pick(c, need)
            x = encode_real(data.normalize(data.train_images[idx]), factor)
        else:
            x = torch.randn(ipc, data.channels, data.resolution, data.resolution)
        images.append(x)
        labels.append(torch.full((ipc,), c, dtype=torch.long))
    return SyntheticSet(torch.cat(images).to(device), torch.cat(labels).to(device), ipc, factor)
