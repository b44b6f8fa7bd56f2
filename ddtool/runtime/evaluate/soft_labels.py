"""Soft-label evaluation: a teacher network's temperature-scaled outputs as training targets.

``eval.labels = "learned"`` (``"auto"``'s choice for a set that carries label vectors) trains on the
set's own labels: ``SyntheticSet.soft_labels`` as probabilities (softmax of logits), soft
cross-entropy at T = 1, their stored bytes charged to the set.

``eval.labels = "soft"`` trains each evaluation network on ``softmax(teacher(x) / T)`` for every
training image ``x`` of the set (the decoded images of a factor > 1 set), computed once before
training, not per augmented batch: these are the labels a set would ship with, so their storage
(``N x classes x 4`` bytes in fp32) is what the report charges to the set. The loss is Hinton's
distillation loss ``T² · KL(p_teacher ‖ softmax(student / T))``; ``train`` computes it as the
cross-entropy to the soft targets (KL plus the targets' constant entropy: the same gradients).

The teacher is named by ref: a model of a pool (``pool/NAME[:vN]``, model ``#i``, default 0) or
a full-data model saved by ``ddtool eval --full-data --save-teacher`` (stored as a pool of the
networks it trained, so the same ref syntax reads it back).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ddtool.data import ImageData
from ddtool.errors import UsageError
from ddtool.lookup import build_net
from ddtool.nets import NetSpec
from ddtool.pool import Pool
from ddtool.recipe import EvalSection
from ddtool.store import Artifact, Store
from ddtool.store.meta import DatasetSignature, PoolMeta
from ddtool.synthetic import SyntheticSet

LABELS = ("auto", "hard", "learned", "soft")
_INDEX = re.compile(r"^(?P<ref>.+?)#(?P<index>\d+)$")
SOFT_LABEL_DTYPE = torch.float32  # what storage is counted in


def parse_teacher(text: str) -> tuple[str, int]:
    """``pool/NAME[:vN][#i]`` -> (the artifact ref, model index i; 0 when not given)."""
    m = _INDEX.match(text.strip())
    if m:
        return m["ref"], int(m["index"])
    if "#" in text:
        raise UsageError(f"--teacher '{text}': write the model index as a number after '#', e.g. pool/NAME#0")
    return text.strip(), 0


@dataclass
class Teacher:
    """One teacher network, on the device, and what the eval record says about it."""

    net: nn.Module
    art: Artifact
    index: int
    spec: NetSpec
    full_data: bool  # saved by 'eval --full-data --save-teacher' (else a pretrained pool's model)

    def describe(self, temperature: float) -> dict[str, Any]:
        """The teacher and its settings, as the eval record keeps them."""
        return {"ref": self.art.ref, "digest": self.art.digest, "kind": self.art.kind, "model": self.index,
                "net": self.spec.name, "full_data": self.full_data, "temperature": temperature}


def load_teacher(store: Store, text: str, data: ImageData, device: torch.device) -> Teacher:
    """The teacher ``text`` names, refused in one line when it is unknown, not a pool, has no such
    model, or was trained on another dataset (name, classes or image shape) than ``data``."""
    if not text.strip():
        raise UsageError("--labels soft needs a teacher: --teacher pool/NAME[#i] (a pretrained pool's model) or "
                         "the pool 'ddtool eval --full-data --save-teacher' stores")
    ref, index = parse_teacher(text)
    try:
        art = store.resolve(ref, kind="pool")
    except UsageError as exc:
        raise UsageError(f"--teacher '{text}': {exc}") from None
    tensors, meta = store.read_blob(art.digest)
    info = PoolMeta.from_metadata(meta)
    diff = info.signature.difference(DatasetSignature.of(data))
    if diff is not None:
        label, have, want = diff
        if label == "classes":
            n_have = len(have.split(",")) if have else "?"
            have, want = f"{n_have} classes", f"{data.num_classes} classes"
        raise UsageError(f"teacher '{art.ref}' was trained on {label} '{have}', but this set is of '{want}'; "
                         "use a teacher of the set's own dataset")
    pool = Pool.from_artifact(tensors, meta, art.digest)
    if not 0 <= index < len(pool):
        raise UsageError(f"teacher '{art.ref}' holds {len(pool)} model(s) (#0..#{len(pool) - 1}); got #{index}")
    net = build_net(pool.net, data.channels, data.num_classes, data.resolution)
    try:
        net.load_state_dict(pool.states[index])
    except RuntimeError:
        raise UsageError(f"teacher '{art.ref}' does not fit a {pool.net.name} for {data.num_classes} classes "
                         f"at {data.resolution}px; use a teacher of the set's own dataset") from None
    full = bool((pool.models[index] if index < len(pool.models) else {}).get("full_data"))
    return Teacher(net.to(device).eval(), art, index, pool.net, full)


@torch.no_grad()
def soft_targets(forward: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, temperature: float,
                 batch: int = 1024) -> torch.Tensor:
    """``softmax(forward(x) / T)`` for every (normalised) image, [N, classes] in fp32."""
    if temperature <= 0:
        raise UsageError(f"eval.temperature must be > 0, got {temperature}")
    out = [torch.softmax(forward(images[s : s + batch]).float() / temperature, dim=1)
           for s in range(0, images.shape[0], batch)]
    return torch.cat(out).to(SOFT_LABEL_DTYPE)


def storage_bytes(targets: torch.Tensor) -> int:
    """Bytes the soft labels take as stored: N x classes x 4 in fp32."""
    return targets.numel() * targets.element_size()


def teacher_pool(nets: list[nn.Module], spec: NetSpec, data: ImageData, models: list[dict[str, Any]],
                 seed: int, epochs: int) -> Pool:
    """The full-data networks of an eval as a pool artifact (what ``--save-teacher`` stores)."""
    states = [{k: v.detach().cpu().clone() for k, v in net.state_dict().items()} for net in nets]
    return Pool(spec, states, models, DatasetSignature.of(data), seed=seed, epochs=epochs)


def teacher_name(data: ImageData, spec: NetSpec) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", data.name).strip("-.")[:60] or "data"
    return f"teacher-{slug}-{spec.name}"


def resolve_labels(cfg: EvalSection, syn: SyntheticSet, what: str) -> EvalSection:
    """``cfg`` with ``eval.labels = "auto"`` decided for ``syn`` (learned when it carries label
    vectors, else hard), so the record says which labels trained; ``learned`` on a set without
    label vectors is a usage error."""
    if cfg.labels == "auto":
        return dataclasses.replace(cfg, labels="learned" if syn.soft_labels is not None else "hard")
    if cfg.labels == "learned" and syn.soft_labels is None:
        raise UsageError(f"{what} carries no label vectors (eval.labels = \"learned\" is for sets that learned or "
                         "imported their labels); use --labels hard, or --labels soft with --teacher")
    return cfg


def soft_setup(store: Store, cfg: EvalSection, syn: SyntheticSet, data: ImageData, device: torch.device
               ) -> tuple[torch.Tensor | None, list[dict[str, str]], dict[str, Any]]:
    """What an evaluation under ``cfg`` (its labels resolved: :func:`resolve_labels`) adds for its
    labels: (the soft targets of ``syn``'s decoded images or None for hard labels, the teacher as a
    run input, the record's ``soft`` entry: where the labels came from and their storage in bytes)."""
    from ddtool.runtime.run_records import io_entry

    if cfg.labels == "learned":
        targets = syn.decoded_targets()
        assert targets is not None and syn.soft_labels is not None  # resolve_labels refused a set without
        return targets, [], {"labels": "learned", "label_kind": syn.info.label_kind,
                             "soft_label_bytes": storage_bytes(syn.soft_labels.detach().to(SOFT_LABEL_DTYPE)),
                             "soft_label_dtype": str(SOFT_LABEL_DTYPE).removeprefix("torch.")}
    if cfg.labels == "hard":
        if cfg.teacher:
            raise UsageError(f"eval.teacher is '{cfg.teacher}' but eval.labels is 'hard'; add --labels soft "
                             "(or drop the teacher)")
        return None, [], {}
    teacher = load_teacher(store, cfg.teacher, data, device)
    targets = soft_targets(teacher.net, syn.decoded()[0].detach().to(device), cfg.temperature)
    soft = {**teacher.describe(cfg.temperature), "labels": "soft", "soft_label_bytes": storage_bytes(targets),
            "soft_label_dtype": str(SOFT_LABEL_DTYPE).removeprefix("torch.")}
    return targets, [io_entry(teacher.art, "teacher")], soft
