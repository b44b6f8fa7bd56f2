"""Content-addressed artifact store: safetensors blobs by sha256, versioned refs, run records."""

from ddtool.store.refs import Ref, parse_ref
from ddtool.store.store import Artifact, Store, default_root, open_store

__all__ = ["Artifact", "Ref", "Store", "default_root", "open_store", "parse_ref"]
