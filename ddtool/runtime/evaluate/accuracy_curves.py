"""Accuracy curves: evaluate a distill run's checkpoints and store the points in an eval run record.

``ddtool eval RUN_ID --checkpoints`` trains fresh networks on each selected point of a distill
run (its checkpoints and final set, :mod:`ddtool.store.runs`; the same protocol as plain eval)
and writes one eval run record with ``"source_run"`` (the distill run id), ``"curve"`` (the
points) and every input digest. ``ddtool inspect RUN_ID --curve`` draws the latest such record
per run (:mod:`ddtool.inspect.curve_series`).

FLOPs: one outer iteration of the run's recipe is replayed once under
``torch.utils.flop_counter.FlopCounterMode`` (forward and backward of matmuls and
convolutions; elementwise work is not counted) and multiplied by the iteration. Replaying is
skipped, and the FLOPs are recorded as None with the reason, when one iteration of the run
took longer than ``FLOP_BUDGET_S`` or the replay fails (e.g. its pool was removed).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ddtool.data import ImageData
from ddtool.errors import UsageError
from ddtool.nets import NetSpec
from ddtool.progress import Reporter
from ddtool.recipe import LEARNED, EvalSection, Recipe, recipe_from_record
from ddtool.runtime.distill import checkpoint
from ddtool.runtime.distill.estimate import replay
from ddtool.runtime.distill.planning import net_spec_of, plan
from ddtool.runtime.evaluate.soft_labels import resolve_labels
from ddtool.runtime.evaluate.train_eval import RepeatedAccuracy, check_data, check_eval, evaluate_set, with_learned_lr
from ddtool.runtime.run_records import run_record
from ddtool.store import Store
from ddtool.store.meta import SyntheticMeta
from ddtool.store.runs import distill_run, final_output, run_iterations, select_points
from ddtool.synthetic import SyntheticSet

FLOP_BUDGET_S = 10.0  # replay one outer iteration for the FLOP count only when it took at most this long


@dataclass
class CurvePoint(RepeatedAccuracy):
    iteration: int
    seconds: float | None  # wall seconds into the distill run
    digest: str
    accuracies: list[float]
    flops: float | None = None  # estimated FLOPs of the distillation up to this iteration
    final: bool = False
    lr: float | None = None  # the evaluation's training lr (with eval.lr = "learned", the point's own)

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


def _recipe(rec: dict[str, Any]) -> Recipe:
    return recipe_from_record(rec["recipe"])


# -- FLOPs --------------------------------------------------------------------------------------
def flops_per_iteration(store: Store, rec: dict[str, Any], data: ImageData, device: torch.device,
                        budget_s: float = FLOP_BUDGET_S) -> tuple[float | None, str]:
    """(FLOPs of one outer iteration, how they were obtained or why not)."""
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
        flops = replay(p, data, device, budget_s=float("inf")).flops  # the whole iteration, exactly
        return flops, (
            "FLOPs of outer iteration 1 replayed under torch.utils.flop_counter (matmuls and convolutions, "
            "forward and backward) times the iteration")
    except Exception as exc:  # an estimate must never fail the evaluation
        return None, f"not counted: replaying one iteration failed ({type(exc).__name__}: {exc})"


# -- evaluating ---------------------------------------------------------------------------------
def _factor(rec: dict[str, Any], info: SyntheticMeta, data: ImageData) -> int:
    """The multi-formation factor of the run's images: its final set's, else its recipe's method's."""
    if info.factor:
        return info.factor
    from ddtool.plugins import registries

    recipe = _recipe(rec)
    method = registries().method.get(recipe.distill.method)
    return int(method.factor_for(method.parse_options(dict(recipe.distill.options)), data.resolution))


def _point_set(tensors: dict[str, torch.Tensor], factor: int, info: SyntheticMeta, run_id: str,
               cfg: EvalSection) -> SyntheticSet:
    """A curve point's set; a run that learned labels (DATM) keeps each point's own label vectors,
    whose kind (logits or probabilities) its final set states."""
    labels, soft = tensors["labels"], tensors.get("soft_labels")
    if soft is not None and cfg.labels == "hard":
        soft = None
    if soft is not None and info.label_kind is None:
        raise UsageError(f"run {run_id} learned label vectors but has no final set to say whether they are logits "
                         f"or probabilities; finish it first (ddtool distill --resume {run_id}) or evaluate its "
                         "curve with --labels hard")
    return SyntheticSet(tensors["images"], labels, int(torch.bincount(labels).max()), factor,
                        SyntheticMeta(label_kind=info.label_kind) if soft is not None else SyntheticMeta(),
                        soft_labels=soft)


def evaluate_curve(store: Store, text: str, data: ImageData, cfg: EvalSection, device: torch.device,
                   net: NetSpec | None = None, reporter: Reporter | None = None, every: int | None = None,
                   at: list[int] | None = None, count_flops: bool = True) -> CurveResult:
    """Evaluate the selected points of a distill run and write an eval run record with the curve."""
    rec = distill_run(store, text)
    points = select_points(rec, every, at)
    out = final_output(rec)
    meta = store.blob_metadata(out["digest"]) if out else {}
    info = SyntheticMeta.from_metadata(meta)
    if meta:
        check_data(info.signature, data, out["ref"])  # type: ignore[index]
    elif rec["recipe"]["data"]["dataset"] != data.name:
        raise UsageError(f"run {rec['id']} distilled '{rec['recipe']['data']['dataset']}', not '{data.name}'")
    factor = _factor(rec, info, data)
    spec = net or (NetSpec(cfg.net) if cfg.net else
                   NetSpec.from_json(info.net) if info.net is not None else net_spec_of(_recipe(rec)))
    check_eval(spec, cfg, data)  # before the FLOP count's replay and the run record
    flops, note = flops_per_iteration(store, rec, data, device) if count_flops else (None, "not counted (--no-flops)")
    label = (out or {}).get("ref") or rec["id"]
    # each point trains at the step size learned by its iteration (eval.lr = "learned"), all of them
    # known before any training: a set without one fails first
    point_cfgs = {e["iteration"]: cfg for e in points}
    if cfg.lr == LEARNED:
        for e in points:
            lr = info.learned_lr if e["final"] else checkpoint.learned_lr_in(store.read_blob(e["digest"])[0])
            point_cfgs[e["iteration"]] = with_learned_lr(cfg, lr, f"{label} @ {e['iteration']}")
    done: list[CurvePoint] = []
    with run_record(store, "eval", device, settings=json.loads(json.dumps(cfg.__dict__)),
                    net=json.loads(spec.to_json()), source_run=rec["id"], curve=[],
                    flops_per_iteration=flops, flops_note=note) as run:
        for e in points:
            tensors, _ = store.read_blob(e["digest"])  # a checkpoint holds no factor: the run's applies
            syn = _point_set(tensors, factor, info, rec["id"], cfg)
            at_cfg = resolve_labels(point_cfgs[e["iteration"]], syn, f"{label} @ {e['iteration']}")
            accs = evaluate_set(syn, data, spec, at_cfg, device, reporter, label=f"{label} @ {e['iteration']}",
                                targets=syn.decoded_targets() if at_cfg.labels == "learned" else None)
            point = CurvePoint(e["iteration"], e["seconds"], e["digest"], accs,
                               flops * e["iteration"] if flops is not None else None, e["final"], float(at_cfg.lr))
            done.append(point)
            run.record["inputs"].append({
                "ref": e["ref"] or f"{rec['id']}@{e['iteration']}", "digest": e["digest"],
                "kind": "synthetic" if e["final"] else "checkpoint",
                "role": "synthetic" if e["final"] else "checkpoint", "iteration": e["iteration"]})
        last = done[-1]
        seconds = run.complete(curve=[p.to_dict() for p in done], metrics={
            "accuracies": last.accuracies, "mean": last.mean, "std": last.std, "net": spec.name,
            "iteration": last.iteration, "points": len(done), "repeats": cfg.repeats, "epochs": cfg.epochs,
            "protocol": cfg.protocol})
    return CurveResult(rec["id"], spec.name, done, seconds, run.id, flops, note, label, dict(cfg.__dict__))
