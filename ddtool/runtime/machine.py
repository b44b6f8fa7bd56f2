"""What this machine measured: its first compile's seconds and the eager rate it saw, kept in the user cache.

``compile = "auto"`` (:mod:`ddtool.runtime.autocompile`) starts from assumed constants; the first
compile on a machine writes what it measured here, and later decisions use those numbers. The file
is one small JSON object, ``$DDTOOL_CACHE/machine.json`` (default: the platform's user cache,
e.g. ``~/.cache/ddtool``), keyed by device kind, CPU or GPU name and torch version, so a new GPU
or a torch upgrade measures afresh. Each value is the *first* one measured for its key (a later
compile may hit PyTorch's warm FX graph cache and would understate a cold compile); delete the
file to measure again. The eager rate is that of the run's first iteration, which ran under the
FLOP counter (its overhead included: a low figure for element-wise-heavy steps such as IDC's, so
"auto" then leans towards compiling). The cache is advisory: an unreadable, corrupt or unwritable file is ignored
and the assumed constants apply.

The same folder holds ``estimates.json``, the last dry-run estimates (:mod:`ddtool.runtime.distill.estimate`),
which a run with the same recipe copies into its record beside what it measured.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

MACHINE_FILE = "machine.json"


def cache_dir() -> Path:
    """``$DDTOOL_CACHE``, else the platform's user cache folder for ddtool."""
    env = os.environ.get("DDTOOL_CACHE")
    if env:
        return Path(env)
    import platformdirs  # only for the default, as the data root's (ddtool.data.dataset)

    return platformdirs.user_cache_path("ddtool")


def device_name(device: torch.device) -> str:
    """The GPU's name on CUDA, else the CPU's model name (``/proc/cpuinfo``; the platform's elsewhere)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def machine_key(device: torch.device) -> str:
    return f"{device.type} | {device_name(device)} | torch {torch.__version__}"


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``, or ``{}`` when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json(path: Path, data: dict[str, Any]) -> bool:
    """Write ``data`` atomically (a temporary file renamed over the old one); False when it cannot."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        return False
    return True


def _positive(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


@dataclass(frozen=True)
class MachineRates:
    """What this machine measured (None: not yet): the eager FLOP/s of a compiled run's eager
    iteration, and the seconds its first compile took."""

    eager_flops_per_s: float | None = None
    compile_seconds: float | None = None


def measured(device: torch.device) -> MachineRates:
    """The rates recorded for ``device``'s kind, name and torch version (empty when none or unreadable)."""
    entry = read_json(cache_dir() / MACHINE_FILE).get(machine_key(device))
    if not isinstance(entry, dict):
        return MachineRates()
    return MachineRates(_positive(entry.get("eager_flops_per_s")), _positive(entry.get("compile_seconds")))


def record(device: torch.device, **values: float | None) -> bool:
    """Keep the given measurements for ``device`` where none is recorded yet (the first measured
    stays); True when the file was written."""
    path = cache_dir() / MACHINE_FILE
    data = read_json(path)
    key = machine_key(device)
    entry = data.get(key) if isinstance(data.get(key), dict) else {}
    new = {k: float(v) for k, v in values.items() if _positive(v) is not None and _positive(entry.get(k)) is None}
    if not new:
        return False
    data[key] = {**entry, **new}
    return write_json(path, data)


# -- dry-run estimates, handed to the run that follows --------------------------------------------
ESTIMATES_FILE = "estimates.json"
KEEP_ESTIMATES = 50  # the newest, so the file stays small


def estimate_key(recipe_sha256: str, dataset: str, device: torch.device | str) -> str:
    """What a run and its dry-run share: the resolved recipe, the data and the device."""
    return f"{recipe_sha256} | {dataset} | {device}"


def save_estimate(key: str, estimate: dict[str, Any]) -> bool:
    """Keep a dry-run's estimate under ``key`` (replacing an older one); False when it cannot be written."""
    path = cache_dir() / ESTIMATES_FILE
    data = read_json(path)
    data.pop(key, None)
    data[key] = estimate  # newest last: JSON objects keep their order
    return write_json(path, dict(list(data.items())[-KEEP_ESTIMATES:]))


def saved_estimate(key: str) -> dict[str, Any] | None:
    """The estimate a dry-run kept under ``key``, if any (and readable)."""
    got = read_json(cache_dir() / ESTIMATES_FILE).get(key)
    return got if isinstance(got, dict) else None
