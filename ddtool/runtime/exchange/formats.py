"""Synthetic sets in and out of the store, for other dataset-distillation code.

Export:

* ``imagefolder``: one PNG per *training* image (IDC's multi-formation sets are decoded first,
  so a factor-2 set with ipc 10 gives 40 files per class), denormalised to uint8
  (``round-half-up(x * 255)``, like torchvision's ``save_image``), in ``DIR/<class>/NNNN.png``,
  plus ``DIR/labels.csv`` with the columns ``path,label,class`` (paths relative to DIR); a set
  with its own label vectors adds ``DIR/soft_labels.csv``: ``path`` and one probability per class.
* ``npz``: ``images`` float32 normalised exactly as stored (not decoded), ``labels`` int64, a set's
  label vectors as ``soft_labels`` float32 [N, classes] (``ddtool.label_kind`` in the metadata says
  logits or probabilities), and ``metadata``, a one-element string array holding the artifact's
  metadata as JSON (mean, std, factor, classes...). Loads with ``numpy.load(path, allow_pickle=False)``.

Import takes ``.npz`` (read with ``allow_pickle=False``) or ``.pt`` (read with
``torch.load(weights_only=True)``: a dict with ``images``/``labels``, a tuple or list
``(images, labels)``, or DC/DSA/DM's ``{"data": [[images, labels], ...]}``, whose first entry is
used). Images are [N, C, H, W] (or [N, H, W, C]) float or uint8. Float images are taken as
already normalised when the file carries ddtool metadata, or when ``normalized`` says so;
otherwise they are detected by range: all values in [0, 1] means pixels (normalised with the
dataset's mean and std), anything outside means already normalised. uint8 images are pixels
in 0..255. Label vectors ([N, classes] floats: as ``labels`` or ``label_syn`` — DATM's learned
labels — or as ``soft_labels`` beside class indices) are kept as the set's own labels, its classes
their argmax; they are probabilities when every row is non-negative and sums to 1, else logits
(a ddtool file's ``ddtool.label_kind`` says which).

The step size a method learned with the set (MTT's and DATM's ``syn_lr``; ``eval.lr = "learned"``
trains at it) is kept: from a ddtool file's metadata (``ddtool.learned_lr``), else from a scalar
entry :data:`_LR_KEYS` of the file (the reference codes keep it apart from the images), else
from the caller (``store import --learned-lr``, which wins over both); the import's notes say which.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ddtool.data import ImageData
from ddtool.errors import UsageError
from ddtool.nets import NetSpec
from ddtool.runtime.run_records import io_entry, run_record
from ddtool.store import Artifact, Store
from ddtool.store.meta import LABEL_KINDS, DatasetSignature, SyntheticMeta, exported_metadata
from ddtool.store.refs import check_name
from ddtool.synthetic import SyntheticSet, decode
from ddtool.version import __version__

FORMATS = ("imagefolder", "npz")
_IMAGE_KEYS = ("images", "image_syn", "x", "data", "imgs")
_LABEL_KEYS = ("labels", "label_syn", "y", "targets")
_LR_KEYS = ("learned_lr", "syn_lr", "lr")  # a scalar beside the images: the learned step size


@dataclass
class FileContents:
    """What an imported file holds, as read (nothing checked against a dataset yet)."""

    images: torch.Tensor
    labels: torch.Tensor
    meta: dict[str, str]  # ddtool metadata ({} for a foreign file)
    soft: torch.Tensor | None  # label vectors given beside the class labels
    lr: float | None = None  # a scalar learned step size the file carries apart from its metadata
    lr_key: str | None = None  # the entry it came from


@dataclass
class ImportResult:
    artifact: Artifact
    run_id: str
    count: int
    ipc: int
    detected: str  # how the image range was decided
    notes: list[str] = field(default_factory=list)


def _safe_folder(name: str, index: int) -> str:
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or f"class{index}"
    return clean


def _uint8(images01: torch.Tensor) -> torch.Tensor:
    return images01.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)


def _denormalize(images: torch.Tensor, info: SyntheticMeta) -> torch.Tensor:
    if info.mean is None or info.std is None:
        raise UsageError("the set does not record the mean and std it was normalised with; it cannot be "
                         "turned back into pixels")
    if info.signature.zca:  # a ZCA-whitened set (ddtool.data.zca): un-whiten to viewable pixels first
        from ddtool.data.dataset import data_root
        from ddtool.data.zca import find_zca

        zca = find_zca(info.signature.zca, data_root())
        if zca is None:
            raise UsageError(f"the set is ZCA-whitened ({info.signature.dataset}) and its whitening "
                             f"(zca {info.signature.zca[:12]}) is not in the data cache; load the dataset once "
                             f"(e.g. 'ddtool eval' of the set) to fit it again, then export")
        images = zca.invert(images.float())
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    return (images.float() * std + mean).clamp(0, 1)


def _load(store: Store, ref: str) -> tuple[Artifact, SyntheticSet, dict[str, str]]:
    art, tensors, meta = store.load(ref, kind="synthetic")
    return art, SyntheticSet.from_artifact(tensors, meta, art.digest), meta


def export_imagefolder(store: Store, ref: str, folder: Path) -> dict[str, Any]:
    """Write the training (decoded) images as PNGs in class folders plus labels.csv."""
    from PIL import Image

    art, syn, _ = _load(store, ref)
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UsageError(f"'{folder}' exists and is not an empty folder; choose a new one")
    images, labels = decode(syn.images.float(), syn.labels, syn.factor)
    pixels = _uint8(_denormalize(images, syn.info)).permute(0, 2, 3, 1).numpy()
    classes = syn.signature.class_names() or []
    names = [_safe_folder(c, i) for i, c in enumerate(classes)]
    if len(set(names)) != len(names):  # two class names that clean up to the same folder
        names = [f"{i:03d}_{n}" for i, n in enumerate(names)]
    folder.mkdir(parents=True, exist_ok=True)
    rows, counts = [], {}
    targets = syn.decoded_targets()
    for px, y in zip(pixels, labels.tolist()):
        cls = classes[y] if y < len(classes) else str(y)
        sub = names[y] if y < len(names) else f"class{y}"
        k = counts.get(y, 0)
        counts[y] = k + 1
        rel = f"{sub}/{k:04d}.png"
        (folder / sub).mkdir(exist_ok=True)
        img = Image.fromarray(px[:, :, 0], mode="L") if px.shape[2] == 1 else Image.fromarray(px, mode="RGB")
        img.save(folder / rel)
        rows.append((rel, y, cls))
    with open(folder / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "class"])
        w.writerows(rows)
    if targets is not None:  # the set's own labels, as probabilities of each decoded image
        with open(folder / "soft_labels.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["path", *(f"p_{c}" for c in range(targets.shape[1]))])
            w.writerows([rel, *(format(v, ".7g") for v in t)] for (rel, _, _), t in zip(rows, targets.tolist()))
    return {"ref": art.ref, "digest": art.digest, "format": "imagefolder", "path": str(folder),
            "files": len(rows), "per_class": {classes[k] if k < len(classes) else str(k): v
                                              for k, v in sorted(counts.items())},
            "decoded": syn.factor > 1, "soft_labels": targets is not None}


def export_npz(store: Store, ref: str, path: Path) -> dict[str, Any]:
    """Write images (float32, normalised, as stored), labels (int64) and the metadata as JSON."""
    import numpy as np

    art, syn, meta = _load(store, ref)
    path = Path(path)
    if path.is_dir():
        path = path / f"{(art.name or art.digest[:12])}-v{art.version or 0}.npz"
    elif path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    images = syn.images.to(torch.float32).contiguous().numpy()
    labels = syn.labels.to(torch.int64).numpy()
    info = exported_metadata(meta, art.ref, art.digest)
    extra = {} if syn.soft_labels is None else {"soft_labels": syn.soft_labels.detach().to(torch.float32).numpy()}
    with open(path, "wb") as fh:
        np.savez(fh, images=images, labels=labels, metadata=np.array([json.dumps(info, sort_keys=True)]), **extra)
    out = {"ref": art.ref, "digest": art.digest, "format": "npz", "path": str(path),
           "images": list(images.shape), "factor": syn.factor}
    if syn.signature.zca:  # stored values are whitened: say so (imagefolder un-whitens)
        out["zca"] = f"images are ZCA-whitened (metadata ddtool.zca {syn.signature.zca[:12]}); " \
                     "--format imagefolder writes un-whitened pixels"
    return out


def export_set(store: Store, ref: str, dest: Path, fmt: str) -> dict[str, Any]:
    if fmt == "imagefolder":
        return export_imagefolder(store, ref, dest)
    if fmt == "npz":
        return export_npz(store, ref, dest)
    raise UsageError(f"unknown export format '{fmt}'; choose {' or '.join(FORMATS)}")


# -- import -------------------------------------------------------------------------------------
def _pick(d: dict[str, Any], keys: tuple[str, ...], what: str, path: Path) -> Any:
    for k in keys:
        if k in d:
            return d[k]
    raise UsageError(f"'{path}' has no {what} (looked for {', '.join(keys)}; it has {', '.join(map(str, d))})")


def load_weights_only(path: Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: tensors, containers and numbers only (NumPy's
    scalars and numeric arrays too, :func:`_numpy_data_globals`); anything else is refused before it
    is built, as one line naming the file and torch's reason."""
    try:
        with torch.serialization.safe_globals(_numpy_data_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        # torch's message runs over several lines of advice on loading unsafely; keep its cause only
        text = str(exc)
        after = text.split("WeightsUnpickler error:", 1)[-1]
        lines = [ln.strip() for ln in after.splitlines() if ln.strip()]
        first = lines[0].split(" Please use")[0] if lines else type(exc).__name__
        raise UsageError(f"'{path}' is not a tensor file torch.load(weights_only=True) accepts: {first}") from None


def _scalar_lr(d: dict[str, Any], path: Path, strict: bool = True) -> tuple[float | None, str | None]:
    """The first of :data:`_LR_KEYS` in ``d`` as a float (a tensor, array or number of one element);
    one that is not (``strict``: refused) is passed over."""
    for key in _LR_KEYS:
        if key not in d:
            continue
        value = d[key]
        try:
            number = float(torch.as_tensor(value).reshape(-1).item())  # one element, of any numeric kind
        except (TypeError, ValueError, RuntimeError):
            if not strict:
                continue
            raise UsageError(f"'{key}' in '{path}' is not one number (the learned step size); "
                             "drop it from the file or give --learned-lr") from None
        if not math.isfinite(number):
            if not strict:
                continue
            raise UsageError(f"'{key}' in '{path}' is {number}; give the step size with --learned-lr")
        return number, key
    return None, None


def read_file(path: Path, strict_lr: bool = True) -> FileContents:
    """Images, labels, ddtool metadata, label vectors and a learned step size from a .npz or .pt
    file, without unpickling (``strict_lr = False``: the caller gives the step size, so an entry that is
    not one number is passed over instead of refused)."""
    path = Path(path)
    soft = None
    lr, lr_key = None, None
    if not path.is_file():
        raise UsageError(f"file '{path}' not found")
    meta: dict[str, str] = {}
    if path.suffix == ".npz":
        import numpy as np

        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except ValueError as exc:
            raise UsageError(f"'{path}' holds Python objects, which are not read (allow_pickle=False): {exc}")
        except Exception as exc:
            raise UsageError(f"'{path}' is not a readable .npz file: {exc}")
        if "metadata" in arrays:
            try:
                meta = json.loads(str(arrays["metadata"].reshape(-1)[0]))
            except (ValueError, IndexError):
                meta = {}
        images = torch.from_numpy(_pick(arrays, _IMAGE_KEYS, "image array", path).copy())
        labels = torch.from_numpy(_pick(arrays, _LABEL_KEYS, "label array", path).copy())
        if "soft_labels" in arrays:
            soft = torch.from_numpy(arrays["soft_labels"].copy())
        lr, lr_key = _scalar_lr(arrays, path, strict_lr)
    elif path.suffix in (".pt", ".pth"):
        obj = load_weights_only(path)
        if isinstance(obj, dict) and "data" in obj and isinstance(obj["data"], (list, tuple)) \
                and obj["data"] and isinstance(obj["data"][0], (list, tuple)):
            obj = obj["data"][0]  # DC/DSA/DM: {"data": [[image_syn, label_syn] per experiment]}
        if isinstance(obj, dict):
            images, labels = _pick(obj, _IMAGE_KEYS, "images", path), _pick(obj, _LABEL_KEYS, "labels", path)
            if isinstance(obj.get("metadata"), dict):
                meta = {str(k): str(v) for k, v in obj["metadata"].items()}
            soft = obj.get("soft_labels")
            lr, lr_key = _scalar_lr(obj, path, strict_lr)
        elif isinstance(obj, (list, tuple)) and len(obj) == 2:
            images, labels = obj
        else:
            raise UsageError(f"'{path}' holds a {type(obj).__name__}; expected a dict with 'images' and 'labels' "
                             "or a pair (images, labels)")
        if not (isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor)) or not (
                soft is None or isinstance(soft, torch.Tensor)):
            raise UsageError(f"images and labels in '{path}' must be tensors")
    else:
        raise UsageError(f"cannot import '{path}': use a .npz or .pt file")
    return FileContents(images, labels, meta, soft, lr, lr_key)


def label_kind_of(soft: torch.Tensor) -> str:
    """``probabilities`` when every row is non-negative and sums to 1 (to float32 precision), else ``logits``."""
    rows = soft.double().sum(1)
    if bool((soft >= 0).all()) and bool(torch.allclose(rows, torch.ones_like(rows), atol=1e-4)):
        return "probabilities"
    return "logits"


def _numpy_data_globals() -> list[Any]:
    """NumPy's scalar and array reconstructors and numeric dtypes, for ``torch.load(weights_only=True)``:
    the reference codebases' result files (DC/DSA/DM's ``res_*.pt``) hold NumPy float64 accuracies
    beside the tensors. These rebuild plain numbers and arrays only; an object array or any other
    class still fails to load, so nothing but data is ever unpickled."""
    import numpy as np

    found: list[Any] = [np.dtype, np.ndarray]
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):  # NumPy 2, else NumPy 1
        try:
            mod = __import__(module, fromlist=["scalar", "_reconstruct"])
        except ImportError:
            continue
        found += [getattr(mod, name) for name in ("scalar", "_reconstruct") if hasattr(mod, name)]
        break
    dtypes = getattr(np, "dtypes", None)
    for name in ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "UInt8DType",
                 "BoolDType"):
        if dtypes is not None and hasattr(dtypes, name):
            found.append(getattr(dtypes, name))
    return found


def _to_nchw(images: torch.Tensor, data: ImageData, path: Path) -> torch.Tensor:
    want = (data.channels, data.resolution, data.resolution)
    if images.dim() == 3 and data.channels == 1:
        images = images.unsqueeze(1)
    if images.dim() == 4 and tuple(images.shape[1:]) != want and tuple(images.shape[-1:] + images.shape[1:3]) == want:
        images = images.permute(0, 3, 1, 2)  # NHWC
    if images.dim() != 4 or tuple(images.shape[1:]) != want:
        raise UsageError(f"images in '{path}' have shape {list(images.shape)}; dataset '{data.name}' needs "
                         f"[N, {want[0]}, {want[1]}, {want[2]}]")
    return images.contiguous()


def import_set(store: Store, path: Path, data: ImageData, name: str | None = None,
               normalized: bool | None = None, learned_lr: float | None = None) -> ImportResult:
    """Store images and labels from another tool as ``synthetic/NAME`` with method ``imported``;
    ``learned_lr``: the step size learned with the set, over whatever the file says."""
    start = time.perf_counter()
    if name is not None:
        check_name(name)  # before reading the file, and before the run record
    path = Path(path)
    got = read_file(path, strict_lr=learned_lr is None)
    images, labels, meta, soft = got.images, got.labels, got.meta, got.soft
    try:
        given = SyntheticMeta.from_metadata(meta)  # what a file exported by ddtool says about itself
    except (ValueError, TypeError) as exc:
        raise UsageError(f"'{path}' carries ddtool metadata that cannot be read: {exc}") from None
    notes = []
    diff = given.signature.difference(DatasetSignature.of(data), recorded_only=True)
    if diff is not None:
        label, have, want = diff
        raise UsageError(f"'{path}' was exported from {label} '{have}', not '{want}'; import it with its own --dataset")
    factor = given.factor or 1
    if factor > 1:  # stored multi-formation images: each holds factor x factor tiles
        notes.append(f"multi-formation factor {factor} from the file's metadata")
    images = _to_nchw(images, data, path)
    if labels.dim() == 2 and labels.is_floating_point() and soft is None:  # label vectors in place of classes
        soft, labels = labels, labels.argmax(1)
        if bool(((soft == 0) | (soft == 1)).all()) and bool((soft.sum(1) == 1).all()):
            soft = None  # one-hot: nothing beyond the class (DC's files), so no storage charged for it
            notes.append("one-hot label vectors were read as their classes")
    if soft is not None:
        soft = soft.to(torch.float32)
        if soft.dim() != 2 or soft.shape != (len(images), data.num_classes):
            raise UsageError(f"label vectors in '{path}' have shape {list(soft.shape)}; need "
                             f"[{len(images)}, {data.num_classes}] (one per image, one entry per class of '{data.name}')")
        if not torch.isfinite(soft).all():
            raise UsageError(f"label vectors in '{path}' contain NaN or infinite values")
        if given.label_kind is not None and given.label_kind not in LABEL_KINDS:
            raise UsageError(f"'{path}' says its label vectors are '{given.label_kind}'; ddtool reads "
                             f"{' or '.join(LABEL_KINDS)}")
        kind = given.label_kind or label_kind_of(soft)
        notes.append(f"label vectors kept as the set's own labels ({kind}"
                     + (", from the file's metadata)" if given.label_kind else ", detected)"))
    if labels.dim() != 1 or len(labels) != len(images):
        raise UsageError(f"labels in '{path}' have shape {list(labels.shape)}; need [{len(images)}]")
    if labels.is_floating_point():
        if not torch.equal(labels, labels.round()):
            raise UsageError(f"labels in '{path}' are not whole numbers")
    labels = labels.to(torch.int64)
    if len(labels) == 0 or int(labels.min()) < 0 or int(labels.max()) >= data.num_classes:
        raise UsageError(f"labels in '{path}' must lie in 0..{data.num_classes - 1} (dataset '{data.name}')")
    if images.dtype == torch.uint8:
        stored, detected = data.normalize(images), "uint8 pixels 0..255, normalised with the dataset's mean/std"
    elif not images.is_floating_point():
        raise UsageError(f"images in '{path}' are {images.dtype}; need float or uint8")
    else:
        images = images.to(torch.float32)
        if not torch.isfinite(images).all():
            raise UsageError(f"images in '{path}' contain NaN or infinite values")
        if normalized is None:
            if given.mean is not None:
                normalized, why = True, "ddtool metadata in the file"
            else:
                normalized = bool(images.min() < 0 or images.max() > 1)
                why = f"detected: values in [{float(images.min()):.3g}, {float(images.max()):.3g}]"
        else:
            why = "as told"
        if normalized:
            stored, detected = images, f"already normalised ({why})"
        else:
            mean = torch.tensor(data.mean).view(1, -1, 1, 1)
            std = torch.tensor(data.std).view(1, -1, 1, 1)
            stored, detected = (images - mean) / std, f"pixels in [0, 1], normalised with the dataset's mean/std ({why})"
    lr = _learned_lr(learned_lr, given.learned_lr, got, path, notes)
    counts = torch.bincount(labels, minlength=data.num_classes)
    ipc = int(counts.max())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    name = check_name(name or re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("-._")[:100] or "imported")
    info = SyntheticMeta(
        signature=DatasetSignature.of(data), method="imported", mean=data.mean, std=data.std,
        net=given.net or NetSpec("convnet").to_json(), parents=(), iterations=0, version=__version__,
        source=path.name, source_sha256=digest, source_method=given.method or None,
        label_kind=kind if soft is not None else None, learned_lr=lr)
    syn = SyntheticSet(stored.contiguous(), labels, ipc, factor, info, soft_labels=soft)
    # the run began with reading the file
    with run_record(store, "import", elapsed=time.perf_counter() - start,
                    source={"path": str(path), "sha256": digest, "detected": detected},
                    inputs=[{"ref": path.name, "digest": digest, "kind": "file", "role": "source"}]) as run:
        art = store.put("synthetic", name, *syn.to_artifact())
        run.complete(outputs=[io_entry(art, "synthetic")],
                     metrics={"count": len(labels), "ipc": ipc, "per_class": counts.tolist()})
    return ImportResult(art, run.id, len(labels), ipc, detected, notes)


def _learned_lr(told: float | None, recorded: float | None, got: FileContents, path: Path,
                notes: list[str]) -> float | None:
    """The set's learned step size: as told, else the file's ddtool metadata, else its scalar entry;
    a note says which (and which other value it was chosen over)."""
    if told is not None:
        if not math.isfinite(told):
            raise UsageError(f"--learned-lr {told} is not a step size; give a finite number")
        over = [f"{what} {v:g}" for what, v in (("the file's metadata", recorded), (f"'{got.lr_key}'", got.lr))
                if v is not None]
        notes.append(f"learned step size {told:g} as told" + (f" (over {', '.join(over)})" if over else ""))
        return told
    if recorded is not None:
        extra = f" (over '{got.lr_key}' {got.lr:g})" if got.lr is not None and got.lr != recorded else ""
        notes.append(f"learned step size {recorded:g} from the file's metadata (ddtool.learned_lr){extra}")
        return recorded
    if got.lr is not None:
        notes.append(f"learned step size {got.lr:g} from the file's '{got.lr_key}' entry")
        return got.lr
    return None
