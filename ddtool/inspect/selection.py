"""What a distill run's selection strategy chose, read back from its run record (``ddtool inspect RUN_ID``).

A strategy that logs its choices (DynaDistill: ``SelectionStrategy.log``) leaves one entry per
outer loop under the record's ``selection_log``: the candidates (pool model indices, or
``[expert, start epoch]`` segments), their scores, the probabilities the choice was drawn with and
the index ``k`` of the choice. This module summarises them: how spread the choice was (the mean
entropy of the per-loop probabilities, in bits, against log2 m, a uniform choice) and how often each
pool model (or expert) was a candidate and was chosen.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from ddtool.errors import UsageError
from ddtool.store import Store


def entropy_bits(p: list[float]) -> float:
    """Shannon entropy of a distribution, in bits (0 for a certain choice, log2 m for a uniform one of m)."""
    total = sum(p)
    return -sum(x / total * math.log2(x / total) for x in p if x > 0) if total > 0 else 0.0


def selection_log(store: Store, rec: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's choices, one entry per outer loop; for a resumed run (``resumed_from``) its
    parents' entries before the iteration it resumed at come first."""
    own = list(rec.get("selection_log") or [])
    parent = rec.get("resumed_from") or {}
    if not parent.get("run"):
        return own
    try:
        earlier = selection_log(store, store.run(parent["run"]))
    except UsageError:  # the parent's record is gone: what this run holds
        return own
    return [e for e in earlier if e["it"] < int(parent.get("iteration") or 0)] + own


def selection_summary(store: Store, rec: dict[str, Any]) -> dict[str, Any]:
    """Entropy and choice counts of a distill run's selection log (see the module docstring).

    ``entropy_bits`` is the mean over the scored loops of the entropy of that loop's probabilities
    (how random each draw was; ``max_entropy_bits`` = log2 m is a uniform draw); ``choice_entropy_bits``
    is the entropy of how often each model was chosen over the run (how spread the choices were
    across the pool). Rows (``chosen``): each model or expert, how many loops it was a candidate
    in, how many it was chosen in, and that as a share of the loops."""
    if rec.get("command") != "distill":
        raise UsageError(f"run {rec['id']} is a {rec.get('command')} run; inspect RUN_ID shows a distill run's "
                         "selection choices")
    log = selection_log(store, rec)
    selection = rec.get("plan", {}).get("selection", "?")
    if not log:
        raise UsageError(f"run {rec['id']} recorded no selection choices (selection '{selection}' logs none; "
                         "dynadistill runs record theirs); 'ddtool store runs' lists runs")
    experts = any(isinstance(c, list) for e in log for c in e["candidates"])

    def who(c: Any) -> int:
        return int(c[0]) if experts else int(c)  # over trajectories: the segment's expert

    candidate: Counter[int] = Counter()
    chosen: Counter[int] = Counter()
    for e in log:
        candidate.update({who(c) for c in e["candidates"]})
        chosen[who(e["candidates"][e["k"]])] += 1
    scored = [e for e in log if e.get("scores") is not None]
    m = max(len(e["candidates"]) for e in log)
    n = len(log)
    plan = rec.get("plan", {})
    return {
        "run": rec["id"], "selection": selection, "kind": "expert" if experts else "model",
        "from": plan.get("trajectories") if experts else plan.get("pool"),
        "loops": n, "first": log[0]["it"], "last": log[-1]["it"], "scored_loops": len(scored), "m": m,
        "entropy_bits": sum(entropy_bits(e["p"]) for e in scored) / len(scored) if scored else 0.0,
        "max_entropy_bits": math.log2(m) if m > 1 else 0.0,
        "choice_entropy_bits": entropy_bits([float(v) for v in chosen.values()]),
        "chosen": [{"index": i, "candidate": candidate[i], "chosen": chosen[i], "share": chosen[i] / n}
                   for i in sorted(candidate)],
    }
