"""The collectives of a multi-process run (``torchrun``): sums across processes, and a lost peer
turned into one line. Below the methods and the runtime, which both sum across processes
(:mod:`ddtool.methods.sharding`, :mod:`ddtool.runtime.distributed.process_group`).
"""

from __future__ import annotations

import re
from typing import Any, Callable

import torch

from ddtool.errors import DDToolError


class PeerLost(DDToolError):
    """A collective failed: another process of the run died, was stopped or cannot be reached."""


def shard_range(n: int, rank: int, world: int) -> list[int]:
    """The contiguous block of ``range(n)`` that process ``rank`` of ``world`` owns (sizes differ by
    at most one, the first blocks being the larger; empty when ``world > n`` leaves none)."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return list(range(start, start + base + (1 if rank < extra else 0)))


def collective(what: str, fn: Callable[[], Any]) -> Any:
    """Run a collective, turning a lost peer into one line (a dead rank closes its sockets; a hung one
    trips the process group's timeout, DDTOOL_DIST_TIMEOUT)."""
    try:
        return fn()
    except (RuntimeError, ConnectionError) as exc:
        raise PeerLost(f"another process of this run stopped or cannot be reached ({what}: {_first_words(exc)})"
                       ) from None


def _first_words(exc: BaseException) -> str:
    """The gist of a backend's error: its first sentence, without the source location gloo puts first."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"^\[[^\]]*\]\s*", "", text)  # "[.../gloo/transport/tcp/pair.cc:545] Read error ..."
    return text.split(". ")[0][:120]


def all_reduce_sum(t: torch.Tensor, world: int = 1) -> torch.Tensor:
    """``t`` summed in place across the ``world`` processes (the identity for one)."""
    if world > 1:
        import torch.distributed as dist

        collective("all_reduce", lambda: dist.all_reduce(t))
    return t
