"""The lineage of an artifact, from its metadata and the run records: what made it, what it made.

Plain dicts (the JSON of ``ddtool store show --tree --json``); the CLI draws them as a tree::

    {"ref", "digest", "kind",
     "made_from": {"dataset": {"name", "shape", "classes"}, "run": {...}, "recipe": {...},
                   "plugins": [...], "file": {...}, "pool": [{"ref", "digest", "made_from"}],
                   "trajectories": [...], "synthetic": [...]},
     "made_into": [{"run", "command", "status", "metrics", "outputs": [{"ref", "digest", "made_into"}]}]}

Every stored artifact a set was made from is listed under its kind (``pool`` always, even empty;
``trajectories`` and ``synthetic`` when there are some): the inputs of the run that made it, plus
any parent its metadata names that the record does not (the record may be gone).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from ddtool.store.meta import DatasetSignature, kind_of, parents_of, recipe_sha256_of
from ddtool.store.refs import KINDS


class Store(Protocol):
    """What the lineage reads of a :class:`ddtool.store.Store`, which imports this module (``Store.lineage``)."""

    def blob_path(self, digest: str) -> Path: ...
    def blob_metadata(self, digest: str) -> dict[str, str]: ...
    def resolve(self, ref: str) -> Any: ...
    def runs(self) -> list[dict[str, Any]]: ...
    def runs_of(self, digest: str, runs: list[dict[str, Any]] | None = None
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]: ...


def _brief_metrics(rec: dict[str, Any]) -> dict[str, Any]:
    m = rec.get("metrics", {})
    out = {k: m[k] for k in ("mean", "std", "net", "repeats", "epochs", "protocol") if k in m}
    if rec.get("curve"):
        out["curve_points"] = len(rec["curve"])
        out["source_run"] = rec.get("source_run")
    return out


def _ref_of(store: "Store", digest: str) -> str:
    """The artifact's ref, or the digest's first 12 characters when no ref names it any more."""
    try:
        return store.resolve(digest).ref
    except Exception:
        return digest[:12]


def _kind_of_blob(store: "Store", digest: str) -> str:
    """An input's kind from its blob (run records older than their 'kind' field); a parent whose
    blob is gone counts as a pool, the only parent such records had."""
    try:
        return kind_of(store.blob_metadata(digest)) or "pool"
    except Exception:
        return "pool"


def lineage(store: "Store", digest: str, depth: int = 2, runs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """What an artifact was made from and what was made from it, ``depth`` levels each way."""
    runs = store.runs() if runs is None else runs
    meta = store.blob_metadata(digest)
    art_ref = _ref_of(store, digest)
    made, used = store.runs_of(digest, runs)
    signature = DatasetSignature.from_metadata(meta)
    classes = signature.texts()["classes"]
    sources: dict[str, Any] = {"dataset": {"name": signature.dataset, "shape": signature.shape,
                                           "classes": len(classes.split(",")) if classes else None}}
    run = made[-1] if made else None
    parents: list[tuple[str, str, str]] = []  # (kind, ref, digest)
    if run is not None:
        sources["run"] = {"id": run["id"], "command": run["command"], "seconds": run.get("wall_seconds"),
                          "status": run.get("status")}
        if "recipe" in run:
            rc = run["recipe"]
            sources["recipe"] = {"name": rc.get("name"), "sha256": run.get("recipe_sha256"),
                                 "method": rc.get("distill", {}).get("method") if run["command"] == "distill" else None,
                                 "ipc": rc.get("distill", {}).get("ipc") if run["command"] == "distill" else None,
                                 "iterations": run.get("plan", {}).get("iterations")}
        sources["plugins"] = sorted(set(run.get("plugins", {}).values()))
        parents = [(i.get("kind") or _kind_of_blob(store, i["digest"]), i["ref"], i["digest"])
                   for i in run.get("inputs", []) if i.get("kind") != "file"]
        files = [i for i in run.get("inputs", []) if i.get("kind") == "file"]
        if files:
            sources["file"] = {"name": files[0]["ref"], "sha256": files[0]["digest"]}
    elif recipe_sha256_of(meta):
        sources["recipe"] = {"sha256": recipe_sha256_of(meta)}
    named = {d for _, _, d in parents}
    parents += [(_kind_of_blob(store, d), _ref_of(store, d), d) for d in parents_of(meta) if d not in named]
    sources["pool"] = []
    for kind, ref, d in parents:
        node: dict[str, Any] = {"ref": ref, "digest": d}
        if depth > 1 and store.blob_path(d).exists():
            node["made_from"] = lineage(store, d, depth - 1, runs)["made_from"]
        # keyed by kind: a record's odd kind must not overwrite "dataset", "run"...
        sources.setdefault(kind if kind in KINDS else "pool", []).append(node)
    products = []
    for r in used:
        entry: dict[str, Any] = {"run": r["id"], "command": r["command"], "status": r.get("status")}
        if r["command"] == "eval":
            entry["metrics"] = _brief_metrics(r)
        outs = []
        for o in r.get("outputs", []):
            child: dict[str, Any] = {"ref": o.get("ref"), "digest": o.get("digest")}
            if depth > 1 and store.blob_path(o["digest"]).exists():
                child["made_into"] = lineage(store, o["digest"], depth - 1, runs)["made_into"]
            outs.append(child)
        if outs:
            entry["outputs"] = outs
        products.append(entry)
    return {"ref": art_ref, "digest": digest, "kind": kind_of(meta), "made_from": sources, "made_into": products}
