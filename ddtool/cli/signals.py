"""SIGTERM handled as Ctrl-C while a CLI command runs.

Clusters and containers stop a job with SIGTERM, not SIGINT: torchrun's agent, Slurm at a time
limit, ``docker stop``, systemd. Python's default for SIGTERM is to die on the spot, which leaves a
run record ``running`` and skips the checkpoint a distill run saves on Ctrl-C. While a command runs,
the CLI turns the first SIGTERM into the KeyboardInterrupt that Ctrl-C raises, so the same code
path saves, records ``interrupted`` and prints how to resume. The handler lives here, not in the
runtime, so library callers keep their own signal policy.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

#: Exit code of a command stopped by SIGTERM: 128 + 15, what a shell, Slurm or docker expect from a
#: process that ends because of that signal (Ctrl-C keeps 130 = 128 + 2).
SIGTERM_EXIT = 128 + signal.SIGTERM


@dataclass
class Termination:
    """Whether SIGTERM arrived while the command ran (``fired``), so the CLI can say so."""

    fired: bool = False
    ended: bool = False  # the block is over: a late SIGTERM must not turn a finished command into an abort


@contextmanager
def sigterm_as_interrupt() -> Iterator[Termination]:
    """Within the block, the first SIGTERM raises KeyboardInterrupt in the main thread; later ones
    are ignored (the command is already stopping, and a second one must not cut the checkpoint
    short; SIGKILL stays the hard stop). The previous handler comes back on exit.

    Outside the main thread, where Python cannot install handlers, the block runs unchanged.
    """
    term = Termination()
    if threading.current_thread() is not threading.main_thread():
        yield term
        return

    def on_term(signum: int, frame: Any) -> None:
        if term.fired or term.ended:
            return
        term.fired = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield term
    finally:
        term.ended = True
        # None: a handler installed outside Python; the default is the closest we can restore
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
