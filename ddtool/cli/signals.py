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
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import typer

from ddtool.errors import DDToolError

#: Exit code of a command stopped by SIGTERM: 128 + 15, what a shell, Slurm or docker expect from a
#: process that ends because of that signal (Ctrl-C keeps 130 = 128 + 2).
SIGTERM_EXIT = 128 + signal.SIGTERM

#: Exceptions that stop a command on their own path (one line, a record, an exit code).
STOPPING = (DDToolError, SystemExit, typer.Exit)  # typer.Exit: what guarded raises to exit


@dataclass
class Termination:
    """Whether SIGTERM arrived while the command ran (``fired``), so the CLI can say so."""

    fired: bool = False
    ended: bool = False  # the block is over: a late SIGTERM must not turn a finished command into an abort
    deferred: bool = False  # it came while an error was being handled, which is already stopping the command


@contextmanager
def sigterm_as_interrupt() -> Iterator[Termination]:
    """Within the block, the first SIGTERM raises KeyboardInterrupt in the main thread; later ones
    are ignored (the command is already stopping, and a second one must not cut the checkpoint
    short; SIGKILL stays the hard stop). The previous handler comes back on exit.

    A SIGTERM that lands while a ddtool error or an exit is being handled (an ``except`` or
    ``finally`` block, a context manager's exit) raises nothing: the command is already stopping.
    torchrun's agent sends it right after a peer died, when this process's collective has failed
    and its error path is writing the run record and the line that says how to resume; a
    KeyboardInterrupt there would replace that line with a bare "interrupted". It is noted in
    ``deferred``. Other exceptions in flight (a library's fallback) do not defer it.

    Outside the main thread, where Python cannot install handlers, the block runs unchanged.
    """
    term = Termination()
    if threading.current_thread() is not threading.main_thread():
        yield term
        return

    def on_term(signum: int, frame: Any) -> None:
        if term.fired or term.ended:
            return
        if isinstance(sys.exc_info()[1], STOPPING):  # the interrupted frame is already stopping: let it finish
            term.deferred = True
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
