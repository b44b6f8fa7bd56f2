"""Checking and cleaning a store: ``ddtool store verify`` and ``ddtool store gc``.

``verify`` re-hashes every blob and checks that every ref in ``refs.json`` and every digest a
run record names (inputs, outputs, checkpoints) points to a complete blob with the right
content. Leftover temp files from a crash are not problems (nothing points at them); they are
counted and ``gc`` removes them.

A trajectories index names its expert blobs by digest (:func:`ddtool.store.meta.held_blobs`):
``verify`` checks that each is there, intact and an expert, and counts them as referenced.

``gc`` removes blobs that no ref and no run record names (a run's checkpoints are live: they
are what ``ddtool distill --resume`` continues from), nor any index they name (a trajectories
index keeps its experts), and every leftover ``*.incomplete`` temp file. It holds the store
lock, and every writer writes its temp files and connects a new blob to a ref or run record
under that same lock, so gc never removes something still being written.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ddtool.errors import DDToolError
from ddtool.store.meta import EXPERT_KIND, SCHEMA, TRAJECTORIES_KIND, held_blobs, kind_of, schema_of
from ddtool.store.refs import KINDS, check_name
from ddtool.store.store import Store

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_TEMP_SUFFIX = ".incomplete"


@dataclass
class VerifyReport:
    blobs: int = 0
    refs: int = 0
    runs: int = 0
    problems: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)  # leftovers of crashed writes (gc removes them)
    unreferenced: list[str] = field(default_factory=list)  # blobs no ref or run names (gc removes them)
    removed_outputs: int = 0  # run inputs/outputs whose ref was removed with 'store rm' (not a problem)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        return f"{self.blobs} blobs, {self.refs} refs, {self.runs} runs: " + (
            "ok" if self.ok else f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}")

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "blobs": self.blobs, "refs": self.refs, "runs": self.runs,
                "problems": self.problems, "temp_files": self.temp_files, "unreferenced": self.unreferenced,
                "removed_outputs": self.removed_outputs}


@dataclass
class GcReport:
    dry_run: bool
    blobs: list[tuple[str, int]] = field(default_factory=list)  # (digest, bytes)
    temp_files: list[tuple[str, int]] = field(default_factory=list)  # (path relative to the root, bytes)

    @property
    def bytes_freed(self) -> int:
        return sum(n for _, n in self.blobs) + sum(n for _, n in self.temp_files)

    def to_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "bytes": self.bytes_freed,
                "blobs": [{"digest": d, "bytes": n} for d, n in self.blobs],
                "temp_files": [{"path": p, "bytes": n} for p, n in self.temp_files]}


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _blob_files(store: Store) -> Iterator[Path]:
    """Every file under blobs/XX/, temp files included."""
    if not store.blobs.is_dir():
        return
    for sub in sorted(store.blobs.iterdir()):
        if sub.is_dir():
            yield from sorted(p for p in sub.iterdir() if p.is_file())


def temp_files(store: Store) -> list[Path]:
    """Leftover partial writes: tmp/*, blobs/XX/*.incomplete, and .*.incomplete next to refs.json
    and the run records (written by the temp-file-then-rename of those files)."""
    found: list[Path] = []
    if store.tmp.is_dir():
        found += sorted(p for p in store.tmp.iterdir() if p.is_file() and p.name.endswith(_TEMP_SUFFIX))
    found += [p for p in _blob_files(store) if p.name.endswith(_TEMP_SUFFIX)]
    for folder in (store.root, store.runs_dir):
        if folder.is_dir():
            found += sorted(p for p in folder.glob(f".*{_TEMP_SUFFIX}") if p.is_file())
    return found


def _check_blob(path: Path, digest: str) -> str | None:
    """None when the file holds the content its name promises, else what is wrong with it."""
    from safetensors import safe_open

    try:
        actual = _sha256_file(path)
    except OSError as exc:
        return f"blob {digest[:12]} cannot be read: {exc.strerror or exc}"
    if actual != digest:
        return f"blob {digest[:12]} does not match its digest (corrupted or truncated on disk)"
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            list(fh.keys())
    except Exception as exc:  # safetensors raises its own error types
        return f"blob {digest[:12]} is not a readable safetensors file: {exc}"
    schema = schema_of(meta)
    if not schema.isdigit() or int(schema) > int(SCHEMA):
        return f"blob {digest[:12]} uses schema {schema}, newer than this ddtool understands ({SCHEMA})"
    return None


def _read_refs(store: Store) -> tuple[dict[str, dict[str, str]] | None, str | None]:
    if not store.refs_path.exists():
        return {}, None
    try:
        refs = json.loads(store.refs_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"refs.json is not readable JSON ({exc})"
    if not isinstance(refs, dict) or not all(isinstance(v, dict) for v in refs.values()):
        return None, "refs.json is not a table of KIND/NAME -> {version: digest}"
    return refs, None


def _read_runs(store: Store) -> tuple[list[tuple[Path, dict[str, Any]]], list[str], list[str]]:
    """(readable records, problems with unreadable ones, problems with readable ones)."""
    records: list[tuple[Path, dict[str, Any]]] = []
    unreadable: list[str] = []
    problems: list[str] = []
    if not store.runs_dir.is_dir():
        return records, unreadable, problems
    for path in sorted(store.runs_dir.glob("*.json")):
        if path.name.startswith("."):
            continue
        try:
            rec = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            unreadable.append(f"run record runs/{path.name} is not readable JSON ({exc})")
            continue
        if not isinstance(rec, dict):
            unreadable.append(f"run record runs/{path.name} is not a JSON object")
            continue
        if rec.get("id") != path.stem:
            problems.append(f"run record runs/{path.name} has id {rec.get('id')!r}, not '{path.stem}'")
        records.append((path, rec))
    return records, unreadable, problems


def run_digests(rec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(where, digest, entry) for every blob a run record names. Inputs of kind "file" (the
    source file of a 'store import', recorded by its sha256) are not blobs and are skipped."""
    for where in ("inputs", "outputs", "checkpoints"):
        entries = rec.get(where) or []
        if not isinstance(entries, list):
            continue
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
                continue
            if where == "inputs" and entry.get("kind") == "file":
                continue
            yield where, entry["digest"], entry


def _index_candidates(refs: dict[str, dict[str, str]] | None, records: list[tuple[Path, dict[str, Any]]]
                      ) -> dict[str, str]:
    """digest -> where it is named, for every blob that may be an index holding other blobs (a
    trajectories ref, or a run entry of that kind): the only blobs whose headers verify and gc read."""
    found: dict[str, str] = {}
    for key, versions in (refs or {}).items():
        if key.partition("/")[0] == TRAJECTORIES_KIND and isinstance(versions, dict):
            for version, digest in versions.items():
                if isinstance(digest, str) and _DIGEST.fullmatch(digest):
                    found.setdefault(digest, f"ref {key}:v{version}")
    for path, rec in records:
        for where, digest, entry in run_digests(rec):
            if entry.get("kind") == TRAJECTORIES_KIND and _DIGEST.fullmatch(digest):
                found.setdefault(digest, f"run {path.stem}: {where[:-1]} {entry.get('ref') or digest[:12]}")
    return found


def verify(store: Store) -> VerifyReport:
    """Re-hash every blob; check every ref and every run record's digests. Reads only."""
    report = VerifyReport()
    bad: dict[str, str] = {}  # digest -> problem, for blobs that exist but are broken
    present: set[str] = set()
    for path in _blob_files(store):
        if path.name.endswith(_TEMP_SUFFIX):
            continue
        digest = path.parent.name + path.name
        if not _DIGEST.fullmatch(digest):
            report.problems.append(f"stray file blobs/{path.parent.name}/{path.name} is not a blob (name is no sha256)")
            continue
        report.blobs += 1
        present.add(digest)
        problem = _check_blob(path, digest)
        if problem:
            bad[digest] = problem
            report.problems.append(problem)
    report.temp_files = [str(p.relative_to(store.root)) for p in temp_files(store)]

    live: set[str] = set()
    refs, problem = _read_refs(store)
    if problem:
        report.problems.append(problem + "; restore it from a backup (blobs are intact, see 'ddtool store ls')")
    named: dict[str, str] = {}  # "KIND/NAME:vN" -> digest
    for key, versions in (refs or {}).items():
        kind, _, name = key.partition("/")
        try:
            check_name(name)
            if kind not in KINDS:
                raise DDToolError(kind)
        except DDToolError:
            report.problems.append(f"refs.json has an invalid ref name '{key}'")
            continue
        for version, digest in versions.items():
            ref = f"{key}:v{version}"
            report.refs += 1
            if not str(version).isdigit() or int(version) < 1:
                report.problems.append(f"refs.json has an invalid version '{version}' for '{key}'")
                continue
            if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
                report.problems.append(f"ref {ref} has an invalid digest {digest!r}")
                continue
            named[ref] = digest
            live.add(digest)
            if digest not in present:
                report.problems.append(f"ref {ref} points to blob {digest[:12]}, which is missing")
            elif digest in bad:
                report.problems.append(f"ref {ref} points to a broken blob: {bad[digest]}")
            else:
                blob_kind = kind_of(store.blob_metadata(digest), kind)
                if blob_kind != kind:
                    report.problems.append(f"ref {ref} points to blob {digest[:12]}, which is a {blob_kind} artifact")

    records, unreadable, run_problems = _read_runs(store)
    report.problems += unreadable + run_problems
    report.runs = len(records) + len(unreadable)
    for path, rec in records:
        rid = path.stem
        for where, digest, entry in run_digests(rec):
            live.add(digest)
            what = f"run {rid}: {where[:-1]} {entry.get('ref') or digest[:12]}"
            if digest not in present:
                ref = entry.get("ref", "")
                if where != "checkpoints" and refs is not None and "/" in ref and ref not in named:
                    report.removed_outputs += 1  # its ref was removed with 'ddtool store rm'
                    continue
                report.problems.append(f"{what}: blob {digest[:12]} is missing")
            elif digest in bad:
                report.problems.append(f"{what}: {bad[digest]}")
    for digest, what in _index_candidates(refs, records).items():
        if digest not in present:
            continue  # reported above; the experts of a missing index are unreferenced
        try:
            holds = held_blobs(store.blob_metadata(digest))
        except DDToolError as exc:
            if digest not in bad:  # an unreadable header is reported above as a broken blob
                report.problems.append(f"{what}: {exc}")
            continue
        for held in holds:
            live.add(held)
            if held not in present:
                report.problems.append(f"{what}: expert blob {held[:12]} is missing")
            elif held in bad:
                report.problems.append(f"{what}: expert blob: {bad[held]}")
            elif kind_of(store.blob_metadata(held)) != EXPERT_KIND:
                report.problems.append(f"{what}: blob {held[:12]} it names as an expert is a "
                                       f"{kind_of(store.blob_metadata(held), '?')} blob")
    if refs is not None and not unreadable:
        report.unreferenced = sorted(present - live)
    return report


def gc(store: Store, dry_run: bool = False) -> GcReport:
    """Remove unreferenced blobs and leftover temp files (or, with ``dry_run``, list them)."""
    report = GcReport(dry_run)
    if not store.root.is_dir():
        return report
    with store.lock():
        refs, problem = _read_refs(store)
        if problem:
            raise DDToolError(f"{problem}; gc needs it to know which blobs are live (see 'ddtool store verify')")
        records, unreadable, _ = _read_runs(store)
        if unreadable:
            raise DDToolError(f"{unreadable[0]}; gc cannot tell which checkpoints it keeps: fix or remove it first")
        live = {d for versions in (refs or {}).values() for d in versions.values()}
        live |= {d for _, rec in records for _, d, _ in run_digests(rec)}
        for digest in _index_candidates(refs, records):
            if not store.blob_path(digest).exists():
                continue  # the experts of a removed index are garbage
            try:
                live |= set(held_blobs(store.blob_metadata(digest)))
            except DDToolError as exc:
                raise DDToolError(f"{exc}; gc cannot tell which expert blobs that trajectories index keeps: "
                                  "fix or remove it first") from None
        for path in _blob_files(store):
            digest = path.parent.name + path.name
            if path.name.endswith(_TEMP_SUFFIX) or not _DIGEST.fullmatch(digest) or digest in live:
                continue
            report.blobs.append((digest, path.stat().st_size))
            if not dry_run:
                path.unlink(missing_ok=True)
        for path in temp_files(store):
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            report.temp_files.append((str(path.relative_to(store.root)), size))
            if not dry_run:
                path.unlink(missing_ok=True)
        if not dry_run and store.blobs.is_dir():
            for sub in store.blobs.iterdir():
                if sub.is_dir() and not any(sub.iterdir()):
                    sub.rmdir()
    return report
