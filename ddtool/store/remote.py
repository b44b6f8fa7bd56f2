"""Push and pull artifacts between stores: ``ddtool store push`` / ``ddtool store pull``.

A remote is another store with the same layout (``blobs/ab/cdef...``, ``refs.json``, ``runs/``):
a folder or ``file://`` URL is opened as a :class:`Store` (its lock, its fsync'd writes: it can be
used with ``--store`` as it is), any other URL through the fsspec filesystem its protocol names
(``memory://``, ``s3://`` with s3fs, ``gs://`` with gcsfs, ``hf://`` with huggingface_hub...).

What a transfer sends (:func:`closure`): the named artifacts (a trajectories index with its expert
blobs); with ``lineage`` also what they were made from (the pool, expert trajectories, a
teacher), recursively, every run record that made one of them or evaluated the named sets, and
every blob those records name (checkpoints included), so that ``store verify`` on the other side
finds nothing missing. Blobs are addressed by digest: a blob the other side holds is not sent.

The order makes a partial transfer invisible: every blob first (each checked against its digest,
and as a safetensors header, before it gets its final name), then the run records, then the
refs, in one write of ``refs.json``, only once every blob they name is there. An interrupted
transfer leaves at most blobs no ref names (``store gc`` removes them; a rerun sends only the
rest). A ref version the other side holds with another digest is refused unless ``force``.
Nothing read from a remote is unpickled: blobs are safetensors, refs and records JSON.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol

from ddtool.errors import DDToolError, UsageError
from ddtool.store.integrity import run_digests
from ddtool.store.meta import SCHEMA, held_blobs, parents_of, schema_of
from ddtool.store.refs import KINDS, check_name, parse_ref
from ddtool.store.store import Store, _json_bytes

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_LOCAL_PROTOCOLS = ("file", "local")
Refs = dict[str, dict[str, str]]  # "KIND/NAME" -> {"1": digest, ...}, as refs.json holds them


def check_blob_bytes(data: bytes, digest: str) -> None:
    """Refuse bytes that are not the blob ``digest`` names: wrong hash, or no safetensors header
    this ddtool can read. Checked before the blob gets its final name on the receiving side."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise DDToolError(f"blob {digest[:12]} does not match its digest (received {actual[:12]}): corrupted "
                          "or truncated on the sending side; run 'ddtool store verify' there")
    header = _header(data[:8], data[8:], digest)
    meta = header.get("__metadata__") or {}
    if not schema_of(meta).isdigit() or int(schema_of(meta)) > int(SCHEMA):
        raise DDToolError(f"blob {digest[:12]} uses schema {schema_of(meta)}, newer than this ddtool understands "
                          f"({SCHEMA}); upgrade ddtool")


def _header(prefix: bytes, rest: bytes, digest: str) -> dict[str, Any]:
    try:
        n = int.from_bytes(prefix, "little")
        if len(prefix) != 8 or n > len(rest):
            raise ValueError("header longer than the file")
        header = json.loads(rest[:n])
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
        return header
    except (ValueError, UnicodeDecodeError) as exc:
        raise DDToolError(f"blob {digest[:12]} is not a readable safetensors file ({exc})") from None


class Side(Protocol):
    """One end of a transfer: a local store or a remote filesystem with the store's layout."""

    label: str

    def refs(self) -> Refs: ...
    def runs(self) -> list[dict[str, Any]]: ...
    def blob_digests(self) -> set[str]: ...
    def blob_metadata(self, digest: str) -> dict[str, str]: ...
    def read_blob(self, digest: str) -> bytes: ...
    def write_blob(self, digest: str, data: bytes) -> None: ...
    def run_record(self, run_id: str) -> dict[str, Any] | None: ...
    def commit(self, runs: list[dict[str, Any]], refs: Refs, blobs: set[str], force: bool) -> None: ...


def _conflicts(have: Refs, want: Refs) -> list[tuple[str, str, str]]:
    """(ref, digest here, digest wanted) for each ref version ``have`` holds with other content."""
    return [(f"{key}:v{v}", have[key][v], d) for key, vs in sorted(want.items()) for v, d in sorted(vs.items())
            if v in have.get(key, {}) and have[key][v] != d]


def _conflict_error(conflicts: list[tuple[str, str, str]], side: str) -> DDToolError:
    ref, theirs, ours = conflicts[0]
    more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
    return DDToolError(f"{side} already has {ref} with other content ({theirs[:12]}, not {ours[:12]}){more}; "
                       "nothing was changed: --force replaces it")


def _merge_refs(have: Refs, want: Refs) -> Refs:
    out = {k: dict(v) for k, v in have.items()}
    for key, versions in want.items():
        out.setdefault(key, {}).update(versions)
    return dict(sorted(out.items()))


def _run_conflicts(side: "Side", runs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """(records the side lacks, ids it holds with other content)."""
    new, differ = [], []
    for rec in runs:
        there = side.run_record(rec["id"])
        if there is None:
            new.append(rec)
        elif there != rec:
            differ.append(rec["id"])
    return new, differ


class StoreSide:
    """A local store: reads and writes through :class:`Store` (its lock, temp file -> fsync -> replace)."""

    def __init__(self, store: Store, label: str | None = None) -> None:
        self.store = store
        self.label = label or str(store.root)

    def refs(self) -> Refs:
        return self.store._read_refs()

    def runs(self) -> list[dict[str, Any]]:
        return self.store.runs()

    def blob_digests(self) -> set[str]:
        return {d for d in self.store.iter_blob_digests() if _DIGEST.fullmatch(d)}

    def blob_metadata(self, digest: str) -> dict[str, str]:
        return self.store.blob_metadata(digest)

    def read_blob(self, digest: str) -> bytes:
        try:
            return self.store.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise DDToolError(f"blob {digest[:12]} is missing from {self.label}; run 'ddtool store verify' there")

    def write_blob(self, digest: str, data: bytes) -> None:
        # the transfer checked these very bytes (check_blob_bytes); the store hashes them once more
        # as it writes, refusing any that do not match the name
        self.store.put_blob_bytes(data, digest)

    def run_record(self, run_id: str) -> dict[str, Any] | None:
        path = self.store.runs_dir / f"{run_id}.json"
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (UnicodeDecodeError, json.JSONDecodeError):
            return {}  # unreadable: counts as other content

    def commit(self, runs: list[dict[str, Any]], refs: Refs, blobs: set[str], force: bool) -> None:
        with self.store.lock():  # gc takes it too: the blobs checked here stay until the refs name them
            missing = sorted(d for d in blobs if not self.store.blob_path(d).exists())
            if missing:
                raise DDToolError(f"blob {missing[0][:12]} vanished from {self.label} during the transfer "
                                  "(a 'store gc'?); rerun")
            have = self.refs()
            conflicts = _conflicts(have, refs)
            if conflicts and not force:
                raise _conflict_error(conflicts, self.label)
            for rec in runs:
                self.store.write_run(rec)
            self.store._write_refs(_merge_refs(have, refs))


class FsSide:
    """A store's layout on any fsspec filesystem. Blobs are written under ``tmp/`` and moved to
    their name once complete; ``refs.json`` is replaced the same way and read back to check that
    no concurrent push dropped what this one wrote."""

    def __init__(self, fs: Any, root: str, label: str) -> None:
        self.fs, self.root, self.label = fs, root.rstrip("/"), label

    def _path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def _blob(self, digest: str) -> str:
        return self._path("blobs", digest[:2], digest[2:])

    def _put(self, path: str, data: bytes) -> None:
        tmp = self._path("tmp", f"{path.rsplit('/', 1)[-1]}.{secrets.token_hex(4)}.incomplete")
        self.fs.makedirs(self._path("tmp"), exist_ok=True)
        self.fs.pipe_file(tmp, data)
        parent = path.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        self.fs.mv(tmp, path)

    def _json(self, path: str) -> Any:
        try:
            return json.loads(self.fs.cat_file(path))
        except FileNotFoundError:
            return None

    def refs(self) -> Refs:
        try:
            refs = self._json(self._path("refs.json"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DDToolError(f"{self.label}/refs.json is corrupt ({exc}); nothing was changed")
        if refs is not None and not (isinstance(refs, dict) and all(isinstance(v, dict) for v in refs.values())):
            raise DDToolError(f"{self.label}/refs.json is not a table of KIND/NAME -> {{version: digest}}")
        return refs or {}

    def runs(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self._find("runs")):
            if not path.endswith(".json") or path.rsplit("/", 1)[-1].startswith("."):
                continue
            try:
                rec = self._json(path)
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue  # as Store.runs: one bad record does not stop the others
            if isinstance(rec, dict) and isinstance(rec.get("id"), str):
                out.append(rec)
        return out

    def _find(self, sub: str) -> list[str]:
        try:
            return list(self.fs.find(self._path(sub)))
        except FileNotFoundError:
            return []

    def blob_digests(self) -> set[str]:
        out = set()
        for path in self._find("blobs"):
            parts = path.rstrip("/").split("/")
            digest = parts[-2] + parts[-1]
            if _DIGEST.fullmatch(digest):
                out.add(digest)
        return out

    def blob_metadata(self, digest: str) -> dict[str, str]:
        try:
            with self.fs.open(self._blob(digest), "rb") as fh:
                prefix = fh.read(8)
                n = int.from_bytes(prefix, "little") if len(prefix) == 8 else 0
                rest = fh.read(min(n, 100_000_000))
        except FileNotFoundError:
            raise DDToolError(f"blob {digest[:12]} is missing from {self.label}")
        return dict(_header(prefix, rest, digest).get("__metadata__") or {})

    def read_blob(self, digest: str) -> bytes:
        try:
            return bytes(self.fs.cat_file(self._blob(digest)))
        except FileNotFoundError:
            raise DDToolError(f"blob {digest[:12]} is missing from {self.label}; push it again from a store that has it")

    def write_blob(self, digest: str, data: bytes) -> None:
        self._put(self._blob(digest), data)

    def run_record(self, run_id: str) -> dict[str, Any] | None:
        try:
            rec = self._json(self._path("runs", f"{run_id}.json"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return {}
        return rec if rec is None or isinstance(rec, dict) else {}

    def commit(self, runs: list[dict[str, Any]], refs: Refs, blobs: set[str], force: bool) -> None:
        present = self.blob_digests()
        missing = sorted(blobs - present)
        if missing:
            raise DDToolError(f"blob {missing[0][:12]} is not on {self.label} after sending it; rerun")
        for rec in runs:
            check_name(rec["id"])
            self._put(self._path("runs", f"{rec['id']}.json"), _json_bytes(rec))
        for _ in range(3):  # no lock on an object store: write, read back, merge again if another push won
            have = self.refs()
            conflicts = _conflicts(have, refs)
            if conflicts and not force:
                raise _conflict_error(conflicts, self.label)
            self._put(self._path("refs.json"), _json_bytes(_merge_refs(have, refs)))
            now = self.refs()
            if not _conflicts(now, refs) and all(v in now.get(k, {}) for k, vs in refs.items() for v in vs):
                return
        raise DDToolError(f"{self.label}/refs.json kept changing under this transfer (another push?); rerun")


def open_remote(url: str, write: bool = False) -> Side:
    """A folder or ``file://`` URL as a :class:`Store`, anything else through fsspec; ``write``: the
    folder must be one this process can write to (checked before anything is sent)."""
    text = str(url).strip()
    if not text:
        raise UsageError("REMOTE is empty: give a folder or an fsspec URL (file://, s3://, gs://, hf://, memory://)")
    protocol = text.split("://", 1)[0] if "://" in text else ""
    if protocol in ("", *_LOCAL_PROTOCOLS):
        path = Path(text.split("://", 1)[1] if protocol else text).expanduser()
        remote = Store(path)
        remote.check_usable(write=write)
        return StoreSide(remote, label=text)
    try:
        from fsspec.core import url_to_fs
    except ImportError:
        raise UsageError(f"remote '{text}' needs fsspec: pip install fsspec") from None
    try:
        fs, root = url_to_fs(text)
    except (ImportError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot open remote '{text}': {first} (s3:// needs s3fs, gs:// gcsfs, hf:// "
                         "huggingface_hub: pip install 'ddtool[s3]', 'ddtool[gcs]' or 'ddtool[hf]')") from None
    return FsSide(fs, root, text)


# -- what to send ---------------------------------------------------------------------------------
@dataclass
class Bundle:
    """What a transfer carries: ref versions, run records, and every blob they need."""

    refs: Refs = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    blobs: set[str] = field(default_factory=set)


def _pick(refs: Refs, text: str, label: str) -> tuple[str, str, str]:
    """(KIND/NAME, version, digest) of a ref (latest version without :vN) or digest prefix on a side."""
    r = parse_ref(text)
    if r.digest_prefix:
        hits = sorted({(k, v, d) for k, vs in refs.items() for v, d in vs.items() if d.startswith(r.digest_prefix)},
                      key=lambda t: (t[0], int(t[1])))
        if not hits:
            raise UsageError(f"{label} has no artifact with a ref and a digest starting with '{r.digest_prefix}'")
        return hits[-1]
    key = f"{r.kind}/{r.name}"
    versions = refs.get(key)
    if not versions:
        raise UsageError(f"{label} has no '{key}'")
    version = str(r.version or max(int(v) for v in versions))
    if version not in versions:
        raise UsageError(f"{label} has no {key}:v{version}; it has "
                         + ", ".join(f"v{v}" for v in sorted(versions, key=int)))
    return key, version, versions[version]


def closure(side: Side, names: Iterable[str], lineage: bool = False, everything: bool = False) -> Bundle:
    """The refs, run records and blobs a transfer of ``names`` carries from ``side``.

    ``lineage``: also every artifact they were made from (recursively: the pool, trajectories and
    their experts, a soft-label teacher), the run records that made any of them and the eval
    records of the named artifacts, with every blob those records name. ``everything``: every
    ref and run record of the side.
    """
    refs = side.refs()
    bundle = Bundle()
    present = side.blob_digests()
    by_digest: dict[str, list[tuple[str, str]]] = {}
    for key, versions in refs.items():
        for v, d in versions.items():
            by_digest.setdefault(d, []).append((key, v))

    def add_ref(key: str, version: str, digest: str) -> None:
        bundle.refs.setdefault(key, {})[version] = digest

    roots: list[str] = []
    if everything:
        for key, versions in refs.items():
            if key.partition("/")[0] not in KINDS:
                continue
            for v, d in versions.items():
                add_ref(key, v, d)
                roots.append(d)
        bundle.runs = side.runs()
    for text in names:
        key, v, d = _pick(refs, text, side.label)
        add_ref(key, v, d)
        roots.append(d)
    runs = side.runs() if lineage else []
    seen_runs = {r["id"] for r in bundle.runs}
    queue, seen = list(roots), set()
    root_set = set(roots)

    def add_run(rec: dict[str, Any]) -> None:
        if rec["id"] in seen_runs:
            return
        seen_runs.add(rec["id"])
        bundle.runs.append(rec)
        for where, d, entry in run_digests(rec):
            if d not in present:
                continue  # a removed input or output: the other side's verify excuses it as here
            if where == "checkpoints":
                bundle.blobs.add(d)
            else:  # what the run read (a teacher, a pool) is lineage too; what it made goes with its ref
                queue.append(d)

    while queue:
        d = queue.pop()
        if d in seen:
            continue
        seen.add(d)
        if d not in present:
            raise DDToolError(f"blob {d[:12]} is missing from {side.label}; run 'ddtool store verify' there")
        bundle.blobs.add(d)
        meta = side.blob_metadata(d)
        bundle.blobs.update(held_blobs(meta))  # a trajectories index is nothing without its experts
        if not lineage:
            continue
        for key, v in by_digest.get(d, []):
            add_ref(key, v, d)
        queue.extend(p for p in parents_of(meta) if p in present)
        for rec in runs:
            outputs = {e.get("digest") for e in rec.get("outputs") or [] if isinstance(e, dict)}
            inputs = {e.get("digest") for e in rec.get("inputs") or [] if isinstance(e, dict)}
            if d in outputs or (d in root_set and d in inputs and rec.get("command") == "eval"):
                add_run(rec)
    for rec in bundle.runs if everything else []:
        bundle.blobs.update(d for _, d, _ in run_digests(rec) if d in present)
    for d in list(bundle.blobs):  # experts of indexes a record names
        if d not in seen:
            bundle.blobs.update(held_blobs(side.blob_metadata(d)))
    bundle.runs.sort(key=lambda r: r["id"])
    return bundle


# -- the transfer ---------------------------------------------------------------------------------
@dataclass
class TransferResult:
    refs: list[str]  # KIND/NAME:vN now on the receiving side (new or replaced)
    refs_already: list[str]  # held there with the same content already
    blobs_sent: int
    bytes_sent: int
    blobs_already: int
    runs_sent: int
    runs_already: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def transfer(src: Side, dst: Side, names: Iterable[str], lineage: bool = False, everything: bool = False,
             force: bool = False) -> TransferResult:
    """Copy ``names`` (with ``lineage``, or ``everything``) from ``src`` to ``dst``: blobs ``dst``
    lacks (each checked before it is visible), then run records, then refs (see the module doc)."""
    names = list(names)
    if not names and not everything:
        raise UsageError("name what to send: one or more refs (KIND/NAME[:vN]), or --all")
    try:
        return _transfer(src, dst, names, lineage, everything, force)
    except DDToolError:
        raise
    except Exception as exc:  # a filesystem's own errors (network, permissions, a cloud SDK's): one line
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DDToolError(f"transfer from {src.label} to {dst.label} failed ({type(exc).__name__}"
                          + (f": {text}" if text else "") + "); no new ref is visible: rerun to send the rest") from exc


def _transfer(src: Side, dst: Side, names: list[str], lineage: bool, everything: bool, force: bool
              ) -> TransferResult:
    bundle = closure(src, names, lineage, everything)
    have_refs = dst.refs()
    conflicts = _conflicts(have_refs, bundle.refs)
    if conflicts and not force:  # before sending anything
        raise _conflict_error(conflicts, dst.label)
    new_runs, differ = _run_conflicts(dst, bundle.runs)
    if differ and not force:
        raise DDToolError(f"{dst.label} already has run record {differ[0]} with other content"
                          + (f" (and {len(differ) - 1} more)" if len(differ) > 1 else "")
                          + "; nothing was changed: --force replaces it")
    if force:
        new_runs += [r for r in bundle.runs if r["id"] in differ]
    there = dst.blob_digests()
    sent = nbytes = 0
    for digest in sorted(bundle.blobs - there):
        data = src.read_blob(digest)
        check_blob_bytes(data, digest)  # a corrupted blob is not spread, whichever side it is on
        dst.write_blob(digest, data)
        sent += 1
        nbytes += len(data)
    todo = {k: {v: d for v, d in vs.items() if have_refs.get(k, {}).get(v) != d} for k, vs in bundle.refs.items()}
    todo = {k: vs for k, vs in todo.items() if vs}
    if todo or new_runs:
        dst.commit(new_runs, todo, bundle.blobs, force)

    def listed(refs: Refs) -> list[str]:
        return sorted(f"{k}:v{v}" for k, vs in refs.items() for v in vs)

    return TransferResult(refs=listed(todo), refs_already=sorted(set(listed(bundle.refs)) - set(listed(todo))),
                          blobs_sent=sent, bytes_sent=nbytes, blobs_already=len(bundle.blobs & there),
                          runs_sent=len(new_runs), runs_already=len(bundle.runs) - len(new_runs))


def push(store: Store, remote: str, names: Iterable[str], lineage: bool = False, everything: bool = False,
         force: bool = False) -> TransferResult:
    """Send artifacts of ``store`` to the store at ``remote`` (a folder or fsspec URL)."""
    return transfer(StoreSide(store), open_remote(remote, write=True), names, lineage, everything, force)


def pull(store: Store, remote: str, names: Iterable[str], lineage: bool = False, everything: bool = False,
         force: bool = False) -> TransferResult:
    """Fetch artifacts from the store at ``remote`` into ``store``, every blob verified first."""
    src = open_remote(remote)
    store.check_usable(write=True)
    return transfer(src, StoreSide(store), names, lineage, everything, force)
