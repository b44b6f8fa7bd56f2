"""Differentiable siamese augmentation (DSA, Zhao & Bilen 2021).

Each draw picks an operation of the strategy and its parameters for G groups. ``apply`` maps
every sample to a group, so:

* siamese matching: one group per class, the real and the synthetic batch of a class get
  the same operation and parameters (pass the class labels as groups, and the same draw to
  both calls). ``sample(..., op_per_group=True)`` picks the operation of each class on its own,
  as the DC/DSA/DM reference code does (it calls DiffAugment once per class);
* training on a synthetic set: one operation per batch, parameters per sample (``groups=None``).

:class:`DiffAugChain` is IDC's ``DiffAug``: flip and colour always, one of the remaining
operations, cutout always (:func:`chain_stages`); IDC's matching and its evaluation use it.

All operations are differentiable with respect to the images, so gradients reach the
synthetic pixels through them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

DEFAULT_STRATEGY = "color_crop_cutout_flip_scale_rotate"
OPS = ("color", "crop", "cutout", "flip", "scale", "rotate")


@dataclass(frozen=True)
class DSAParams:
    """Magnitudes from the DSA reference implementation."""

    scale: float = 1.2  # scale factor U[1/1.2, 1.2] per axis
    rotate: float = 15.0  # degrees, U[-15, 15]
    crop: float = 0.125  # translation up to this fraction of the size
    cutout: float = 0.5  # square side as a fraction of the size
    brightness: float = 1.0  # x + (U - 0.5) * 1.0
    saturation: float = 2.0  # (x - mean_c) * U * 2 + mean_c
    contrast: float = 0.5  # (x - mean) * (U + 0.5) + mean


@dataclass
class Draw:
    """One sampled operation with per-group parameters."""

    op: str
    params: dict[str, torch.Tensor] = field(default_factory=dict)

    def select(self, group: int) -> "Draw":
        return Draw(self.op, {k: v[group : group + 1] for k, v in self.params.items()})


@dataclass
class GroupDraw:
    """An operation per group (``ops[g]``), with parameters for every group under each drawn op."""

    ops: list[str]
    draws: dict[str, Draw]

    def select(self, group: int) -> Draw:
        return self.draws[self.ops[group]].select(group)


class Augmenter:
    def __init__(self, strategy: str = DEFAULT_STRATEGY, params: DSAParams | None = None) -> None:
        ops = tuple(o for o in strategy.split("_") if o) if strategy not in ("", "none") else ()
        unknown = [o for o in ops if o not in OPS]
        if unknown:
            from ddtool.errors import UsageError

            raise UsageError(f"unknown augmentation '{unknown[0]}'; choose from {', '.join(OPS)}")
        self.ops = ops
        self.p = params or DSAParams()

    @property
    def enabled(self) -> bool:
        return bool(self.ops)

    def sample(self, groups: int, size: int, device: torch.device | str = "cpu",
               op_per_group: bool = False) -> Draw | GroupDraw:
        """Draw an operation and its parameters for ``groups`` groups of ``size``x``size`` images;
        with ``op_per_group`` every group draws its own operation."""
        if not self.ops:
            return Draw("none")
        if op_per_group and len(self.ops) > 1:
            picks = torch.randint(len(self.ops), (groups,)).tolist()
            ops = [self.ops[i] for i in picks]
            return GroupDraw(ops, {op: self._params(op, groups, size, device) for op in dict.fromkeys(ops)})
        op = self.ops[int(torch.randint(len(self.ops), (1,)).item())]
        return self._params(op, groups, size, device)

    def _params(self, op: str, groups: int, size: int, device: torch.device | str) -> Draw:
        r = lambda: torch.rand(groups, device=device)  # noqa: E731
        p = self.p
        if op == "color":
            params = {"brightness": (r() - 0.5) * p.brightness, "saturation": r() * p.saturation,
                      "contrast": r() + p.contrast}
        elif op == "crop":
            shift = int(size * p.crop + 0.5)
            params = {"tx": torch.randint(-shift, shift + 1, (groups,), device=device),
                      "ty": torch.randint(-shift, shift + 1, (groups,), device=device)}
        elif op == "cutout":
            params = {"cx": torch.randint(0, size + (1 - int(size * p.cutout) % 2), (groups,), device=device),
                      "cy": torch.randint(0, size + (1 - int(size * p.cutout) % 2), (groups,), device=device)}
        elif op == "flip":
            params = {"flip": r() < 0.5}
        elif op == "scale":
            params = {"sx": r() * (p.scale - 1.0 / p.scale) + 1.0 / p.scale,
                      "sy": r() * (p.scale - 1.0 / p.scale) + 1.0 / p.scale}
        else:  # rotate
            params = {"theta": (r() - 0.5) * 2 * p.rotate / 180 * math.pi}
        return Draw(op, params)

    def apply(self, x: torch.Tensor, draw: Draw | GroupDraw, groups: torch.Tensor | None = None) -> torch.Tensor:
        """Apply ``draw`` to x; ``groups[i]`` says which group's parameters sample i uses."""
        if isinstance(draw, GroupDraw):
            return self._apply_grouped(x, draw, groups)
        if draw.op == "none":
            return x
        prm = {k: (v if groups is None else v[groups]) for k, v in draw.params.items()}
        return getattr(self, f"_{draw.op}")(x, **prm)

    def _apply_grouped(self, x: torch.Tensor, draw: GroupDraw, groups: torch.Tensor | None) -> torch.Tensor:
        """Each operation on the samples whose group drew it; the pieces go back in their places."""
        if groups is None:
            groups = torch.arange(x.shape[0], device=x.device)
        op_of_sample = torch.tensor([list(draw.draws).index(o) for o in draw.ops], device=x.device)[groups]
        parts, order = [], []
        for k, (op, d) in enumerate(draw.draws.items()):
            rows = (op_of_sample == k).nonzero().flatten()
            if len(rows):
                parts.append(self.apply(x[rows], d, groups[rows]))
                order.append(rows)
        if len(parts) == 1:
            return parts[0]
        return torch.cat(parts)[torch.argsort(torch.cat(order))]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Independent parameters per sample (training on a synthetic set)."""
        return self.apply(x, self.sample(x.shape[0], x.shape[-1], x.device))

    # -- operations; every parameter has one entry per sample ------------------------------
    @staticmethod
    def _color(x: torch.Tensor, brightness: torch.Tensor, saturation: torch.Tensor,
               contrast: torch.Tensor) -> torch.Tensor:
        v = lambda t: t.view(-1, 1, 1, 1).to(x.dtype)  # noqa: E731
        x = x + v(brightness)
        mean_c = x.mean(dim=1, keepdim=True)
        x = (x - mean_c) * v(saturation) + mean_c
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - mean) * v(contrast) + mean

    @staticmethod
    def _crop(x: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        ys = torch.arange(h, device=x.device)[None, :] + ty[:, None]
        xs = torch.arange(w, device=x.device)[None, :] + tx[:, None]
        mask = ((ys >= 0) & (ys < h))[:, :, None] & ((xs >= 0) & (xs < w))[:, None, :]
        idx = ys.clamp(0, h - 1)[:, :, None] * w + xs.clamp(0, w - 1)[:, None, :]
        out = x.flatten(2).gather(2, idx.flatten(1)[:, None, :].expand(n, c, h * w)).view(n, c, h, w)
        return out * mask[:, None].to(x.dtype)

    def _cutout(self, x: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        half = int(h * self.p.cutout + 0.5) // 2
        ys = torch.arange(h, device=x.device)[None, :]
        xs = torch.arange(w, device=x.device)[None, :]
        inside_y = (ys >= (cy[:, None] - half)) & (ys < (cy[:, None] + half))
        inside_x = (xs >= (cx[:, None] - half)) & (xs < (cx[:, None] + half))
        keep = ~(inside_y[:, :, None] & inside_x[:, None, :])
        return x * keep[:, None].to(x.dtype)

    @staticmethod
    def _flip(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)

    @staticmethod
    def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        theta = theta.to(x.dtype).expand(x.shape[0], 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=True)
        return F.grid_sample(x, grid, align_corners=True)

    def _scale(self, x: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
        zero = torch.zeros_like(sx)
        theta = torch.stack([torch.stack([sx, zero, zero], 1), torch.stack([zero, sy, zero], 1)], 1)
        return self._affine(x, theta)

    def _rotate(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        cos, sin, zero = torch.cos(theta), torch.sin(theta), torch.zeros_like(theta)
        mat = torch.stack([torch.stack([cos, sin, zero], 1), torch.stack([-sin, cos, zero], 1)], 1)
        return self._affine(x, mat)


# IDC's DiffAug order: these operations run on every call, around the one drawn from the rest
ALWAYS_BEFORE = ("flip", "color")
ALWAYS_AFTER = ("cutout",)


def chain_stages(ops: tuple[str, ...] | list[str], params: DSAParams | None = None) -> list[Augmenter]:
    """IDC's ``DiffAug`` as stages: flip and color always (in that order), then one of the
    remaining operations (crop, scale, rotate) drawn per call, then cutout always."""
    middle = [o for o in ops if o not in ALWAYS_BEFORE + ALWAYS_AFTER]
    stages = [Augmenter(o, params) for o in ALWAYS_BEFORE if o in ops]
    if middle:
        stages.append(Augmenter("_".join(middle), params))
    return stages + [Augmenter(o, params) for o in ALWAYS_AFTER if o in ops]


class DiffAugChain:
    """IDC's ``DiffAug(batch=False)`` for training on a synthetic set (its ``train.py``).

    Every stage of :func:`chain_stages` runs on each batch with parameters drawn per sample; the
    middle operation is drawn once per batch. With IDC's CIFAR evaluation strategy
    ``color_crop_flip_scale_rotate`` a batch is flipped (p 0.5) and colour-jittered per sample,
    then cropped, scaled or rotated. A plain :class:`Augmenter` instead applies a single
    operation of the strategy per batch (the DSA/DM papers' evaluation).
    """

    def __init__(self, strategy: str = "color_crop_flip_scale_rotate", params: DSAParams | None = None) -> None:
        self.ops = Augmenter(strategy, params).ops  # validates the names
        self.p = params or DSAParams()
        self.stages = chain_stages(self.ops, self.p)

    @property
    def enabled(self) -> bool:
        return bool(self.ops)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x
