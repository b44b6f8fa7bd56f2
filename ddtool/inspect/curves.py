"""Accuracy curves: evaluate a distill run's checkpoints, store the points, read them back.

A distill run record lists its checkpoints (``{"iteration", "digest", "seconds"}``, blobs with
the stored images at that outer iteration); the final artifact is the last point, at the
run's iteration count and wall time. ``ddtool eval RUN_ID --checkpoints`` trains fresh
networks on each selected point (the same protocol as plain eval) and writes one eval run
record with ``"source_run"`` (the distill run id), ``"curve"`` (the points) and every input
digest. ``ddtool inspect RUN_ID --curve`` reads the latest such record per run.

FLOPs: one outer iteration of the run's recipe is replayed once under
``torch.utils.flop_counter.FlopCounterMode`` (forward and backward of matmuls and
convolutions; elementwise work is not counted) and multiplied by the iteration. Replaying is
skipped, and the FLOPs are recorded as None with the reason, when one iteration of the run
took longer than ``FLOP_BUDGET_S`` or the replay fails (e.g. its pool was removed).

Run ids look like ``20261123-070141-distill-45a3a2``: eight digits, a dash, then anything;
artifact refs contain a '/' and digest prefixes are hex without dashes, so the forms cannot
be confused. A unique prefix of a run id (``20261123-0701``) works too.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ddtool.data import ImageData
from ddtool.errors import UsageError
from ddtool.inspect.chart import Series
from ddtool.nets import NetSpec
from ddtool.progress import Reporter
from ddtool.recipe import EvalSection, Recipe, recipe_from_dict
from ddtool.runtime.evaluate import mean_std
from ddtool.store import Store
from ddtool.synthetic import SyntheticSet

FLOP_BUDGET_S = 10.0  # replay one outer iteration for the FLOP count only when it took at most this long
X_AXES = ("iteration", "seconds", "flops")
_RUN_ID = re.compile(r"^[0-9]{8}-[A-Za-z0-9._-]*$")


def is_run_id(text: str) -> bool:
    """True for a run id or a prefix of one (``YYYYMMDD-...``), False for refs and digests."""
    return bool(_RUN_ID.fullmatch(text.strip()))


@dataclass
class CurvePoint:
    iteration: int
    seconds: float | None  # wall seconds into the distill run
    digest: str
    accuracies: list[float]
    flops: float | None = None  # estimated FLOPs of the distillation up to this iteration
    final: bool = False

    @property
    def mean(self) -> float:
        return mean_std(self.accuracies)[0]

    @property
    def std(self) -> float:
        return mean_std(self.accuracies)[1]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean": self.mean, "std": self.std}


@dataclass
class CurveResult:
    source_run: str
    net: str
    points: list[CurvePoint]
    seconds: float
    run_id: str = ""
    flops_per_iteration: float | None = None
    flops_note: str = ""
    label: str = ""
    settings: dict[str, Any] = field(default_factory=dict)


# -- finding runs -----------------------------------------------------------------------------
def distill_run(store: Store, text: str) -> dict[str, Any]:
    """The distill run record named by a run id (prefix) or by the synthetic artifact it made."""
    if is_run_id(text):
        rec = store.run(text.strip())
    else:
        art = store.resolve(text, kind="synthetic")
        made, _ = store.lineage(art.digest)
        runs = [r for r in made if r.get("command") == "distill"]
        if not runs:
            raise UsageError(f"'{text}' was not made by a distill run here (imported?); it has no checkpoints")
        rec = runs[-1]
    if rec.get("command") != "distill":
        raise UsageError(f"run {rec['id']} is a {rec.get('command')} run; curves come from distill runs")
    return rec


def _final_output(rec: dict[str, Any]) -> dict[str, Any] | None:
    outs = [o for o in rec.get("outputs", []) if o.get("kind") == "synthetic"]
    return outs[0] if outs else None


def run_iterations(rec: dict[str, Any]) -> int:
    return int(rec.get("metrics", {}).get("iterations") or rec.get("plan", {}).get("iterations") or 0)


def checkpoint_entries(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every point a distill run offers: its checkpoints, then the final artifact (if it finished)."""
    by_it: dict[int, dict[str, Any]] = {}
    for c in rec.get("checkpoints", []):
        by_it[int(c["iteration"])] = {"iteration": int(c["iteration"]), "digest": c["digest"],
                                      "seconds": c.get("seconds"), "final": False, "ref": None}
    out = _final_output(rec)
    if out is not None:
        n = run_iterations(rec)
        by_it[n] = {"iteration": n, "digest": out["digest"], "seconds": rec.get("wall_seconds"), "final": True,
                    "ref": out.get("ref")}
    return [by_it[k] for k in sorted(by_it)]


def select_points(rec: dict[str, Any], every: int | None = None, at: list[int] | None = None) -> list[dict[str, Any]]:
    """All points; with ``every`` the iterations divisible by it (and the final one); with ``at`` exactly those."""
    entries = checkpoint_entries(rec)
    have = ", ".join(str(e["iteration"]) for e in entries) or "none"
    if every is not None and at:
        raise UsageError("--every and --at exclude each other; give one")
    if every is not None and every < 1:
        raise UsageError(f"--every must be >= 1, got {every}")
    if at:
        known = {e["iteration"]: e for e in entries}
        missing = [i for i in at if i not in known]
        if missing:
            raise UsageError(f"run {rec['id']} has no checkpoint at iteration {', '.join(map(str, missing))}; "
                             f"it has {have}")
        return [known[i] for i in sorted(set(at))]
    chosen = [e for e in entries if every is None or e["final"] or e["iteration"] % every == 0]
    if not chosen:
        raise UsageError(f"run {rec['id']} has no checkpoints to evaluate (status {rec.get('status')})")
    return chosen


def parse_at(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise UsageError(f"--at takes iterations separated by commas, e.g. 100,200 (got '{text}')")


# -- FLOPs --------------------------------------------------------------------------------------
def _recipe(rec: dict[str, Any]) -> Recipe:
    return recipe_from_dict(rec["recipe"])


def flops_per_iteration(store: Store, rec: dict[str, Any], data: ImageData, device: torch.device,
                        budget_s: float = FLOP_BUDGET_S) -> tuple[float | None, str]:
    """(FLOPs of one outer iteration, how they were obtained or why not)."""
    from torch.utils.flop_counter import FlopCounterMode

    from ddtool.augment import Augmenter
    from ddtool.context import DistillContext
    from ddtool.runtime.distill import plan
    from ddtool.runtime.pretrain import net_spec_of

    n = run_iterations(rec)
    if n == 0:
        return None, "not an iterative method: no outer iterations"
    per_it = float(rec.get("wall_seconds") or 0.0) / n
    if per_it > budget_s:
        return None, f"not counted: one outer iteration took {per_it:.1f}s in the run (limit {budget_s:g}s)"
    try:
        recipe = _recipe(rec)
        pools = [i["digest"] for i in rec.get("inputs", []) if i.get("role") == "pool"]
        p = plan(store, recipe, data, pools[0] if pools else None, device)
        cfg = recipe.distill
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(cfg.seed)
            ctx = DistillContext(data=data, cfg=cfg, net_spec=net_spec_of(recipe), device=device,
                                 iterations=p.iterations, selection=p.selection, schedule=p.schedule, pool=p.pool,
                                 options=p.options, impl=p.impl, augment=Augmenter(cfg.augment), method=p.method)
            syn = p.method.init_synthetic(ctx)
            syn.images.requires_grad_(True)
            ctx.synthetic = syn
            opt = p.method.make_optimizer(ctx, syn)
            with FlopCounterMode(display=False) as counter:
                p.method.step(ctx, syn, opt, 0)
        return float(counter.get_total_flops()), (
            "FLOPs of outer iteration 1 replayed under torch.utils.flop_counter (matmuls and convolutions, "
            "forward and backward) times the iteration")
    except Exception as exc:  # an estimate must never fail the evaluation
        return None, f"not counted: replaying one iteration failed ({type(exc).__name__}: {exc})"


# -- evaluating ---------------------------------------------------------------------------------
def _factor(rec: dict[str, Any], meta: dict[str, str], data: ImageData) -> int:
    if meta.get("ddtool.factor"):
        return int(meta["ddtool.factor"])
    from ddtool.plugins import registries

    recipe = _recipe(rec)
    method = registries().method.get(recipe.distill.method)
    if hasattr(method, "factor_for"):
        return int(method.factor_for(method.parse_options(dict(recipe.distill.options)), data.resolution))
    return int(method.factor)


def evaluate_curve(store: Store, text: str, data: ImageData, cfg: EvalSection, device: torch.device,
                   net: NetSpec | None = None, reporter: Reporter | None = None, every: int | None = None,
                   at: list[int] | None = None, count_flops: bool = True) -> CurveResult:
    """Evaluate the selected points of a distill run and write an eval run record with the curve."""
    from ddtool.runtime.evaluate import check_data, evaluate_set
    from ddtool.runtime.pretrain import net_spec_of
    from ddtool.runtime.records import new_record

    rec = distill_run(store, text)
    points = select_points(rec, every, at)
    out = _final_output(rec)
    meta = store.blob_metadata(out["digest"]) if out else {}
    if meta:
        check_data(meta, data, out["ref"])  # type: ignore[index]
    elif rec["recipe"]["data"]["dataset"] != data.name:
        raise UsageError(f"run {rec['id']} distilled '{rec['recipe']['data']['dataset']}', not '{data.name}'")
    factor = _factor(rec, meta, data)
    spec = net or (NetSpec(cfg.net) if cfg.net else
                   NetSpec.from_json(meta["ddtool.net"]) if "ddtool.net" in meta else net_spec_of(_recipe(rec)))
    flops, note = flops_per_iteration(store, rec, data, device) if count_flops else (None, "not counted (--no-flops)")
    record = new_record(store, "eval", device=str(device), settings=json.loads(json.dumps(cfg.__dict__)),
                        net=json.loads(spec.to_json()), source_run=rec["id"], curve=[],
                        flops_per_iteration=flops, flops_note=note)
    label = (out or {}).get("ref") or rec["id"]
    start = time.perf_counter()
    done: list[CurvePoint] = []
    for e in points:
        tensors, _ = store.read_blob(e["digest"])
        labels = tensors["labels"]
        syn = SyntheticSet(tensors["images"], labels, int(torch.bincount(labels).max()), factor)
        accs = evaluate_set(syn, data, spec, cfg, device, reporter, label=f"{label} @ {e['iteration']}")
        point = CurvePoint(e["iteration"], e["seconds"], e["digest"], accs,
                           flops * e["iteration"] if flops is not None else None, e["final"])
        done.append(point)
        record["inputs"].append({"ref": e["ref"] or f"{rec['id']}@{e['iteration']}", "digest": e["digest"],
                                 "kind": "synthetic" if e["final"] else "checkpoint",
                                 "role": "synthetic" if e["final"] else "checkpoint", "iteration": e["iteration"]})
    seconds = time.perf_counter() - start
    last = done[-1]
    record.update(status="complete", wall_seconds=seconds, curve=[p.to_dict() for p in done],
                  metrics={"accuracies": last.accuracies, "mean": last.mean, "std": last.std, "net": spec.name,
                           "iteration": last.iteration, "points": len(done), "repeats": cfg.repeats,
                           "epochs": cfg.epochs, "protocol": cfg.protocol})
    store.write_run(record)
    return CurveResult(rec["id"], spec.name, done, seconds, record["id"], flops, note, label, dict(cfg.__dict__))


# -- reading curves back ------------------------------------------------------------------------
def curve_record(store: Store, text: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the latest eval record with a curve for a run or artifact, the distill run it came from).

    ``text`` may also be the id of such an eval run itself.
    """
    if is_run_id(text):
        rec = store.run(text.strip())
        if rec.get("command") == "eval":
            if "curve" not in rec:
                raise UsageError(f"eval run {rec['id']} has no curve; make one with 'ddtool eval RUN_ID --checkpoints'")
            try:
                return rec, store.run(rec["source_run"])
            except UsageError:
                return rec, None  # the distill record is gone; the curve still stands
    source = distill_run(store, text)
    evals = [r for r in store.runs() if r.get("command") == "eval" and r.get("source_run") == source["id"]
             and r.get("curve")]
    if not evals:
        raise UsageError(f"run {source['id']} has no accuracy curve yet; "
                         f"make one with 'ddtool eval {source['id']} --checkpoints'")
    return max(evals, key=lambda r: (r.get("created", ""), r["id"])), source


def series_label(curve: dict[str, Any], source: dict[str, Any] | None) -> str:
    if source is None:
        return curve["source_run"]
    out = _final_output(source)
    d = source.get("recipe", {}).get("distill", {})
    what = d.get("method", "?") + (f"+{d['selection']}" if d.get("selection") not in (None, "scratch") else "")
    return f"{out['ref'] if out else source['id']} · {what}"


def to_series(curve: dict[str, Any], source: dict[str, Any] | None, x: str = "iteration") -> Series:
    """Accuracy in percent against iteration, wall seconds or estimated FLOPs."""
    if x not in X_AXES:
        raise UsageError(f"--x must be one of {', '.join(X_AXES)}, got '{x}'")
    pts = curve["curve"]
    if x == "flops" and any(p.get("flops") is None for p in pts):
        raise UsageError(f"run {curve['source_run']} has no FLOP estimate ({curve.get('flops_note') or 'not counted'}); "
                         "plot against --x iteration or --x seconds")
    if x == "seconds" and any(p.get("seconds") is None for p in pts):
        raise UsageError(f"run {curve['source_run']} has points without wall seconds; plot against --x iteration")
    return Series(series_label(curve, source), [float(p[x]) for p in pts], [100 * p["mean"] for p in pts],
                  [100 * p["std"] for p in pts])


def load_series(store: Store, texts: list[str], x: str = "iteration") -> tuple[list[Series], list[dict[str, Any]]]:
    """One series per run (or artifact, or curve eval run) and the curve records they came from."""
    series, records = [], []
    for text in texts:
        curve, source = curve_record(store, text)
        s = to_series(curve, source, x)
        if any(s.name == other.name for other in series):
            s.name += f" ({curve['source_run']})"
        series.append(s)
        records.append(curve)
    return series, records
