"""Accuracy curves read back for drawing: the curve an eval run stored, as a chart series.

``ddtool eval RUN_ID --checkpoints`` (:mod:`ddtool.runtime.evaluate.accuracy_curves`) stores one eval run record
per distill run with ``"source_run"`` and ``"curve"`` (the points); ``ddtool inspect RUN_ID
--curve`` reads the latest such record per run, here, and draws it (:mod:`ddtool.inspect.chart`).
"""

from __future__ import annotations

from typing import Any

from ddtool.errors import UsageError
from ddtool.inspect.chart import Series
from ddtool.store import Store
from ddtool.store.runs import distill_run, final_output, is_run_id

X_AXES = ("iteration", "seconds", "flops")


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
    out = final_output(source)
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
