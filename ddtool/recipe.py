"""Recipes: TOML -> validated dataclasses, ``--set section.key=value`` overrides, canonical hash.

A recipe has the sections ``[data] [net] [pretrain] [distill] [eval]``; every key has a
default, so a recipe states only what differs. ``[distill]`` keys whose best value depends on
the matching method (``lr_img``, ``batch_real``, ``augment``, ``lr_img_scale``) default to the
method's own (``MatchingMethod.distill_defaults``), resolved when a run is planned.

``[scale.NAME]`` tables hold a budget per dataset: when the run's dataset is NAME (a registry
name, or the folder name of ``imagefolder:PATH``; ``data.scale`` names another) the table's keys
replace the recipe's, e.g. ``[scale.digits] distill.iterations = 20``. ``--set`` still wins.

Top-level ``name`` and ``description`` say what a recipe is; ``wall_digits`` and ``wall_paper``
state its measured wall time on the embedded digits and at the paper's scale (``ddtool recipes``
lists them): facts about the file, not part of the run, so left out of ``to_dict`` and the hash.
A ``path`` is a TOML file or a shipped recipe's name (:mod:`ddtool.recipe_source`).
Where every key came from (recipe, ``scale.NAME``, ``--set``) is kept in ``Recipe.origins``. Unknown keys and wrong types are errors that
name the key and the allowed ones. ``[distill.options]`` is free-form and belongs to the
matching method (a plugin's own settings).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
import tomllib
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, get_type_hints

from ddtool.errors import UsageError, closest
from ddtool.impl import ALIASES as IMPL_ALIASES
from ddtool.impl import IMPLS
from ddtool.recipe_source import find_recipe


@dataclass
class DataSection:
    dataset: str = "digits"  # registry name, or imagefolder:PATH
    scale: str = ""  # which [scale.NAME] table applies ('' = the dataset's name or folder name)
    root: str = ""  # data root ('' = DDTOOL_DATA or the user cache dir)
    download: bool = False


@dataclass
class NetSection:
    name: str = "convnet"
    depth: int = 0  # 0 = the architecture's default for the resolution
    width: int = 128
    norm: str = "instance"  # instance | batch | none


# ddtool's first pools' learning-rate factors (pretrain.lr_cycle), also the diverse pool's default
LR_CYCLE = (1.0, 0.5, 2.0, 0.75, 1.5)


@dataclass
class PretrainSection:
    n: int = 5  # models in the pool (Acc-DD: 5 on CIFAR-10)
    epochs: int = 2  # early-stage: 2 on CIFAR
    lr: float = 0.01
    # Acc-DD's pretrain.py: batch 64, IDC's DiffAug chain color_crop (cutout removed under CutMix),
    # CutMix p 0.5, one lr for every model. ddtool's earlier pools: batch 128, augment "alternate"
    # (one DSA op per batch on every other model), cutmix 0, lr_cycle true.
    batch: int = 64
    augment: str = "color_crop"  # a DiffAug-chain strategy for every model, or "alternate"
    cutmix: float = 0.5
    lr_cycle: bool = False  # model i at lr x (1, 0.5, 2, 0.75, 1.5)[i % 5]
    # Acc-DD Sec. 4.2's diverse pool ("different hyper-parameters, including learning rate, random seed,
    # and data augmentation"): model i at lr x lr_factors[i % len] with the DiffAug chain augments[i % len]
    # (and its own seed, as always); each model's lr and augmentation go to the pool's metadata
    diverse: bool = False
    lr_factors: list[float] = field(default_factory=lambda: list(LR_CYCLE))
    augments: list[str] = field(default_factory=lambda: ["color_crop", "crop", "color_crop_cutout",
                                                         "color_crop_flip_scale_rotate", "none"])
    # MultiStepLR over the epochs: fractions ("2/3") where the lr is multiplied by lr_gamma, each
    # at epoch floor(epochs x fraction) as the references' integer ``2 * epochs // 3`` (NCFM's
    # pretrain_script.py: 2/3 and 5/6, x0.2); none by default (Acc-DD's pretrain.py keeps one lr)
    lr_milestones: list[str] = field(default_factory=list)
    lr_gamma: float = 0.2
    seed: int = 0
    name: str = ""  # pool name ('' = DATASET-NET)
    impl: str = "auto"  # auto | vectorized (the n models as one vmapped ensemble) | loop


@dataclass
class DistillSection:
    method: str = "dm"
    ipc: int = 1  # images per class
    iterations: int = 0  # outer iterations (0 = the method's default for the ipc)
    lr_img: float = 0.0  # SGD on the synthetic images (0 = the method's default)
    lr_img_scale: str = ""  # ipc: lr_img is the value at ipc 10, times ipc / 10 (IDC, Acc-DD) | none | '' = the method's
    momentum_img: float = 0.5
    batch_real: int = 0  # real images per class per step (0 = the method's default)
    init: str = "real"  # real | noise
    pool: str = ""  # pool ref for selection strategies that need one
    selection: str = "scratch"  # where each outer loop's network comes from
    schedule: str = "none"  # perturbation of that network
    alpha: float = 1.0  # perturbation magnitude (Acc-DD: 1 on CIFAR)
    alpha_decay: str = "constant"  # constant | linear | cosine
    impl: str = "auto"  # auto | vectorized (classes in one vmapped call) | loop
    # torch.compile the hot forwards (DM; IDC's matching, double backward included, and network updates):
    # true | false | "auto" = when the run is long enough to repay compiling (ddtool.runtime.autocompile)
    compile: bool | str = "auto"
    precision: str = "fp32"  # fp32 | bf16: autocast for the real side (DM embeddings, IDC/DC gradients) and IDC's network updates
    augment: str = ""  # DSA strategy ('none' to disable; '' = the method's default)
    checkpoint_every: int = 0  # 0 = every iterations // 10 (9 periodic ones for a multiple of 10) + the final set
    # > 0: also a checkpoint after the first iteration that ends this many wall seconds after the
    # previous one (accuracy against seconds: ddtool eval RUN --checkpoints); with checkpoint_every 0
    # the periodic ones by iteration are then off
    checkpoint_seconds: float = 0.0
    seed: int = 0
    name: str = ""  # artifact name ('' = the recipe's name)
    options: dict[str, Any] = field(default_factory=dict)  # method-specific settings


@dataclass
class EvalSection:
    net: str = ""  # '' = the net each artifact was distilled with (its own metadata), not the recipe's [net]
    protocol: str = "dsa"  # dsa: lr x0.1 at half, one DSA op per batch; idc: x0.2 at 2/3 and 5/6, DiffAug chain, CutMix; ncfm: AdamW, x0.5 at each fifth, DiffAug chain, CutMix
    epochs: int = 300
    # a number, or "learned": the step size the set records (MTT learns one; its reference evaluates at it)
    lr: float | str = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch: int = 256
    repeats: int = 5
    augment: str = "color_crop_cutout_flip_scale_rotate"
    seed: int = 0
    impl: str = "auto"  # auto | vectorized (repeats as one vmapped ensemble) | loop
    # torch.compile the training forward (loop path): true | false | "auto" = when the planned
    # epochs repay compiling (ddtool.runtime.autocompile)
    compile: bool | str = "auto"
    # auto: learned when the set carries label vectors, else hard | hard: the class of each image |
    # learned: the set's own label vectors (softmax of logits), soft cross-entropy |
    # soft: a teacher's softmax(logits / temperature), KL loss x T²
    labels: str = "auto"
    teacher: str = ""  # with labels = "soft": pool/NAME[:vN][#i] (model i of a pool; 0 when not given)
    temperature: float = 4.0  # of the soft labels


# [eval] keys added after recipes were first hashed: left out of the hash while at their
# defaults, so a recipe that does not use them keeps the hash the sets made with it record
_HASHED_WHEN_SET = {"eval": ("labels", "teacher", "temperature", "compile"),
                    "pretrain": ("diverse", "lr_factors", "augments", "lr_milestones", "lr_gamma")}


@dataclass
class Recipe:
    name: str = "recipe"
    description: str = ""
    wall_digits: str = ""  # measured wall time on the embedded digits, with the machine, load and date
    wall_paper: str = ""  # at the paper's scale, or "not measured on this CPU"
    data: DataSection = field(default_factory=DataSection)
    net: NetSection = field(default_factory=NetSection)
    pretrain: PretrainSection = field(default_factory=PretrainSection)
    distill: DistillSection = field(default_factory=DistillSection)
    eval: EvalSection = field(default_factory=EvalSection)
    # "section.key" -> where its value came from ("recipe", "scale.NAME", "--set", "method default"...);
    # not part of the recipe's identity (to_dict, sha256)
    origins: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("origins", *NOT_RUN):
            d.pop(key)
        return d

    def sha256(self) -> str:
        d = self.to_dict()
        # compile changes no result beyond float rounding: "auto" (the default since issue 15)
        # hashes as the former default, so recipes keep the hash their sets record
        if d["distill"].get("compile") == "auto":
            d["distill"]["compile"] = False
        for section, keys in _HASHED_WHEN_SET.items():
            default = SECTIONS[section].default_factory()  # type: ignore[misc]
            for key in keys:
                if d[section].get(key) == getattr(default, key):
                    del d[section][key]
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


# top-level keys that describe the file, not the run: a re-measured wall time keeps the recipe's
# hash (and the hash its sets record), and a run record does not carry them
NOT_RUN = ("wall_digits", "wall_paper")
TOP_KEYS = ("name", "description", *NOT_RUN)

SECTIONS = {f.name: f for f in dataclasses.fields(Recipe)
            if f.name != "origins" and dataclasses.is_dataclass(f.default_factory)}  # type: ignore[arg-type]

# every section's ``impl`` (ddtool.impl): the value is kept as written, aliases resolve at run time
LEARNED = "learned"  # eval.lr: the step size the set records (SyntheticMeta.learned_lr)
_IMPL = (lambda v: v in IMPLS or v in IMPL_ALIASES, "auto, vectorized or loop")


def _fraction_in_unit(text: Any) -> bool:
    try:
        return isinstance(text, str) and 0 < Fraction(text) <= 1
    except (ValueError, ZeroDivisionError):
        return False


def lr_milestones(p: PretrainSection) -> tuple[Fraction, ...]:
    """``pretrain.lr_milestones`` as exact fractions of the epochs (checked by RANGES)."""
    return tuple(Fraction(m) for m in p.lr_milestones)


# (section, key) -> (predicate, what it must be)
RANGES: dict[tuple[str, str], tuple[Any, str]] = {
    ("net", "depth"): (lambda v: v >= 0, ">= 0"),
    ("net", "width"): (lambda v: v >= 1, ">= 1"),
    ("net", "norm"): (lambda v: v in ("instance", "batch", "none"), "instance, batch or none"),
    ("pretrain", "n"): (lambda v: v >= 1, ">= 1"),
    ("pretrain", "epochs"): (lambda v: v >= 1, ">= 1"),
    ("pretrain", "lr"): (lambda v: v > 0, "> 0"),
    ("pretrain", "batch"): (lambda v: v >= 1, ">= 1"),
    ("pretrain", "cutmix"): (lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("pretrain", "impl"): _IMPL,
    ("pretrain", "lr_factors"): (lambda v: len(v) >= 1 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                              and x > 0 for x in v), "a non-empty list of numbers > 0"),
    ("pretrain", "augments"): (lambda v: len(v) >= 1 and all(isinstance(x, str) for x in v),
                               "a non-empty list of DiffAug chains (strings)"),
    ("pretrain", "lr_milestones"): (lambda v: all(_fraction_in_unit(x) for x in v),
                                    'a list of fractions of the epochs in (0, 1], as strings: ["2/3", "5/6"]'),
    ("pretrain", "lr_gamma"): (lambda v: 0 < v <= 1, "in (0, 1]"),
    ("distill", "ipc"): (lambda v: v >= 1, ">= 1"),
    ("distill", "iterations"): (lambda v: v >= 0, ">= 0"),
    ("distill", "lr_img"): (lambda v: v >= 0, "> 0 (or 0 for the method's default)"),
    ("distill", "lr_img_scale"): (lambda v: v in ("", "ipc", "none"), "ipc, none or '' (the method's default)"),
    ("distill", "momentum_img"): (lambda v: 0 <= v < 1, "in [0, 1)"),
    ("distill", "batch_real"): (lambda v: v >= 0, ">= 1 (or 0 for the method's default)"),
    ("distill", "init"): (lambda v: v in ("real", "noise"), "real or noise"),
    ("distill", "alpha"): (lambda v: v >= 0, ">= 0"),
    ("distill", "alpha_decay"): (lambda v: v in ("constant", "linear", "cosine"), "constant, linear or cosine"),
    ("distill", "impl"): _IMPL,
    ("distill", "compile"): (lambda v: v is True or v is False or v == "auto", 'true, false or "auto"'),
    ("distill", "precision"): (lambda v: v in ("fp32", "bf16"), "fp32 or bf16"),
    ("distill", "checkpoint_every"): (lambda v: v >= 0, ">= 0"),
    ("distill", "checkpoint_seconds"): (lambda v: v >= 0, ">= 0"),
    ("eval", "protocol"): (lambda v: v in ("dsa", "idc", "ncfm"), "dsa, idc or ncfm"),
    ("eval", "epochs"): (lambda v: v >= 1, ">= 1"),
    ("eval", "lr"): (lambda v: v == LEARNED or (isinstance(v, float) and v > 0), f'> 0 or "{LEARNED}"'),
    ("eval", "momentum"): (lambda v: 0 <= v < 1, "in [0, 1)"),
    ("eval", "weight_decay"): (lambda v: v >= 0, ">= 0"),
    ("eval", "batch"): (lambda v: v >= 1, ">= 1"),
    ("eval", "repeats"): (lambda v: v >= 1, ">= 1"),
    ("eval", "impl"): _IMPL,
    ("eval", "compile"): (lambda v: v is True or v is False or v == "auto", 'true, false or "auto"'),
    ("eval", "labels"): (lambda v: v in ("auto", "hard", "learned", "soft"), "auto, hard, learned or soft"),
    ("eval", "temperature"): (lambda v: v > 0, "> 0"),
}


def _type_name(tp: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            bool | str: "true, false or a string", float | str: "a number or a string",
            list[float]: "a list of numbers", list[str]: "a list of strings"}.get(tp, "a table")


def _coerce(where: str, tp: Any, value: Any) -> Any:
    if tp in (float, float | str) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    origin = getattr(tp, "__origin__", tp)
    if origin is dict:
        ok = isinstance(value, dict)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, origin)
    if not ok:
        raise UsageError(f"{where} must be {_type_name(tp)}, got {value!r}")
    return value


def parse_section(section: str, cls: type, raw: Any) -> Any:
    """The dataclass ``cls`` from the TOML table ``raw`` of ``[section]``.

    Unknown keys and wrong types are one-line :class:`UsageError` s that name ``section.key``
    (and the allowed keys); an int is accepted for a float. Plugins parse their own tables
    (``[distill.options]``, ``[distill.options.<selection>]``) with it.
    """
    if not isinstance(raw, dict):
        raise UsageError(f"[{section}] must be a table of keys, got {raw!r}")
    hints = get_type_hints(cls)
    allowed = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in raw.items():
        if key not in allowed:
            raise UsageError(
                f"unknown key '{key}' in [{section}]{closest(key, allowed)}; allowed: {', '.join(allowed)}"
            )
        values[key] = _coerce(f"{section}.{key}", hints[key], value)
        check = RANGES.get((section, key))
        if check and not check[0](values[key]):
            raise UsageError(f"{section}.{key} must be {check[1]}, got {values[key]!r}")
    return cls(**values)


def recipe_from_dict(raw: dict[str, Any]) -> Recipe:
    top = {k: v for k, v in raw.items() if k not in SECTIONS}
    allowed_top = [*TOP_KEYS, *SECTIONS]
    for key, value in top.items():
        if key not in TOP_KEYS:
            raise UsageError(f"unknown section or key '{key}'{closest(key, allowed_top)}; allowed: {', '.join(allowed_top)}")
        _coerce(key, str, value)
    sections = {name: parse_section(name, SECTIONS[name].default_factory, raw.get(name, {}))  # type: ignore[misc]
                for name in SECTIONS}
    return Recipe(**top, **sections)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``distill.ipc=10`` -> (['distill', 'ipc'], 10); values are read as TOML, else as strings."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"cannot read --set '{text}': write SECTION.KEY=VALUE, e.g. distill.ipc=10")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return key.strip().split("."), parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str],
                    origins: dict[str, str] | None = None, origin: str = "--set") -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UsageError(f"--set '{text}': '{part}' is not a section")
        node[path[-1]] = value
        if origins is not None:
            _note(origins, ".".join(path), value, origin)
    return raw


def _note(origins: dict[str, str], key: str, value: Any, origin: str) -> None:
    """Record ``origin`` for ``key`` and, when the value is a table, for every key inside it."""
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _note(origins, f"{key}.{k}", v, origin)
    else:
        origins[key] = origin


def _merge(into: dict[str, Any], table: dict[str, Any]) -> None:
    for key, value in table.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def scale_name(data: dict[str, Any]) -> str:
    """The ``[scale.NAME]`` a run's ``[data]`` selects: ``data.scale``, else the dataset's registry
    name, else (``imagefolder:PATH``) the folder's name."""
    if data.get("scale"):
        return str(data["scale"])
    dataset = str(data.get("dataset", DataSection.dataset))
    # data options (cifar10+zca, ddtool.data.dataset.DATA_OPTIONS) keep the dataset's budget
    dataset = re.sub(r"(\+[A-Za-z_][A-Za-z0-9_]*(=[^+/:]*)?)+$", "", dataset)
    kind, sep, arg = dataset.partition(":")
    if sep and kind == "imagefolder":
        return Path(arg).expanduser().resolve().name
    return kind


def apply_scale(raw: dict[str, Any], overrides: list[str], origins: dict[str, str]) -> dict[str, Any]:
    """Merge the recipe's ``[scale.NAME]`` table for the run's dataset (known only once ``--set``
    has been applied) under the ``--set`` overrides."""
    tables = raw.pop("scale", {})
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise UsageError("[scale] must hold one table per dataset, e.g. [scale.digits] distill.iterations = 20")
    probe = apply_overrides(copy.deepcopy(raw), overrides)
    name = scale_name(probe.get("data", {}) if isinstance(probe.get("data"), dict) else {})
    table = tables.get(name)
    if table:
        for key in table:
            if key not in SECTIONS:
                raise UsageError(f"[scale.{name}] sets '{key}', which is not a recipe section; "
                                 f"use the sections {', '.join(SECTIONS)}")
        _merge(raw, copy.deepcopy(table))
        for section, value in table.items():
            _note(origins, section, value, f"scale.{name}")
    return raw


def load_recipe(path: str | Path | None, overrides: list[str] | None = None) -> Recipe:
    """Read a TOML recipe (a file, or a shipped recipe's name; the defaults when path is None),
    apply its ``[scale.NAME]`` table for the run's dataset, then the overrides."""
    raw: dict[str, Any] = {}
    overrides = list(overrides or [])
    origins: dict[str, str] = {}
    if path is not None:
        found = find_recipe(path)
        if found.note:  # the CLI passes the file it found, so this speaks to Python callers only
            warnings.warn(found.note, stacklevel=2)
        p = found.path
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise UsageError(f"recipe '{p}' is not UTF-8 text (byte {exc.start}); TOML files must be UTF-8") from None
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"recipe '{p}' is not valid TOML: {exc}")
        for section, value in raw.items():
            if section != "scale":
                _note(origins, section, value, "recipe")
        raw.setdefault("name", p.stem)
    raw = apply_scale(raw, overrides, origins)
    recipe = recipe_from_dict(apply_overrides(raw, overrides, origins))
    recipe.origins = origins
    return recipe


# [distill] keys whose unset value means "the matching method's default" (MatchingMethod.distill_defaults)
METHOD_DEFAULTS: dict[str, Any] = {"lr_img": 0.0, "lr_img_scale": "", "batch_real": 0, "augment": ""}


def resolve_method_defaults(recipe: Recipe, defaults: dict[str, Any], method: str) -> Recipe:
    """The recipe with its unset method-dependent ``[distill]`` keys filled from ``defaults`` and
    ``lr_img_scale = "ipc"`` applied (``lr_img`` is then the value at ipc 10, times ipc / 10, as
    IDC's ``tune_lr_img``). The scale is applied once: the result says ``lr_img_scale = "none"``,
    so a recorded recipe resolves to itself (``--resume``). ``origins`` says what came from where."""
    d = recipe.distill
    origins = dict(recipe.origins)
    values: dict[str, Any] = {}
    for key, unset in METHOD_DEFAULTS.items():
        if getattr(d, key) == unset:
            values[key] = defaults[key]
            origins[f"distill.{key}"] = f"method default ({method})"
    resolved = dataclasses.replace(d, **values)
    if resolved.lr_img_scale == "ipc":
        source = origins.get("distill.lr_img", "recipe")
        resolved = dataclasses.replace(resolved, lr_img=resolved.lr_img * (resolved.ipc / 10), lr_img_scale="none")
        origins["distill.lr_img"] = f"{source}, x ipc/10 (lr_img_scale = ipc: {recipe.distill.lr_img or defaults['lr_img']:g} at ipc 10)"
        origins["distill.lr_img_scale"] = "applied to lr_img"
    out = dataclasses.replace(recipe, distill=resolved)
    out.origins = origins
    return out


def recipe_from_record(raw: dict[str, Any]) -> Recipe:
    """The recipe a run record holds (``--resume``, curves). Records written before
    ``distill.lr_img_scale`` existed used ``lr_img`` as written: they read as ``"none"``, so a
    resumed run is not scaled a second time."""
    raw = copy.deepcopy(raw)
    distill = raw.get("distill")
    if isinstance(distill, dict) and "lr_img_scale" not in distill:
        distill["lr_img_scale"] = "none"
    return recipe_from_dict(raw)
