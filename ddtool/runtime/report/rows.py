"""The evaluation report: one row per synthetic set with what a reviewer needs beside its accuracy.

For each set: hard-label accuracy over the repeats recorded for it under the report's settings
(missing ones evaluated and recorded), the random-real baseline of the same ipc under the same
settings over several random subsets (made and evaluated once, then read back from the store),
the full-data bound (likewise), DD-Ranking's HLR / IOR / LRS (and ARS when asked), the
distillation's recorded cost and the set's storage. A set that carries its own label vectors
(learned, e.g. DATM's) also gets its accuracy on them and DD-Ranking's soft-label IOR / LRS.
:func:`build_report` is the whole of it; the CLI (``ddtool report``) and ``ddtool.report`` only
choose the settings and print (:mod:`ddtool.runtime.report.tables` formats the rows as CSV or
Markdown).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ddtool.data import ImageData
from ddtool.errors import UsageError
from ddtool.lookup import load_dataset
from ddtool.nets import NetSpec
from ddtool.progress import Reporter, Silent
from ddtool.recipe import EvalSection
from ddtool.runtime.evaluate.train_eval import (FULL_DATA_EPOCHS, check_data, check_eval, evaluate, evaluate_full_data,
                                     full_data_lr, mean_std, with_learned_lr)
from ddtool.runtime.report import dd_ranking as metrics
from ddtool.runtime.report import stored_accuracies as recorded
from ddtool.runtime.report.random_baseline import PREFIX, random_subsets
from ddtool.store import Artifact, Store
from ddtool.store.meta import SyntheticMeta
from ddtool.synthetic import SyntheticSet

# a set's own label vectors train at T = 1 (soft cross-entropy to softmax(logits)); DD-Ranking passes the set's
# labels and the random subsets' teacher logits through one loss, so the learned IOR's random subsets train at it too
LEARNED_TEMPERATURE = 1.0


@dataclass(frozen=True)
class ReportSettings:
    """How every row is measured. ``eval`` holds the protocol, epochs, optimiser, repeats and
    first seed; ``net`` '' evaluates each set with the network it records. ``eval.labels =
    "soft"`` (with ``eval.teacher`` and ``eval.temperature``) adds soft-label accuracy beside the
    hard one (which is always measured) and the soft labels' storage."""

    eval: EvalSection = field(default_factory=EvalSection)
    net: str = ""
    baseline_subsets: int = 3  # random subsets, seeds 0 .. baseline_subsets - 1
    full_epochs: int = FULL_DATA_EPOCHS
    full_repeats: int = 1
    w: float = 0.5  # LRS: weight of IOR against HLR
    ars: bool = False  # also evaluate with eval.augment = "none" for ARS (doubles the training; idc keeps CutMix)
    gamma: float = 0.5  # ARS: weight of the augmented gap

    def check(self) -> None:
        if "," in self.net:
            raise UsageError(f"report evaluates with one --net, got '{self.net}'; run one report per network")
        if self.net:
            from ddtool.plugins import registries

            registries().architecture.get(self.net)  # an unknown name fails before any work
        for name, value in (("--w", self.w), ("--gamma", self.gamma)):
            if not 0.0 <= value <= 1.0:
                raise UsageError(f"{name} must be in [0, 1], got {value}")
        for name, value in (("--baseline-subsets", self.baseline_subsets), ("--full-epochs", self.full_epochs),
                            ("--full-repeats", self.full_repeats)):
            if value < 1:
                raise UsageError(f"{name} must be >= 1, got {value}")
        if self.eval.labels == "soft" and not self.eval.teacher:
            raise UsageError("soft labels need a teacher: --teacher pool/NAME[#i] (or eval.teacher in the recipe)")
        if self.eval.teacher and self.eval.labels != "soft":
            raise UsageError(f"eval.teacher is '{self.eval.teacher}' but eval.labels is 'hard'; "
                             "set eval.labels = \"soft\" (or give --teacher) for the soft-label column")

    @property
    def soft(self) -> bool:
        return self.eval.labels == "soft"


@dataclass
class ReportRow:
    """One set. Accuracies are fractions in [0, 1]; HLR and IOR differences of them; LRS and ARS
    in [0, 100]; ``None``: not recorded (cost) or not computed (ARS without ``--ars``)."""

    ref: str
    digest: str
    dataset: str
    method: str  # the method and its selection strategy and schedule when not the plain ones (SyntheticMeta.method_label)
    ipc: int
    factor: int
    recipe_sha256: str | None
    net: str
    protocol: str
    epochs: int
    accuracy_mean: float
    accuracy_std: float
    repeats: int
    random_mean: float
    random_std: float  # across the subsets' means: how much the luck of one subset moves it
    random_subsets: int
    full_mean: float
    full_std: float
    full_repeats: int
    full_epochs: int
    hlr: float
    ior: float
    lrs: float
    w: float
    ars: float | None
    gamma: float | None
    plain_mean: float | None  # without evaluation augmentation (ARS)
    random_plain_mean: float | None
    distill_run: str | None
    distill_seconds: float | None
    pretrain_seconds: float | None  # the pool the set was distilled with, when it has one
    device: str | None
    flops: float | None
    peak_memory_bytes: int | None
    storage_bytes: int
    accuracies: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    eval_runs: list[str] = field(default_factory=list)
    baselines: list[dict[str, Any]] = field(default_factory=list)  # ref, digest, seed, mean, std, repeats, runs
    full_runs: list[str] = field(default_factory=list)
    # soft labels (eval.labels = "soft"): None when the report was not asked for them
    teacher: str | None = None  # its ref
    teacher_digest: str | None = None
    teacher_model: int | None = None
    temperature: float | None = None
    soft_mean: float | None = None
    soft_std: float | None = None
    soft_repeats: int | None = None
    soft_label_bytes: int | None = None  # N (decoded images) x classes x 4 (fp32)
    total_storage_bytes: int | None = None  # storage_bytes plus the soft labels
    soft_accuracies: list[float] = field(default_factory=list)
    soft_seeds: list[int] = field(default_factory=list)
    soft_eval_runs: list[str] = field(default_factory=list)
    # the random subsets trained on the same teacher's soft labels, and DD-Ranking's scores of a
    # soft-label set: IOR = soft - soft random (both "any" labels: the set's own), HLR stays hard
    soft_random_mean: float | None = None
    soft_random_std: float | None = None
    soft_ior: float | None = None
    soft_lrs: float | None = None
    # the set's own label vectors (a method that learns labels, e.g. DATM, or an imported set's): None when it
    # has none. DD-Ranking's soft-label rules ("S" mode, ddranking/metrics/soft_label.py): IOR = the set on its
    # labels - the random subsets on the teacher's soft labels, both through one loss at one temperature (1:
    # the set's labels train at T 1); HLR stays the hard one. Without a teacher the learned IOR and LRS stay None
    label_kind: str | None = None  # logits or probabilities
    learned_mean: float | None = None
    learned_std: float | None = None
    learned_repeats: int | None = None
    learned_label_bytes: int | None = None  # the label vectors as stored (storage_bytes counts them)
    learned_accuracies: list[float] = field(default_factory=list)
    learned_seeds: list[int] = field(default_factory=list)
    learned_eval_runs: list[str] = field(default_factory=list)
    learned_random_mean: float | None = None  # the random subsets on the teacher's soft labels at T 1
    learned_random_std: float | None = None
    learned_ior: float | None = None
    learned_lrs: float | None = None
    learned_missing: str | None = None  # what the learned scores lack and how to add it
    # the set on other networks, as recorded by 'eval --net NAME' under the same settings (never trained
    # by the report): label -> {"net", "mean", "std", "repeats", "seeds", "runs"}
    cross_arch: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ReportRow":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


# -- which sets -------------------------------------------------------------------------------------
def resolve_sets(store: Store, refs: list[str], dataset: str | None = None) -> list[Artifact]:
    """The sets to report: each ref (a run id stands for the set its distill run made), then with
    ``dataset`` the newest version of every synthetic set of that dataset but the report's own
    random baselines; each set once."""
    from ddtool.store.runs import distill_run, final_output, is_run_id

    out: list[Artifact] = []
    for text in refs:
        if is_run_id(text):
            rec = distill_run(store, text)
            made = final_output(rec)
            if made is None:
                raise UsageError(f"run {rec['id']} made no synthetic set (status {rec.get('status')}); "
                                 "report the sets of complete runs")
            out.append(store.resolve(made["digest"], kind="synthetic"))
        else:
            out.append(store.resolve(text, kind="synthetic"))
    if dataset is not None:
        newest: dict[str, Artifact] = {}
        for art in store.list():
            if art.kind == "synthetic" and not (art.name or "").startswith(PREFIX):
                newest[art.name or art.digest] = art
        found = [a for a in newest.values()
                 if SyntheticMeta.from_metadata(store.blob_metadata(a.digest)).signature.dataset == dataset]
        if not found:
            raise UsageError(f"the store has no synthetic sets of dataset '{dataset}'; see 'ddtool store ls'")
        out += found
    if not out:
        raise UsageError("report needs sets: refs, distill run ids, or --dataset NAME")
    return list({a.ref: a for a in out}.values())


# -- cost and storage -------------------------------------------------------------------------------
def cost_of(digest: str, info: SyntheticMeta, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The distill run that made ``digest`` (its wall seconds, device, FLOPs and peak memory, as
    recorded) and the pretrain runs of the pool it used."""
    def made(d: str, command: str) -> list[dict[str, Any]]:
        return [r for r in runs if r.get("command") == command and r.get("status") == "complete"
                and any(o.get("digest") == d for o in r.get("outputs", []))]

    distills = made(digest, "distill")
    rec = distills[-1] if distills else {}
    device = rec.get("device")
    peak = rec.get("peak_cuda_bytes") if str(device).startswith("cuda") else rec.get("peak_rss_bytes")
    pretrain = [r.get("wall_seconds") for p in (info.parents or ()) for r in made(p, "pretrain")[-1:]]
    return {"distill_run": rec.get("id"), "distill_seconds": rec.get("wall_seconds"), "device": device,
            "flops": rec.get("flops"), "peak_memory_bytes": peak,
            "pretrain_seconds": sum(s for s in pretrain if s is not None) if pretrain else None}


def storage_bytes(tensors: dict[str, torch.Tensor]) -> int:
    """Bytes of every tensor the set stores: images and labels (and soft labels, were there any)."""
    return sum(t.numel() * t.element_size() for t in tensors.values())


# -- the rows ----------------------------------------------------------------------------------------
class _Report:
    """One report's state: the datasets loaded, the run records read, the baselines and bounds met."""

    def __init__(self, store: Store, settings: ReportSettings, device: torch.device, reporter: Reporter,
                 data_root: str | Path | None, download: bool) -> None:
        self.store, self.s, self.device, self.reporter = store, settings, device, reporter
        self.data_root, self.download = data_root, download
        self.runs = store.runs()
        self.datasets: dict[str, ImageData] = {}
        self.memo: dict[tuple[Any, ...], Any] = {}

    def data(self, name: str) -> ImageData:
        if name not in self.datasets:
            self.datasets[name] = load_dataset(name, self.data_root, self.download)
        return self.datasets[name]

    def set_accuracy(self, art: Artifact, data: ImageData, spec: NetSpec, cfg: EvalSection,
                     match: recorded.Match | None = None) -> recorded.Accuracies:
        """The set's accuracies under ``cfg`` (hard labels unless ``match`` picks other records)."""
        def run(c: EvalSection):  # type: ignore[no-untyped-def]
            return evaluate(self.store, art.digest, data, dataclasses.replace(c, net=spec.name), self.device, spec,
                            self.reporter)
        acc = recorded.ensure(self.store, self.runs, match or recorded.of_set(art.digest), spec, cfg, run)
        if acc.evaluated:
            self.reporter.note(f"{art.ref}: evaluated {acc.evaluated} repeat(s) the store did not hold")
        return acc

    def random(self, data: ImageData, ipc: int, spec: NetSpec, cfg: EvalSection
               ) -> list[tuple[int, Artifact, recorded.Accuracies]]:
        key = ("random", data.name, ipc, spec.to_json(), repr(cfg))
        if key not in self.memo:
            subsets = random_subsets(self.store, data, ipc, list(range(self.s.baseline_subsets)), self.device,
                                     self.reporter)
            self.runs = self.store.runs()  # the distill records of subsets just made
            self.memo[key] = [(seed, art, self.set_accuracy(art, data, spec, cfg)) for seed, art in subsets]
        return self.memo[key]

    def full(self, data: ImageData, spec: NetSpec) -> recorded.Accuracies:
        cfg = full_data_lr(dataclasses.replace(self.s.eval, net=spec.name, epochs=self.s.full_epochs,
                                               repeats=self.s.full_repeats))
        key = ("full", data.name, spec.to_json())
        if key not in self.memo:
            def run(c: EvalSection):  # type: ignore[no-untyped-def]
                return evaluate_full_data(self.store, data, c, self.device, spec, self.reporter)
            self.memo[key] = recorded.ensure(self.store, self.runs, recorded.of_full_data(data.name), spec, cfg, run)
        return self.memo[key]

    def soft_accuracy(self, art: Artifact, data: ImageData, spec: NetSpec, cfg: EvalSection,
                      temperature: float | None = None) -> tuple[Artifact, int, recorded.Accuracies]:
        """The set's accuracy under ``cfg`` (hard) but trained on the report's teacher's soft labels
        (at ``temperature``, default ``eval.temperature``): read back or evaluated like the hard one.
        Returns the teacher, its model index and the accuracies."""
        teacher, index = self.teacher()
        t = self.s.eval.temperature if temperature is None else temperature
        soft_cfg = dataclasses.replace(cfg, labels="soft", teacher=f"{teacher.ref}#{index}", temperature=t)

        def run(c: EvalSection):  # type: ignore[no-untyped-def]
            return evaluate(self.store, art.digest, data, dataclasses.replace(c, net=spec.name), self.device, spec,
                            self.reporter)
        acc = recorded.ensure(self.store, self.runs, of_soft(art.digest, teacher.digest, index, t), spec, soft_cfg,
                              run)
        return teacher, index, acc

    def teacher(self) -> tuple[Artifact, int]:
        """The report's ``eval.teacher``: the pool artifact and the model index."""
        from ddtool.runtime.evaluate.soft_labels import parse_teacher

        e = self.s.eval
        ref, index = parse_teacher(e.teacher)
        try:
            return self.store.resolve(ref, kind="pool"), index
        except UsageError as exc:
            raise UsageError(f"--teacher '{e.teacher}': {exc}") from None

    def soft(self, syn: SyntheticSet, data: ImageData, spec: NetSpec, cfg: EvalSection,
             own: tuple[Artifact, int, recorded.Accuracies],
             base: list[tuple[int, Artifact, recorded.Accuracies]]) -> dict[str, Any]:
        """The set's soft-label accuracy (``own``, from :meth:`soft_accuracy`), the random subsets'
        under the same teacher (DD-Ranking compares a soft-label set with soft-labelled random real
        images), and the soft labels' storage."""
        from ddtool.runtime.evaluate.soft_labels import SOFT_LABEL_DTYPE

        e = self.s.eval
        teacher, index, acc = own
        random_mean, random_std = mean_std([self.soft_accuracy(a, data, spec, cfg)[2].mean for _, a, _ in base])
        n = int(syn.decoded()[1].shape[0])
        soft_bytes = n * data.num_classes * torch.empty((), dtype=SOFT_LABEL_DTYPE).element_size()
        return {"teacher": teacher.ref, "teacher_digest": teacher.digest, "teacher_model": index,
                "temperature": e.temperature, "soft_mean": acc.mean, "soft_std": acc.std,
                "soft_repeats": len(acc.accuracies), "soft_label_bytes": soft_bytes, "soft_accuracies": acc.accuracies,
                "soft_seeds": acc.seeds, "soft_eval_runs": acc.runs, "soft_random_mean": random_mean,
                "soft_random_std": random_std}

    def learned(self, art: Artifact, tensors: dict[str, torch.Tensor], info: SyntheticMeta, data: ImageData,
                spec: NetSpec, cfg: EvalSection, base: list[tuple[int, Artifact, recorded.Accuracies]],
                hlr: float) -> dict[str, Any]:
        """A set that carries label vectors: its accuracy on them (``eval.labels = "learned"``, read
        back or evaluated like the hard one, never pooled with it) and, with the report's teacher,
        DD-Ranking's soft-label IOR and LRS: the random subsets on the teacher's soft labels at the
        temperature the set's own labels train at (1), the hard ``hlr``. Without a teacher the
        row says what is missing and how to add it."""
        acc = self.set_accuracy(art, data, spec, dataclasses.replace(cfg, labels="learned"),
                                recorded.of_learned(art.digest))
        labels = tensors["soft_labels"]
        out: dict[str, Any] = {
            "label_kind": info.label_kind, "learned_mean": acc.mean, "learned_std": acc.std,
            "learned_repeats": len(acc.accuracies), "learned_label_bytes": labels.numel() * labels.element_size(),
            "learned_accuracies": acc.accuracies, "learned_seeds": acc.seeds, "learned_eval_runs": acc.runs}
        if not self.s.soft:
            out["learned_missing"] = (
                f"{art.ref} carries learned labels: its IOR and LRS compare it with random real subsets on a "
                "teacher's soft labels (DD-Ranking); add --teacher pool/NAME[#i] (a pretrained pool's model, or "
                f"the pool 'ddtool eval --full-data --dataset {data.name} --save-teacher' stores)")
            self.reporter.note(out["learned_missing"])
            return out
        random_mean, random_std = mean_std([self.soft_accuracy(a, data, spec, cfg, LEARNED_TEMPERATURE)[2].mean
                                            for _, a, _ in base])
        ior = metrics.ior(acc.mean, random_mean)
        out.update(learned_random_mean=random_mean, learned_random_std=random_std, learned_ior=ior,
                   learned_lrs=metrics.lrs(hlr, ior, self.s.w))
        return out

    def cross_arch(self, digest: str, spec: NetSpec, cfg: EvalSection) -> dict[str, dict[str, Any]]:
        """The set's recorded accuracies on every other network under ``cfg``'s protocol, epochs,
        optimiser and augmentation (hard labels), pooled by seed as for the row's own net."""
        match = recorded.of_set(digest)
        others: dict[str, NetSpec] = {}
        for rec in self.runs:
            net = rec.get("net")
            if rec.get("command") != "eval" or not isinstance(net, dict) or not match(rec):
                continue
            other = NetSpec(net.get("name", "?"), dict(net.get("options") or {}))
            if other != spec:
                label = other.name if not other.options else f"{other.name} {json.dumps(other.options, sort_keys=True)}"
                if other.name == spec.name and not other.options:
                    label = f"{other.name} (defaults)"
                others.setdefault(label, other)
        out = {}
        for label, other in others.items():
            held = recorded.by_seed(self.runs, match, other, cfg)
            if held:
                seeds = sorted(held)
                mean, std = mean_std([held[s][0] for s in seeds])
                out[label] = {"net": other.name, "mean": mean, "std": std, "repeats": len(seeds), "seeds": seeds,
                              "runs": list(dict.fromkeys(held[s][1] for s in seeds))}
        return out

    def inputs(self, art: Artifact, info: SyntheticMeta) -> tuple[NetSpec, ImageData, EvalSection]:
        """The set's network, dataset and hard-label settings; what cannot be used is refused here."""
        if info.signature.dataset is None:
            raise UsageError(f"'{art.ref}' does not record its dataset; import it with 'ddtool store import --dataset'")
        if self.s.net:
            spec = NetSpec(self.s.net)
        elif info.net:
            spec = NetSpec.from_json(info.net)
        else:
            raise UsageError(f"'{art.ref}' does not record the network it was distilled with; name one with --net")
        data = self.data(info.signature.dataset)
        # eval.lr = "learned": the set's own step size, for it and for its baselines alike
        cfg = with_learned_lr(dataclasses.replace(self.s.eval, net=spec.name, labels="hard", teacher=""),
                              info.learned_lr, f"'{art.ref}'")
        return spec, data, cfg

    def check(self, art: Artifact) -> None:
        """Refuse what :meth:`row` would refuse (a set without its dataset or network, an unknown
        or uninstalled architecture, a bad augmentation or teacher), for every set before any is
        evaluated: a refused report writes no run record."""
        info = SyntheticMeta.from_metadata(self.store.blob_metadata(art.digest))
        spec, data, cfg = self.inputs(art, info)
        check_data(info.signature, data, art.ref)
        check_eval(spec, cfg, data)
        if self.s.soft:
            self.teacher()

    def row(self, art: Artifact) -> ReportRow:
        tensors, meta = self.store.read_blob(art.digest)
        syn = SyntheticSet.from_artifact(tensors, meta, art.digest)
        info = syn.info
        spec, data, cfg = self.inputs(art, info)
        acc = self.set_accuracy(art, data, spec, cfg)  # first: a set of another dataset fails before any baseline
        own = self.soft_accuracy(art, data, spec, cfg) if self.s.soft else None  # a bad --teacher fails here
        base = self.random(data, syn.ipc, spec, cfg)
        soft = self.soft(syn, data, spec, cfg, own, base) if own is not None else {}
        base_mean, base_std = mean_std([a.mean for _, _, a in base])
        full = self.full(data, spec)
        h, i = metrics.hlr(full.mean, acc.mean), metrics.ior(acc.mean, base_mean)
        if soft:  # HLR is a hard-label quantity whatever labels the set is used with
            soft["soft_ior"] = metrics.ior(soft["soft_mean"], soft["soft_random_mean"])
            soft["soft_lrs"] = metrics.lrs(h, soft["soft_ior"], self.s.w)
        learned = self.learned(art, tensors, info, data, spec, cfg, base, h) if syn.soft_labels is not None else {}
        ars = plain = random_plain = None
        if self.s.ars:
            plain_cfg = dataclasses.replace(cfg, augment="none")
            plain = self.set_accuracy(art, data, spec, plain_cfg).mean
            random_plain = statistics.fmean(a.mean for _, _, a in self.random(data, syn.ipc, spec, plain_cfg))
            ars = metrics.ars(acc.mean, plain, base_mean, random_plain, self.s.gamma)
        return ReportRow(
            ref=art.ref, digest=art.digest, dataset=data.name, method=info.method_label, ipc=syn.ipc,
            factor=syn.factor, recipe_sha256=info.recipe_sha256, net=spec.name, protocol=cfg.protocol,
            epochs=cfg.epochs, accuracy_mean=acc.mean, accuracy_std=acc.std, repeats=len(acc.accuracies),
            random_mean=base_mean, random_std=base_std, random_subsets=len(base), full_mean=full.mean,
            full_std=full.std, full_repeats=len(full.accuracies), full_epochs=self.s.full_epochs, hlr=h, ior=i,
            lrs=metrics.lrs(h, i, self.s.w), w=self.s.w, ars=ars, gamma=self.s.gamma if self.s.ars else None,
            plain_mean=plain, random_plain_mean=random_plain, **cost_of(art.digest, info, self.runs),
            storage_bytes=storage_bytes(tensors), accuracies=acc.accuracies, seeds=acc.seeds, eval_runs=acc.runs,
            total_storage_bytes=storage_bytes(tensors) + soft["soft_label_bytes"] if soft else None, **soft, **learned,
            cross_arch=self.cross_arch(art.digest, spec, cfg),
            baselines=[{"ref": a.ref, "digest": a.digest, "seed": seed, "mean": r.mean, "std": r.std,
                        "repeats": len(r.accuracies), "runs": r.runs} for seed, a, r in base],
            full_runs=full.runs)


def of_soft(digest: str, teacher_digest: str, model: int, temperature: float) -> recorded.Match:
    """Soft-label eval records of the set ``digest`` with this teacher model and temperature."""
    def match(rec: dict[str, Any]) -> bool:
        inputs, soft = rec.get("inputs") or [], rec.get("soft") or {}
        roles = [(i.get("role"), i.get("digest")) for i in inputs]
        return (roles == [("synthetic", digest), ("teacher", teacher_digest)] and soft.get("model") == model
                and soft.get("temperature") == temperature)
    return match


def build_report(store: Store, refs: list[str], settings: ReportSettings, device: torch.device,
                 reporter: Reporter | None = None, dataset: str | None = None,
                 data_root: str | Path | None = None, download: bool = False) -> list[ReportRow]:
    """One :class:`ReportRow` per set of ``refs`` (refs, digests, distill run ids) and, with
    ``dataset``, per set of that dataset in the store.

    Whatever the store already holds under the same settings is read back (eval repeats by seed,
    random subsets by method, ipc, seed and dataset, the full-data bound); only what is missing is
    made, trained and recorded, so a second report of the same sets trains nothing.
    """
    settings.check()
    arts = resolve_sets(store, refs, dataset)
    report = _Report(store, settings, device, reporter or Silent(), data_root, download)
    for art in arts:
        report.check(art)
    return [report.row(art) for art in arts]
