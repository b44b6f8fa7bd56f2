"""Accuracies the store already holds: the eval run records of a set (or of the full real data)
under the same settings, by seed, and the repeats still missing evaluated and recorded.

Repeat ``i`` of an eval run with ``eval.seed = s`` trains with seed ``s + i`` (``evaluate_set``),
so a record says which seed gave each accuracy; repeats of several records are pooled by seed
(a later record wins a seed both hold), and only the seeds no record holds are trained.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from ddtool.nets import NetSpec
from ddtool.recipe import EvalSection
from ddtool.runtime.evaluate.train_eval import EvalResult, RepeatedAccuracy
from ddtool.store import Store

# what makes two evaluations comparable (the seed, the repeats and the impl do not)
MATCHED = ("protocol", "epochs", "lr", "momentum", "weight_decay", "batch", "augment")

Match = Callable[[dict[str, Any]], bool]


@dataclass
class Accuracies(RepeatedAccuracy):
    """Test accuracies by seed, with the eval runs they were read from and how many were new."""

    accuracies: list[float]
    seeds: list[int]
    runs: list[str] = field(default_factory=list)
    evaluated: int = 0  # repeats trained by this call (0: all read from the store)


def same_settings(rec: dict[str, Any], spec: NetSpec, cfg: EvalSection) -> bool:
    """Whether an eval record trained ``spec`` under ``cfg``'s protocol, epochs and optimiser.
    A key a record lacks (an older ddtool's) reads as its default."""
    if rec.get("command") != "eval" or rec.get("status") != "complete" or "curve" in rec:
        return False
    if rec.get("net") != {"name": spec.name, "options": spec.options}:
        return False
    settings, default = rec.get("settings") or {}, EvalSection()
    return all(settings.get(k, getattr(default, k)) == getattr(cfg, k) for k in MATCHED)


def of_set(digest: str) -> Match:
    """Eval records of the synthetic set ``digest`` alone, on its classes (a teacher's soft labels
    add the teacher as an input; an evaluation on the set's own learned labels is another number)."""
    def match(rec: dict[str, Any]) -> bool:
        inputs = rec.get("inputs") or []
        return (len(inputs) == 1 and inputs[0].get("digest") == digest and inputs[0].get("role") == "synthetic"
                and (rec.get("metrics") or {}).get("labels") != "learned")
    return match


def of_learned(digest: str) -> Match:
    """Eval records of the synthetic set ``digest`` alone, trained on its own label vectors
    (``eval.labels = "learned"``, or ``"auto"`` on a set that has them: the record says learned)."""
    def match(rec: dict[str, Any]) -> bool:
        inputs = rec.get("inputs") or []
        return (len(inputs) == 1 and inputs[0].get("digest") == digest and inputs[0].get("role") == "synthetic"
                and (rec.get("metrics") or {}).get("labels") == "learned")
    return match


def of_full_data(dataset: str) -> Match:
    """Eval records of the whole real train split of ``dataset`` (``eval --full-data``)."""
    def match(rec: dict[str, Any]) -> bool:
        metrics = rec.get("metrics") or {}
        # teacher runs (--save-teacher) seed their networks apart from eval.seed + i: not repeats by seed
        return (bool(rec.get("full_data")) and metrics.get("dataset") == dataset and not rec.get("inputs")
                and "teacher_seeds" not in metrics)
    return match


def by_seed(runs: list[dict[str, Any]], match: Match, spec: NetSpec, cfg: EvalSection
            ) -> dict[int, tuple[float, str]]:
    """seed -> (accuracy, run id) over the matching records, later records winning."""
    out: dict[int, tuple[float, str]] = {}
    for rec in sorted(runs, key=lambda r: (r.get("created", ""), r.get("id", ""))):
        if not (same_settings(rec, spec, cfg) and match(rec)):
            continue
        seed = int((rec.get("settings") or {}).get("seed", 0))
        for i, acc in enumerate((rec.get("metrics") or {}).get("accuracies") or []):
            out[seed + i] = (float(acc), rec["id"])
    return out


def missing_ranges(have: set[int], first: int, repeats: int) -> list[tuple[int, int]]:
    """(seed, count) runs of consecutive seeds to train so that ``repeats`` seeds are held, taking the
    lowest seeds from ``first`` that no record holds."""
    need, seed, out = repeats - len({s for s in have if s >= first}), first, []
    while need > 0:
        if seed not in have:
            if out and out[-1][0] + out[-1][1] == seed:
                out[-1] = (out[-1][0], out[-1][1] + 1)
            else:
                out.append((seed, 1))
            need -= 1
        seed += 1
    return out


def ensure(store: Store, runs: list[dict[str, Any]], match: Match, spec: NetSpec, cfg: EvalSection,
           run_eval: Callable[[EvalSection], EvalResult]) -> Accuracies:
    """Every recorded accuracy of ``match`` under ``cfg`` (at least ``cfg.repeats`` seeds from
    ``cfg.seed``): the seeds no record holds are trained by ``run_eval`` (one recorded eval run per
    run of consecutive seeds), whose records are added to ``runs``."""
    held = by_seed(runs, match, spec, cfg)
    evaluated = 0
    for seed, count in missing_ranges(set(held), cfg.seed, cfg.repeats):
        result = run_eval(dataclasses.replace(cfg, seed=seed, repeats=count))
        runs.append(store.run(result.run_id))
        evaluated += count
    held = by_seed(runs, match, spec, cfg)
    seeds = sorted(held)
    return Accuracies([held[s][0] for s in seeds], seeds, list(dict.fromkeys(held[s][1] for s in seeds)), evaluated)
