"""Several processes under torch.distributed: the environment torchrun sets, the process group,
each rank's device, and the few collectives the runtime needs.

``torchrun --nproc-per-node N -m ddtool distill ...`` (or ``ddtool distill --nproc N``, which
relaunches through ``torch.distributed.run``) starts N copies of the command with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and ``MASTER_ADDR``/``MASTER_PORT`` in their environment.
:func:`init` joins them into one process group (NCCL on CUDA, gloo on CPU) and binds each rank to
``cuda:LOCAL_RANK``. Without that environment nothing changes: world 1, no process group, every
collective here the identity.

Who does what: every rank reads the store and computes its share (distill: its classes, see
``ddtool.methods.sharding``; eval: its repeats; pretrain: its pool models); only rank 0 writes
(artifacts, checkpoints, run records). A collective that fails because a peer died raises
``PeerLost`` (one line); a hung peer trips the process group's timeout, ``DDTOOL_DIST_TIMEOUT``
seconds (default 1800: it must exceed the longest time one rank can wait for another, e.g. one
evaluation repeat when repeats do not split evenly).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Sequence

import torch

from ddtool.collective import PeerLost, all_reduce_sum, collective, shard_range
from ddtool.errors import DDToolError, UsageError
from ddtool.methods.sharding import ClassShard

__all__ = ["World", "PeerLost", "all_gather_object", "reduce_sum", "barrier", "broadcast_object",
           "class_shard", "current", "describe", "from_env", "gather_shards", "init", "is_main", "shard",
           "shard_range", "shutdown"]

TIMEOUT_ENV = "DDTOOL_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class World:
    """This process's place: ``rank`` of ``size`` (``local_rank`` on its node), the backend
    (None: no process group)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0


_world = World()


def from_env(environ: dict[str, str] | None = None) -> World | None:
    """The world torchrun's environment describes (None without ``RANK``/``WORLD_SIZE``)."""
    env = os.environ if environ is None else environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    try:
        rank, size = int(env["RANK"]), int(env["WORLD_SIZE"])
        local = int(env.get("LOCAL_RANK", rank))
    except ValueError:
        raise UsageError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (launch with torchrun)") from None
    if size < 1 or not 0 <= rank < size:
        raise UsageError(f"RANK {rank} is outside WORLD_SIZE {size} (launch with torchrun)")
    return World(rank, size, local)


def timeout_s() -> float:
    """Seconds a collective waits for a peer before the run stops (``DDTOOL_DIST_TIMEOUT``)."""
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise UsageError(f"{TIMEOUT_ENV} must be a number of seconds, got '{raw}'") from None
    if value <= 0:
        raise UsageError(f"{TIMEOUT_ENV} must be positive, got {raw}")
    return value


def init(device: torch.device) -> torch.device:
    """Join the process group torchrun's environment describes and return this rank's device
    (``cuda:LOCAL_RANK`` when ``device`` is CUDA). Without that environment, or with a world of
    one, nothing is initialised and ``device`` comes back unchanged."""
    global _world
    import torch.distributed as dist

    found = from_env()
    if found is None or found.size == 1:
        return device
    if dist.is_initialized():  # a library caller that set up its own group
        _world = World(dist.get_rank(), dist.get_world_size(), found.local_rank, dist.get_backend())
        return device
    backend = "gloo"
    if device.type == "cuda":
        if found.local_rank >= torch.cuda.device_count():
            raise UsageError(f"LOCAL_RANK {found.local_rank} but this node has {torch.cuda.device_count()} CUDA "
                             "devices: launch at most that many processes per node")
        device = torch.device("cuda", found.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    try:
        dist.init_process_group(backend, rank=found.rank, world_size=found.size,
                                timeout=timedelta(seconds=timeout_s()),
                                **({"device_id": device} if backend == "nccl" else {}))
    except (RuntimeError, ValueError, ConnectionError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DDToolError(f"could not join the other {found.size - 1} processes ({backend}): {first[:200]}; "
                          "check MASTER_ADDR/MASTER_PORT or launch with torchrun") from None
    _world = World(found.rank, found.size, found.local_rank, backend)
    return device


def shutdown(together: bool = True) -> None:
    """Leave the process group (at the end of a command; safe to call without one). ``together``:
    wait for every rank first, so none tears its connections down under a peer still using them
    (rank 0 finishes later: it writes the store); False when a peer may be gone (an error)."""
    global _world, _slow_group
    import torch.distributed as dist

    _slow_group = None
    if _world.backend is not None and dist.is_initialized():
        try:
            if together:
                dist.barrier()
            dist.destroy_process_group()
        except Exception:  # a peer already gone: nothing left to tear down cleanly
            pass
    _world = World()


def current() -> World:
    return _world


def is_main() -> bool:
    """Whether this process writes to the store and prints results (rank 0, or no process group)."""
    return _world.main


def barrier() -> None:
    if _world.size > 1:
        import torch.distributed as dist

        collective("barrier", dist.barrier)


def all_gather_object(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order (``[obj]`` alone)."""
    if _world.size == 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * _world.size
    collective("all_gather", lambda: dist.all_gather_object(out, obj))
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if _world.size == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    collective("broadcast", lambda: dist.broadcast_object_list(box, src=0))
    return box[0]


LONG_WAIT_S = 24 * 3600.0  # gather_to_main: a peer may train a whole expert before it comes
_slow_group: Any = None


def gather_to_main(obj: Any) -> list[Any] | None:
    """``obj`` of every rank, in rank order, on rank 0 (None on the others; ``[obj]`` alone).

    Over a gloo group of its own whose timeout (``LONG_WAIT_S``, or ``DDTOOL_DIST_TIMEOUT`` if
    longer) lets a rank wait while its peers finish a long computation (expert trajectories: one
    expert can take hours on a CPU, while the default timeout bounds a hung step). A peer that dies
    still closes its connections, which stops the wait at once."""
    global _slow_group
    if _world.size == 1:
        return [obj]
    import torch.distributed as dist

    if _slow_group is None:  # every rank reaches its first call: new_group is itself collective
        _slow_group = collective("new_group", lambda: dist.new_group(
            backend="gloo", timeout=timedelta(seconds=max(LONG_WAIT_S, timeout_s()))))
    out: list[Any] | None = [None] * _world.size if _world.main else None
    collective("gather", lambda: dist.gather_object(obj, out, dst=0, group=_slow_group))
    return out


def shard(n: int) -> list[int]:
    """This rank's contiguous block of ``range(n)`` (repeats, pool models)."""
    return shard_range(n, _world.rank, _world.size)


def gather_shards(mine: Sequence[Any]) -> list[Any]:
    """The items every rank computed for its :func:`shard` of the same ``n``, in index order."""
    return [item for part in all_gather_object(list(mine)) for item in part]


def class_shard(num_classes: int) -> ClassShard:
    """This rank's share of the classes of a distill run."""
    return ClassShard(num_classes, _world.rank, _world.size)


def describe(device: torch.device | str | None) -> dict[str, Any]:
    """What a run record says about the processes: world size, backend, and every rank's host and device
    (a collective: every rank calls it)."""
    me = {"rank": _world.rank, "host": socket.gethostname(), "pid": os.getpid(),
          "device": str(device) if device is not None else None}
    ranks = all_gather_object(me)
    out: dict[str, Any] = {"world_size": _world.size}
    if _world.size > 1:
        out.update(backend=_world.backend, ranks=ranks)
    return out


def reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed in place across ranks."""
    return all_reduce_sum(t, _world.size)
