"""Run records: what a command read, wrote, how long it took and what it measured."""

from __future__ import annotations

import platform
import sys
import time
from typing import Any

import torch

from ddtool import __version__
from ddtool.store import Artifact, Store


def io_entry(art: Artifact, role: str) -> dict[str, str]:
    return {"ref": art.ref, "digest": art.digest, "kind": art.kind, "role": role}


def new_record(store: Store, command: str, **fields: Any) -> dict[str, Any]:
    from ddtool.plugins import plugin_versions

    return {
        "id": store.new_run_id(command),
        "command": command,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "ddtool_version": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "host": platform.machine(),
        "plugins": plugin_versions(),
        "inputs": [],
        "outputs": [],
        "metrics": {},
        "status": "running",
        **fields,
    }


def peak_memory(device: torch.device | str) -> dict[str, int]:
    """Peak resident memory of this process (and peak CUDA allocation on a GPU), in bytes."""
    import resource

    out = {"peak_rss_bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024}
    if torch.device(device).type == "cuda":
        out["peak_cuda_bytes"] = int(torch.cuda.max_memory_allocated(device))
    return out
