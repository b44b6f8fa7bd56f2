"""ZCA whitening as a data option: ``DATASET+zca`` (or ``DATASET+zca=EPS``) in ``[data] dataset``.

MTT's reference (and KIP before it) distils ZCA-whitened CIFAR at ipc 1 and 10: the images in
pixel units (``ToTensor``, [0, 1]; with ``--zca`` the reference skips its mean/std normalisation)
are flattened, centred and multiplied by ``U diag(1 / sqrt(S + eps)) U^T`` where ``U S U^T`` is the
covariance of the training split (kornia's ``ZCAWhitening`` with ``eps = 0.1``, unbiased
covariance). Here with torch linear algebra (``eigh`` in float64; kornia is not a dependency),
fitted on the train split only.

eps is in pixel units, as the reference's: ddtool's networks see mean/std-normalised images, and
whitening those with eps 0.1 would damp about 25x less (CIFAR's std is about 0.2, the covariance
of normalised pixels about 25x that of raw ones). So the fit undoes the per-channel std first
(``scale``) and folds it into the transform: whitening a normalised batch gives exactly what the
reference's whitening of its raw pixels gives (the mean/std shift cancels in the centring).

How it reaches every command: the option is part of the dataset's name (``cifar10+zca``), so
``ImageData.normalize`` whitens every batch it hands out (distillation, pools, trajectories,
evaluation) and ``ImageData.denormalize`` un-whitens for display. The artifacts a run makes record
that name and the sha256 of the fitted parameters (``ddtool.zca`` in their dataset signature), so
``eval`` loads the same whitened data, and refuses in one line a dataset whose whitening differs.
The parameters are kept as safetensors (``mean``, ``transform``, ``inverse``; no pickles) in the
data cache (``DATA_ROOT/ddtool-cache/zca-*.safetensors``), keyed by the dataset's split and eps, so a
later load (``eval``, ``store export``) reads the very parameters the run used instead of fitting
again; :func:`find_zca` finds them by digest (``store export`` un-whitens with it).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ddtool.errors import UsageError

DEFAULT_EPS = 0.1  # what MTT's reference passes to kornia's ZCAWhitening (whose own default is 1e-6)
FOLDER = "ddtool-cache"


@dataclass(eq=False)
class ZCA:
    """A fitted whitening of flattened images: ``apply(x) = (x - mean) @ transform``."""

    mean: torch.Tensor  # [D]
    transform: torch.Tensor  # [D, D], symmetric
    inverse: torch.Tensor  # [D, D]: apply then invert is the identity
    eps: float = DEFAULT_EPS
    _digest: str = field(default="", repr=False)

    @classmethod
    def fit(cls, x: torch.Tensor, eps: float = DEFAULT_EPS, scale: torch.Tensor | None = None) -> "ZCA":
        """Fit on ``x`` [N, ...] (every sample flattened): the unbiased covariance's eigenvectors,
        eigenvalues shifted by ``eps`` (in float64, stored as float32).

        ``scale`` (broadcastable to one sample, e.g. the per-channel std as [C, 1, 1]) is what ``x``
        was divided by: the whitening is fitted on ``x * scale``, where ``eps`` applies, and takes
        inputs divided by it, i.e. ``apply(x) = whitening(x * scale)``."""
        if not eps >= 0:
            raise UsageError(f"the zca eps must be >= 0, got {eps}")
        flat = x.reshape(len(x), -1).double()
        per_feature = (torch.ones(1, dtype=torch.double) if scale is None else
                       torch.as_tensor(scale, dtype=torch.double).expand(x.shape[1:]).reshape(-1))
        mean = flat.mean(0)
        centred = (flat - mean) * per_feature
        cov = centred.T @ centred / max(1, len(flat) - 1)
        s, u = torch.linalg.eigh(cov)
        s = s.clamp_min(0) + eps
        if not bool((s > 0).all()):
            raise UsageError("the zca covariance is singular with eps = 0 (fewer images than pixels?); use eps > 0")
        transform = per_feature.unsqueeze(1) * ((u * s.rsqrt()) @ u.T)  # scale the inputs, then whiten
        inverse = ((u * s.sqrt()) @ u.T) / per_feature.unsqueeze(0)
        return cls(mean.float(), transform.float(), inverse.float(), float(eps))

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Whiten ``x`` [N, ...] (same per-sample shape as the fit)."""
        m, t = self.mean.to(x.device, x.dtype), self.transform.to(x.device, x.dtype)
        return ((x.reshape(len(x), -1) - m) @ t).view_as(x)

    def invert(self, x: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`apply`."""
        m, inv = self.mean.to(x.device, x.dtype), self.inverse.to(x.device, x.dtype)
        return (x.reshape(len(x), -1) @ inv + m).view_as(x)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean.contiguous(), "transform": self.transform.contiguous(),
                "inverse": self.inverse.contiguous()}

    def digest(self) -> str:
        """sha256 of the parameters' bytes and eps: what artifacts record (``ddtool.zca``); computed once."""
        if not self._digest:
            h = hashlib.sha256(repr(self.eps).encode())
            for name, t in sorted(self.tensors().items()):
                h.update(name.encode())
                h.update(t.float().cpu().numpy().tobytes())
            self._digest = h.hexdigest()
        return self._digest

    def save(self, path: Path) -> None:
        """Write as safetensors (written aside, then moved into place)."""
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        try:
            save_file(self.tensors(), tmp, metadata={"ddtool.kind": "zca", "ddtool.eps": repr(self.eps),
                                                     "ddtool.zca": self.digest()})
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @classmethod
    def load(cls, path: Path) -> "ZCA":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            t = {k: f.get_tensor(k) for k in ("mean", "transform", "inverse")}
        return cls(t["mean"], t["transform"], t["inverse"], float(meta.get("ddtool.eps", DEFAULT_EPS)))


def parse_eps(arg: str | None) -> float:
    if arg is None or arg == "":
        return DEFAULT_EPS
    try:
        return float(arg)
    except ValueError:
        raise UsageError(f"'+zca={arg}': the whitening's eps must be a number, e.g. cifar10+zca=0.1") from None


def _cache_file(root: Path, data_name: str, key: str, eps: float) -> Path:
    clean = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in data_name)[:60]
    return root / FOLDER / f"zca-{clean}-{key[:24]}.safetensors"


def _train_key(train_images: torch.Tensor, eps: float, std: tuple[float, ...]) -> str:
    """The fit's inputs: every training pixel, eps and the std it is undone by (a changed split or
    normalisation fits again; "pixel-eps" keeps whitenings fitted before eps was in pixel units out)."""
    h = hashlib.sha256(f"pixel-eps {eps!r} {std!r}".encode())
    h.update(str(tuple(train_images.shape)).encode())
    h.update(train_images.contiguous().numpy().tobytes())
    return h.hexdigest()


def whiten(data, arg: str | None, root: Path):  # type: ignore[no-untyped-def]
    """``data`` with ZCA whitening (fitted on its train split with eps in pixel units, or read from the cache):
    named ``NAME+zca`` (``+zca=EPS`` for another eps). The data option registered as ``zca``."""
    eps = parse_eps(arg)
    if data.zca is not None:
        raise UsageError(f"dataset '{data.name}' is whitened already; name '+zca' once")
    key = _train_key(data.train_images, eps, tuple(data.std))
    path = _cache_file(Path(root), data.name, key, eps)
    z = None
    if path.exists():
        try:
            z = ZCA.load(path)
        except Exception:  # an unreadable cache fits again, as the data cache does
            z = None
    if z is None:
        z = ZCA.fit(data.normalize(data.train_images), eps, scale=data.stats()[1][0])  # eps in pixel units
        try:
            z.save(path)
        except OSError:  # a read-only data root: whiten without caching
            pass
    suffix = "+zca" if arg in (None, "") else f"+zca={arg}"
    return replace(data, name=f"{data.name}{suffix}", zca=z, _stats_cache={})


def find_zca(digest: str, root: Path) -> ZCA | None:
    """The cached whitening whose :meth:`ZCA.digest` is ``digest`` under the data root ``root``
    (``ddtool.data.dataset.data_root()``: the caller's, as this module sits below the datasets), or None."""
    folder = Path(root) / FOLDER
    for path in sorted(folder.glob("zca-*.safetensors")) if folder.is_dir() else []:
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                if (f.metadata() or {}).get("ddtool.zca") == digest:
                    return ZCA.load(path)
        except Exception:
            continue
    return None
