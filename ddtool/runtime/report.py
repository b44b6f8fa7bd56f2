"""The evaluation report: one row per synthetic set with what a reviewer needs beside its accuracy.

For each set: hard-label accuracy over the repeats recorded for it under the report's settings
(missing ones evaluated and recorded), the random-real baseline of the same ipc under the same
settings over several random subsets (made and evaluated once, then read back from the store),
the full-data bound (likewise), DD-Ranking's HLR / IOR / LRS (and ARS when asked), the
distillation's recorded cost and the set's storage. :func:`build_report` is the whole of it;
the CLI (``ddtool report``) and ``ddtool.report`` only choose the settings and print.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ddtool.data import ImageData, load_dataset
from ddtool.errors import UsageError
from ddtool.nets import NetSpec
from ddtool.progress import Reporter, Silent
from ddtool.recipe import EvalSection
from ddtool.runtime import metrics, recorded
from ddtool.runtime.baselines import PREFIX, random_subsets
from ddtool.runtime.evaluate import FULL_DATA_EPOCHS, evaluate, evaluate_full_data, mean_std
from ddtool.store import Artifact, Store
from ddtool.store.meta import SyntheticMeta
from ddtool.synthetic import SyntheticSet


@dataclass(frozen=True)
class ReportSettings:
    """How every row is measured. ``eval`` holds the protocol, epochs, optimiser, repeats and
    first seed; ``net`` '' evaluates each set with the network it records."""

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


@dataclass
class ReportRow:
    """One set. Accuracies are fractions in [0, 1]; HLR and IOR differences of them; LRS and ARS
    in [0, 100]; ``None``: not recorded (cost) or not computed (ARS without ``--ars``)."""

    ref: str
    digest: str
    dataset: str
    method: str
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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ReportRow":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


# the CSV's columns: every scalar field (the lists are in the JSON)
CSV_FIELDS = [f.name for f in dataclasses.fields(ReportRow)
              if f.name not in ("accuracies", "seeds", "eval_runs", "baselines", "full_runs")]


def to_csv(rows: list[ReportRow]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        d = row.to_dict()
        writer.writerow({k: "" if d[k] is None else d[k] for k in CSV_FIELDS})
    return out.getvalue()


def to_markdown(rows: list[ReportRow]) -> str:
    """A GitHub table: accuracies in percent (mean ± std, repeats), scores, cost and storage."""
    head = ["set", "method", "ipc", "recipe", "accuracy %", "random %", "full %", "HLR", "IOR", "LRS", "ARS",
            "distill s", "storage"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        cells = [r.ref, r.method, str(r.ipc), (r.recipe_sha256 or "-")[:12],
                 f"{pct(r.accuracy_mean)} ± {pct(r.accuracy_std)} ({r.repeats})",
                 f"{pct(r.random_mean)} ± {pct(r.random_std)} ({r.random_subsets} subsets)",
                 f"{pct(r.full_mean)}", f"{pct(r.hlr)}", f"{pct(r.ior)}", f"{r.lrs:.2f}",
                 "-" if r.ars is None else f"{r.ars:.2f}",
                 "-" if r.distill_seconds is None else f"{r.distill_seconds:.1f}", human_bytes(r.storage_bytes)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


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

    def set_accuracy(self, art: Artifact, data: ImageData, spec: NetSpec, cfg: EvalSection) -> recorded.Accuracies:
        def run(c: EvalSection):  # type: ignore[no-untyped-def]
            return evaluate(self.store, art.digest, data, dataclasses.replace(c, net=spec.name), self.device, spec,
                            self.reporter)
        acc = recorded.ensure(self.store, self.runs, recorded.of_set(art.digest), spec, cfg, run)
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
        cfg = dataclasses.replace(self.s.eval, net=spec.name, epochs=self.s.full_epochs, repeats=self.s.full_repeats)
        key = ("full", data.name, spec.to_json())
        if key not in self.memo:
            def run(c: EvalSection):  # type: ignore[no-untyped-def]
                return evaluate_full_data(self.store, data, c, self.device, spec, self.reporter)
            self.memo[key] = recorded.ensure(self.store, self.runs, recorded.of_full_data(data.name), spec, cfg, run)
        return self.memo[key]

    def row(self, art: Artifact) -> ReportRow:
        tensors, meta = self.store.read_blob(art.digest)
        syn = SyntheticSet.from_artifact(tensors, meta, art.digest)
        info = syn.info
        if info.signature.dataset is None:
            raise UsageError(f"'{art.ref}' does not record its dataset; import it with 'ddtool store import --dataset'")
        if self.s.net:
            spec = NetSpec(self.s.net)
        elif info.net:
            spec = NetSpec.from_json(info.net)
        else:
            raise UsageError(f"'{art.ref}' does not record the network it was distilled with; name one with --net")
        data = self.data(info.signature.dataset)
        cfg = dataclasses.replace(self.s.eval, net=spec.name)
        acc = self.set_accuracy(art, data, spec, cfg)  # first: a set of another dataset fails before any baseline
        base = self.random(data, syn.ipc, spec, cfg)
        base_mean, base_std = mean_std([a.mean for _, _, a in base])
        full = self.full(data, spec)
        h, i = metrics.hlr(full.mean, acc.mean), metrics.ior(acc.mean, base_mean)
        ars = plain = random_plain = None
        if self.s.ars:
            plain_cfg = dataclasses.replace(cfg, augment="none")
            plain = self.set_accuracy(art, data, spec, plain_cfg).mean
            random_plain = statistics.fmean(a.mean for _, _, a in self.random(data, syn.ipc, spec, plain_cfg))
            ars = metrics.ars(acc.mean, plain, base_mean, random_plain, self.s.gamma)
        return ReportRow(
            ref=art.ref, digest=art.digest, dataset=data.name, method=info.method or "?", ipc=syn.ipc,
            factor=syn.factor, recipe_sha256=info.recipe_sha256, net=spec.name, protocol=cfg.protocol,
            epochs=cfg.epochs, accuracy_mean=acc.mean, accuracy_std=acc.std, repeats=len(acc.accuracies),
            random_mean=base_mean, random_std=base_std, random_subsets=len(base), full_mean=full.mean,
            full_std=full.std, full_repeats=len(full.accuracies), full_epochs=self.s.full_epochs, hlr=h, ior=i,
            lrs=metrics.lrs(h, i, self.s.w), w=self.s.w, ars=ars, gamma=self.s.gamma if self.s.ars else None,
            plain_mean=plain, random_plain_mean=random_plain, **cost_of(art.digest, info, self.runs),
            storage_bytes=storage_bytes(tensors), accuracies=acc.accuracies, seeds=acc.seeds, eval_runs=acc.runs,
            baselines=[{"ref": a.ref, "digest": a.digest, "seed": seed, "mean": r.mean, "std": r.std,
                        "repeats": len(r.accuracies), "runs": r.runs} for seed, a, r in base],
            full_runs=full.runs)


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
    return [report.row(art) for art in arts]
