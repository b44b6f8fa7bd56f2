"""The artifact store on disk.

Layout under the root (after huggingface_hub's cache and DVC's object store)::

    blobs/ab/cdef...      safetensors files named by the sha256 of their bytes, read-only
    refs.json             {"KIND/NAME": {"1": digest, "2": digest}}, sorted keys
    runs/RUN_ID.json      one record per command run, sorted keys
    tmp/                  partial writes; anything left here after a crash is garbage
    .lock                 file lock around every write (blobs, refs.json, runs/) and gc

Writes go temp file -> fsync -> os.replace, so a reader never sees half a file. Artifacts
are read with safetensors only; nothing in the store is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, overload

import torch
from filelock import FileLock
from safetensors import safe_open
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ddtool.errors import DDToolError, UsageError
from ddtool.store.meta import SCHEMA, kind_of, schema_of, with_kind, with_schema
from ddtool.store.refs import Ref, check_name, parse_ref


def default_root() -> Path:
    import platformdirs

    env = os.environ.get("DDTOOL_HOME")
    return Path(env) if env else platformdirs.user_data_path("ddtool")


@dataclass(frozen=True)
class Artifact:
    """A resolved artifact: where it is and what it is called."""

    digest: str
    path: Path
    kind: str
    name: str | None = None
    version: int | None = None

    @property
    def ref(self) -> str:
        if self.name is None:
            return self.digest[:12]
        return f"{self.kind}/{self.name}:v{self.version}"


def _fsync_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.incomplete")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def canonical_bytes(data: bytes) -> bytes:
    """Re-emit a safetensors header with sorted keys.

    The Rust writer keeps metadata in a hash map, so the same tensors and metadata can
    serialise to different bytes in different processes; sorting the header makes equal
    content hash to the same digest. Offsets are relative to the data section, so only the
    header length changes.
    """
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + n :]


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, sort_keys=True, indent=1) + "\n").encode()


class Store:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser()
        self.blobs = self.root / "blobs"
        self.runs_dir = self.root / "runs"
        self.tmp = self.root / "tmp"
        self.refs_path = self.root / "refs.json"
        self._lock: FileLock | None = None

    # -- plumbing -------------------------------------------------------------------------
    def check_usable(self, write: bool = False) -> None:
        """Refuse, in one line (exit 2), a store path that cannot be a store folder: before any work,
        rather than at the first write after it.

        Every command: the path is an existing file, or lies under one. ``write`` (a command that
        writes): the folder cannot be created or written to. A missing folder that can be created
        is a store: empty to a reading command, created by a writing one.
        """
        fix = "point --store or DDTOOL_HOME at a folder"
        if self.root.exists() and not self.root.is_dir():
            raise UsageError(f"store path {self.root} is a file, not a folder: {fix}")
        if not self.root.exists():
            # exists() is False under a file too: the nearest ancestor that exists says which
            above = next((p for p in self.root.parents if p.exists()), None)
            if above is not None and not above.is_dir():
                raise UsageError(f"store path {self.root} cannot be a folder: {above} is a file, not a folder; {fix}")
        if write:
            try:
                self.tmp.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryFile(dir=self.tmp):  # blob writes start with a file in tmp/
                    pass
            except OSError as exc:
                why = exc.strerror or type(exc).__name__
                raise UsageError(f"store folder {self.root} cannot be written to ({why}): {fix} you can write to, "
                                 "or fix its permissions") from None

    def _ensure(self) -> None:
        for d in (self.blobs, self.runs_dir, self.tmp):
            d.mkdir(parents=True, exist_ok=True)

    def lock(self) -> FileLock:
        """The store's file lock, one object per Store so that it is re-entrant (``put`` holds it
        across the blob write and the ref update, ``put_blob`` takes it again inside): every temp
        file is written under it, so ``gc`` (which holds it too) only ever sees dead ones."""
        self._ensure()
        if self._lock is None:
            self._lock = FileLock(str(self.root / ".lock"), timeout=120)
        return self._lock

    def blob_path(self, digest: str) -> Path:
        return self.blobs / digest[:2] / digest[2:]

    def _read_refs(self) -> dict[str, dict[str, str]]:
        if not self.refs_path.exists():
            return {}
        try:
            return json.loads(self.refs_path.read_text())
        except json.JSONDecodeError as exc:
            raise DDToolError(f"store index {self.refs_path} is corrupt ({exc}); run 'ddtool store verify'")

    def _write_refs(self, refs: dict[str, dict[str, str]]) -> None:
        _fsync_write(self.refs_path, _json_bytes(refs))

    # -- blobs ----------------------------------------------------------------------------
    def put_blob(self, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
        """Write a safetensors blob; identical content dedupes to the same digest."""
        self._ensure()
        meta = with_schema(metadata)
        data = canonical_bytes(
            st_save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=meta)
        )
        return self.put_blob_bytes(data)

    def put_blob_bytes(self, data: bytes, digest: str | None = None) -> str:
        """Write the bytes of a safetensors blob as they are (``put_blob`` after serialising; a pull
        from another store); ``digest``: what they must hash to, else nothing is written."""
        self._ensure()
        actual = hashlib.sha256(data).hexdigest()
        if digest is not None and actual != digest:
            raise DDToolError(f"blob {digest[:12]} does not match its digest (received {actual[:12]}); "
                              "it was not stored")
        digest = actual
        path = self.blob_path(digest)
        with self.lock():  # gc holds the lock too: it never removes a temp file being written
            if path.exists():
                return digest
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.tmp / f"{digest}.{secrets.token_hex(4)}.incomplete"
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o444)
            os.replace(tmp, path)
        return digest

    def read_blob(self, digest: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        path = self.blob_path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise DDToolError(f"blob {digest[:12]} is missing from {self.blobs}; run 'ddtool store verify'")
        if hashlib.sha256(data).hexdigest() != digest:
            raise DDToolError(
                f"blob {digest[:12]} does not match its digest (corrupted on disk); "
                "run 'ddtool store verify' and re-create the artifact"
            )
        try:
            tensors = st_load(data)
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
        except Exception as exc:  # safetensors raises its own error types
            raise DDToolError(f"blob {digest[:12]} is not a readable safetensors file: {exc}")
        if int(schema_of(meta)) > int(SCHEMA):
            raise DDToolError(
                f"artifact {digest[:12]} uses schema {schema_of(meta)}, newer than this ddtool "
                f"understands ({SCHEMA}); upgrade ddtool"
            )
        return tensors, meta

    def blob_metadata(self, digest: str) -> dict[str, str]:
        try:
            with safe_open(str(self.blob_path(digest)), framework="pt") as fh:
                return dict(fh.metadata() or {})
        except FileNotFoundError:
            raise DDToolError(f"blob {digest[:12]} is missing; run 'ddtool store verify'")
        except Exception as exc:
            raise DDToolError(f"blob {digest[:12]} is unreadable ({exc}); run 'ddtool store verify'")

    # -- refs -----------------------------------------------------------------------------
    def put(self, kind: str, name: str, tensors: dict[str, torch.Tensor],
            metadata: dict[str, str]) -> Artifact:
        """Store an artifact and give it the next version of ``KIND/NAME``."""
        check_name(name)
        with self.lock():  # blob and ref under one lock: gc never sees the blob unreferenced
            digest = self.put_blob(tensors, with_kind(kind, metadata))
            refs = self._read_refs()
            versions = refs.setdefault(f"{kind}/{name}", {})
            version = max((int(v) for v in versions), default=0) + 1
            versions[str(version)] = digest
            self._write_refs(refs)
        return Artifact(digest, self.blob_path(digest), kind, name, version)

    def resolve(self, ref: str | Ref, kind: str | None = None) -> Artifact:
        """Find an artifact by ref or digest prefix; ``kind`` rejects the wrong kind."""
        r = parse_ref(ref) if isinstance(ref, str) else ref
        refs = self._read_refs()
        if r.digest_prefix:
            digests = {d for versions in refs.values() for d in versions.values()}
            if self.blobs.exists():
                digests |= {p.parent.name + p.name for p in self.blobs.glob("??/*")}
            hits = sorted(d for d in digests if d.startswith(r.digest_prefix))
            if not hits:
                raise UsageError(f"no artifact has a digest starting with '{r.digest_prefix}'; see 'ddtool store ls'")
            if len(hits) > 1:
                raise UsageError(
                    f"digest prefix '{r.digest_prefix}' is ambiguous ({len(hits)} artifacts); give more digits"
                )
            digest = hits[0]
            named = [(k, int(v)) for k, vs in refs.items() for v, d in vs.items() if d == digest]
            meta_kind = kind_of(self.blob_metadata(digest), "?")
            art = Artifact(digest, self.blob_path(digest), meta_kind)
            if named:
                key, version = max(named, key=lambda kv: kv[1])
                art = Artifact(digest, art.path, key.split("/")[0], key.split("/", 1)[1], version)
        else:
            key = f"{r.kind}/{r.name}"
            versions = refs.get(key)
            if not versions:
                raise UsageError(f"unknown ref '{r}'; see 'ddtool store ls'")
            version = r.version or max(int(v) for v in versions)
            if str(version) not in versions:
                have = ", ".join(f"v{v}" for v in sorted(versions, key=int))
                raise UsageError(f"'{key}' has no version v{version}; it has {have}")
            digest = versions[str(version)]
            art = Artifact(digest, self.blob_path(digest), r.kind or "?", r.name, version)
        if kind is not None and art.kind != kind:
            raise UsageError(f"'{ref}' is a {art.kind} artifact, but a {kind} artifact is needed here")
        return art

    def load(self, ref: str | Ref, kind: str | None = None) -> tuple[Artifact, dict[str, torch.Tensor], dict[str, str]]:
        art = self.resolve(ref, kind)
        tensors, meta = self.read_blob(art.digest)
        return art, tensors, meta

    def list(self) -> list[Artifact]:
        out = []
        for key, versions in sorted(self._read_refs().items()):
            kind, name = key.split("/", 1)
            for v, digest in sorted(versions.items(), key=lambda kv: int(kv[0])):
                out.append(Artifact(digest, self.blob_path(digest), kind, name, int(v)))
        return out

    def remove(self, ref: str) -> list[Artifact]:
        """Remove one version (``KIND/NAME:vN``) or every version (``KIND/NAME``).

        Blobs no ref points to any more are deleted; run records keep their digests as history
        (`store verify` does not count such a removed input as damage).
        """
        r = parse_ref(ref)
        if r.digest_prefix:
            raise UsageError("remove by name: 'ddtool store rm KIND/NAME[:vN]' (see 'ddtool store ls')")
        with self.lock():
            refs = self._read_refs()
            key = f"{r.kind}/{r.name}"
            versions = refs.get(key)
            if not versions or (r.version and str(r.version) not in versions):
                raise UsageError(f"unknown ref '{r}'; see 'ddtool store ls'")
            gone_versions = [str(r.version)] if r.version else list(versions)
            removed = [Artifact(versions[v], self.blob_path(versions[v]), r.kind or "?", r.name, int(v))
                       for v in gone_versions]
            for v in gone_versions:
                del versions[v]
            if not versions:
                del refs[key]
            self._write_refs(refs)
            live = {d for vs in refs.values() for d in vs.values()}
            for art in removed:
                if art.digest not in live:
                    art.path.unlink(missing_ok=True)
        return removed

    # -- run records ----------------------------------------------------------------------
    def new_run_id(self, command: str) -> str:
        return f"{time.strftime('%Y%m%d-%H%M%S')}-{command}-{secrets.token_hex(3)}"

    def write_run(self, record: dict[str, Any]) -> Path:
        self._ensure()
        run_id = record["id"]
        check_name(run_id)
        path = self.runs_dir / f"{run_id}.json"
        with self.lock():
            _fsync_write(path, _json_bytes(record))
        return path

    def runs(self) -> list[dict[str, Any]]:
        out = []
        if not self.runs_dir.exists():
            return out
        for path in sorted(self.runs_dir.glob("*.json")):
            try:
                rec = json.loads(path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                continue  # verify reports it; listing must not die on one bad record
            if isinstance(rec, dict):
                out.append(rec)
        return out

    def run(self, run_id: str) -> dict[str, Any]:
        check_name(run_id)
        path = self.runs_dir / f"{run_id}.json"
        if not path.exists():
            matches = sorted(self.runs_dir.glob(f"{run_id}*.json")) if self.runs_dir.exists() else []
            if len(matches) != 1:
                raise UsageError(f"unknown run '{run_id}'; see 'ddtool store runs'")
            path = matches[0]
        try:
            rec = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DDToolError(f"run record {path} is corrupt ({exc}); see 'ddtool store verify'") from None
        if not isinstance(rec, dict):
            raise DDToolError(f"run record {path} is not a JSON object; see 'ddtool store verify'")
        return rec

    def runs_of(self, digest: str, runs: list[dict[str, Any]] | None = None
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(runs that produced the digest, runs that consumed it), from ``runs`` or every record."""
        made, used = [], []
        for rec in self.runs() if runs is None else runs:
            if any(o.get("digest") == digest for o in rec.get("outputs", [])):
                made.append(rec)
            if any(i.get("digest") == digest for i in rec.get("inputs", [])):
                used.append(rec)
        return made, used

    @overload
    def lineage(self, digest: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]: ...
    @overload
    def lineage(self, digest: str, depth: int) -> dict[str, Any]: ...

    def lineage(self, digest: str, depth: int | None = None) -> Any:
        """What an artifact was made from and what was made from it, ``depth`` levels each way, as
        plain dicts (``ddtool store show --tree --json``; see :mod:`ddtool.store.lineage`).

        Without ``depth``: :meth:`runs_of`, the one-level form of ddtool 0.1.
        """
        if depth is None:
            return self.runs_of(digest)
        from ddtool.store.lineage import lineage

        return lineage(self, digest, depth)

    def iter_blob_digests(self) -> Iterator[str]:
        if self.blobs.exists():
            for p in sorted(self.blobs.glob("??/*")):
                yield p.parent.name + p.name


def open_store(root: Path | str | None = None) -> Store:
    return Store(root if root is not None else default_root())
